"""The facility spawner in a real JupyterHub with the real configurable-http-proxy."""

import copy
import json
import re

import pytest
import requests

from hub_ext.demo.command import demo_catalog

from .hubtools import API_TOKEN, READER_TOKEN, Hub

ALICE_VISIBLE = {"xfel:p002120:r0029", "xfel:p002121:r0012", "petra:p02.1:11054321"}
HIDDEN_FROM_ALICE = {"xfel:p900001:r0100", "petra:p11:11012345"}


def pids_in(html):
    return set(re.findall(r'data-pid="([^"]+)"', html))


def nothing_started(hub, user):
    assert hub.server_state(user) is None, f"a server of {user} exists: {hub.server_state(user)}"


def spawn_error(response):
    """The message JupyterHub shows on the re-rendered form."""
    m = re.search(r'class="spawn-error-msg[^"]*">\s*Error:\s*(.*?)</p>', response.text, re.S)
    return m.group(1).strip() if m else ""


# -- the form -------------------------------------------------------------------------


def test_form_lists_only_accessible_datasets(demo_hub, demo_runs):
    html = demo_hub.login("alice").spawn_form()
    visible = ALICE_VISIBLE | ({"xfel:p700000:r0001"} if "spectra" in demo_runs else set())
    assert pids_in(html) == visible
    for env in ("euxfel-mx", "spectroscopy", "python-basic"):
        assert f'value="{env}"' in html
    assert 'name="dataset"' in html and 'name="environment"' in html


def test_groups_decide_visibility_not_admin_rights(demo_hub):
    bob = pids_in(demo_hub.login("bob").spawn_form())
    assert {"xfel:p900001:r0100", "petra:p11:11012345"} <= bob
    assert "xfel:p002120:r0029" not in bob
    admin = pids_in(demo_hub.login("admin").spawn_form())
    assert admin and not admin & ({"xfel:p002120:r0029"} | HIDDEN_FROM_ALICE)


def test_search_text_facility_and_paging(demo_hub):
    alice = demo_hub.login("alice")
    r = alice.search(q="JUNGFRAU")
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == 1 and page["items"][0]["pid"] == "xfel:p002121:r0012"
    assert page["items"][0]["slug"] == "xfel-p002121-r0012"

    assert alice.search(q="commissioning").json()["total"] == 0  # hidden from alice
    assert alice.search(q="2120 lysozyme").json()["total"] == 1  # every word must match
    petra = alice.search(facility="PETRA III").json()
    assert [d["pid"] for d in petra["items"]] == ["petra:p02.1:11054321"]

    everything = alice.search(limit=100).json()
    first, second = alice.search(limit=2).json(), alice.search(limit=2, offset=2).json()
    assert first["total"] == second["total"] == everything["total"] >= 3
    paged = [d["pid"] for d in first["items"] + second["items"]]
    assert paged == [d["pid"] for d in everything["items"]][:4]
    assert len(set(paged)) == len(paged)


def test_search_api_needs_its_scope_and_hides_storage(demo_hub):
    alice = demo_hub.login("alice")
    page = alice.search(limit=100).json()
    assert page["items"] and all("path" not in d and "access_groups" not in d for d in page["items"])
    assert alice.search(user="bob").status_code == 403  # her token is for her own datasets only
    assert alice.search(offset="x").status_code == 400
    assert requests.get(demo_hub.search_url, timeout=10).status_code == 403  # no token

    def token_of_alice(scopes):
        r = demo_hub.api("POST", "/users/alice/tokens", json={"scopes": scopes, "expires_in": 600})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    # tokens of alice for other purposes do not list her datasets
    for scopes in (["read:users:name!user=alice"], ["access:servers!user=alice"]):
        r = requests.get(demo_hub.search_url, headers={"Authorization": f"token {token_of_alice(scopes)}"}, timeout=10)
        assert r.status_code == 403, (scopes, r.text)
    # a service granted the scope may search on a user's behalf
    r = requests.get(demo_hub.search_url, params={"user": "alice", "limit": 100}, timeout=10,
                     headers={"Authorization": f"token {READER_TOKEN}"})
    assert r.status_code == 200, r.text
    assert {d["pid"] for d in r.json()["items"]} == {d["pid"] for d in page["items"]}
    # the search is the service's, no longer a hub handler
    assert requests.get(f"{demo_hub.url}/hub/api/daas/datasets", timeout=10).status_code == 404


