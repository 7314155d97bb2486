"""Spectra classifiers: training jobs (``spectra/models``), prediction and evaluation."""

import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from jupyter_server.auth.decorator import authorized
from tornado import web

from .. import tasks
from ..errors import DaasRequestError
from .base import API, DaasHandler

ID = r"(?P<model_id>[0-9a-f]{16})"

log = logging.getLogger(__name__)
REMOVED = ".removed-"  # a removed model's folder, until its files are gone


def model_dir(daas, model_id: str) -> str:
    return os.path.join(daas.models_dir, model_id)


def fitted_model(daas, model_id: str) -> str:
    """The saved model of a finished training job, or a 404/409 saying why there is none."""
    record = daas.jobs.get(model_id, "spectra")
    if record["state"] != "done":
        raise DaasRequestError(409, f"model {model_id} is {record['state']}, not trained; "
                                    "wait until its state is done, or train again")
    return model_dir(daas, model_id)


@contextmanager
def model_in_use(daas, model_id: str):
    """The saved model (as :func:`fitted_model`), not removed while the request classifies with it."""
    path = fitted_model(daas, model_id)
    daas.models_in_use[model_id] += 1
    try:
        yield path
    finally:
        daas.models_in_use[model_id] -= 1
        if not daas.models_in_use[model_id]:
            del daas.models_in_use[model_id]


def remove_model(daas, model_id: str) -> None:
    """Remove a training job that has ended, and its saved model; a 409 saying why not while a
    stream or a request classifies with it, or the training has not ended."""
    streams = [s.id for s in daas.streams.streams.values()
               if s.public.get("model") == model_id and not s.ended.is_set()]
    if streams:
        raise DaasRequestError(409, f"model {model_id} classifies stream {streams[0]}: stop the stream "
                                    f"(DELETE spectra/streams/{streams[0]}), then remove the model")
    if daas.models_in_use.get(model_id):
        raise DaasRequestError(409, f"a prediction, an evaluation or a stream's start with model {model_id} "
                                    "waits for its answer; remove the model once it has answered")
    daas.jobs.remove(model_id, "spectra")
    # moved aside first, so that nothing ever reads half a model
    path, aside = model_dir(daas, model_id), os.path.join(daas.models_dir, REMOVED + model_id)
    try:
        os.replace(path, aside)
        shutil.rmtree(aside)
    except FileNotFoundError:  # none saved (a failed training), or removed by hand
        pass
    except OSError as e:
        log.warning("daas: model %s removed from the list, but not all its files: %s", model_id, e)


def sweep_removed(models_dir) -> None:
    """The files of models whose removal a dead server left unfinished (or that could not be
    removed then): removed now."""
    for left in Path(models_dir).glob(REMOVED + "*"):
        try:
            shutil.rmtree(left)
        except OSError as e:
            log.warning("daas: could not remove %s, the files of a removed model: %s", left, e)


def mask_points(daas, model_id: str, body: dict) -> list[int] | None:
    """The request's ``mask_points``, or a 400 for points beyond the model's spectra."""
    points = body.get("mask_points")
    if not points:
        return None
    n_points = daas.jobs.get(model_id, "spectra")["result"]["n_points"]
    outside = sorted({p for p in points if p >= n_points})
    if outside:
        raise DaasRequestError(400, f"mask_points: points {outside[:10]} lie outside the "
                                    f"model's spectra of {n_points} points (0-{n_points - 1})")
    return sorted(set(points))


class ModelsHandler(DaasHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.reply({"models": self.daas.jobs.list("spectra")})

    @web.authenticated
    @authorized
    async def post(self):
        body = self.body("TrainingRequest")
        # the same labelled spectra give the same model, as 'daas spectra train' (--seed 0) does
        body["params"] = {"random_state": 0, **(body.get("params") or {})}
        options = labelled_data(self.daas, body)
        record = self.daas.jobs.submit("spectra", body, _train, options, self.daas.models_dir)
        self.reply(record, 202)


def labelled_data(daas, body: dict) -> dict:
    """A request naming labelled spectra, as the engine reads it: the data's
    path checked, the labels a list, at most ``max_spectra_per_label`` a class."""
    options = dict(body)
    options["data"] = daas.policy.input("data", body["data"])
    options["labels"] = [body["labels"]] if isinstance(body["labels"], str) else body["labels"]
    if options.get("max_per_label") is None:
        options["max_per_label"] = daas.max_spectra_per_label
    return options


def _train(job_id, options, models_dir):  # runs on a worker: the model goes to <models_dir>/<id>
    return tasks.train(job_id, options, os.path.join(models_dir, job_id))


class ModelHandler(DaasHandler):
    @web.authenticated
    @authorized
    async def get(self, model_id):
        self.reply(await self.job(model_id, "spectra"))

    @web.authenticated
    @authorized
    async def delete(self, model_id):
        remove = self.get_query_argument("remove", "false")
        if remove not in ("true", "false"):
            raise DaasRequestError(400, f"remove={remove!r}: true (remove the model) or false (cancel its "
                                        "training, the default)")
        if remove == "false":
            self.reply(await self.daas.jobs.cancel(model_id, "spectra"), 202)
            return
        remove_model(self.daas, model_id)
        self.set_status(204)
        self.finish()


class PredictHandler(DaasHandler):
    @web.authenticated
    @authorized
    async def post(self, model_id):
        body = self.body("PredictRequest")
        with model_in_use(self.daas, model_id) as path:
            masked = mask_points(self.daas, model_id, body)
            data = self.daas.policy.input("data", body["data"])
            result = await self.on_cluster(tasks.predict, path, data, body.get("dataset"),
                                           self.daas.max_predict_spectra, masked,
                                           body.get("axis_dataset"))
        self.reply({"model": model_id, "data": self.daas.policy.relative(data), **result})


class EvaluateHandler(DaasHandler):
    @web.authenticated
    @authorized
    async def post(self, model_id):
        body = self.body("EvaluateRequest")
        with model_in_use(self.daas, model_id) as path:
            masked = mask_points(self.daas, model_id, body)
            options = labelled_data(self.daas, body)
            report = await self.on_cluster(tasks.evaluate, path, options, self.daas.max_predict_spectra, masked)
        self.reply({"model": model_id, "data": self.daas.policy.relative(options["data"]), **report})


default_handlers = [
    (rf"{API}/spectra/models", ModelsHandler),
    (rf"{API}/spectra/models/{ID}", ModelHandler),
    (rf"{API}/spectra/models/{ID}/predict", PredictHandler),
    (rf"{API}/spectra/models/{ID}/evaluate", EvaluateHandler),
]
