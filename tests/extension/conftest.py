"""A real Jupyter server with the daas extension (session scoped), over a read-only demo dataset.

Layout, as the local spawner makes it: ``<root>/data/<slug>`` links to the
dataset outside the root; ``DAAS_SESSION`` names the manifest. Jobs run on
an embedded Dask cluster of one worker process with one thread.
"""

import json
import os
import time
from pathlib import Path

import pytest
import requests

from server_ext.extension.serverprocess import JupyterServerProcess, free_port

TOKEN = "daas-test-token"
WAIT = 240  # s: bound for any job in these tests (a busy 2-core machine, TensorFlow's first import)


class Api:
    """requests against /daas/api/ with the token (or none)."""

    def __init__(self, server, token=TOKEN):
        self.server = server
        self.base = server.api_url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"token {token}"

    def __call__(self, method, path, **kw):
        kw.setdefault("timeout", 120)
        return self.session.request(method, self.base + path, **kw)

    def get(self, path, **kw):
        return self("GET", path, **kw)

    def post(self, path, **kw):
        return self("POST", path, **kw)

    def delete(self, path, **kw):
        return self("DELETE", path, **kw)

    def wait(self, path, states=("done", "failed", "cancelled", "interrupted"), timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            r = self.get(path)
            assert r.status_code == 200, r.text
            if r.json()["state"] in states:
                return r.json()
            assert time.monotonic() < deadline, f"{path} still {r.json()['state']} after {timeout} s"
            time.sleep(0.3)

    def long_poll(self, path, final=("done", "failed", "cancelled", "interrupted")):
        """The job from ``?wait=30`` requests until it is final, and every state answered on the way.

        At most WAIT / 30 requests: a server that answered at once would use them up in
        milliseconds, so a job that takes longer fails this."""
        states = []
        for _ in range(WAIT // 30):
            r = self.get(f"{path}?wait=30")
            assert r.status_code == 200, r.text
            states.append(r.json()["state"])
            if states[-1] in final:
                return r.json(), states
        raise AssertionError(f"{path} still {states[-1]} after {len(states)} requests of 30 s")


def make_root(base: Path, demo_runs: dict) -> dict:
    """A server root with data/<slug> -> the dataset, a manifest, and a folder to write to."""
    root = base / "root"
    (root / "data").mkdir(parents=True)
    (root / "processed").mkdir()
    dataset = Path(demo_runs["agipd"]).parent  # .../exfel/p002120 (holds r0029)
    (root / "data" / "p002120").symlink_to(dataset, target_is_directory=True)
    manifest = base / "session.json"
    manifest.write_text(json.dumps({
        "version": 1, "dataset": {"pid": "xfel:p002120", "title": "AGIPD demo"},
        "dataset_path": str(root / "data" / "p002120"), "environment": {"slug": "euxfel-mx"}}))
    env = {"DAAS_SESSION": str(manifest), "DAAS_DATASET_PATH": str(root / "data" / "p002120"),
           "JUPYTER_CONFIG_DIR": str(base / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTER_DATA_DIR": str(base / "jupyter-data"), "OMP_NUM_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return {"root": root, "dataset": dataset, "env": env, "manifest": manifest}


def silent_bridge() -> str:
    """A Karabo bridge endpoint where nothing listens (a loopback port just freed)."""
    return f"tcp://127.0.0.1:{free_port()}"


SMALL_CLUSTER = {"DaasExtension.dask_workers": 1, "DaasExtension.dask_threads_per_worker": 1,
                 "DaasExtension.dask_memory_limit": "3GiB"}


@pytest.fixture(scope="session")
def server_root(tmp_path_factory, demo_runs):
    return make_root(tmp_path_factory.mktemp("daas-server"), demo_runs)


@pytest.fixture(scope="session")
def server(server_root):
    proc = JupyterServerProcess(server_root["root"], env=server_root["env"], token=TOKEN,
                                options={**SMALL_CLUSTER, "DaasExtension.max_running_jobs": 2,
                                         "DaasExtension.stream_message_rate": 20.0})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def api(server):
    return Api(server)


@pytest.fixture(scope="session")
def agipd_run_rel(server_root):
    return "data/p002120/r0029"


@pytest.fixture(scope="session")
def spectra_run(demo_runs):
    return demo_runs["spectra"]


@pytest.fixture(scope="session")
def trained_model(api, server_root, spectra_run):
    """A small model trained through the API on the demo spectra run (copied below the root)."""
    import shutil

    local = server_root["root"] / "spectra-run"
    if not local.exists():
        shutil.copytree(spectra_run, local)
    tids = _train_ids(local)
    labels = [f"before={tids[0]}:{tids[30]}", f"after={tids[-30]}:{tids[-1] + 1}"]
    r = api.post("spectra/models", json={
        "data": "spectra-run", "labels": labels, "source": DEMO_SOURCE, "key": DEMO_KEY,
        "max_per_label": 64, "params": {"n_bins": 3, "epochs": 5, "random_state": 0, "cv_folds": 2}})
    assert r.status_code == 202, r.text
    model = api.wait(f"spectra/models/{r.json()['id']}")
    assert model["state"] == "done", model
    return model


from server_ext.spectra.synthetic import DEMO_KEY, DEMO_SOURCE  # noqa: E402


def _train_ids(run_dir):
    from extra_data import RunDirectory

    return list(RunDirectory(str(run_dir)).train_ids)


@pytest.fixture
def nothing_written(server_root):
    """Asserts that a test leaves the root directory and the dataset as they were."""
    def snapshot():
        return {p: os.lstat(p).st_mtime_ns for top in (server_root["root"], server_root["dataset"])
                for p in map(str, Path(top).rglob("*")) if "/.ipynb_checkpoints" not in p}

    before = snapshot()
    yield
    assert snapshot() == before
