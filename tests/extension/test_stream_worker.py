"""A stream's process when the Jupyter server that started it is gone, and
the server when the stream's process is gone.

The stream runs in a process of its own (``daemon``: multiprocessing ends it
when the server exits normally, but not when the server is killed). Its
stop signal is a pipe from the server, and the pipe's end stops it too, so
a stream left waiting on a silent bridge does not outlive a killed server.
"""

import asyncio
import contextlib
import multiprocessing
import os
import signal

import pytest

from server_ext.extension.stream_worker import main
from server_ext.extension.streams import StreamManager

from .conftest import silent_bridge

BOUND = 60  # s: loading the model (TensorFlow's first import in the child) on a busy machine


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from server_ext.spectra import BinnedSpectraClassifier
    from server_ext.spectra.synthetic import make_transition_series

    s = make_transition_series(n_spectra=60, n_points=2010, random_state=0)
    path = tmp_path_factory.mktemp("stream-worker") / "model"
    BinnedSpectraClassifier(n_bins=3, epochs=5, cv_folds=2, random_state=0).fit(s.X, s.y).save(path)
    return str(path)


@pytest.mark.parametrize("messages_read", [True, False], ids=["messages-still-read", "server-gone"])
def test_the_stream_ends_when_the_servers_end_of_its_stop_pipe_closes(model_dir, messages_read):
    # on a silent bridge the stream reconnects for ever, until it is stopped
    options = {"model_dir": model_dir, "source": {"endpoint": silent_bridge(), "timeout": 0.5,
                                                  "max_reconnects": None}}
    with _worker(options) as (process, messages, stop):
        assert messages.poll(BOUND), "the stream did not start"
        assert messages.recv() == {"type": "started"}
        # waiting on the bridge, reconnecting, and saying so while no train comes
        waiting = _next(messages)
        assert waiting["type"] == "stats" and waiting["stats"]["state"] == "running"
        while waiting["stats"]["reconnects"] < 1:
            waiting = _next(messages)
        assert process.is_alive()
        if not messages_read:
            messages.close()
        stop.close()  # as when the server is killed: nothing sent, the pipe ends
        process.join(BOUND)
        assert process.exitcode == 0, "the stream outlived its server's end of the stop pipe"
        if messages_read:
            end = _next(messages)
            while end["type"] == "stats":
                end = _next(messages)
            assert end["type"] == "end" and end["error"] is None
            assert end["stats"]["state"] == "stopped" and end["stats"]["reconnects"] >= 1


def test_a_stream_stopped_while_it_starts_ends_stopped(model_dir):
    """Stop clicked right after Start: the stop arrives while the process
    loads the model; the stream ends stopped, not failed."""
    options = {"model_dir": model_dir, "source": {"endpoint": silent_bridge(), "timeout": 0.5}}
    with _worker(options) as (process, messages, stop):
        stop.send("stop")
        seen = [_next(messages)]
        while seen[-1]["type"] != "end":
            seen.append(_next(messages))
        process.join(BOUND)
        assert process.exitcode == 0
        assert seen[-1]["error"] is None and seen[-1]["stats"]["state"] == "stopped", seen[-1]
        assert "train" not in [m["type"] for m in seen]


async def _kill(manager, stream):
    os.kill(stream.process.pid, signal.SIGKILL)


async def _stop(manager, stream):
    await manager.stop(stream.id)


@pytest.mark.parametrize("end, stop_timeout, error", [
    (_kill, 10, "the stream process was killed by SIGKILL (out of memory?"),
    (_stop, 0, "the stream did not stop within 0 s of being asked; it was terminated"),
], ids=["killed", "stop-not-answered-in-time"])
def test_a_stream_whose_process_ends_unasked_says_how(model_dir, end, stop_timeout, error):
    """The stream's process killed (SIGKILL: what the kernel's out-of-memory
    killer sends), or terminated after a stop it did not answer in time: the
    stream ends failed, saying which -- not "ended unexpectedly"."""
    async def scenario():
        manager = StreamManager(stop_timeout=stop_timeout)
        stream = manager.start({"model_dir": model_dir, "source": {
            "endpoint": silent_bridge(), "timeout": 0.5, "max_reconnects": None}}, public={})
        try:
            async with asyncio.timeout(BOUND):
                while stream.state != "running":
                    await asyncio.sleep(0.05)
            await end(manager, stream)
            await asyncio.wait_for(stream.ended.wait(), BOUND)
            return stream.to_dict()
        finally:
            await manager.shutdown()

    ended = asyncio.run(scenario())
    assert ended["state"] == "failed" and ended["error"].startswith(error), ended["error"]
    assert ended["finished"] is not None


@contextlib.contextmanager
def _worker(options):
    """A stream's process as the server starts it: (the process, its messages, the stop pipe's
    sending end); killed at the end if it is still alive."""
    ctx = multiprocessing.get_context("spawn")
    messages, child = ctx.Pipe(duplex=False)
    stop_reader, stop = ctx.Pipe(duplex=False)
    process = ctx.Process(target=main, args=(child, options, 10.0, stop_reader), daemon=True)
    process.start()
    child.close()
    stop_reader.close()
    try:
        yield process, messages, stop
    finally:
        if process.is_alive():
            process.kill()
            process.join(10)


def _next(messages):
    assert messages.poll(BOUND), f"no message from the stream within {BOUND} s"
    return messages.recv()
