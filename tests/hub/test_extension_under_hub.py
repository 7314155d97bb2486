"""The daas extension in a server spawned by the real hub: API through the proxy, DaasClient from the server's env."""

import requests

from server_ext.extension.client import DaasClient

from ..extension.kernels import run_in_kernel
from .hubtools import API_TOKEN


def test_extension_in_a_hub_spawned_server(demo_hub):
    alice = demo_hub.login("alice")
    r = alice.get("/hub/spawn", params={"dataset": "xfel:p002120:r0029", "environment": "euxfel-mx"},
                  allow_redirects=False)
    assert r.status_code == 302, r.text
    state = demo_hub.wait_ready("alice")
    try:
        # through the proxy, with a hub token
        auth = {"Authorization": f"token {API_TOKEN}"}
        r = requests.get(f"{demo_hub.url}/user/alice/daas/api/session", headers=auth, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["dataset"]["pid"] == "xfel:p002120:r0029"
        assert requests.get(f"{demo_hub.url}/user/alice/daas/api/session", timeout=60).status_code == 403

        # as a kernel of that server finds it: the server's own environment (kernels inherit it)
        environ = dict(item.split("=", 1) for item in
                       open(f"/proc/{state['state']['pid']}/environ").read().split("\0") if "=" in item)
        client = DaasClient.from_env({k: v for k, v in environ.items() if k.startswith("JUPYTERHUB_")})
        assert client.session()["dataset"]["pid"] == "xfel:p002120:r0029"
        summary = client.run_summary("data/xfel-p002120-r0029")
        assert summary["trains"] == 64
        job = client.submit_conversion("data/xfel-p002120-r0029", "processed.nxs", distance=150.0,
                                       trains={"start": 0, "stop": 2})
        job = client.wait_job(job["id"], timeout=240)
        assert job["state"] == "done", job
        assert client.validate("processed.nxs")["ok"] is True

        # and from a kernel of that server, through the variables the extension exported
        home = demo_hub.state_dir / "users" / "alice"
        code = ("from server_ext.extension.client import DaasClient\n"
                "d = DaasClient.from_env()\nprint(d.session()['dataset']['pid'], len(d.list_conversions()))")
        out = run_in_kernel(f"{demo_hub.url}/user/alice", auth, home / ".local/share/jupyter/runtime", code)
        # alice's job records persist in her home, so other tests' jobs may be listed too
        conversions = client.list_conversions()
        assert job["id"] in {j["id"] for j in conversions}
        assert out.split() == ["xfel:p002120:r0029", str(len(conversions))]
    finally:
        demo_hub.stop_server("alice")
