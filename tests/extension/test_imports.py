"""Engines stay free of Jupyter; the extension loads nothing heavy when the server starts."""

import json
import subprocess
import sys

import pytest

JUPYTER = ["jupyter_server", "tornado", "ipywidgets", "notebook", "jupyterlab"]
HEAVY = ["tensorflow", "keras", "h5py", "extra_data", "sklearn", "distributed"]


def loaded_after(code: str, names) -> list:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(n for n in {list(names)!r} if n in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["server_ext.nxmx", "server_ext.spectra"])
def test_engines_load_no_jupyter(module):
    code = f"import {module}\nfrom {module} import *"
    assert loaded_after(code, JUPYTER) == []


def test_worker_tasks_load_no_jupyter():
    assert loaded_after("import server_ext.extension.tasks, server_ext.extension.stream_worker", JUPYTER) == []


def test_extension_loads_nothing_heavy_at_server_start():
    code = ("from server_ext.extension import _jupyter_server_extension_points as p\n"
            "app = p()[0]['app']\nfrom server_ext.extension.handlers import default_handlers\n"
            "import server_ext.extension.client")
    assert loaded_after(code, HEAVY) == []
