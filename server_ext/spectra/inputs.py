"""Checks of what users pass in: spectra, labels and numeric parameters.
Each failure is a :class:`SpectraError` that says what to do."""

from __future__ import annotations

import numbers

import numpy as np

from .errors import SpectraError

__all__ = ["as_spectra", "as_labels", "as_fixed_ranges", "check_number", "fixed_points",
           "masked_points", "unread_points", "point_indices", "parse_points", "point_runs", "at_most_per_class",
           "INT_PARAMS", "REAL_PARAMS"]


def as_spectra(X, what="X"):
    """``X`` as a non-empty 2-D numeric array (n_spectra, n_points)."""
    try:
        X = np.asarray(X)
    except Exception as e:  # ragged lists and the like
        raise SpectraError(f"{what} must be a 2-D array of spectra (n_spectra, n_points): {e}")
    if X.ndim == 1:
        raise SpectraError(f"{what} has one dimension; pass spectra as rows of a 2-D "
                           "array, e.g. X.reshape(1, -1) for a single spectrum")
    if X.ndim != 2:
        raise SpectraError(f"{what} must be 2-D (n_spectra, n_points), got shape {X.shape}")
    if X.dtype.kind not in "fiub":
        raise SpectraError(f"{what} must be numeric, got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise SpectraError(f"{what} holds no spectra")
    return X


def masked_points(X) -> np.ndarray:
    """The points of the labelled spectra ``X`` non-finite in every one --
    pixels the detector masks, as NaN -- or a clear error where a spectrum
    is non-finite at a point that others read."""
    finite = np.isfinite(X)
    if finite.all():
        return np.zeros(0, np.intp)
    read = finite.any(0)
    if not read.any():
        raise SpectraError("every labelled spectrum is NaN or inf at every point")
    bad = np.flatnonzero(~finite[:, read].all(1))
    if bad.size:
        points = np.flatnonzero(read & ~finite.all(0))
        raise SpectraError(
            f"{len(bad)} labelled spectra contain NaN or inf at points that other "
            f"labelled spectra read (rows {bad[:10].tolist()}, points "
            f"{points[:10].tolist()}); remove or repair them (a point NaN in every "
            "labelled spectrum, a masked pixel, is bridged over)", rows=bad)
    return np.flatnonzero(~read)


def unread_points(X, bridged) -> np.ndarray | None:
    """The points non-finite in every spectrum of ``X`` that has NaN or inf
    (a detector that masks them since the model was fitted), less the
    model's ``bridged`` points; None where no spectrum has any. A spectrum
    NaN at every point is a pulse without data, not a mask: left out."""
    finite = np.isfinite(X)
    broken = ~finite.all(1) & finite.any(1)
    if not broken.any():
        return None
    return np.setdiff1d(np.flatnonzero(~finite[broken].any(0)), bridged)


def point_indices(points, n_points) -> np.ndarray:
    """``points`` (an index or indices of points, 0 to ``n_points`` - 1) as a
    sorted array without repeats; anything else is refused -- a negative
    index too, which would silently count from the end."""
    values = np.asarray(points, dtype=object).reshape(-1)
    if any(not isinstance(v, numbers.Integral) or isinstance(v, (bool, np.bool_))
           for v in values):
        raise SpectraError(f"points must be point indices (integers), not {points!r}")
    values = np.unique(values.astype(np.int64))
    outside = values[(values < 0) | (values >= n_points)]
    if outside.size:
        raise SpectraError(f"points {outside[:10].tolist()} lie outside the spectra's points "
                           f"0-{n_points - 1}")
    return values.astype(np.intp)


#: more points than any detector's spectrum has
_MAX_POINTS = 10_000_000


def parse_points(text: str, what: str = "points") -> list[int]:
    """"700,1000-1039" (indices and inclusive ranges) as point indices, the
    inverse of :func:`point_runs`; ``what`` names the field in errors."""
    points = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            low, high = int(low), int(high if dash else low)
        except ValueError:
            raise SpectraError(f"{what} {text!r}: give point indices and ranges, "
                               "e.g. 700,1000-1039") from None
        if high < low:
            raise SpectraError(f"{what} {text!r}: the range {part.strip()} runs backwards")
        if high - low >= _MAX_POINTS:  # a typo, not a detector: refused before it is listed
            raise SpectraError(f"{what} {text!r}: the range {part.strip()} holds more points "
                               "than any spectrum")
        points.extend(range(low, high + 1))
    return points


def point_runs(points, spec=False) -> str:
    """Point indices as runs, e.g. "points 7, 100-139"; ``spec``: as
    :func:`parse_points` reads them, "7,100-139"."""
    runs = []
    for p in map(int, points):
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    text = ("," if spec else ", ").join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
    return text if spec else ("points " if len(points) > 1 else "point ") + text


# parameters of BinnedSpectraClassifier: (name, smallest value, None allowed)
INT_PARAMS = [("n_bins", 1, False), ("max_bins", 1, True),
              ("hidden_units", 1, False), ("epochs", 1, False), ("batch_size", 1, False),
              ("augment_copies", 1, True), ("cv_folds", 2, False), ("verbose", 0, False),
              ("max_train_per_class", 1, True), ("denoise_below", 0, False)]
# (name, smallest, largest, None allowed)
REAL_PARAMS = [("max_overlap", 0.0, 1.0, False), ("learning_rate", 1e-12, None, False),
               ("strain", 0.0, 0.5, False), ("local_strain", 0.0, 0.1, False),
               ("split_variation", 0.0, 1.0, False),
               ("shift", 0.0, None, True),
               ("intensity", 0.0, 0.99, False), ("noise", 0.0, None, False),
               ("background", 0.0, None, False), ("background_drift", 0.0, 1.0, False),
               ("mixup", 0.0, None, False),
               ("ambiguity_threshold", 0.0, 1.0, False)]


def check_number(est, name, kind, lo, hi, optional):
    """``est.<name>`` is of ``kind`` (int or real), finite, in [lo, hi]."""
    value = getattr(est, name)
    if (value is None and optional) or (name == "verbose" and isinstance(value, bool)):
        return
    kind_name = "an int" if kind is numbers.Integral else "a number"
    if not isinstance(value, kind) or isinstance(value, (bool, np.bool_)):
        raise SpectraError(f"{name} must be {kind_name}{' or None' if optional else ''}, "
                           f"not {value!r} ({type(value).__name__})")
    if not np.isfinite(value) or value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise SpectraError(f"{name} must be {rng}, not {value!r}")


def as_labels(y, n):
    """Labels as a NumPy array of numbers, booleans or str (what ``save``
    can store): object arrays (pandas, lists of str) are converted, bytes
    decoded; missing labels (None, NaN) are refused."""
    try:
        y = np.asarray(y)
    except ValueError as e:
        raise SpectraError(f"y must be one label per spectrum: {e}")
    if y.ndim != 1 or len(y) != n:
        raise SpectraError(f"y must be 1-D with one label per spectrum: got shape "
                           f"{y.shape} for {n} spectra")
    if y.dtype.kind == "S":
        y = np.char.decode(y, "utf-8")
    elif y.dtype.kind == "O":
        values = y.tolist()
        missing = [i for i, v in enumerate(values) if v is None
                   or (isinstance(v, float) and v != v)
                   or type(v).__name__ in ("NAType", "NaTType")]  # pandas' missing values
        if missing:
            raise SpectraError(f"{len(missing)} labels are missing (None or NaN, rows "
                               f"{missing[:10]}); label every spectrum or leave it out")
        if all(isinstance(v, (str, bytes)) for v in values):
            y = np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=str)
        elif all(isinstance(v, (numbers.Number, np.generic)) and not isinstance(v, (str, bytes))
                 for v in values):
            y = np.array(values)
        else:
            kinds = sorted({type(v).__name__ for v in values})
            raise SpectraError(f"labels must be all strings or all numbers, got {kinds}")
    if y.dtype.kind == "f" and np.isnan(y).any():
        bad = np.flatnonzero(np.isnan(y))
        raise SpectraError(f"{len(bad)} labels are NaN (rows {bad[:10].tolist()}); label every "
                           "spectrum or leave it out")
    if y.dtype.kind not in "biufU":
        raise SpectraError(f"labels must be numbers or strings, got dtype {y.dtype}")
    return y