def test_query_arguments_preselect(demo_hub):
    alice = demo_hub.login("alice")
    # dataset alone cannot start a server: JupyterHub falls back to the form, preselected
    r = alice.get("/hub/spawn", params={"dataset": "petra:p02.1:11054321"})
    assert 'id="daas-dataset" value="petra:p02.1:11054321"' in r.text
    assert "Choose a software environment" in spawn_error(r)
    nothing_started(demo_hub, "alice")


# -- forged and invalid choices: refused, nothing started ------------------------------

FORGED = [
    ({"dataset": "xfel:p900001:r0100", "environment": "euxfel-mx"}, 403, "does not exist or you do not have access"),
    ({"dataset": "xfel:nope:r0001", "environment": "euxfel-mx"}, 403, "does not exist or you do not have access"),
    ({"dataset": "../../etc", "environment": "euxfel-mx"}, 400, "malformed"),
    ({"dataset": "/etc/passwd", "environment": "euxfel-mx"}, 400, "malformed"),
    ({"environment": "euxfel-mx"}, 400, "Choose a dataset"),
    ({"dataset": "xfel:p002120:r0029"}, 400, "Choose a software environment"),
    ({"dataset": "xfel:p002120:r0029", "environment": "no-such-env"}, 400, "Unknown software environment"),
    ({"dataset": "petra:p02.1:11054321", "environment": "euxfel-mx"}, 400, "does not support PETRA III"),
    ({"dataset": "xfel:p002120:r0029", "environment": "euxfel-mx", "image": "evil/root"}, 400, "Unknown spawn option"),
]


@pytest.mark.parametrize("fields,status,message", FORGED)
def test_forged_form_is_refused(demo_hub, fields, status, message):
    r = demo_hub.login("alice").post_form(fields)
    assert r.status_code == status
    assert message in spawn_error(r)
    nothing_started(demo_hub, "alice")


def test_multi_valued_field_is_refused(demo_hub):
    r = demo_hub.login("alice").post_form(
        {"dataset": ["xfel:p002120:r0029", "xfel:p900001:r0100"], "environment": "euxfel-mx"}
    )
    assert r.status_code == 400 and "exactly one value" in spawn_error(r)
    nothing_started(demo_hub, "alice")


@pytest.mark.parametrize("fields,status,message", FORGED)
def test_forged_api_request_is_refused(demo_hub, fields, status, message):
    r = demo_hub.api("POST", "/users/alice/server", json=fields)
    assert r.status_code == status, r.text
    assert message in r.json()["message"]
    nothing_started(demo_hub, "alice")


# -- a real server ------------------------------------------------------------------------


