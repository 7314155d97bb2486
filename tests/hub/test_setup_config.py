"""``daas setup``'s Jupyter configuration for an editable install, as a wheel
install lays it out: the server extensions enabled, JupyterLab's defaults."""

import json

import pytest

from hub_ext.demo.setup_tools import SetupError, ensure_jupyter_config


def test_setup_enables_the_server_extensions(tmp_path):
    server, lab = ensure_jupyter_config(tmp_path)
    assert json.loads(server.read_text())["ServerApp"]["jpserver_extensions"] == {
        "server_ext.extension": True, "server_ext.desktop": True}
    assert json.loads(lab.read_text()) == {"@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false", "checkForUpdates": False}}
    written = server.stat().st_ino, lab.stat().st_ino
    assert ensure_jupyter_config(tmp_path) == (server, lab)  # idempotent: nothing rewritten
    assert (server.stat().st_ino, lab.stat().st_ino) == written


def test_lab_settings_merge_into_a_prefixs_own(tmp_path):
    """JupyterLab reads one overrides.json per prefix: a facility's own settings stay."""
    lab = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    lab.parent.mkdir(parents=True)
    lab.write_text(json.dumps({
        "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
        "@jupyterlab/apputils-extension:notification": {"doNotDisturbMode": True, "fetchNews": "true"}}))
    ensure_jupyter_config(tmp_path)
    assert json.loads(lab.read_text()) == {
        "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
        "@jupyterlab/apputils-extension:notification": {
            "doNotDisturbMode": True, "fetchNews": "false", "checkForUpdates": False}}
    for bad, says in (("{not json", "is not JSON"), ('["a list"]', "not an object of plugin settings"),
                      ('{"@jupyterlab/apputils-extension:notification": 1}', "not an object of plugin")):
        lab.write_text(bad)
        with pytest.raises(SetupError, match=says):
            ensure_jupyter_config(tmp_path)
        assert lab.read_text() == bad  # left for its owner to fix
