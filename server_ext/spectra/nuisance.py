"""Which peak movement is nuisance and which is signal, learnt from the labels.

The training copies get a random strain and shift so that the bin networks
ignore thermal drift and calibration offsets. That is wrong when two classes
differ *by* a peak movement (the same structure in a 1 % larger cell): the
copies would teach every bin that such a movement means nothing. So before
augmenting, the labelled spectra are asked, for each pair of classes:

1. Where do the class profiles differ beyond their noise (``signal`` windows,
   a third of a bin wide)?
2. Does one smooth displacement field (offset, strain, quadratic and cubic
   terms, fitted robustly to the windows' best translations, then corrected
   locally by up to 3 points or a tenth of the displacement; held within
   the translations searched) explain the difference of the class profiles
   (per-point medians over the members) in *every* window of a sixth of a
   bin (but those that take more than a quarter of their points from past
   the axis' ends, where nothing was measured), to within ``PATTERN`` times
   the noise or 3 % of the window's signal? A window left with a difference (a
   weak peak that appears, a peak that vanishes) means the classes differ
   by pattern: the position need not be protected, and full augmentation
   keeps the robustness.
3. Is the displacement between the classes well beyond the spread of the
   displacements within each class (drift along the series)? If not,
   position is drift, not signal. When something is left after moving,
   below ``PATTERN`` but above the noise threshold (a weak peak may hide
   there), the displacement must also be at least ``MIN_RATIO`` of what
   the augmentation would do; when nothing is left, the labels say the
   classes differ and position is all that differs, so any displacement
   beyond the within-class spread is signal.

A pair that passes all three is *separated by position*; the copies of both
classes are then moved *towards each other* by at most ``SAFETY`` times the
displacement between them (window by window: a strain moves high angles
further), and away from each other by the full strain and shift: drift
away from the other class cannot confuse them, and the test spectra of a
class may well lie farther out than its labelled ones. Classes in no such
pair keep the full augmentation. The offset term and the local
corrections make this hold on any axis (2-theta, q, or point index with an
unknown origin).

Points declared ``fixed`` hold something that does not move with the
sample (a peak of the sample environment, a hot or dead pixel): it is the
same in every class and stays where it is while the class's peaks move,
so moving one profile onto the other would leave it twice, once where it
is and once where the displacement took it, and the pair would pass for
one that differs by pattern. Windows that hold such points, or take them
from where the displacement moves them, are neither fitted nor judged.
Hot and dead pixels are such points too, found without being declared
(:mod:`.bad_pixels`), bridged over and passed in with those.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from .augment import increasing_axis, noise_gain

__all__ = ["PositionTolerance", "position_tolerance", "profiles"]

#: copies of position-separated classes move by at most this fraction of
#: the displacement between the classes
SAFETY = 0.35
#: a difference is real beyond this many standard deviations of the noise ...
SIGMAS = 6.0
#: ... and beyond this fraction of the window's signal energy (alignment error)
MODEL_ERROR = 0.03
#: after moving, a window left with this many times that much difference
#: says the classes differ by pattern (a weak peak of 3 % gives 3-15 on the
#: powder series, the residue of a pure cell change 0.05-1.8)
PATTERN = 2.5
#: between-class displacement must exceed the within-class spread this many times
SPREAD_RATIO = 2.5
#: ... and be at least this fraction of the augmentation's reach: a smaller
#: movement is within what drift and calibration do anyway
MIN_RATIO = 0.3
_MAX_STRAIN = 0.04  # largest relative displacement searched
_PAST_THE_END = 0.25  # largest share of a window the displacement may take from past the axis
_SMOOTH = 1.0  # Gaussian smoothing of the profiles (points)
_CORRELATION = 2.0 * np.sqrt(np.pi) * _SMOOTH  # points per independent noise value


@dataclasses.dataclass
class PositionTolerance:
    """Per class, the fraction (0..1] of the configured strain and shift its
    training copies get towards lower positions (``lower``) and towards
    higher ones (``upper``): a class separated by position from another is
    moved by only a fraction of the displacement *towards* it, and fully
    away from it. ``scale``: the smaller of the two. ``pairs``: one dict per
    class pair examined, saying what was found (``separated_by``:
    ``"position"``, ``"pattern"``, ``"drift"`` or ``"nothing"``;
    ``between``/``within``: displacements in points)."""

    lower: np.ndarray
    upper: np.ndarray
    pairs: list

    @property
    def scale(self) -> np.ndarray:
        return np.minimum(self.lower, self.upper)

    @classmethod
    def full(cls, n_classes: int) -> "PositionTolerance":
        """Every movement is nuisance for every class."""
        return cls(np.ones(n_classes), np.ones(n_classes), [])


def profiles(X, width, unit_sum=True):
    """Baseline-free, smoothed, unit-sum profiles and their noise variance
    per point (Poisson-like noise, gain measured per spectrum; used for a
    class of a single spectrum). ``unit_sum=False``: the profiles keep
    their intensity (the variance is then meaningless)."""
    from scipy.ndimage import gaussian_filter1d, minimum_filter1d, uniform_filter1d

    X = np.asarray(X, np.float64)
    gain = noise_gain(X).astype(np.float64)
    Xs = gaussian_filter1d(X, _SMOOTH, axis=1)
    base = uniform_filter1d(minimum_filter1d(Xs, width, axis=1), width, axis=1)
    Y = np.maximum(Xs - base, 0.0)
    total = np.maximum(Y.sum(1, keepdims=True), 1e-12) if unit_sum else 1.0
    var = gain[:, None] * np.maximum(Xs, 0.0) / (_CORRELATION * total * total)
    return Y / total, var


def _mean_variance(members, poisson_var):
    """Variance per point of a class's median profile: measured between the
    members when there are two or more (it then includes their drift),
    else from the Poisson-like noise model; smoothed over a few points."""
    from scipy.ndimage import uniform_filter1d

    n = len(members)
    v = members.var(0, ddof=1) / n if n > 1 else poisson_var.sum(0) / n ** 2
    if n > 2:
        v *= np.pi / 2  # the variance of a median
    return uniform_filter1d(v, 9)


def _shifted(b, shifts):
    """``b`` translated by each of ``shifts`` points (linear interpolation;
    edges held): (n_shifts, n_points)."""
    idx = np.arange(len(b), dtype=np.float64)
    return np.stack([np.interp(idx - u, idx, b) for u in shifts])


def _window_sums(E, edges):
    return np.add.reduceat(E, edges[:-1], axis=-1)


def _best_shifts(a, b, edges, max_shift):
    """Per window, the whole-point translation of ``b`` that best matches
    ``a``."""
    coarse = np.arange(-np.ceil(max_shift), np.ceil(max_shift) + 1.0)
    R = _window_sums((a[None] - _shifted(b, coarse)) ** 2, edges)
    return coarse[R.argmin(0)]


def _displacement_model(u, centre, weights, strain_axis):
    """A smooth displacement field through the windows' translations ``u``
    (points) at ``centre``: offset + strain + quadratic and cubic terms
    (``strain_axis``: points moved per unit strain; the higher terms
    follow a cell change on a 2-theta axis, where high angles move more),
    fitted by weighted least squares with outlying windows (a peak matched
    to another) left out. Returns the field at every point."""
    x = strain_axis / np.abs(strain_axis).max()
    A = np.stack([np.ones_like(x), x, x * x, x * x * x], 1)
    keep = np.ones(len(u), bool)
    for _ in range(3):
        sw = np.sqrt(weights * keep)
        coef = np.linalg.lstsq(A[centre] * sw[:, None], u * sw, rcond=None)[0]
        keep = np.abs(A[centre] @ coef - u) <= max(2.0, 0.1 * np.abs(u).max())
    return A @ coef


def _refine_reach(model_shift):
    """How far (points) the refinement looks around the displacement model:
    3 points, or a tenth of the displacement."""
    return np.maximum(3.0, 0.1 * np.abs(model_shift))


def _refined_residual(a, b, edges, model_shift):
    """Per (fine) window, the residual energy left after the best
    translation within 3 points (or a tenth of the displacement) of the
    displacement model."""
    out = np.empty(len(edges) - 1)
    for w, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        reach = float(_refine_reach(model_shift[w]))
        fine = np.linspace(-reach, reach, 2 * int(np.ceil(5 * reach)) + 1)
        moved = _shifted(b, model_shift[w] + fine)[:, lo:hi]
        out[w] = ((a[lo:hi][None] - moved) ** 2).sum(1).min()
    return out


def _moved_from_inside(field, edges, centre):
    """Per (fine) window, whether the displacement model takes at most
    :data:`_PAST_THE_END` of its points from past the axis' ends, where the
    moved profile holds its end value: no measurement (a peak that the
    displacement brings in from beyond the end is missing there)."""
    source = np.arange(len(field)) - np.repeat(field[centre], np.diff(edges))
    outside = (source < 0) | (source > len(field) - 1)
    return np.add.reduceat(outside, edges[:-1]) <= _PAST_THE_END * np.diff(edges)


def _smooth_level(difference, width):
    """The smooth level of a difference of profiles: its running median
    over a bin (peaks, weak ones too, are narrower and do not move it)."""
    from scipy.ndimage import median_filter

    return median_filter(difference, size=max(3, int(width)), mode="nearest")


def _level_and_scale(a, moved, width):
    """The smooth level by which ``a`` exceeds ``moved`` and the one scale
    of ``moved`` that best matches ``a`` less that level."""
    scale = 1.0
    for _ in range(2):
        level = _smooth_level(a - scale * moved, width)
        scale = float(np.dot(a - level, moved) / max(np.dot(moved, moved), 1e-300))
    return level, scale


def _weighted_median(values, weights):
    order = np.argsort(values)
    c = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(c, 0.5 * c[-1])])


class _Windows(NamedTuple):
    """Where the profiles of a pair are compared: ``edges``/``centre`` of
    the coarse windows (a third of a bin), ``fine_edges``/``fine_centre``
    of the fine ones (half as wide); ``strain_axis``: points moved per unit
    strain about the axis origin; ``reach``: how far the augmentation moves
    each point (strain plus shift); ``max_shift``: the largest translation
    searched."""

    edges: np.ndarray
    centre: np.ndarray
    fine_edges: np.ndarray
    fine_centre: np.ndarray
    strain_axis: np.ndarray
    reach: np.ndarray
    max_shift: float
    fixed: np.ndarray


def _windows(axis, p, width, strain, shift, fixed=None) -> _Windows:
    pos = increasing_axis(axis, p)
    step = np.gradient(pos)
    strain_axis = pos / step
    n_windows = int(np.clip(round(3 * p / max(width, 1)), 4, 200))

    def cut(n):
        edges = np.linspace(0, p, n + 1).round().astype(np.intp)
        return edges, (0.5 * (edges[:-1] + edges[1:])).astype(np.intp)

    return _Windows(*cut(n_windows), *cut(2 * n_windows), strain_axis,
                    strain * np.abs(strain_axis) + shift,
                    min(_MAX_STRAIN * float(np.max(np.abs(pos) / step)), 0.25 * p),
                    np.zeros(p, bool) if fixed is None else np.asarray(fixed, bool))


def position_tolerance(X, y_idx, n_classes, axis, width, strain, shift,
                       fixed=None) -> PositionTolerance:
    """Estimate which class pairs are separated by peak position (see the
    module doc). ``X``: labelled spectra; ``width``: points per bin;
    ``strain``, ``shift``: the configured augmentation half-ranges (relative;
    points); ``fixed``: optional boolean mask of the points whose features
    do not move with the sample (declared, and hot and dead pixels).
    Returns the per-class scale of that augmentation."""
    windows = _windows(axis, X.shape[1], width, strain, shift, fixed)
    prof, var = profiles(X, max(3, int(width)))
    members = [prof[y_idx == c] for c in range(n_classes)]
    # per-point medians: members near a transition hold some of the next
    # phase, which must not pass for a difference between the two classes
    means = np.stack([np.median(m, axis=0) for m in members])
    mean_var = np.stack([_mean_variance(members[c], var[y_idx == c]) for c in range(n_classes)])

    lower, upper = np.ones(n_classes), np.ones(n_classes)
    pairs = []
    for c in range(n_classes):
        for d in range(c + 1, n_classes):
            info, limit = _pair(c, d, means, mean_var[c] + mean_var[d], members, windows, width)
            pairs.append(info)
            if limit is None:
                continue
            # c's peaks lie above d's where the field is positive: c's copies
            # must not move down far, d's not up far; away is nuisance as ever
            c_above = info["higher"] == c
            for k, towards_lower in ((c, c_above), (d, not c_above)):
                side = lower if towards_lower else upper
                side[k] = min(side[k], limit)
    return PositionTolerance(np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0), pairs)


def _floor_and_threshold(a, b, f, edges):
    """Per window, the expected residual energy of noise alone (``f``: the
    pair's summed variance per point), and the least residual that says
    the classes differ there."""
    sigma = np.sqrt(2.0 * _CORRELATION * _window_sums(f * f, edges))
    energy = _window_sums(0.5 * (a * a + b * b), edges)
    return _window_sums(f, edges), np.maximum(SIGMAS * sigma, MODEL_ERROR * energy)


def _pair(c, d, means, f, members, w: _Windows, width):
    """The pair (c, d) decided: ``(info, limit)``, ``info`` as in
    :attr:`PositionTolerance.pairs`, ``limit`` the scale of the copies'
    movement towards each other where separated by position, else None."""
    a, b = means[c], means[d]
    info = {"classes": (c, d), "separated_by": "nothing", "between": 0.0, "within": 0.0}
    floor, threshold = _floor_and_threshold(a, b, f, w.edges)
    # a smooth level between the profiles (the baseline's residue follows
    # the background's counts, which drift along a series) marks no window
    # as one where the classes differ: else the field is fitted to the best
    # translations of flat stretches
    level = _smooth_level(a - b, width)
    r0 = _window_sums((a - b - level) ** 2, w.edges) - floor
    signal = (r0 > threshold) & ~_holds_fixed(w.fixed, w.edges)
    if not signal.any():
        return info, None
    # the displacement field, from coarse windows, robustly, and no farther
    # than the translations searched: beyond the windows it was fitted on a
    # cubic can run off by thousands of points (and the refinement, a tenth
    # of that around it, took minutes and 17 GB for one pair)
    field = np.clip(_displacement_model(_best_shifts(a, b, w.edges, w.max_shift), w.centre,
                                        np.where(signal, r0, 0.0), w.strain_axis),
                    -w.max_shift, w.max_shift)
    left = _left_after_moving(a, b, f, field, w, width)
    worst = int(np.argmax(left))
    # the largest difference left after moving, relative to what counts
    info.update(unexplained=float(left[worst]), at_point=int(w.fine_centre[worst]))
    if left[worst] > PATTERN:
        info["separated_by"] = "pattern"
        return info, None
    u = np.abs(field[w.centre])
    weights = r0[signal]
    between = _weighted_median(u[signal], weights)
    within = max(_within_spread(members[k], means[k], w.edges, signal, weights,
                                2.0 * between + 2.0) for k in (c, d))
    info.update(between=between, within=within)
    ratio = _weighted_median(u[signal] / w.reach[w.centre[signal]], weights)
    # nothing at all left after moving: the labels call the classes
    # different and position is the only thing that differs, so it is
    # signal however small (a net cell change of a few tenths of a
    # percent); MIN_RATIO guards only the undecided band, where a weak peak
    # may hide in the noise
    only_position = left[worst] <= 1.0
    if between <= SPREAD_RATIO * within or (ratio < MIN_RATIO and not only_position):
        info["separated_by"] = "drift"
        return info, None
    info["separated_by"] = "position"
    info["higher"] = c if _weighted_median(field[w.centre][signal], weights) > 0 else d
    return info, SAFETY * ratio


def _left_after_moving(a, b, f, field, w: _Windows, width):
    """Per fine window, the difference left once ``b`` is moved by
    ``field`` and a small local correction, relative to the threshold."""
    floor, threshold = _floor_and_threshold(a, b, f, w.fine_edges)
    # that level, and an overall scale (the unit sum includes the level),
    # are no pattern: the bin networks remove a baseline and normalise too
    idx = np.arange(len(a), dtype=np.float64)
    level, scale = _level_and_scale(a, np.interp(idx - field, idx, b), width)
    res = _refined_residual(a - level, scale * b, w.fine_edges, field[w.fine_centre])
    # a window where neither profile has signal or noise (zero background,
    # a detector gap) has no threshold: empty if nothing is left there, else
    # a difference beyond any threshold
    excess = res - floor
    left = np.divide(excess, threshold, out=np.where(excess > 0, np.inf, 0.0),
                     where=threshold > 0)
    # a window that takes points from past the axis' ends says nothing either
    # way, nor one where a fixed feature is or is moved to
    judged = _moved_from_inside(field, w.fine_edges, w.fine_centre) \
        & ~_near_fixed(w.fixed, w.fine_edges, field[w.fine_centre])
    return np.where(judged, left, 0.0)


def _holds_fixed(fixed, edges):
    """Per window, whether it holds a point declared fixed."""
    return _window_sums(fixed, edges) > 0


def _near_fixed(fixed, edges, shift):
    """Per window, whether it holds a fixed point or takes one from where
    the displacement ``shift`` (points; give or take the refinement's
    reach) moves its points from."""
    at = np.flatnonzero(fixed)
    if not len(at):
        return np.zeros(len(edges) - 1, bool)
    reach = _refine_reach(shift)
    lo, hi = edges[:-1], edges[1:]
    moved = np.searchsorted(at, lo - shift - reach) < np.searchsorted(at, hi - shift + reach)
    return _holds_fixed(fixed, edges) | moved


def _within_spread(members, mean, edges, signal, weights, max_shift):
    """The 90th percentile over members of their displacement from the
    class mean (weighted median over the signal windows), in points."""
    if len(members) < 2:
        return 0.0
    shifts = np.arange(-np.ceil(max_shift), np.ceil(max_shift) + 0.5, 0.5)
    moved_mean = _shifted(mean, shifts)
    spread = []
    for m in members:
        R = _window_sums((m[None] - moved_mean) ** 2, edges)[:, signal]
        spread.append(_weighted_median(np.abs(shifts[R.argmin(0)]), weights))
    return float(np.percentile(spread, 90))