def test_spawn_mounts_dataset_and_refuses_stale_options(demo_hub, demo_runs):
    alice = demo_hub.login("alice")
    # JupyterHub's query-argument spawn (the form POST is driven by the browser test)
    r = alice.get("/hub/spawn", params={"dataset": "xfel:p002120:r0029", "environment": "euxfel-mx"},
                  allow_redirects=False)
    assert r.status_code == 302 and "spawn-pending" in r.headers["Location"], spawn_error(r)
    state = demo_hub.wait_ready("alice")
    assert state["user_options"] == {"dataset": "xfel:p002120:r0029", "environment": "euxfel-mx"}
    auth = {"Authorization": f"token {API_TOKEN}"}
    base = f"{demo_hub.url}/user/alice/api/contents"
    try:
        listing = requests.get(f"{base}/data", headers=auth, timeout=30).json()
        assert [e["name"] for e in listing["content"]] == ["xfel-p002120-r0029"]
        run = requests.get(f"{base}/data/xfel-p002120-r0029", headers=auth, timeout=30).json()
        assert any(e["name"].startswith("CORR-R0029-AGIPD00") for e in run["content"])
        notebooks = requests.get(f"{base}/notebooks", headers=auth, timeout=30).json()
        assert {"getting_started.ipynb", "explore_dataset.ipynb", "nxmx_conversion.ipynb",
                "spectra_classification.ipynb"} <= {
            e["name"] for e in notebooks["content"]
        }

        # the file browser refuses writes into the dataset, and work elsewhere is fine
        model = {"type": "file", "format": "text", "content": "x"}
        r = requests.put(f"{base}/data/xfel-p002120-r0029/new.txt", headers=auth, json=model, timeout=30)
        assert r.status_code == 403 and "read-only" in r.json()["message"]
        r = requests.delete(f"{base}/data/xfel-p002120-r0029", headers=auth, timeout=30)
        assert r.status_code == 403
        for sneaky in ("notebooks/%2e%2e/data/xfel-p002120-r0029/new.txt", "./data/xfel-p002120-r0029/new.txt"):
            r = requests.put(f"{base}/{sneaky}", headers=auth, json=model, timeout=30)
            assert r.status_code == 403, (sneaky, r.status_code)
        r = requests.patch(f"{base}/notebooks/%2e%2e/data/xfel-p002120-r0029", headers=auth,
                           json={"path": "moved"}, timeout=30)
        assert r.status_code == 403
        assert requests.put(f"{base}/scratch.txt", headers=auth, json=model, timeout=30).status_code == 201

        environ = dict(
            item.split("=", 1) for item in
            open(f"/proc/{state['state']['pid']}/environ").read().split("\0") if "=" in item
        )
        home = demo_hub.state_dir / "users" / "alice"
        assert environ["DAAS_DATASET_PID"] == "xfel:p002120:r0029"
        assert environ["DAAS_ENVIRONMENT"] == "euxfel-mx"
        assert environ["DAAS_DATASET_PATH"] == str(home / "data" / "xfel-p002120-r0029")
        assert environ["DAAS_SESSION"] == str(home / ".daas" / "session.json")
        assert environ["JUPYTERHUB_DEFAULT_URL"] == "/lab/tree/notebooks/nxmx_conversion.ipynb"
        session = json.loads((home / ".daas" / "session.json").read_text())
        assert session["dataset"]["pid"] == "xfel:p002120:r0029"
        assert session["environment"]["slug"] == "euxfel-mx"
        assert session["dataset_path"].endswith("/data/xfel-p002120-r0029")
        assert session["started"].endswith("Z")
    finally:
        demo_hub.stop_server("alice")

    original = copy.deepcopy(demo_catalog(demo_runs))
    trimmed = {"datasets": [d for d in original["datasets"] if d["pid"] != "xfel:p002120:r0029"]}
    demo_hub.set_catalog(trimmed)
    try:
        # no options: JupyterHub reuses the saved ones, which went stale
        r = demo_hub.api("POST", "/users/alice/server")
        assert r.status_code == 403, r.text
        assert "does not exist or you do not have access" in r.json()["message"]
        nothing_started(demo_hub, "alice")
        html = alice.spawn_form()
        assert "is not available to you any more" in html
        assert "xfel:p002120:r0029" not in pids_in(html)
    finally:
        demo_hub.set_catalog(original)


# -- the catalogue goes away ------------------------------------------------------------


def test_unreachable_catalogue_is_reported_and_hub_stays_up(tmp_path, demo_runs):
    from hub_ext.demo.hubprocess import free_port

    dead = f"http://127.0.0.1:{free_port()}/api/v3"  # nothing listens there
    hub = Hub(
        tmp_path, demo_catalog(demo_runs),
        extra_config=f'\nc.FacilitySpawner.catalog_class = "scicat"\nc.SciCatCatalog.url = "{dead}"\n'
        'c.SciCatCatalog.token = "t"\nc.SciCatCatalog.timeout = 2\n',
    ).start()
    try:
        alice = hub.login("alice")
        html = alice.spawn_form()
        assert "The dataset catalogue is unavailable right now" in html
        assert alice.search(q="x").status_code == 503
        r = hub.api("POST", "/users/alice/server", json={"dataset": "xfel:p002120:r0029", "environment": "euxfel-mx"})
        assert r.status_code == 503 and "catalogue is unavailable" in r.json()["message"]
        nothing_started(hub, "alice")
        assert requests.get(f"{hub.url}/hub/api", timeout=10).status_code == 200
    finally:
        hub.stop()
