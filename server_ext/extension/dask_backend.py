"""The Dask cluster the jobs run on: embedded, an existing scheduler, or a cluster object.

Started lazily on first use, on the server's event loop (asynchronous
client), so that a server that runs no job never starts worker processes.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable

from .errors import ServerStopping
from .tasks import PROGRESS_TOPIC, cancel_event_name

log = logging.getLogger(__name__)


def import_object(name: str):
    """``"package.module.Name"`` -> the object."""
    module, _, attr = name.rpartition(".")
    if not module:
        raise ValueError(f"{name!r} is not an import path such as dask_jobqueue.SLURMCluster")
    return getattr(importlib.import_module(module), attr)


class DaskBackend:
    """One asynchronous ``distributed.Client`` for the extension.

    ``scheduler_address``: connect to it; else ``cluster_class`` (import
    path or callable) called with ``cluster_kwargs``; else an embedded
    ``LocalCluster`` of ``n_workers`` processes with ``threads_per_worker``.
    """

    def __init__(self, *, scheduler_address: str = "", cluster_class: str | Callable | None = None,
                 cluster_kwargs: dict | None = None, n_workers: int = 2, threads_per_worker: int = 1,
                 memory_limit: str | int | None = "auto", scale: int = 0, connect_timeout: float = 60,
                 worker_nice: int = 0,
                 on_progress: Callable[[dict], None] | None = None):
        self.scheduler_address = scheduler_address
        self.cluster_class = cluster_class
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.scale = scale
        self.connect_timeout = connect_timeout
        self.worker_nice = worker_nice
        self.on_progress = on_progress
        self.cluster = None
        self.client = None
        self.closing = False
        self._starting: asyncio.Future | None = None

    @property
    def description(self) -> str:
        if self.scheduler_address:
            return f"scheduler {self.scheduler_address}"
        if self.cluster_class:
            return f"cluster {self.cluster_class}"
        return f"embedded LocalCluster ({self.n_workers} workers x {self.threads_per_worker} threads)"

    async def get_client(self):
        """The client, starting the cluster or connecting on first call (concurrent callers share one start)."""
        if self.closing:  # a cluster started now would outlive the server
            raise ServerStopping()
        if self.client is not None:
            return self.client
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        try:
            return await asyncio.shield(self._starting)
        except BaseException:
            self._starting = None  # a later job tries again (e.g. the scheduler came back)
            raise

    async def _start(self):
        from distributed import Client, LocalCluster

        if self.scheduler_address:
            target = self.scheduler_address
        elif self.cluster_class:
            factory = import_object(self.cluster_class) if isinstance(self.cluster_class, str) else self.cluster_class
            self.cluster = await _maybe_await(factory(asynchronous=True, **self.cluster_kwargs))
            if self.scale:
                await _maybe_await(self.cluster.scale(self.scale))
            target = self.cluster
        else:
            self.cluster = await self._local_cluster(LocalCluster)
            target = self.cluster
        log.info("daas: jobs run on %s", self.description)
        client = await asyncio.wait_for(Client(target, asynchronous=True, timeout=self.connect_timeout),
                                        self.connect_timeout + 5)
        client.subscribe_topic(PROGRESS_TOPIC, self._progress)
        self.client = client
        if self.closing:  # close() waited for this start; it closes what it made
            raise ServerStopping()
        return client

    async def _local_cluster(self, LocalCluster):
        """The embedded cluster, without touching the server's environment.

        Dask's in-process nannies write their ``pre-spawn-environ``
        (``OMP_NUM_THREADS=1``, ``MALLOC_TRIM_THRESHOLD_``, ...) into
        ``os.environ`` before spawning a worker; in a Jupyter server every
        kernel and stream started later would inherit single-threaded BLAS.
        Those variables go to the workers through ``env=`` instead.

        It speaks TLS with credentials made for it, held in memory by the
        server and its workers only: a worker runs whatever it is sent, and
        any local user, or another user's kernel, may open a loopback port.
        """
        import dask
        from distributed.security import Security

        before = dict(os.environ)
        worker_env = {k: str(v) for k, v in (dask.config.get("distributed.nanny.pre-spawn-environ") or {}).items()}
        worker_env["DAAS_WORKER_NICE"] = str(self.worker_nice)
        try:
            # of the scheduler's HTTP routes only /health: the others (worker logs, call
            # stacks, task pages) would show this user's jobs to any local process
            with dask.config.set({"distributed.nanny.pre-spawn-environ": {},
                                  "distributed.scheduler.http.routes": ["distributed.http.health"]}):
                return await LocalCluster(
                    n_workers=self.n_workers, threads_per_worker=self.threads_per_worker, processes=True,
                    memory_limit=self.memory_limit, dashboard_address=None, asynchronous=True,
                    host="127.0.0.1", security=Security.temporary(),
                    preload=["server_ext.extension.worker_setup"], env=worker_env,
                    # no dashboard, but the scheduler's HTTP route still listens: on 8787
                    # unless told, the port of the first user's server on the machine
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        finally:  # e.g. the PYTHONHASHSEED a nanny sets for its workers
            for key in set(os.environ) - set(before):
                del os.environ[key]
            os.environ.update(before)

    def _progress(self, event):
        _, message = event
        if self.on_progress is not None and isinstance(message, dict):
            self.on_progress(message)

    async def submit(self, fn, *args, key: str):
        client = await self.get_client()
        return client.submit(fn, *args, key=key, pure=False)

    async def call(self, fn, *args, timeout: float):
        """Run *fn* on a worker and wait for its result (at most *timeout* seconds)."""
        client = await self.get_client()
        future = client.submit(fn, *args, pure=False)
        try:
            return await asyncio.wait_for(future, timeout)
        except Exception:
            if self.closing:  # cancelled by close(), not failed: FutureCancelledError is no fault
                raise ServerStopping() from None
            raise
        finally:
            if not future.done():
                future.cancel()

    async def cancel(self, job_id: str, future=None):
        from distributed import Event

        if self.client is None:
            return
        await Event(cancel_event_name(job_id), client=self.client).set()

    async def close(self):
        self.closing = True
        if self._starting is not None and not self._starting.done():
            # a cluster still starting would be left running: let it come up, then close it
            await asyncio.wait([self._starting], timeout=self.connect_timeout + 10)
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            await client.close()
        if cluster is not None:
            await _maybe_await(cluster.close())


async def _maybe_await(value):
    return await value if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future) or hasattr(value, "__await__") else value
