"""A script's wait on a widget is bounded and says when it ran out: the
job goes on, the wait raises ``TimeoutError`` instead of returning as if
the job had ended."""

import threading

import pytest

from widgets import NXmxConverter, SpectraClassifierApp
from widgets.polling import Follower, join_within


def test_join_within_raises_while_a_thread_runs_and_skips_none():
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(30,), daemon=True)
    thread.start()
    try:
        with pytest.raises(TimeoutError, match="the job did not end within 0.05 s; it goes on"):
            join_within((None, thread), 0.05, "the job")
    finally:
        release.set()
    join_within((None, thread), 30, "the job")  # ended: returns
    assert not thread.is_alive()


def _running_follower():
    """A real follower of a job that stays running."""
    errors = []
    return Follower(lambda: {"state": "running"}, lambda state: None, errors.append,
                    interval=0.05, timeout=60).start()


@pytest.mark.parametrize("make, attr, wait", [
    (lambda c: SpectraClassifierApp("spectra-run", client=c), "follower", "wait_training"),
    (lambda c: SpectraClassifierApp("spectra-run", client=c), "stream_follower", "wait_stream"),
    (lambda c: NXmxConverter(client=c), "follower", "wait"),
])
def test_waits_raise_when_the_job_outlasts_them(client, make, attr, wait):
    widget = make(client)
    follower = _running_follower()
    setattr(widget, attr, follower)
    try:
        with pytest.raises(TimeoutError, match="did not end within 0.2 s"):
            getattr(widget, wait)(0.2)
        assert follower.running  # the wait gave up; the job was not touched
    finally:
        follower.stop()
    assert not follower.running
    getattr(widget, wait)(30)  # nothing left to wait for: returns
