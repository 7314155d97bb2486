"""The job manager: conversion and training jobs on Dask, records on disk, bounded concurrency.

Handlers only call :meth:`JobManager.submit`, :meth:`list`, :meth:`get`,
:meth:`wait_final`, :meth:`cancel` and :meth:`remove`; the work runs on the
Dask workers, never on the server's event loop. At most ``max_running`` jobs
run at once, the others wait ``queued`` in submission order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import Callable

from .errors import DaasRequestError
from .records import ACTIVE, FINAL, JobStore, now

log = logging.getLogger(__name__)


class JobManager:
    def __init__(self, store: JobStore, backend, max_running: int = 2):
        self.store = store
        self.backend = backend
        self.max_running = max(1, int(max_running))
        self.records: dict[str, dict] = {r["id"]: r for r in store.load_all()}
        self._calls: dict[str, tuple[Callable, tuple]] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._tasks: dict[str, asyncio.Task] = {}
        self._final: dict[str, asyncio.Event] = {}  # set when the job ends, for waiting requests
        backend.on_progress = self.on_progress

    # ---------------------------------------------------------------- API
    def submit(self, kind: str, options: dict, fn: Callable, *args) -> dict:
        """Queue ``fn(job_id, *args)`` on the cluster; *options* is what the record shows."""
        job_id = uuid.uuid4().hex[:16]
        record = {"id": job_id, "kind": kind, "state": "queued", "progress": 0.0, "detail": {},
                  "created": now(), "started": None, "finished": None, "options": options,
                  "result": None, "error": None, "cancel_requested": False}
        self.records[job_id] = record
        self._calls[job_id] = (fn, args)
        self._queue.append(job_id)
        self.store.save(record)
        self._start_queued()
        return record

    def list(self, kind: str | None = None) -> list[dict]:
        return [r for r in self.records.values() if kind is None or r["kind"] == kind]

    def get(self, job_id: str, kind: str | None = None) -> dict:
        record = self.records.get(job_id)
        if record is None or (kind is not None and record["kind"] != kind):
            raise DaasRequestError(404, f"no {kind or ''} job {job_id!r} on this server".replace("  ", " "))
        return record

    async def wait_final(self, job_id: str, kind: str | None, seconds: float) -> dict:
        """The job as soon as it is final, or as it is after *seconds* (a long poll: a client
        learns of the end when it happens, with one request instead of many)."""
        record = self.get(job_id, kind)
        if record["state"] not in FINAL and seconds > 0:
            ended = self._final.setdefault(job_id, asyncio.Event())
            try:
                await asyncio.wait_for(ended.wait(), seconds)
            except asyncio.TimeoutError:
                pass
        return record

    async def cancel(self, job_id: str, kind: str | None = None) -> dict:
        """Cancel a queued job at once, ask a running one to stop (it ends ``cancelled``)."""
        record = self.get(job_id, kind)
        if record["state"] == "queued":
            self._queue.remove(job_id)
            self._calls.pop(job_id, None)
            self._finish(record, "cancelled", error="cancelled before it started")
        elif record["state"] == "running" and not record["cancel_requested"]:
            record["cancel_requested"] = True
            self.store.save(record)
            await self.backend.cancel(job_id)
        return record

    def remove(self, job_id: str, kind: str | None = None) -> dict:
        """Forget a job that has ended: its record goes, from here and from disk (what the
        job wrote is the caller's to remove). A job still queued or running is refused (409)."""
        record = self.get(job_id, kind)
        if record["state"] not in FINAL:
            raise DaasRequestError(409, f"job {job_id} is {record['state']}: cancel it first (DELETE without "
                                        "remove), then remove it once it has ended")
        self.store.remove(job_id)
        del self.records[job_id]
        return record

    def running(self) -> int:
        return sum(r["state"] == "running" for r in self.records.values())

    # ------------------------------------------------------------ running
    def _start_queued(self):
        while self._queue and len(self._tasks) < self.max_running:
            job_id = self._queue.popleft()
            self._tasks[job_id] = asyncio.ensure_future(self._run(job_id))

    async def _run(self, job_id: str):
        record = self.records[job_id]
        fn, args = self._calls.pop(job_id)
        record.update(state="running", started=now())
        self.store.save(record)
        try:
            future = await self.backend.submit(fn, job_id, *args, key=f"daas-{record['kind']}-{job_id}")
            result = await future
        except asyncio.CancelledError:
            self._finish(record, "interrupted", error="the server stopped while this job was running; "
                                                       "submit it again")
            raise
        except Exception as e:  # the job's own error, or the cluster's
            if record["cancel_requested"]:
                self._finish(record, "cancelled", error="cancelled; nothing was written")
            else:
                self._finish(record, "failed", error=describe_error(e, self.backend))
        else:
            record["progress"] = 1.0
            self._finish(record, "done", result=result)
        finally:
            self._tasks.pop(job_id, None)
            self._start_queued()

    def _finish(self, record: dict, state: str, result=None, error=None):
        assert state in FINAL
        record.update(state=state, finished=now(), result=result, error=error)
        self.store.save(record)
        ended = self._final.pop(record["id"], None)
        if ended is not None:
            ended.set()

    def on_progress(self, message: dict):
        record = self.records.get(message.get("id"))
        if record is None or record["state"] not in ACTIVE:
            return
        record["progress"] = float(message.get("progress", 0.0))
        record["detail"] = {k: v for k, v in message.items() if k not in ("id", "progress")}

    async def shutdown(self):
        """Stop waiting for running jobs (they are recorded ``interrupted``) and close the cluster."""
        for job_id in list(self._queue):
            self._finish(self.records[job_id], "interrupted", error="the server stopped before this job started")
        self._queue.clear()
        tasks = list(self._tasks.values())
        for job_id in list(self._tasks):
            try:
                await asyncio.wait_for(self.backend.cancel(job_id), 5)
            except Exception:  # the cluster may be gone already
                pass
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.backend.close()


def describe_error(error: BaseException, backend=None) -> str:
    """The message a scientist sees: the engine's own for user errors, a short summary otherwise."""
    if getattr(error, "user_error", False):
        return str(error)
    if isinstance(error, OSError) and backend is not None and backend.client is None:
        return f"the Dask cluster ({backend.description}) cannot be reached: {error}"
    name = type(error).__name__
    if name == "KilledWorker":
        return "the worker running this job died (out of memory?); try a smaller selection"
    log.error("daas job failed", exc_info=error)
    return f"internal error ({name}: {error}); see the server log"
