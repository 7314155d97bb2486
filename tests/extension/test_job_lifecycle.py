"""Job records survive a server restart; a job running when the server died is 'interrupted'."""

import json
import signal
from pathlib import Path

import pytest

from server_ext.extension.serverprocess import JupyterServerProcess

from .conftest import SMALL_CLUSTER, TOKEN, Api, make_root


@pytest.fixture
def own_root(tmp_path, demo_runs):
    return make_root(tmp_path, demo_runs)


def test_restart_lists_finished_failed_and_interrupted_jobs(own_root, agipd_run_rel):
    options = {**SMALL_CLUSTER, "DaasExtension.max_running_jobs": 1}
    server = JupyterServerProcess(own_root["root"], env=own_root["env"], token=TOKEN, options=options)
    try:
        api = Api(server.start())
        done = api.post("nxmx/jobs", json={"run": agipd_run_rel, "output": "processed/ok.nxs",
                                           "distance": 150.0, "trains": {"start": 0, "stop": 4}}).json()
        failed = api.post("nxmx/jobs", json={"run": agipd_run_rel, "output": "processed/bad.nxs",
                                             "detector": "NO_SUCH_DETECTOR"}).json()
        assert api.wait(f"nxmx/jobs/{done['id']}")["state"] == "done"
        assert api.wait(f"nxmx/jobs/{failed['id']}")["state"] == "failed"
        slow = api.post("nxmx/jobs", json={"run": agipd_run_rel, "output": "processed/slow.nxs",
                                           "mode": "copy", "distance": 150.0}).json()
        queued = api.post("nxmx/jobs", json={"run": agipd_run_rel, "output": "processed/later.nxs"}).json()
        api.wait(f"nxmx/jobs/{slow['id']}", states=("running",))
        assert api.get(f"nxmx/jobs/{queued['id']}").json()["state"] == "queued"
        server.kill()  # as a crash: no chance to record anything
        # a model's removal the crash left unfinished: its files moved aside, not yet removed
        aside = server.root_dir.parent / "jupyter-data" / "daas" / "models" / ".removed-0123456789abcdef"
        (aside / "bin00.keras").parent.mkdir(parents=True)
        (aside / "bin00.keras").write_bytes(b"half a model")

        api = Api(server.start())
        assert not aside.exists()
        jobs = {j["id"]: j for j in api.get("nxmx/jobs").json()["jobs"]}
        assert jobs[done["id"]]["state"] == "done"
        assert jobs[done["id"]]["result"]["output"] == "processed/ok.nxs"
        assert jobs[failed["id"]]["state"] == "failed" and "NO_SUCH_DETECTOR" in jobs[failed["id"]]["error"]
        for job_id in (slow["id"], queued["id"]):
            assert jobs[job_id]["state"] == "interrupted"
            assert "submit it again" in jobs[job_id]["error"]
        # the records are in the user's data dir, nothing in the dataset; the
        # interrupted conversion's partial file is removed by the restarted server
        # (the crashed server's orphaned worker may still be writing it)
        left = [p for p in (own_root["root"] / "processed").iterdir() if "slow" in p.name]
        assert not left, left
    finally:
        server.stop()


def test_sigint_stops_the_server_with_its_clean_up(own_root, agipd_run_rel):
    """JupyterHub's LocalProcessSpawner stops a server with SIGINT first: the
    server (no terminal) stops as on SIGTERM, its extensions and kernels
    included, and a job it was running is recorded as interrupted."""
    server = JupyterServerProcess(own_root["root"], env=own_root["env"], token=TOKEN, options=SMALL_CLUSTER)
    try:
        api = Api(server.start())
        kernel = api.session.post(f"{server.url}api/kernels", json={"name": "python3"}, timeout=120)
        assert kernel.status_code == 201, kernel.text
        slow = api.post("nxmx/jobs", json={"run": agipd_run_rel, "output": "processed/slow.nxs",
                                           "mode": "copy", "distance": 150.0}).json()
        api.wait(f"nxmx/jobs/{slow['id']}", states=("running",))
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(120) == 0
        log = server.log_path.read_text()
        assert "Interrupted..." not in log  # KeyboardInterrupt: the loop ended with no clean-up
        assert "Shutting down" in log and f"Kernel shutdown: {kernel.json()['id']}" in log
        # written by the server as it stopped (a crashed server's "running" is read so only later)
        record = json.loads((Path(own_root["env"]["JUPYTER_DATA_DIR"]) / "daas" / "jobs" / f"{slow['id']}.json")
                            .read_text())
        assert record["state"] == "interrupted", record
    finally:
        server.stop()
