"""Every spectrum of an HDF5/NeXus file classified by a fitted model
(``daas spectra predict``): the files ``train`` and ``evaluate`` read -- a
scan integrated by pyFAI, a temperature ramp -- labelled row by row, a
block of rows at a time, so that a file of any size is classified in the
memory of one block.

A spectrum the model cannot classify (NaN or inf at points it reads, flat)
is counted, not classified, as the stream counts it; where the same points
are NaN or inf in every such spectrum, they are named, for ``mask_points``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .datafiles import file_axis, open_spectra
from .errors import SpectraError
from .inputs import point_runs, unread_points

__all__ = ["PredictedRows", "PredictionTally", "predict_file", "BLOCK_BYTES"]

#: bytes of spectra classified at a time: 4,174 rows of 4,020 float32 points. 100,000 such
#: spectra took 1.3-1.7 s at 2,048-4,096 rows a block, 390 MB resident, and 4.7 s, 1.27 GB
#: at 32,768 (the whole process; a model of 7 bins)
BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class PredictedRows:
    """One block of a file's rows classified; ``predicted`` -1, the others
    NaN (``ambiguous`` False) where a spectrum was not classified."""

    rows: np.ndarray  # the file's rows
    predicted: np.ndarray  # class index into the model's classes_
    confidence: np.ndarray
    ambiguous: np.ndarray
    probability: np.ndarray  # (n, K), classes_ order
    unread_points: np.ndarray | None  # on the model's points: NaN or inf in every spectrum not classified


def predict_file(clf, path, dataset=None, axis_dataset=None, block: int | None = None):
    """Yield :class:`PredictedRows` for every ``block`` rows (default:
    :data:`BLOCK_BYTES` of them) of the spectra of ``path`` (``dataset``, or
    the one found as for training), read through the file's axis where the
    model has one (``axis_dataset``, default its NeXus axis), as
    :func:`.evaluation.evaluate_labelled` reads them."""
    with open_spectra(path, dataset) as (f, dset, nexus_axis):
        block = block or max(1, BLOCK_BYTES // (dset.shape[1] * dset.dtype.itemsize))
        axis = file_axis(f, dset, nexus_axis, axis_dataset)
        if clf.axis_ is None and not axis_dataset:
            axis = None  # a model fitted without an axis reads spectra on its own points only
        plan = None if axis is None or np.array_equal(axis, clf.axis_) else clf.axis_plan(axis)
        for start in range(0, dset.shape[0], block):
            try:
                X = dset[start:start + block]
            except OSError as e:  # a chunk HDF5 cannot read back: a damaged or cut copy
                raise SpectraError(f"cannot read rows {start}-{min(start + block, dset.shape[0]) - 1} of "
                                   f"{dset.name} in {path} (a damaged file?): {e}") from None
            idx, conf, amb, ok, P = clf.classify_batch(X, axis=axis, return_proba=True)
            points = None
            if not ok.all():
                unread = X[~ok]
                points = unread_points(unread if plan is None else plan(unread), clf.bridged_points_)
            yield PredictedRows(rows=np.arange(start, start + len(X)), predicted=np.where(ok, idx, -1),
                                confidence=np.where(ok, conf, np.nan), ambiguous=ok & amb,
                                probability=np.where(ok[:, None], P, np.nan), unread_points=points)


class PredictionTally:
    """What :func:`predict_file` gave, counted block by block: spectra,
    mean confidence and ambiguous per class, the spectra not classified
    (the first ten rows, and the points NaN or inf in every one of them)."""

    def __init__(self, classes):
        self.classes = np.asarray(classes)
        k = len(self.classes)
        self.counts, self.ambiguous = np.zeros(k, np.int64), np.zeros(k, np.int64)
        self.confidence = np.zeros(k)
        self.unread, self.unread_rows = 0, []
        self.unread_points: np.ndarray | None = None  # None until a spectrum NaN or inf was met

    def add(self, b: PredictedRows) -> None:
        ok = b.predicted >= 0
        k = len(self.classes)
        self.counts += np.bincount(b.predicted[ok], minlength=k)
        self.ambiguous += np.bincount(b.predicted[ok & b.ambiguous], minlength=k)
        self.confidence += np.bincount(b.predicted[ok], weights=b.confidence[ok], minlength=k)
        if ok.all():
            return
        self.unread += int((~ok).sum())
        self.unread_rows += b.rows[~ok][:10 - len(self.unread_rows)].tolist()
        if b.unread_points is not None:  # None: only flat spectra in the block
            self.unread_points = (b.unread_points if self.unread_points is None
                                  else np.intersect1d(self.unread_points, b.unread_points))

    def report(self) -> dict:
        """As JSON types: ``spectra``, ``classified``, ``per_class`` (spectra,
        mean confidence, ambiguous), ``unread``, ``unread_rows`` (the first
        ten), ``unread_points`` (NaN or inf in every spectrum not
        classified, where there are such: else None)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.confidence / self.counts
        points = self.unread_points if self.unread_points is not None and self.unread_points.size else None
        return {"spectra": int(self.counts.sum()) + self.unread, "classified": int(self.counts.sum()),
                "classes": [str(c) for c in self.classes],
                "per_class": {str(c): {"spectra": int(n), "mean_confidence": None if not n else float(m),
                                       "ambiguous": int(a)}
                              for c, n, m, a in zip(self.classes, self.counts, mean, self.ambiguous)},
                "unread": self.unread, "unread_rows": self.unread_rows,
                "unread_points": None if points is None else points.tolist()}

    def lines(self) -> list[str]:
        """The report as text: a table of the classes, then the spectra not
        classified and, where they share them, their points with the remedy."""
        from .evaluation import columns

        r = self.report()
        total = r["spectra"]
        rows = [["class", "spectra", "share", "mean confidence", "ambiguous"]]
        for name, c in r["per_class"].items():
            rows.append([name, str(c["spectra"]), f"{100 * c['spectra'] / total:.1f} %" if total else "-",
                         "-" if c["mean_confidence"] is None else f"{c['mean_confidence']:.3f}",
                         str(c["ambiguous"])])
        out = columns(rows)
        if r["unread"]:
            out.append(f"not classified (NaN or inf at points the model reads, or flat): {r['unread']} "
                       f"(rows {r['unread_rows']}{', ...' if r['unread'] > len(r['unread_rows']) else ''})")
        if r["unread_points"]:
            points = np.asarray(r["unread_points"])
            out.append(f"{point_runs(points)} NaN or inf in every spectrum not classified; if the detector "
                       f"masks them since training: --mask-points {point_runs(points, spec=True)}")
        return out
