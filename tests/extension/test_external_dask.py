"""Jobs on a separate Dask scheduler and worker (as a facility cluster), progress and cancel included."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server_ext.extension.serverprocess import JupyterServerProcess

from .conftest import TOKEN, Api, make_root


def _dask(args, log):
    return subprocess.Popen([sys.executable, "-m", "distributed.cli." + args[0], *args[1:]],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture
def dask_cluster(tmp_path):
    """``dask scheduler`` + one ``dask worker`` on loopback, ephemeral ports."""
    scheduler_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "dask.log", "ab")
    procs = [_dask(["dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                    "--no-dashboard", "--scheduler-file", str(scheduler_file)], log)]
    try:
        deadline = time.monotonic() + 90
        while not scheduler_file.exists():
            assert procs[0].poll() is None, (tmp_path / "dask.log").read_text()
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.2)
        time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        procs.append(_dask(["dask_worker", "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                            "--host", "127.0.0.1", "--memory-limit", "3GiB", "--scheduler-file",
                            str(scheduler_file)], log))
        yield address
    finally:
        for p in reversed(procs):
            _stop(p)
        log.close()


def test_jobs_run_on_an_existing_scheduler(tmp_path, demo_runs, dask_cluster, agipd_run_rel):
    root = make_root(tmp_path / "server", demo_runs)
    server = JupyterServerProcess(root["root"], env=root["env"], token=TOKEN,
                                  options={"DaasExtension.dask_scheduler_address": dask_cluster})
    try:
        api = Api(server.start())
        assert dask_cluster in api.get("session").json()["jobs"]["backend"]
        ok = api.post("nxmx/jobs", json={"run": agipd_run_rel, "output": "processed/ext.nxs",
                                         "distance": 150.0, "trains": {"start": 0, "stop": 8}}).json()
        done = api.wait(f"nxmx/jobs/{ok['id']}")
        assert done["state"] == "done", done
        assert (root["root"] / "processed" / "ext.nxs").is_file()

        slow = api.post("nxmx/jobs", json={"run": agipd_run_rel, "output": "processed/slow.nxs",
                                           "mode": "copy", "distance": 150.0}).json()
        running = api.wait(f"nxmx/jobs/{slow['id']}", states=("running",))
        # progress crosses processes: it moves while the worker copies
        deadline = time.monotonic() + 120
        while api.get(f"nxmx/jobs/{slow['id']}").json()["progress"] <= 0:
            assert time.monotonic() < deadline, "no progress reached the server"
            time.sleep(0.3)
        assert api.delete(f"nxmx/jobs/{slow['id']}").status_code == 202
        assert api.wait(f"nxmx/jobs/{slow['id']}")["state"] == "cancelled"
        assert [p for p in (root["root"] / "processed").iterdir() if "slow" in p.name] == []
        assert running["state"] == "running"
    finally:
        server.stop()