def at_most_per_class(y_idx, cap, rng) -> np.ndarray:
    """Indices of the labelled spectra kept where a class (``y_idx``: class
    index of each) has more than ``cap``: that many of each drawn at random
    by ``rng``, the rest all; in their order. ``cap`` None: every one."""
    counts = np.bincount(y_idx)
    if cap is None or not len(y_idx) or counts.max() <= cap:
        return np.arange(len(y_idx))
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y_idx == c), min(cap, k), replace=False)
                                   for c, k in enumerate(counts)]))


def as_fixed_ranges(ranges):
    """``fixed_ranges`` checked: None, or (low, high) pairs of finite
    numbers with low <= high; returned as a list of float pairs."""
    if ranges is None:
        return []
    try:
        pairs = [tuple(r) for r in ranges]
    except TypeError:
        pairs = None
    if pairs is None or any(len(r) != 2 for r in pairs) or any(
            not isinstance(v, numbers.Real) or isinstance(v, (bool, np.bool_)) or not np.isfinite(v)
            for r in pairs for v in r):
        raise SpectraError("fixed_ranges must be None or a list of (low, high) pairs of finite "
                           f"numbers on the axis, not {ranges!r}")
    bad = [r for r in pairs if r[0] > r[1]]
    if bad:
        raise SpectraError(f"fixed_ranges: low above high in {bad}; give each range as (low, high)")
    return [(float(lo), float(hi)) for lo, hi in pairs]


def fixed_points(ranges, axis, n_points):
    """The points inside ``fixed_ranges`` (both ends included) as a boolean
    mask, on ``axis`` (point indices where None). A range that holds no
    point is refused: it was meant for another axis."""
    pos = np.arange(n_points, dtype=np.float64) if axis is None else np.asarray(axis, np.float64)
    mask = np.zeros(n_points, bool)
    for lo, hi in as_fixed_ranges(ranges):
        inside = (pos >= lo) & (pos <= hi)
        if not inside.any():
            what = "the point indices, which run" if axis is None else "the axis, which runs"
            raise SpectraError(f"fixed range ({lo:g}, {hi:g}) holds no point: {what} from "
                               f"{pos.min():g} to {pos.max():g}")
        mask |= inside
    return mask
