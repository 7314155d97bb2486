"""``DaasClient``: the extension's REST API from a kernel, a widget or a script.

Example::

    from server_ext.extension.client import DaasClient
    daas = DaasClient.from_env()          # the server this kernel belongs to
    job = daas.submit_conversion("data/r0042", "processed/r42.nxs", distance=120)
    job = daas.wait_job(job["id"], timeout=600)
    print(daas.validate(job["result"]["output"])["ok"])

Every error the server answers (a bad path, an unknown job, a cluster that
cannot be reached) raises :class:`DaasApiError` with the server's message.
Only the standard library and tornado (for the WebSocket) are used.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

__all__ = ["DaasClient", "DaasApiError"]

FINAL_STATES = ("done", "failed", "cancelled", "interrupted")
MAX_WAIT = 30.0  # s the server waits at most for a job's end in one request: below proxies' read timeouts


class DaasApiError(Exception):
    """The server refused or failed a request; ``status`` is the HTTP status (0: no answer)."""

    user_error = True

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status
        self.message = message


class DaasClient:
    """Calls to ``<server>/daas/api/`` with the server's token.

    ``url``: the API root (``http://127.0.0.1:8888/user/alice/daas/api/``);
    ``token``: a Jupyter server token or a JupyterHub API token;
    ``timeout``: seconds per request.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0):
        self.url = url if url.endswith("/") else url + "/"
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_env(cls, environ=os.environ, timeout: float = 60.0) -> "DaasClient":
        """The client of the server this process runs under.

        The extension exports ``DAAS_API_URL`` and, for token-protected
        servers, ``DAAS_API_TOKEN`` when it starts; kernels inherit them.
        Under JupyterHub, ``JUPYTERHUB_API_TOKEN`` (and, when
        ``DAAS_API_URL`` is unset, ``JUPYTERHUB_SERVICE_URL``, where the
        hub told the server to listen, prefix included) are used instead.
        """
        url = environ.get("DAAS_API_URL")
        if not url and environ.get("JUPYTERHUB_SERVICE_URL"):
            url = environ["JUPYTERHUB_SERVICE_URL"].rstrip("/") + "/daas/api/"
        if not url:
            raise DaasApiError("no DAAS_API_URL in the environment: this is not running under a Jupyter "
                               "server with the daas extension; use DaasClient(url, token)")
        token = environ.get("DAAS_API_TOKEN") or environ.get("JUPYTERHUB_API_TOKEN") or None
        return cls(url, token, timeout=timeout)

    # ------------------------------------------------------------ plumbing
    def request(self, method: str, path: str, body: dict | None = None, query: dict | None = None):
        """One JSON request; returns the decoded answer or raises :class:`DaasApiError`."""
        url = self.url + path.lstrip("/")
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise DaasApiError(_message(e), e.code) from None
        except (urllib.error.URLError, OSError) as e:
            raise DaasApiError(f"the daas API at {self.url} does not answer: "
                               f"{getattr(e, 'reason', e)}") from None
        return json.loads(raw) if raw else None

    # -------------------------------------------------------------- session
    def session(self) -> dict:
        """This server's session manifest (dataset, environment), or an empty session."""
        return self.request("GET", "session")

    def run_summary(self, path: str) -> dict:
        """Detectors, trains, pulses and XGMs of a run (root-relative or dataset path)."""
        return self.request("GET", "runs", query={"path": path})

    # ----------------------------------------------------------------- NXmx
    def submit_conversion(self, run: str, output: str, **options) -> dict:
        """Start a conversion; *options* are ``convert_run``'s (``detector``, ``mode``,
        ``geometry``, ``trains={"start":, "stop":}`` or ``{"ids": [...]}``,
        ``min_pulse_energy``, ``photon_energy``, ``distance``, ``overwrite``). Returns the job."""
        return self.request("POST", "nxmx/jobs", {"run": run, "output": output, **options})

    def list_conversions(self) -> list[dict]:
        return self.request("GET", "nxmx/jobs")["jobs"]

    def get_conversion(self, job_id: str, wait: float = 0.0) -> dict:
        """The job; with *wait* > 0 (s, at most :data:`MAX_WAIT`), once it is final or after *wait*."""
        return self.request("GET", f"nxmx/jobs/{job_id}", query=_waiting(wait))

    def cancel_conversion(self, job_id: str) -> dict:
        """Cancel; the job ends ``cancelled`` and nothing is left at its output."""
        return self.request("DELETE", f"nxmx/jobs/{job_id}")

    def validate(self, path: str) -> dict:
        """``{"ok": bool, "findings": [...], ...}`` for an NXmx file."""
        return self.request("POST", "nxmx/validate", {"path": path})

    # -------------------------------------------------------------- spectra
    def train_model(self, data: str, labels: list[str] | str, **options) -> dict:
        """Start training (``labels``: ``["low=0:20", "high=300:349"]`` or ``"@/labels"``;
        options: ``dataset``, ``source``, ``key``, the axis: ``axis_dataset`` of a file, ``axis_key``
        (``axis_source``) of a run; ``max_per_label``, ``params={...}``, with ``random_state`` 0 unless
        given: the same labels, the same model). Returns the job."""
        return self.request("POST", "spectra/models", {"data": data, "labels": labels, **options})

    def list_models(self) -> list[dict]:
        return self.request("GET", "spectra/models")["models"]

    def get_model(self, model_id: str, wait: float = 0.0) -> dict:
        """The training job; when done, ``result`` holds classes, bins, separability, weights.
        *wait* as for :meth:`get_conversion`."""
        return self.request("GET", f"spectra/models/{model_id}", query=_waiting(wait))

    def cancel_training(self, model_id: str) -> dict:
        return self.request("DELETE", f"spectra/models/{model_id}")

    def remove_model(self, model_id: str) -> None:
        """Remove a model whose training has ended, its saved files too; refused while a
        stream, a prediction or an evaluation uses it, or its training runs."""
        self.request("DELETE", f"spectra/models/{model_id}", query={"remove": "true"})

    def predict(self, model_id: str, data: str, dataset: str | None = None,
                mask_points: list[int] | None = None, axis_dataset: str | None = None) -> dict:
        """``{"labels", "confidence", "ambiguous"}`` for the spectra of a file;
        ``mask_points``: points the detector masks since the model was trained;
        ``axis_dataset``: the file's axis of the spectra, where it is not the model's."""
        body = {"data": data}
        if dataset is not None:
            body["dataset"] = dataset
        if axis_dataset:
            body["axis_dataset"] = axis_dataset
        if mask_points:
            body["mask_points"] = [int(p) for p in mask_points]
        return self.request("POST", f"spectra/models/{model_id}/predict", body)

    def evaluate(self, model_id: str, data: str, labels: list[str] | str, **options) -> dict:
        """Score a model on labelled spectra it was not trained on (named as for
        :meth:`train_model`; also ``mask_points``): accuracy, ``confusion`` (rows the labelled
        class, columns the predicted, in ``classes`` order), ``per_class``, ``bins``."""
        return self.request("POST", f"spectra/models/{model_id}/evaluate",
                            {"data": data, "labels": labels, **options})

    def start_stream(self, model_id: str, *, endpoint: str | None = None, run: str | None = None,
                     max_trains: int | None = None, drop_oldest: bool | None = None,
                     mask_points: list[int] | None = None, axis_file: str | None = None,
                     axis_dataset: str | None = None, output: str | None = None,
                     purity: float | None = None, **source) -> dict:
        """Classify a Karabo bridge (``endpoint``, optionally ``source``, ``key``, ``timeout``,
        ``sock``, ``max_reconnects``) or a replayed ``run`` (with ``source``, ``key``, optionally
        ``train_rate``, ``train_ids=[first, last]``). ``max_reconnects=None`` reconnects for ever,
        until the stream is stopped (left out: 5); ``mask_points``: points the detector masks since the model was
        trained, bridged over; ``axis_file`` (``axis_dataset`` in it, for HDF5): the positions
        of the detector's points, where they are not the model's -- or, sent with each train,
        ``axis_key`` (of ``axis_source``, default ``source``); ``output``: a new HDF5 file (below
        the server's root) keeping every pulse's result as it comes; ``purity``: the fraction of
        a train's pulses its class must hold for the train's phase (0.9). Returns the stream."""
        src = {k: v for k, v in {"endpoint": endpoint, "run": run, **source}.items()
               if v is not None or k == "max_reconnects"}
        body = {"model": model_id, "source": src}
        if max_trains is not None:
            body["max_trains"] = max_trains
        if drop_oldest is not None:
            body["drop_oldest"] = drop_oldest
        if mask_points:
            body["mask_points"] = [int(p) for p in mask_points]
        if axis_file:
            body["axis"] = {"file": axis_file, "dataset": axis_dataset}
        if output:
            body["output"] = output
        if purity is not None:
            body["purity"] = purity
        return self.request("POST", "spectra/streams", body)

    def list_streams(self) -> list[dict]:
        return self.request("GET", "spectra/streams")["streams"]

    def get_stream(self, stream_id: str) -> dict:
        """State and counters (spectra/s, latency, gaps, dropped, ...), the
        last train's summary (``last_train``, with the run of trains it is
        in) and ``results``: the pulses per class and the phases by train so
        far, final once the stream has ended."""
        return self.request("GET", f"spectra/streams/{stream_id}")

    def stop_stream(self, stream_id: str) -> dict:
        return self.request("DELETE", f"spectra/streams/{stream_id}")

    def stream_url(self, stream_id: str) -> str:
        """The WebSocket URL of a stream's per-train summaries (send the token as a header)."""
        scheme, rest = self.url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}spectra/streams/{stream_id}/ws"

    def stream_messages(self, stream_id: str, timeout: float = 30.0) -> Iterator[dict]:
        """Yield the stream's messages (``hello``, ``train``..., ``end``) until it ends.

        Raises :class:`DaasApiError` when no message comes for *timeout* seconds
        or the connection fails. Runs the WebSocket in a thread of its own, so it
        works inside a kernel whose event loop is already running.
        """
        messages: queue.Queue = queue.Queue()
        stop = threading.Event()
        thread = threading.Thread(target=_ws_reader, args=(self, stream_id, messages, stop, timeout),
                                  name="daas-ws", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    kind, value = messages.get(timeout=timeout + 5)
                except queue.Empty:
                    raise DaasApiError(f"no message from stream {stream_id} within {timeout:g} s") from None
                if kind == "error":
                    raise DaasApiError(value)
                if kind == "closed":
                    return
                yield value
                if value.get("type") == "end":
                    return
        finally:
            stop.set()
            thread.join(timeout + 10)

    # ---------------------------------------------------------------- waits
    def wait_job(self, job_id: str, timeout: float = 600.0, interval: float = 0.5,
                 kind: str = "nxmx") -> dict:
        """A job (``kind`` ``"nxmx"`` or ``"spectra"``) once it is final; raise after *timeout* s.

        Each request waits on the server for the job's end (``?wait=``, at most
        :data:`MAX_WAIT` s and half this client's request timeout), so the end is
        seen as it happens; *interval* is the pause between requests after one
        that came back with the job still running.
        """
        get = self.get_conversion if kind == "nxmx" else self.get_model
        deadline = time.monotonic() + timeout
        while True:
            job = get(job_id, wait=min(MAX_WAIT, self.timeout / 2, deadline - time.monotonic()))
            if job["state"] in FINAL_STATES:
                return job
            if time.monotonic() > deadline:
                raise DaasApiError(f"job {job_id} is still {job['state']} after {timeout:g} s")
            time.sleep(interval)


def _waiting(wait: float) -> dict | None:
    return {"wait": f"{wait:.3f}"} if wait > 0 else None


def _message(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read() or b"{}")
        return body.get("message") or body.get("reason") or f"HTTP {error.code}"
    except ValueError:
        return f"HTTP {error.code}: {error.reason}"


def _ws_reader(client: DaasClient, stream_id: str, out: queue.Queue, stop: threading.Event,
               timeout: float) -> None:
    import asyncio

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    async def read():
        headers = {"Authorization": f"token {client.token}"} if client.token else {}
        try:
            conn = await asyncio.wait_for(
                websocket_connect(HTTPRequest(client.stream_url(stream_id), headers=headers)), timeout)
        except Exception as e:  # noqa: BLE001 -- handed to the iterating thread
            out.put(("error", f"cannot open the stream's WebSocket: {e}"))
            return
        try:
            while not stop.is_set():
                try:
                    msg = await asyncio.wait_for(conn.read_message(), 0.5)
                except asyncio.TimeoutError:
                    continue
                if msg is None:
                    out.put(("closed", None))
                    return
                out.put(("message", json.loads(msg)))
        finally:
            conn.close()

    asyncio.run(read())
