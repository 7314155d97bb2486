"""Spectra streams: start, counters, stop, and the WebSocket of per-train summaries."""

import json
import os

from jupyter_core.utils import ensure_async

from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from server_ext.spectra.errors import SpectraError
from server_ext.spectra.sources import checked_endpoint
from server_ext.spectra.train_span import checked_span, span_text

from .. import tasks
from ..errors import DaasRequestError
from .base import API, AUTH_RESOURCE, DaasHandler
from .spectra import mask_points, model_in_use

ID = r"(?P<stream_id>[0-9a-f]{16})"
BRIDGE_ONLY = ("timeout", "sock", "max_reconnects")  # of StreamSource, for an endpoint
RUN_ONLY = ("train_rate", "train_ids")


class StreamsHandler(DaasHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.reply({"streams": [s.to_dict() for s in self.daas.streams.streams.values()]})

    @web.authenticated
    @authorized
    async def post(self):
        body = self.body("StreamRequest")
        source = dict(body["source"])
        if ("endpoint" in source) == ("run" in source):
            raise DaasRequestError(400, "source: give either endpoint (a Karabo bridge, tcp://HOST:PORT) "
                                        "or run (a run directory to replay)")
        # a bridge's options on a run (or a run's on a bridge) would fail the stream's start
        misplaced = [k for k in (BRIDGE_ONLY if "run" in source else RUN_ONLY) if source.get(k) is not None]
        if misplaced:
            meant = "a Karabo bridge (endpoint), not a replayed run" if "run" in source else \
                "a replayed run, not a Karabo bridge (endpoint)"
            raise DaasRequestError(400, f"source: {', '.join(misplaced)} "
                                        f"{'is' if len(misplaced) == 1 else 'are'} for {meant}")
        if "endpoint" in source:  # refused now, not by the stream's process once started
            try:
                checked_endpoint(source["endpoint"])
            except SpectraError as e:
                raise DaasRequestError(400, f"source.endpoint: {e}") from None
        if "run" in source:
            source["run"] = self.daas.policy.input("source.run", source["run"])
            if not source.get("source") or not source.get("key"):
                raise DaasRequestError(400, "source: replaying a run needs source and key "
                                            "(where the spectra are)")
            if source.get("train_ids") is not None:
                try:
                    source["train_ids"] = checked_span(source["train_ids"])
                except SpectraError as e:
                    raise DaasRequestError(400, f"source.train_ids: {e}") from None
        if body.get("axis") and source.get("axis_key"):
            raise DaasRequestError(400, "the detector's axis comes either from a file (axis) or with "
                                        "each train (source.axis_key), not both")
        if source.get("axis_source") and not source.get("axis_key"):
            raise DaasRequestError(400, "source: axis_source names where axis_key is; give axis_key")
        with model_in_use(self.daas, body["model"]) as model:  # until the stream holds it
            axis = None
            if body.get("axis"):
                path = self.daas.policy.input("axis.file", body["axis"]["file"])
                axis = await self.on_cluster(tasks.stream_axis, model, path, body["axis"].get("dataset"))
            elif source.get("axis_key"):
                await self.on_cluster(tasks.stream_axis, model, None)
            options = {"model_dir": model, "source": source, "axis": axis, **self.results_file(body, source),
                       "max_trains": body.get("max_trains"), "queue_size": body.get("queue_size", 4),
                       "drop_oldest": body.get("drop_oldest"), "purity": body.get("purity", 0.9),
                       "mask_points": mask_points(self.daas, body["model"], body)}
            stream = self.daas.streams.start(options, body)
        self.reply(stream.to_dict(), 201)

    def results_file(self, body: dict, source: dict) -> dict:
        """The request's ``output`` (a new file below the root, 403/409 otherwise) and what the
        file says of the stream (``about``: the model's id, the source as the request named it,
        the span of trains ``source`` -- the checked one -- replays)."""
        if not body.get("output"):
            return {"output": None}
        output = self.daas.policy.output("output", body["output"])
        if os.path.lexists(output):
            raise DaasRequestError(409, f"output: {body['output']!r} exists; give another file for the "
                                        "results, or remove it")
        asked = body["source"]
        return {"output": output, "about": {
            "model": body["model"], "source": asked.get("endpoint") or asked.get("run"),
            "source_name": asked.get("source"), "key": asked.get("key"),
            "train_ids": source.get("train_ids") and span_text(*source["train_ids"])}}


class StreamHandler(DaasHandler):
    @web.authenticated
    @authorized
    async def get(self, stream_id):
        self.reply(self.daas.streams.get(stream_id).to_dict())

    @web.authenticated
    @authorized
    async def delete(self, stream_id):
        stream = await self.daas.streams.stop(stream_id)
        self.reply(stream.to_dict())


class StreamSocketHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """Pushes ``{"type": "train"|"end", "train": ..., "stats": ...}`` to each viewer (origin checked)."""

    auth_resource = AUTH_RESOURCE

    def set_default_headers(self):
        """Not JupyterHandler's headers: they do not apply to a WebSocket."""

    @ws_authenticated
    async def get(self, stream_id):
        if not await ensure_async(self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)):
            raise web.HTTPError(403)
        origin = self.get_origin()
        if origin is not None and not self.check_origin(origin):  # before saying whether the stream exists
            raise web.HTTPError(403, "cross-origin WebSocket refused")
        try:
            self.stream = self.settings["daas"].streams.get(stream_id)
        except DaasRequestError as e:
            raise web.HTTPError(404, e.message)
        await super().get(stream_id=stream_id)

    def open(self, stream_id):
        super().open()
        stream = self.stream
        self.send({"type": "hello", "stream": stream.id, "train": stream.last_train, "stats": stream.stats})
        if stream.ended.is_set():
            self.send({"type": "end", "stream": stream.id, "stats": stream.stats, "error": stream.error})
            self.close()
        else:
            stream.viewers.add(self)

    def send(self, message: dict):
        try:
            self.write_message(json.dumps(message))
        except WebSocketClosedError:
            self.stream.viewers.discard(self)
            return
        if message.get("type") == "end":
            self.stream.viewers.discard(self)
            self.close()

    def on_message(self, message):
        """Viewers only listen."""

    def on_close(self):
        self.stream.viewers.discard(self)


default_handlers = [
    (rf"{API}/spectra/streams", StreamsHandler),
    (rf"{API}/spectra/streams/{ID}", StreamHandler),
    (rf"{API}/spectra/streams/{ID}/ws", StreamSocketHandler),
]
