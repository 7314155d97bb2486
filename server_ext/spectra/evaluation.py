"""How a fitted classifier does on labelled spectra it was not trained on.

A bin's held-out accuracy at training says how well it told the labelled
spectra apart; what a scientist needs before trusting a beamtime's labels
is how the whole model does on spectra labelled since -- another run, a
later temperature ramp, the same sample after the detector was moved.
:func:`evaluate` classifies them and counts: the confusion matrix (rows
the labelled class, columns the predicted, both in ``classes_`` order), of
each cell how many were flagged ambiguous (the errors a flag catches), the
spectra it could not classify (NaN or inf, flat: left out of the counts,
as the stream leaves them out), and each bin's own accuracy here beside
its accuracy at training -- a bin that held up then and fails now points
at what changed (a peak of the sample environment, a detector region).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import SpectraError
from .findings import axis_span, bins_on_axis


@dataclass(frozen=True)
class Evaluation:
    classes: np.ndarray
    truth: np.ndarray  # (n,): each spectrum's labelled class, an index into ``classes``
    predicted: np.ndarray  # (n,): its predicted class index, -1 where not classified
    confidence: np.ndarray  # (n,): the predicted class's probability, NaN where not classified
    flagged: np.ndarray  # (n,): flagged ambiguous
    bins: np.ndarray  # (B, 2): the bins' point ranges [start, stop), as ``bins_``
    bin_accuracy: np.ndarray  # (B,): each bin's own vote, on these spectra
    bin_accuracy_at_training: np.ndarray  # (B,): ``separability_``
    weights: np.ndarray  # (B,): the bins' weights in the vote
    bins_on_axis: list | None = None  # (B, 2): each bin's first and last position on the model's axis

    @cached_property
    def confusion(self) -> np.ndarray:
        """(K, K): labelled class x predicted class, of the spectra classified."""
        return self._cells(self.predicted >= 0)

    @cached_property
    def ambiguous(self) -> np.ndarray:
        """(K, K): of ``confusion``, those flagged ambiguous."""
        return self._cells((self.predicted >= 0) & self.flagged)

    @cached_property
    def unread(self) -> np.ndarray:
        """(K,): per labelled class, the spectra not classified."""
        return np.bincount(self.truth[self.predicted < 0], minlength=len(self.classes))

    def _cells(self, rows) -> np.ndarray:
        k = len(self.classes)
        return np.bincount(self.truth[rows] * k + self.predicted[rows], minlength=k * k).reshape(k, k)

    @property
    def mistaken(self) -> np.ndarray:
        """Indices of the spectra predicted otherwise than labelled, or not
        classified: the ones to look at."""
        return np.flatnonzero(self.predicted != self.truth)

    @property
    def scored(self) -> int:
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def accuracy(self) -> float:
        return _share(self.correct, self.scored)

    @property
    def unambiguous_accuracy(self) -> float:
        """The accuracy of the predictions not flagged ambiguous: what
        selecting ``--unambiguous`` pulses from a results file gets."""
        sure = self.confusion - self.ambiguous
        return _share(int(np.trace(sure)), int(sure.sum()))

    @property
    def recall(self) -> np.ndarray:
        """Per labelled class, the share predicted as it (NaN for a class
        with no spectrum here)."""
        return _shares(np.diag(self.confusion), self.confusion.sum(1))

    @property
    def precision(self) -> np.ndarray:
        """Per predicted class, the share labelled as it (NaN for a class
        never predicted)."""
        return _shares(np.diag(self.confusion), self.confusion.sum(0))

    def report(self) -> dict:
        """Everything counted, as JSON types (``None`` for a share of nothing)."""
        names = [str(c) for c in self.classes]
        return {
            "spectra": self.scored + int(self.unread.sum()),
            "scored": self.scored,
            "correct": self.correct,
            "unread": int(self.unread.sum()),
            "classes": names,
            "accuracy": _json(self.accuracy),
            "unambiguous_accuracy": _json(self.unambiguous_accuracy),
            "ambiguous": int(self.ambiguous.sum()),
            "ambiguous_errors": int(self.ambiguous.sum() - np.trace(self.ambiguous)),
            "confusion": self.confusion.tolist(),
            "confusion_ambiguous": self.ambiguous.tolist(),
            "per_class": {n: {"labelled": int(self.confusion[i].sum()),
                              "predicted": int(self.confusion[:, i].sum()),
                              "recall": _json(self.recall[i]),
                              "precision": _json(self.precision[i]),
                              "unread": int(self.unread[i])}
                          for i, n in enumerate(names)},
            "bins": [{"points": [int(a), int(b)], "accuracy": _json(here),
                      "accuracy_at_training": _json(then), "weight": float(w),
                      "on_axis": None if self.bins_on_axis is None else self.bins_on_axis[i]}
                     for i, ((a, b), here, then, w) in enumerate(zip(self.bins, self.bin_accuracy,
                                                                     self.bin_accuracy_at_training,
                                                                     self.weights))],
        }

    def lines(self) -> list[str]:
        """The report as text (:func:`report_lines`)."""
        return report_lines(self.report())


def headline(r: dict) -> list[str]:
    """Of a :meth:`Evaluation.report`: the accuracy, what the ambiguous flag
    caught, the spectra not classified -- each a line where it says something."""
    errors = r["scored"] - r["correct"]
    out = [f"accuracy {_pct(r['accuracy'])} ({r['correct']} of {r['scored']} spectra)"]
    if r["ambiguous"]:
        caught = f"holding {r['ambiguous_errors']} of the {errors} errors" if errors else "none wrong"
        out.append(f"flagged ambiguous: {r['ambiguous']} ({caught}); the {r['scored'] - r['ambiguous']} "
                   f"others: {_pct(r['unambiguous_accuracy'])} right")
    if r["unread"]:
        out.append(f"not classified (NaN or inf, or flat; not counted above): {r['unread']}")
    return out


def confusion_rows(r: dict) -> list[list[str]]:
    """The confusion matrix as rows of text: a class, its counts, its
    recall; last the precision of each class."""
    per = r["per_class"]
    rows = [[n, *map(str, counts), _pct(per[n]["recall"])]
            for n, counts in zip(r["classes"], r["confusion"])]
    return rows + [["precision", *(_pct(per[n]["precision"]) for n in r["classes"]), ""]]


def _with_spans(r: dict) -> bool:
    """Whether the report's bins carry their span on the model's axis (a model with one)."""
    return bool(r["bins"]) and r["bins"][0].get("on_axis") is not None


def bin_rows(r: dict) -> list[list[str]]:
    """Each bin as text: its points (and its span on the model's axis), its
    accuracy at training and here, its weight."""
    return [[f"{b['points'][0]}-{b['points'][1]}", *([axis_span(b["on_axis"])] if _with_spans(r) else []),
             _num(b["accuracy_at_training"]), _num(b["accuracy"]), f"{b['weight']:.3f}"] for b in r["bins"]]


def bin_header(r: dict) -> list[str]:
    """The titles of :func:`bin_rows`' columns."""
    return ["bin (points)", *(["on the axis"] if _with_spans(r) else []), "accuracy at training", "here", "weight"]


def report_lines(r: dict) -> list[str]:
    """A :meth:`Evaluation.report` as text: :func:`headline`, the confusion
    matrix (rows labelled, columns predicted) and the bins, in columns."""
    return (headline(r) + ["rows: labelled, columns: predicted"]
            + columns([["", *r["classes"], "recall"], *confusion_rows(r)], indent="  ")
            + columns([bin_header(r), *bin_rows(r)]))


def columns(rows: list[list[str]], indent: str = "") -> list[str]:
    """Rows of text in columns: the first left-aligned, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "   ".join([row[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(row[1:], widths[1:]))])
            .rstrip() for row in rows]


def evaluate(clf, X, y, axis=None, chunk: int = 32768) -> Evaluation:
    """Classify the labelled spectra ``X`` (labels ``y``, classes of
    ``clf``) and count what came out (:class:`Evaluation`). ``axis``: the
    positions of ``X``'s points where they are not the model's, as for
    ``predict``. ``chunk`` spectra are classified at a time (each bin's
    vote is kept for that many, 8 bytes each)."""
    classes = clf.classes_
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise SpectraError(f"{len(X)} spectra need as many labels, not {y.shape}")
    if not len(y):
        raise SpectraError("no labelled spectra to evaluate on")
    known = np.isin(y, classes)
    if not known.all():
        strange = ", ".join(map(str, np.unique(y[~known])[:10]))
        raise SpectraError(f"labels not among the model's classes: {strange} (its classes: "
                           f"{', '.join(map(str, classes))})")
    order = np.argsort(classes)
    truth = order[np.searchsorted(classes[order], y)]
    bin_right = np.zeros(len(clf.bins_), np.int64)
    predicted = np.full(len(y), -1, np.intp)
    confidence = np.full(len(y), np.nan)
    flags = np.zeros(len(y), bool)
    for start in range(0, len(y), chunk):
        pred, conf, flagged, ok, votes = clf.classify_batch(X[start:start + chunk], axis,
                                                            return_bin_votes=True)
        rows = start + np.flatnonzero(ok)
        predicted[rows], confidence[rows], flags[rows] = pred[ok], conf[ok], flagged[ok]
        bin_right += (votes[ok] == truth[rows, None]).sum(0)
    scored = int((predicted >= 0).sum())
    bin_accuracy = bin_right / scored if scored else np.full(len(bin_right), np.nan)
    return Evaluation(classes=classes, truth=truth, predicted=predicted, confidence=confidence,
                      flagged=flags, bins=np.asarray(clf.bins_), bin_accuracy=bin_accuracy,
                      bin_accuracy_at_training=np.asarray(clf.separability_, np.float64),
                      weights=np.asarray(clf.weights_, np.float64), bins_on_axis=bins_on_axis(clf))


def evaluate_labelled(clf, data, labels, dataset=None, source=None, key=None, **read):
    """:func:`evaluate` on the labelled spectra of ``data`` (a file or a
    run), named as for training (:func:`.datafiles.load_labelled`; ``read``:
    its other options), one class enough: ``(Evaluation, X, origins, note)``,
    ``note`` saying where they may be among those the model was trained
    with (:func:`trained_here`)."""
    from .datafiles import labelled_from, load_labelled

    X, y, axis, origins = load_labelled(data, labels, dataset=dataset, source=source, key=key,
                                        min_labels=1, return_origins=True, **read)
    # a model fitted without an axis reads spectra on its own points only
    result = evaluate(clf, X, y, axis=axis if clf.axis_ is not None else None)
    note = trained_here(clf.trained_on_, labelled_from(data, labels, dataset, source, key))
    return result, X, origins, note


def mistaken_spectra(result: Evaluation, origins, limit: int | None = None) -> list[dict]:
    """The first ``limit`` (all: None) of ``result.mistaken`` as JSON types:
    where each was read (``row`` of a file, or ``train_id`` and ``pulse`` of
    a run: ``origins``, a :class:`.datafiles.Origins`), its ``labelled``
    class, and the ``predicted`` one, its ``confidence`` and whether
    ``ambiguous`` -- each None where the spectrum was not classified."""
    names = [str(c) for c in result.classes]
    out = []
    for i in result.mistaken[:limit]:
        place = ({"train_id": int(origins.trains[i]), "pulse": int(origins.pulses[i])}
                 if origins.trains is not None else {"row": int(origins.rows[i])})
        read = result.predicted[i] >= 0
        out.append({**place, "labelled": names[result.truth[i]],
                    "predicted": names[result.predicted[i]] if read else None,
                    "confidence": float(result.confidence[i]) if read else None,
                    "ambiguous": bool(result.flagged[i]) if read else None})
    return out


def trained_here(trained_on: dict | None, here: dict) -> str | None:
    """A sentence where the labelled spectra ``here``
    (:func:`.datafiles.labelled_from`) may be among those the model was
    trained with (its ``trained_on_``): the same data, and label ranges that
    overlap (or a label dataset on either side); else None."""
    import os

    from .datafiles import parse_ranges

    if not trained_on or not isinstance(trained_on.get("labels"), list):
        return None
    if os.path.realpath(str(trained_on.get("data"))) != os.path.realpath(here["data"]):
        return None
    if any(trained_on.get(k) != here.get(k) for k in ("dataset", "source", "key")):
        return None
    then, now = trained_on["labels"], here["labels"]
    said = " ".join(map(str, then))
    if any(str(spec).startswith("@") for spec in (*then, *now)):
        return (f"the model was trained with labelled spectra of this same data ({said}): those among "
                "these score as if held out, and are not")
    try:
        shared = sum(max(0, min(b1, b2) - max(a1, a2))
                     for _, a1, b1 in parse_ranges(then, 1) for _, a2, b2 in parse_ranges(now, 1))
    except SpectraError:  # ranges kept by a model are not ours to refuse
        return None
    unit = "train ids" if here.get("source") else "rows"
    return (f"{shared} of these labelled {unit} were labelled for training this model too ({said}): "
            "its accuracy on their spectra is not held-out") if shared else None


def _share(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def _shares(part, whole) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(whole > 0, part / np.maximum(whole, 1), np.nan)


def _json(v):
    return None if v is None or not np.isfinite(v) else float(v)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"
