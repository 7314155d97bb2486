"""Spectra streams, each in a process of its own, their counters and their WebSocket viewers.

The stream process sends at most ``message_rate`` summaries per second; a
reader thread hands each to the event loop, which updates the counters and
forwards it to every viewer. Nothing of the stream runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import threading
import uuid

from .errors import DaasRequestError
from .records import now

log = logging.getLogger(__name__)


class Stream:
    def __init__(self, stream_id: str, options: dict, public: dict, message_rate: float, loop):
        self.id = stream_id
        self.public = public
        self.loop = loop
        self.viewers: set = set()
        self.last_train: dict | None = None
        self.error: str | None = None
        self.results: dict | None = None  # the phases by train so far, from the first train on
        self.created = now()
        self.finished: str | None = None
        self.stats = {"state": "starting"}
        self._terminated_after: float | None = None  # s waited for a stop before terminating it
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=False)
        # a pipe, not a multiprocessing.Event: Event.set() waits for every process that
        # ever waited on it to wake, forever once one has ended (here: on the event loop)
        stop_reader, self._stop = ctx.Pipe(duplex=False)
        from .stream_worker import main

        self.process = ctx.Process(target=main, args=(child, options, message_rate, stop_reader),
                                   name=f"daas-stream-{stream_id}", daemon=True)
        self.process.start()
        child.close()
        stop_reader.close()
        self.ended = asyncio.Event()
        self._reader = threading.Thread(target=self._read, name=f"daas-stream-reader-{stream_id}", daemon=True)
        self._reader.start()

    @property
    def state(self) -> str:
        return self.stats.get("state", "starting")

    def _read(self):
        try:
            while True:
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):  # the process ended without its end message
                    message = {"type": "end", "error": self._why_it_ended(),
                               "stats": {**self.stats, "state": "failed"}}
                self.loop.call_soon_threadsafe(self._dispatch, message)
                if message.get("type") == "end":
                    return
        finally:
            self._conn.close()

    def _why_it_ended(self) -> str:
        if self._terminated_after is not None:
            return f"the stream did not stop within {self._terminated_after:g} s of being asked; it was terminated"
        self.process.join(5)  # its pipe closed as it exited: reaped in a moment
        code = self.process.exitcode
        if code is None or code >= 0:
            return f"the stream process ended unexpectedly (exit status {code})"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        # SIGKILL is what the kernel's out-of-memory killer sends: the likeliest cause
        why = " (out of memory? the system kills the largest process with it)" if code == -signal.SIGKILL else ""
        return f"the stream process was killed by {name}{why}"

    def _dispatch(self, message: dict):
        kind = message.get("type")
        if "stats" in message:
            self.stats = message["stats"]
        if kind == "started":
            self.stats = {**self.stats, "state": "running"}
            return
        if message.get("results") is not None:
            self.results = message["results"]
        if kind == "train":
            self.last_train = message["train"]
        elif kind == "end":
            self.error = message.get("error")
            self.finished = now()
            self.ended.set()
        out = {"type": kind, "stream": self.id, **({"train": message["train"]} if kind == "train" else {}),
               "stats": self.stats, **({"error": self.error} if kind == "end" else {})}
        for viewer in list(self.viewers):
            viewer.send(out)

    def to_dict(self) -> dict:
        return {"id": self.id, "state": self.state, "created": self.created, "finished": self.finished,
                "options": self.public, "stats": self.stats, "last_train": self.last_train,
                "error": self.error, "results": self.results, "viewers": len(self.viewers)}

    async def stop(self, timeout: float):
        try:
            self._stop.send("stop")
        except OSError:  # the process has ended (broken pipe), or an earlier stop closed it
            pass
        try:
            await asyncio.wait_for(self.ended.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("daas stream %s did not stop within %s s; terminating it", self.id, timeout)
            self._terminated_after = timeout
            self.process.terminate()
        await asyncio.get_running_loop().run_in_executor(None, self.process.join, timeout)
        if self.process.is_alive():
            self.process.kill()
        self._stop.close()


class StreamManager:
    def __init__(self, message_rate: float = 10.0, max_streams: int = 4, stop_timeout: float = 10.0):
        self.message_rate = message_rate
        self.max_streams = max_streams
        self.stop_timeout = stop_timeout
        self.streams: dict[str, Stream] = {}

    def start(self, options: dict, public: dict) -> Stream:
        active = [s for s in self.streams.values() if not s.ended.is_set()]
        if len(active) >= self.max_streams:
            raise DaasRequestError(409, f"{len(active)} streams are running already (the limit is "
                                        f"{self.max_streams}); stop one first")
        stream_id = uuid.uuid4().hex[:16]
        stream = Stream(stream_id, options, public, self.message_rate, asyncio.get_running_loop())
        self.streams[stream_id] = stream
        return stream

    def get(self, stream_id: str) -> Stream:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise DaasRequestError(404, f"no stream {stream_id!r} on this server")
        return stream

    async def stop(self, stream_id: str) -> Stream:
        stream = self.get(stream_id)
        await stream.stop(self.stop_timeout)
        return stream

    async def shutdown(self):
        await asyncio.gather(*(s.stop(self.stop_timeout) for s in self.streams.values()),
                             return_exceptions=True)
