"""Jobs on a separate Dask scheduler and worker (as a facility cluster), progress and cancel included."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from server_ext.extension.serverprocess import JupyterServerProcess

from .conftest import TOKEN, Api, make_root
from .openapi_check import check_response


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


def test_jobs_run_on_a_cluster_class(tmp_path, demo_runs, agipd_run_rel):
    """dask_cluster_class as for dask-jobqueue/dask-gateway: constructed asynchronously, then scaled.
    distributed's own LocalCluster stands in (the same cluster protocol; no Slurm or gateway here)."""
    root = make_root(tmp_path / "server", demo_runs)
    config_dir = Path(root["env"]["JUPYTER_CONFIG_DIR"])
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "jupyter_server_config.py").write_text(
        'c.DaasExtension.dask_cluster_class = "distributed.LocalCluster"\n'
        'c.DaasExtension.dask_cluster_kwargs = {"n_workers": 0, "threads_per_worker": 1, "processes": True,\n'
        '                                       "dashboard_address": None, "host": "127.0.0.1"}\n'
        'c.DaasExtension.dask_cluster_scale = 1\n')
    server = JupyterServerProcess(root["root"], env=root["env"], token=TOKEN)
    try:
        api = Api(server.start())
        assert "distributed.LocalCluster" in api.get("session").json()["jobs"]["backend"]
        job = api.post("nxmx/jobs", json={"run": agipd_run_rel, "output": "processed/cls.nxs",
                                          "distance": 150.0, "trains": {"start": 0, "stop": 2}}).json()
        assert api.wait(f"nxmx/jobs/{job['id']}")["state"] == "done"
        assert (root["root"] / "processed" / "cls.nxs").is_file()
    finally:
        server.stop()


def _scheduler_keys(client) -> list[str]:
    return client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])


def test_a_call_waiting_on_the_cluster_when_the_server_stops_is_answered_503(
        tmp_path, demo_runs, dask_cluster, agipd_run_rel):
    """The cluster's one worker thread is held by another client's task, so a
    validation waits on the cluster; the server is stopped meanwhile. The waiting
    request is told the server is stopping (503), not 'internal error' with a
    traceback in the log."""
    from distributed import Client, Event

    root = make_root(tmp_path / "server", demo_runs)
    server = JupyterServerProcess(root["root"], env=root["env"], token=TOKEN,
                                  options={"DaasExtension.dask_scheduler_address": dask_cluster})
    answers = []
    with Client(dask_cluster, timeout=60) as client:
        release = Event("release", client=client)
        try:
            holder = client.submit(lambda: (Event("holding").set(), Event("release").wait(120)), pure=False)
            assert Event("holding", client=client).wait(120), "the worker did not take the holding task"
            api = Api(server.start())
            some_file = next((root["root"] / agipd_run_rel).glob("*.h5")).relative_to(root["root"])

            def validate():
                try:
                    answers.append(api.post("nxmx/validate", json={"path": str(some_file)}))
                except Exception as e:  # e.g. the connection dropped: the assertion below shows it
                    answers.append(e)

            waiting = threading.Thread(target=validate)
            waiting.start()
            deadline = time.monotonic() + 120
            while not any(k.startswith("validate-") for k in _scheduler_keys(client)):
                assert time.monotonic() < deadline, "the validation never reached the scheduler"
                time.sleep(0.2)
            server.proc.send_signal(signal.SIGTERM)
            waiting.join(120)
            assert not waiting.is_alive()
            assert server.proc.wait(120) == 0
        finally:
            server.stop()
            release.set()
        holder.result(60)
    [answer] = answers
    assert not isinstance(answer, Exception), repr(answer)
    assert answer.status_code == 503, answer.text
    check_response(answer, "nxmx/validate")
    assert "server is stopping" in answer.json()["message"]
    log = server.log_path.read_text()
    assert "internal error" not in log and "FutureCancelledError" not in log, log[-3000:]
