"""The extension's knobs: each one documented, as ``--help-all`` shows it."""

from server_ext.extension.app import DaasExtension


def test_every_knob_is_documented_in_the_help():
    knobs = DaasExtension.class_own_traits(config=True)
    assert {"data_dir", "max_running_jobs", "dask_scheduler_address", "request_timeout",
            "stream_message_rate"} <= set(knobs)
    undocumented = sorted(name for name, trait in knobs.items() if not (trait.help or "").strip())
    assert not undocumented
    text = DaasExtension.class_get_help()
    for name, trait in knobs.items():
        assert f"--DaasExtension.{name}=" in text
        assert trait.help.split()[0] in text


def test_data_dir_defaults_below_the_jupyter_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path))
    assert DaasExtension().data_dir == str(tmp_path / "daas")
    assert DaasExtension(data_dir="/elsewhere").data_dir == "/elsewhere"
