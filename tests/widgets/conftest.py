"""A real Jupyter server with the daas extension, laid out as the local spawner does:
``<root>/data/<slug>`` links to a demo run, ``DAAS_SESSION`` names its manifest.

The widgets are driven in-process (no kernel: ipywidgets work without one)
through a ``DaasClient`` of that server, exactly as in a notebook.
"""

import json
import shutil

import pytest

from server_ext.extension.client import DaasClient
from server_ext.extension.serverprocess import JupyterServerProcess

TOKEN = "daas-widgets-token"
WAIT = 300  # s: bound for any job here (a busy 2-core machine, TensorFlow's first import)
SLUG = "xfel-p002120-r0029"


@pytest.fixture(scope="session")
def widget_root(tmp_path_factory, demo_runs):
    base = tmp_path_factory.mktemp("widgets-server")
    root = base / "root"
    (root / "data").mkdir(parents=True)
    (root / "data" / SLUG).symlink_to(demo_runs["agipd"], target_is_directory=True)
    shutil.copytree(demo_runs["spectra"], root / "spectra-run")  # spectra the user keeps in their home
    manifest = base / "session.json"
    manifest.write_text(json.dumps({
        "version": 1, "dataset": {"pid": "xfel:p002120:r0029", "slug": SLUG, "title": "Lysozyme SFX (demo)"},
        "dataset_path": str(root / "data" / SLUG), "environment": {"slug": "euxfel-mx"}}))
    env = {"DAAS_SESSION": str(manifest), "JUPYTER_CONFIG_DIR": str(base / "jupyter-config"),
           "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "JUPYTER_DATA_DIR": str(base / "jupyter-data"),
           "OMP_NUM_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    return {"root": root, "env": env, "base": base}


@pytest.fixture(scope="session")
def widget_server(widget_root):
    proc = JupyterServerProcess(widget_root["root"], env=widget_root["env"], token=TOKEN, options={
        "DaasExtension.dask_workers": 1, "DaasExtension.dask_threads_per_worker": 1,
        "DaasExtension.dask_memory_limit": "3GiB", "DaasExtension.max_running_jobs": 2})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def client(widget_server):
    return DaasClient(widget_server.api_url, widget_server.token, timeout=120)
