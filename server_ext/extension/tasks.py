"""What runs on the Dask workers: the engines, with progress and cancellation across processes.

Progress goes from the worker to the server as Dask events (``log_event``
on the topic :data:`PROGRESS_TOPIC`, to which the server subscribes);
cancellation comes back as a Dask ``Event`` named after the job. Only the
engines are imported here, never Jupyter.
"""

from __future__ import annotations

import inspect
import time
import warnings

PROGRESS_TOPIC = "daas-progress"
PROGRESS_INTERVAL = 0.2  # s between progress messages of one job
CANCEL_POLL_INTERVAL = 0.25  # s between looks at the cancel event


def cancel_event_name(job_id: str) -> str:
    return f"daas-cancel-{job_id}"


class _Progress:
    """``progress(done, total)`` for the engines, sent at most every PROGRESS_INTERVAL."""

    def __init__(self, job_id: str, extra=None):
        from distributed import get_worker

        self.worker = get_worker()
        self.job_id = job_id
        self.extra = extra or {}
        self.last = 0.0

    def __call__(self, done, total, /, **extra):
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL and done < total:
            return
        self.last = now
        fraction = min(1.0, max(0.0, done / total)) if total else 0.0
        self.worker.log_event(PROGRESS_TOPIC, {"id": self.job_id, "progress": fraction,
                                               **self.extra, **extra})


class _Cancel:
    """``is_set()`` over the job's Dask Event, asked at most every CANCEL_POLL_INTERVAL."""

    def __init__(self, job_id: str):
        from distributed import Event

        self.event = Event(cancel_event_name(job_id))
        self.last = time.monotonic()  # first look after one interval: short jobs pay no round trip
        self.value = False

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self.value and now - self.last >= CANCEL_POLL_INTERVAL:
            self.last = now
            self.value = self.event.is_set()
        return self.value


