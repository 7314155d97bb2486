"""Authenticated is not enough: the server's authorizer decides on the 'daas' resource."""

import os

from server_ext.extension.serverprocess import JupyterServerProcess

from .conftest import TOKEN, Api


def test_an_authorizer_denying_daas_closes_the_api(server_root, tmp_path):
    tests_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**server_root["env"], "PYTHONPATH": tests_dir + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    server = JupyterServerProcess(server_root["root"], env=env, token=TOKEN, log_path=tmp_path / "server.log",
                                  options={"ServerApp.authorizer_class": "tests.extension.deny_daas.DenyDaas"})
    try:
        api = Api(server.start())
        assert api.session.get(server.url + "api/contents", timeout=60).status_code == 200  # the rest works
        assert api.get("session").status_code == 403
        assert api.get("nxmx/jobs").status_code == 403
        assert api.post("nxmx/validate", json={"path": "x"}).status_code == 403
        assert api.delete("spectra/streams/0123456789abcdef").status_code == 403
    finally:
        server.stop()
