"""NXmxConverter against a real server: defaults, a conversion to the end, cancel, resume, errors."""

import html
import time

import h5py
import pytest

from widgets import NXmxConverter

from .conftest import SLUG, WAIT


def until(predicate, timeout=WAIT, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.2)


def test_defaults_come_from_the_session(client):
    w = NXmxConverter(client=client)
    assert w.run_path.value == f"data/{SLUG}"
    assert w.output.value == f"processed/{SLUG}.nxs"
    until(lambda: w.detector.options, 120, "run summary")
    assert w.detector.options == ("SPB_DET_AGIPD1M-1",)
    assert w.trains.value == (0, 64) and "64 trains" in w.summary.value


def test_convert_shows_progress_report_and_frames(client, widget_root):
    w = NXmxConverter(client=client, output="processed/selected.nxs", poll_interval=0.2)
    until(lambda: w.detector.options, 120, "run summary")
    w.trains.value = (2, 6)
    w.distance.value = 150
    assert w.options()["trains"] == {"start": 2, "stop": 6}
    job = w.convert()
    assert job is not None, w.status.value
    assert w.convert_button.disabled and not w.cancel_button.disabled
    done = w.wait(WAIT)
    assert done["state"] == "done", w.status.value
    assert w.progress.value == 1.0 and w.progress.bar_style == "success"
    assert "daas-validation-ok" in w.validation._dom_classes and "valid NXmx" in w.validation.value
    assert not w.convert_button.disabled
    written = widget_root["root"] / "processed" / "selected.nxs"
    with h5py.File(written, "r") as f:
        n_frames = f["/entry/data/data"].shape[0]
        trains = set(f["/entry/data/train_id"][()].tolist())
    assert trains == {10002, 10003, 10004, 10005}
    assert len(w.viewer.frames) == n_frames
    w.viewer.slider.value = n_frames - 1  # the slider drives the image
    assert f"frame {n_frames - 1} of {n_frames}" in w.viewer.status.value
    assert w.viewer.slider.max == w.viewer.play.max == n_frames - 1
    assert job["id"][:8] in w.jobs.value and "done" in w.jobs.value


def test_a_new_widget_follows_a_conversion_started_before_it(client, widget_root):
    # what a kernel restart leaves: a job in the server, no widget following it
    job = client.submit_conversion(f"data/{SLUG}", "processed/resumed.nxs", mode="copy", overwrite=True,
                                   trains={"start": 0, "stop": 8}, distance=150)
    w = NXmxConverter(client=client, poll_interval=0.2)
    assert w.job is not None and w.job["id"] == job["id"], w.status.value
    assert w.output.value == "processed/resumed.nxs"
    assert w.wait(WAIT)["state"] == "done", w.status.value
    assert w.progress.bar_style == "success", w.status.value
    assert w.report is not None and w.report["path"] == "processed/resumed.nxs", w.report
    assert w.report["ok"], [f for f in w.report["findings"] if f["severity"] == "error"]
    assert "daas-validation-ok" in w.validation._dom_classes
    assert (widget_root["root"] / "processed" / "resumed.nxs").is_file()


def test_cancel_leaves_nothing(client, widget_root):
    w = NXmxConverter(client=client, output="processed/cancelled.nxs", poll_interval=0.2)
    until(lambda: w.detector.options, 120, "run summary")
    w.mode.value = "copy"
    assert w.convert() is not None, w.status.value
    w.cancel()
    assert w.wait(WAIT)["state"] == "cancelled", w.status.value
    assert "cancelled" in w.status.value and w.progress.bar_style == "warning"
    assert not (widget_root["root"] / "processed" / "cancelled.nxs").exists()


@pytest.mark.parametrize("field,value,needle", [
    ("output", "../outside.nxs", "outside the server's root directory"),
    ("run_path", "data/no-such-run", "no-such-run"),
])
def test_bad_input_is_a_message_not_a_traceback(client, field, value, needle):
    w = NXmxConverter(client=client)
    getattr(w, field).value = value
    if field == "run_path":
        w.load_run(wait=True)
        until(lambda: "daas-status-error" in w.status._dom_classes, 60, "an error message")
    else:
        assert w.convert() is None
    assert "daas-status-error" in w.status._dom_classes
    text = html.unescape(w.status.value)
    assert needle in text and "Traceback" not in text
    assert not w.convert_button.disabled


def test_a_server_that_is_gone_is_a_message(widget_server):
    from server_ext.extension.client import DaasApiError, DaasClient

    dead = DaasClient("http://127.0.0.1:9/daas/api/", "x", timeout=5)
    with pytest.raises(DaasApiError, match="does not answer"):
        NXmxConverter(client=dead)  # nothing to show without a server: one readable error