def convert(job_id: str, options: dict) -> dict:
    """``convert_run`` for a job; returns ``{"output": path, "warnings": [...]}``."""
    from server_ext.nxmx import convert_run

    options = dict(options)
    trains = options.pop("trains", None)
    if isinstance(trains, dict):
        trains = trains["ids"] if "ids" in trains else slice(trains.get("start"), trains.get("stop"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = convert_run(options.pop("run"), options.pop("output"), trains=trains,
                          progress=_Progress(job_id), cancel=_Cancel(job_id), **options)
    return {"output": str(out), "warnings": [str(w.message) for w in caught]}


# share of the training job's progress bar per stage of ``fit`` (the networks dominate)
FIT_STAGES = {"screen": (0.0, 0.1), "train": (0.1, 0.9), "calibrate": (0.9, 1.0)}


def _fit(clf, X, y, axis, progress):
    """``clf.fit`` with per-bin progress where the classifier reports it.

    The classifier calls ``progress(report)`` with a ``FitProgress``
    (``stage``, ``done``, ``total``); it becomes one 0..1 fraction across the
    stages, with the stage's own counts in the job's ``detail``. A classifier
    without a ``progress`` parameter reports nothing until it is done.
    """
    if "progress" not in inspect.signature(clf.fit).parameters:
        progress(0, 1, stage="train")
        return clf.fit(X, y, axis=axis)

    def report(p):
        lo, hi = FIT_STAGES.get(p.stage, (0.0, 1.0))
        fraction = lo + (hi - lo) * (p.done / p.total if p.total else 1.0)
        progress(fraction, 1.0, stage=p.stage, done=int(p.done), total=int(p.total))

    return clf.fit(X, y, axis=axis, progress=report)


def train(job_id: str, options: dict, model_dir: str) -> dict:
    """Train a classifier from labelled spectra and save it to *model_dir*; returns its summary."""
    from server_ext.spectra import BinnedSpectraClassifier, SpectraError
    from server_ext.spectra.datafiles import load_labelled, located

    cancel = _Cancel(job_id)
    report = _Progress(job_id)

    def progress(done, total, /, **extra):  # also where a cancel stops the training between bins
        if cancel.is_set():
            raise SpectraError("training cancelled; no model was saved")
        report(done, total, **extra)

    params = options.get("params") or {}
    # the rows drawn below max_per_label follow the model's seed, as 'daas spectra train --seed' draws them
    X, y, axis, origins = load_labelled(options["data"], options["labels"], dataset=options.get("dataset"),
                                        source=options.get("source"), key=options.get("key"),
                                        max_per_label=options.get("max_per_label"), return_origins=True,
                                        random_state=params.get("random_state", 0), **axis_options(options))
    if cancel.is_set():
        raise SpectraError("training cancelled; no model was saved")
    clf = BinnedSpectraClassifier(**params)
    try:
        _fit(clf, X, y, axis, progress)
    except SpectraError as e:
        raise located(e, origins) from None
    if cancel.is_set():
        raise SpectraError("training cancelled; no model was saved")
    clf.save(model_dir, trained_on=_labelled_from(options))
    return model_summary(clf, n_spectra=len(X))


def _labelled_from(options: dict) -> dict:
    from server_ext.spectra.datafiles import labelled_from

    return labelled_from(options["data"], options["labels"], options.get("dataset"), options.get("source"),
                         options.get("key"))


def axis_options(options: dict) -> dict:
    """The training request's axis: a file's ``axis_dataset``, a run's ``axis_source``/``axis_key``."""
    return {k: options.get(k) for k in ("axis_dataset", "axis_source", "axis_key")}


def model_summary(clf, **extra) -> dict:
    """What ``GET spectra/models/{id}`` shows of a fitted classifier."""
    from server_ext.spectra import findings

    return {**findings.model_summary(clf, retrain='train again with params {"learn_position": false}',
                                     give_axis="axis_dataset (a file) or axis_key (a run)"), **extra}


def predict(model_dir: str, data: str, dataset: str | None = None, limit: int = 100_000,
            mask_points=None, axis_dataset: str | None = None) -> dict:
    """Classify the spectra of an HDF5 file with a saved model, a block at a
    time (:func:`server_ext.spectra.file_predictions.predict_file`: through
    the file's axis where the model has one, ``axis_dataset`` or its NeXus
    axis): each spectrum's label, confidence and ambiguous flag -- None
    where it could not be classified (NaN or inf at points the model reads,
    flat), counted as the stream counts them -- and the counts
    (``PredictionTally.report``). ``mask_points``: points the detector
    masks since the model was trained, bridged over."""
    from server_ext.spectra import BinnedSpectraClassifier, SpectraError
    from server_ext.spectra.datafiles import open_spectra
    from server_ext.spectra.file_predictions import PredictionTally, predict_file

    clf = BinnedSpectraClassifier.load(model_dir)
    if mask_points:
        clf.mask_points(mask_points)
    with open_spectra(data, dataset) as (_, dset, _):
        if dset.shape[0] > limit:
            raise SpectraError(f"{dset.name} holds {dset.shape[0]} spectra, more than {limit} at once; "
                               "classify it with 'daas spectra predict' or in a notebook")
    names = [str(c) for c in clf.classes_]
    tally = PredictionTally(clf.classes_)
    labels, confidence, ambiguous = [], [], []
    for block in predict_file(clf, data, dataset, axis_dataset):
        tally.add(block)
        for k, c, a in zip(block.predicted.tolist(), block.confidence.tolist(), block.ambiguous.tolist()):
            labels.append(names[k] if k >= 0 else None)
            confidence.append(c if k >= 0 else None)
            ambiguous.append(a if k >= 0 else None)
    return {"labels": labels, "confidence": confidence, "ambiguous": ambiguous, **tally.report()}


MISTAKEN_SHOWN = 100  # of the spectra predicted otherwise than labelled, those an evaluation names


def evaluate(model_dir: str, options: dict, limit: int = 100_000, mask_points=None) -> dict:
    """Score a saved model on labelled spectra (named as for :func:`train`):
    :meth:`server_ext.spectra.Evaluation.report`. At most ``max_per_label``
    spectra a label are read; labels naming more than ``limit`` spectra of
    a file in all are refused before any is read."""
    import os

    from server_ext.spectra import BinnedSpectraClassifier, SpectraError
    from server_ext.spectra.datafiles import labelled_rows, open_spectra
    from server_ext.spectra.evaluation import evaluate_labelled, mistaken_spectra

    clf = BinnedSpectraClassifier.load(model_dir)
    if mask_points:
        clf.mask_points(mask_points)
    if os.path.isfile(options["data"]):
        with open_spectra(options["data"], options.get("dataset")) as (f, dset, _):
            rows, _ = labelled_rows(f, dset, options["labels"], 1, options.get("max_per_label"))
            n, name = len(rows), dset.name
        if n > limit:
            raise SpectraError(f"the labels name {n} spectra of {name}, more than {limit} at once; "
                               "ask for fewer a class (max_per_label), or evaluate them in a notebook "
                               "with server_ext.spectra.evaluate")
    result, _, origins, note = evaluate_labelled(clf, options["data"], options["labels"], options.get("dataset"),
                                                 options.get("source"), options.get("key"),
                                                 max_per_label=options.get("max_per_label"),
                                                 **axis_options(options))
    return {"trained_here": note, **result.report(),
            "mistaken_count": len(result.mistaken), "mistaken": mistaken_spectra(result, origins, MISTAKEN_SHOWN)}


def stream_axis(model_dir: str, path: str | None, dataset: str | None = None) -> list[float] | None:
    """The detector's axis read from ``path`` (``dataset`` in an HDF5 file),
    checked to be one the saved model can read spectra through: for a
    stream, refused before it starts. Without a ``path`` (the axis comes with
    each train), only that the model can read spectra through another axis."""
    from server_ext.spectra import BinnedSpectraClassifier
    from server_ext.spectra.datafiles import read_axis

    clf = BinnedSpectraClassifier.load(model_dir)
    if path is None:
        clf.require_axis()
        return None
    axis = read_axis(path, dataset)
    clf.axis_plan(axis)
    return axis.tolist()


def validate(path: str) -> dict:
    from server_ext.nxmx import validate as run_validate

    return run_validate(path).to_dict()
