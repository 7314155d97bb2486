"""DaasClient against the real server, and from inside a kernel the server started."""

import time

import pytest

from server_ext.extension.client import DaasApiError, DaasClient

from .conftest import DEMO_KEY, DEMO_SOURCE, TOKEN, WAIT, silent_bridge
from .kernels import run_in_kernel


@pytest.fixture(scope="module")
def client(server):
    return DaasClient(server.api_url, TOKEN, timeout=120)


def test_from_env_prefers_the_extension_variables():
    c = DaasClient.from_env({"DAAS_API_URL": "http://127.0.0.1:1/daas/api/", "DAAS_API_TOKEN": "t",
                             "JUPYTERHUB_API_TOKEN": "hub"})
    assert (c.url, c.token) == ("http://127.0.0.1:1/daas/api/", "t")
    hub = DaasClient.from_env({"JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:5/user/alice/",
                               "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/", "JUPYTERHUB_API_TOKEN": "hub"})
    assert (hub.url, hub.token) == ("http://127.0.0.1:5/user/alice/daas/api/", "hub")
    with pytest.raises(DaasApiError, match="DAAS_API_URL"):
        DaasClient.from_env({})


def test_client_mirrors_the_api(client, agipd_run_rel, trained_model):
    assert client.session()["dataset"]["pid"] == "xfel:p002120"
    assert client.run_summary(agipd_run_rel)["trains"] == 64
    job = client.submit_conversion(agipd_run_rel, "processed/client.nxs", distance=150.0,
                                   trains={"start": 0, "stop": 2})
    assert job["id"] in [j["id"] for j in client.list_conversions()]
    job = client.wait_job(job["id"], timeout=240, interval=0.3)
    assert job["state"] == "done" and client.get_conversion(job["id"])["result"]["output"] == "processed/client.nxs"
    assert client.validate("processed/client.nxs")["ok"] is True
    assert trained_model["id"] in [m["id"] for m in client.list_models()]
    assert client.get_model(trained_model["id"])["result"]["bins"]
    scored = client.evaluate(trained_model["id"], "spectra-run", trained_model["options"]["labels"],
                             source=DEMO_SOURCE, key=DEMO_KEY, max_per_label=4)
    assert scored["spectra"] == 8 and sorted(scored["classes"]) == ["after", "before"]
    unwanted = client.train_model("spectra-run", trained_model["options"]["labels"], source=DEMO_SOURCE,
                                  key=DEMO_KEY, max_per_label=8, params={"epochs": 20})
    assert client.cancel_training(unwanted["id"])["id"] == unwanted["id"]
    assert client.wait_job(unwanted["id"], timeout=WAIT, kind="spectra")["state"] == "cancelled"
    assert client.remove_model(unwanted["id"]) is None
    assert unwanted["id"] not in [m["id"] for m in client.list_models()]
    assert client.stream_url("abc").startswith("ws://127.0.0.1:")


def test_wait_job_sees_the_end_as_it_happens(client, agipd_run_rel, monkeypatch):
    """Each of wait_job's requests waits on the server (up to 30 s): a copy of seconds takes one
    request, where polling every 10 ms would take hundreds."""
    job = client.submit_conversion(agipd_run_rel, "processed/client-copy.nxs", mode="copy", distance=150.0,
                                   trains={"start": 0, "stop": 16})
    queries, request = [], client.request
    monkeypatch.setattr(client, "request", lambda *a, **kw: queries.append(kw.get("query")) or request(*a, **kw))
    job = client.wait_job(job["id"], timeout=240, interval=0.01)
    assert job["state"] == "done" and 1 <= len(queries) <= WAIT // 30, queries
    assert all(0 < float(q["wait"]) <= 30 for q in queries), queries


def test_start_stream_passes_max_reconnects_none_as_reconnect_for_ever(client, trained_model):
    stream = client.start_stream(trained_model["id"], endpoint=silent_bridge(), timeout=0.2, max_reconnects=None,
                                 purity=0.75)
    try:
        assert stream["options"]["source"]["max_reconnects"] is None  # sent as null, not left out
        assert stream["options"]["purity"] == 0.75
        deadline = time.monotonic() + 120
        while client.get_stream(stream["id"])["state"] == "starting" and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        stopped = client.stop_stream(stream["id"])
    assert stopped["state"] == "stopped" and stopped["error"] is None


def test_errors_carry_the_servers_message(client, server):
    with pytest.raises(DaasApiError) as e:
        client.submit_conversion("../elsewhere", "processed/x.nxs")
    assert e.value.status == 403 and "outside" in e.value.message
    with pytest.raises(DaasApiError) as e:
        client.submit_conversion("x", "processed/x.nxs", colour="red")
    assert e.value.status == 400 and "colour" in e.value.message
    with pytest.raises(DaasApiError) as e:
        client.get_model("0123456789abcdef")
    assert e.value.status == 404
    with pytest.raises(DaasApiError) as e:
        client.remove_model("0123456789abcdef")
    assert e.value.status == 404 and "no spectra job '0123456789abcdef'" in e.value.message
    with pytest.raises(DaasApiError) as e:
        DaasClient(server.api_url, "wrong-token").session()
    assert e.value.status == 403
    with pytest.raises(DaasApiError, match="does not answer"):
        DaasClient("http://127.0.0.1:9/daas/api/", timeout=5).session()


def test_a_kernel_finds_its_server(server, server_root):
    """The extension exports DAAS_API_URL/DAAS_API_TOKEN; a kernel the server starts inherits them."""
    code = ("import os\nfrom server_ext.extension.client import DaasClient\n"
            "print(DaasClient.from_env().session()['dataset']['pid'])\n"
            "print(os.environ.get('MKL_NUM_THREADS'), os.environ.get('MALLOC_TRIM_THRESHOLD_'))")
    out = run_in_kernel(server.url, {"Authorization": f"token {TOKEN}"},
                        server_root["env"]["JUPYTER_RUNTIME_DIR"], code)
    # the dataset; and none of the Dask workers' variables leaked (jobs have run on this server by now)
    assert out.split() == ["xfel:p002120", "None", "None"]
