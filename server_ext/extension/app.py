"""``DaasExtension``: the Jupyter Server extension app and its configuration."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Any, Dict, Float, Int, TraitType, Unicode, Union, default

from .dask_backend import DaskBackend
from .jobs import JobManager
from .paths import PathPolicy
from .records import JobStore
from .session import load_session
from .streams import StreamManager

API_URL_ENV = "DAAS_API_URL"
API_TOKEN_ENV = "DAAS_API_TOKEN"


def _knob(trait: type[TraitType], *args, help: str, **kwargs) -> TraitType:
    """A configurable trait of the extension; *help* is required (it is ``--help-all``'s text)."""
    return trait(*args, help=help, **kwargs).tag(config=True)


@dataclass
class DaasState:
    """What the handlers reach through ``self.settings["daas"]``."""

    policy: PathPolicy
    jobs: JobManager
    streams: StreamManager
    backend: DaskBackend
    executor: ThreadPoolExecutor
    models_dir: str
    request_timeout: float
    max_predict_spectra: int
    max_spectra_per_label: int
    # requests classifying with each model just now (predict, evaluate, a stream's start): not removed meanwhile
    models_in_use: Counter = field(default_factory=Counter)


class DaasExtension(ExtensionApp):
    """NXmx conversion and the spectra classifier as jobs of the Jupyter server (``/daas/api/``)."""

    name = "daas"
    description = __doc__
    load_other_extensions = True

    # Every knob is ``c.DaasExtension.<name>`` (or ``--DaasExtension.<name>=``), declared with ``_knob``.

    # -- where things are
    data_dir = _knob(Unicode, help="""Where job records and trained models are kept (per user, never in the dataset).

        Default: ``<jupyter data dir>/daas`` (e.g. ``~/.local/share/jupyter/daas``).
        A restarted server lists the jobs recorded here.
        """)

    @default("data_dir")
    def _data_dir_default(self):
        return os.path.join(jupyter_data_dir(), "daas")

    readonly_dir = _knob(Unicode, "data", help=(
        "Folder below the root directory holding the read-only dataset link: never written to."))

    # -- jobs and where they run
    max_running_jobs = _knob(Int, 2, help=(
        "Jobs (conversion, training) running at once; the others wait in state 'queued'."))
    dask_scheduler_address = _knob(Unicode, "", help="""Run jobs on an existing Dask scheduler (``tcp://host:8786``) instead of an embedded cluster.

        The run directories and output folders must be visible to its workers at the same paths.
        """)
    dask_cluster_class = _knob(Union, [Unicode(), Any()], default_value="", help="""A Dask cluster class (import path or callable) to start for the jobs, e.g.
        ``"dask_jobqueue.SLURMCluster"`` (Slurm) or ``"dask_gateway.GatewayCluster"`` (Kubernetes).

        Called as ``cls(asynchronous=True, **dask_cluster_kwargs)``; then scaled to
        ``dask_cluster_scale`` workers when that is set. Ignored when ``dask_scheduler_address`` is set.
        """)
    dask_cluster_kwargs = _knob(Dict, help="Keyword arguments for ``dask_cluster_class`` (queue, cores, memory, ...).")
    dask_cluster_scale = _knob(Int, 0, help=(
        "Workers to ask ``dask_cluster_class`` for (``cluster.scale(n)``); 0: the class's default."))
    dask_workers = _knob(Int, 2, help="Worker processes of the embedded LocalCluster (started on the first job).")
    dask_threads_per_worker = _knob(Int, 1, help="Threads per worker process of the embedded LocalCluster.")
    dask_memory_limit = _knob(Unicode, "auto", help=(
        "Memory limit per embedded worker (``'4GiB'``; ``'auto'``: share of the machine's memory)."))
    dask_worker_nice = _knob(Int, 10, help="""Nice increment of the embedded workers' processes (0-19): conversions and training
        yield the CPU to the server and the kernels, which stay responsive while jobs run.""")
    dask_connect_timeout = _knob(Float, 60.0, help=(
        "Seconds to wait for the Dask cluster to start or answer before a job fails."))

    # -- requests answered at once
    request_timeout = _knob(Float, 300.0, help=(
        "Seconds a synchronous request (run summary, validation, prediction) may take."))
    max_predict_spectra = _knob(Int, 100_000, help=(
        "Most spectra of a file one predict request classifies, and labelled spectra of a file one "
        "evaluate request reads (more: use the engine in a notebook)."))
    max_spectra_per_label = _knob(Int, 2000, help=(
        "Default cap of labelled spectra read per label when training or evaluating (drawn at random "
        "from a file's rows, evenly from a run's trains)."))

    # -- streams
    stream_message_rate = _knob(Float, 10.0, help=(
        "Most per-train summaries a stream pushes to its WebSocket viewers per second."))
    max_streams = _knob(Int, 4, help="Spectra streams running at once.")
    stream_stop_timeout = _knob(Float, 10.0, help=(
        "Seconds a stopping stream gets to end before its process is terminated."))

    def initialize_settings(self):
        session = load_session()
        data_dir = Path(self.data_dir)
        models_dir = data_dir / "models"
        models_dir.mkdir(parents=True, exist_ok=True)
        backend = DaskBackend(
            scheduler_address=self.dask_scheduler_address, cluster_class=self.dask_cluster_class or None,
            cluster_kwargs=self.dask_cluster_kwargs, n_workers=self.dask_workers,
            threads_per_worker=self.dask_threads_per_worker, memory_limit=self.dask_memory_limit,
            scale=self.dask_cluster_scale, connect_timeout=self.dask_connect_timeout,
            worker_nice=self.dask_worker_nice)
        self.daas = DaasState(
            policy=PathPolicy(self.serverapp.root_dir, session.get("dataset_path"), self.readonly_dir),
            jobs=JobManager(JobStore(data_dir / "jobs"), backend, self.max_running_jobs),
            streams=StreamManager(self.stream_message_rate, self.max_streams, self.stream_stop_timeout),
            backend=backend, executor=ThreadPoolExecutor(4, thread_name_prefix="daas"),
            models_dir=str(models_dir), request_timeout=self.request_timeout,
            max_predict_spectra=self.max_predict_spectra, max_spectra_per_label=self.max_spectra_per_label)
        self.settings["daas"] = self.daas
        self._remove_partial_outputs()
        from .handlers.spectra import sweep_removed  # the handlers load with the server, as below

        sweep_removed(models_dir)
        self.log.info("daas: REST API at %sdaas/api/; jobs on %s; records in %s",
                      self.serverapp.base_url, backend.description, data_dir)

    def _remove_partial_outputs(self):
        """A dead server's conversions left their hidden partial files (``.NAME.*.part`` beside the
        output; its orphaned workers may not remove them): removed with their jobs marked interrupted,
        so that none is left, nor published later."""
        for record in self.daas.jobs.store.interrupted:
            output = (record.get("options") or {}).get("output")
            if record.get("kind") != "nxmx" or not output:
                continue
            try:
                path = Path(self.daas.policy.output("output", output))
            except Exception:  # noqa: BLE001 -- a root that changed: nothing of ours to remove
                continue
            for part in path.parent.glob(f".{path.name}.*.part"):
                try:
                    part.unlink()
                    self.log.info("daas: removed %s, the partial output of interrupted job %s", part,
                                  record["id"])
                except OSError as e:
                    self.log.warning("daas: could not remove %s: %s", part, e)

    async def _start_jupyter_server_extension(self, serverapp):
        """Once the server listens, tell kernels (which inherit its environment) where the API is."""
        os.environ[API_URL_ENV] = self.serverapp.connection_url.rstrip("/") + "/daas/api/"
        token = getattr(self.serverapp.identity_provider, "token", "") or ""
        # under JupyterHub the kernels use the server's JUPYTERHUB_API_TOKEN (the hub's auth)
        if token and not os.environ.get("JUPYTERHUB_API_TOKEN"):
            os.environ[API_TOKEN_ENV] = token
        # JupyterHub's LocalProcessSpawner stops a server with SIGINT first. Without a
        # terminal Jupyter Server leaves SIGINT to Python: KeyboardInterrupt ends the
        # loop with no clean-up (extensions, kernels; here the jobs stay "running" and
        # Dask's exit waits ~10 s for a cluster nobody closed). Stop as on SIGTERM.
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._stop_on_sigint)

    def _stop_on_sigint(self, signum, frame):
        self.log.info("daas: SIGINT, stopping the server (with its clean-up, as on SIGTERM)")
        self.serverapp.stop(from_signal=True)

    def initialize_handlers(self):
        from .handlers import default_handlers

        self.handlers.extend(default_handlers)

    async def stop_extension(self):
        daas = getattr(self, "daas", None)
        if daas is None:
            return
        await daas.streams.shutdown()
        await daas.jobs.shutdown()
        daas.executor.shutdown(wait=False, cancel_futures=True)
