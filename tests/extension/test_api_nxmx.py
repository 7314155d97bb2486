"""Session, run summary, conversion jobs and validation through a real Jupyter server."""

import os

import pytest

from .openapi_check import check_response


def call(api, method, path, **kw):
    return check_response(api(method, path, **kw), path)


def test_session_is_the_manifest(api, server_root):
    s = call(api, "GET", "session").json()
    assert s["dataset"]["pid"] == "xfel:p002120"
    assert s["environment"]["slug"] == "euxfel-mx"
    assert s["root_dir"] == os.path.realpath(server_root["root"])
    assert "LocalCluster" in s["jobs"]["backend"]


def test_run_summary_of_the_mounted_run(api, agipd_run_rel):
    r = call(api, "GET", f"runs?path={agipd_run_rel}")
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["path"] == agipd_run_rel
    assert summary["trains"] == 64
    (det,) = summary["detectors"]
    assert det["name"].startswith("SPB_DET_AGIPD1M-1") and len(det["modules"]) == 16
    assert summary["xgm"]


def test_run_summary_of_a_folder_that_is_not_a_run(api):
    r = call(api, "GET", "runs?path=processed")
    assert r.status_code == 400
    assert "run" in r.json()["message"].lower()


def test_conversion_job_writes_a_valid_file(api, server_root, agipd_run_rel):
    r = call(api, "POST", "nxmx/jobs", json={"run": agipd_run_rel, "output": "processed/r29.nxs",
                                             "distance": 150.0, "trains": {"start": 0, "stop": 8}})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] in ("queued", "running") and job["kind"] == "nxmx"
    done = api.wait(f"nxmx/jobs/{job['id']}")
    check_response(api.get(f"nxmx/jobs/{job['id']}"), f"nxmx/jobs/{job['id']}")
    assert done["state"] == "done", done
    assert done["progress"] == 1.0 and done["started"] and done["finished"]
    assert done["result"]["output"] == "processed/r29.nxs"
    assert (server_root["root"] / "processed" / "r29.nxs").is_file()
    assert job["id"] in [j["id"] for j in call(api, "GET", "nxmx/jobs").json()["jobs"]]

    report = call(api, "POST", "nxmx/validate", json={"path": "processed/r29.nxs"}).json()
    assert report["ok"] is True, report["findings"]
    assert report["path"] == "processed/r29.nxs"


def test_a_failing_conversion_says_why(api, agipd_run_rel, server_root):
    r = call(api, "POST", "nxmx/jobs", json={"run": agipd_run_rel, "output": "processed/nodet.nxs",
                                             "detector": "NO_SUCH_DETECTOR", "distance": 150.0})
    assert r.status_code == 202
    job = api.wait(f"nxmx/jobs/{r.json()['id']}")
    assert job["state"] == "failed"
    assert "NO_SUCH_DETECTOR" in job["error"] and "Traceback" not in job["error"]
    assert not (server_root["root"] / "processed" / "nodet.nxs").exists()


def test_validation_of_a_file_that_is_not_nxmx(api, server_root):
    (server_root["root"] / "processed" / "notes.txt").write_text("not HDF5")
    report = call(api, "POST", "nxmx/validate", json={"path": "processed/notes.txt"}).json()
    assert report["ok"] is False
    assert any("HDF5" in f["message"] for f in report["findings"])


def test_queue_bound_and_cancel_leave_no_partial_file(api, server_root, agipd_run_rel):
    """Three slow copies with max_running_jobs=2: the third waits queued; cancelling
    ends all three 'cancelled' and leaves nothing in the output folder."""
    out = server_root["root"] / "processed" / "cancel"
    out.mkdir()
    ids = []
    for i in range(3):
        r = call(api, "POST", "nxmx/jobs", json={"run": agipd_run_rel, "output": f"processed/cancel/c{i}.nxs",
                                                 "mode": "copy", "distance": 150.0})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    states = [api.get(f"nxmx/jobs/{i}").json()["state"] for i in ids]
    assert states[2] == "queued", states
    api.wait(f"nxmx/jobs/{ids[0]}", states=("running",))
    for job_id in reversed(ids):
        r = call(api, "DELETE", f"nxmx/jobs/{job_id}")
        assert r.status_code == 202
    for job_id in ids:
        job = api.wait(f"nxmx/jobs/{job_id}")
        assert job["state"] == "cancelled", job
    assert list(out.iterdir()) == []


def test_unknown_job_is_404(api):
    r = call(api, "GET", "nxmx/jobs/0123456789abcdef")
    assert r.status_code == 404
    assert "0123456789abcdef" in r.json()["message"]


def test_a_request_may_wait_for_the_jobs_end(api, agipd_run_rel):
    """``?wait=`` answers once the job is final: one request where polling takes many. A job
    that outlasts the wait comes back as it is; a cancel ends a wait at once."""
    copy = {"run": agipd_run_rel, "mode": "copy", "distance": 150.0}
    job = call(api, "POST", "nxmx/jobs", json={**copy, "trains": {"start": 0, "stop": 16},
                                               "output": "processed/waited.nxs"}).json()
    # a copy of 16 trains takes seconds: without waiting, the few requests would all see it running
    done, _ = api.long_poll(f"nxmx/jobs/{job['id']}")
    assert done["state"] == "done"
    assert call(api, "GET", f"nxmx/jobs/{job['id']}?wait=0").json() == done

    job = call(api, "POST", "nxmx/jobs", json={**copy, "output": "processed/stopped.nxs"}).json()
    path = f"nxmx/jobs/{job['id']}"
    assert call(api, "GET", f"{path}?wait=0.2").json()["state"] in ("queued", "running")
    api.wait(path, states=("running",))
    assert call(api, "DELETE", path).status_code == 202
    assert api.long_poll(path)[0]["state"] == "cancelled"


@pytest.mark.parametrize("wait", ["-1", "30.5", "nan", "inf", "soon", ""])
def test_a_wait_that_is_not_seconds_from_0_to_30_is_refused(api, wait):
    for path in ("nxmx/jobs/0123456789abcdef", "spectra/models/0123456789abcdef"):
        r = call(api, "GET", f"{path}?wait={wait}")
        assert r.status_code == 400, r.text
        assert f"wait={wait!r}" in r.json()["message"] and "from 0 to 30" in r.json()["message"]
