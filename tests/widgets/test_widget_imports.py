"""The widgets' place in the house: they load what they use, and never the hub side."""

import subprocess
import sys


def _loaded_after(code):
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    return set(out)


def test_import_widgets_is_light():
    loaded = _loaded_after("import widgets")
    assert not {"ipywidgets", "matplotlib", "tensorflow", "h5py", "jupyter_server"} & loaded


def test_the_apps_never_import_the_hub_side():
    loaded = _loaded_after("from widgets import NXmxConverter, SpectraClassifierApp, FrameViewer")
    assert "ipywidgets" in loaded
    assert not any(m == "hub_ext" or m.startswith("hub_ext.") for m in loaded)
    assert "tensorflow" not in loaded and "jupyter_server" not in loaded
