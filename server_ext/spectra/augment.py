"""Training-set augmentation: noisy, strained, shifted, rescaled copies.

The published method trained on a handful of "extreme" labelled curves plus
noisy copies. Here each copy also gets a random peak-position strain (all
positions scaled about the axis origin, as a lattice-parameter change does),
a smaller strain that varies along the axis (reflections moving by
different amounts, as when a non-cubic cell expands anisotropically), split
pairs of peaks narrowed or widened with each peak redrawn (:mod:`.splits`,
in the spectra a peak model was fitted to: a tetragonal c/a falling on
heating), a small translation (detector/calibration offset), its own
background's level changed (air scatter and sample environment drift along
a series), a global intensity scale and a smooth added background, so that
the per-bin networks learn the class and not these nuisances. Noise is
Poisson-like, scaled from the noise measured in each labelled spectrum, so
no assumption about the detector's units is made; where a background or
pedestal was subtracted from the spectra, its noise stays at the low
levels, and the noise is that of the level plus an offset
(:func:`noise_offset`).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple, Optional

import numpy as np

from .errors import SpectraError

__all__ = ["noise_gain", "noise_offset", "augment", "mixup", "strain_field", "add_spikes"]

_CHUNK = 256  # copies perturbed at a time
_LEVEL_POINTS = 9  # running mean giving the local level of the noise gain
_OFFSET_BINS = 5  # level bins of the lower half of each spectrum's levels
#: an offset is taken where it explains the noise across those bins this
#: much better than counting noise alone (residual sums of squares)
OFFSET_GAIN = 0.5


def _second_differences(X):
    """Per point but the two ends: the second difference (for white noise
    of variance v, of variance 6 v) and the local level."""
    from scipy.ndimage import uniform_filter1d

    d2 = X[:, :-2] - 2.0 * X[:, 1:-1] + X[:, 2:]
    return d2, uniform_filter1d(X, _LEVEL_POINTS, axis=1, mode="nearest")[:, 1:-1]


def noise_offset(X) -> float:
    """The counts to add to the level for the noise of the spectra ``X``:
    0 for counting noise (variance proportional to the level), more where
    a background or pedestal was subtracted and its noise stayed
    (variance = gain x (level + offset)).

    In each spectrum the points of the lower half of its levels (its
    background: few peaks, whose curvature would pass for noise) are cut
    into :data:`_OFFSET_BINS` bins by level; the offset is the one under
    which the log of the noise variance minus the log of (level + offset)
    is most nearly constant in each spectrum, searched on a grid, and
    taken only where it makes the residual sum of squares
    :data:`OFFSET_GAIN` times that of no offset or less: counting noise
    gives none, whatever its level."""
    X = np.asarray(X, np.float64)
    n, p = X.shape
    per_bin = (p - 2) // 2 // _OFFSET_BINS
    if per_bin < 4:
        return 0.0
    d2, level = _second_differences(X)
    var = d2 * d2 / (6.0 * 0.4549)  # its median is the variance (median of chi2(1): 0.4549)
    low = np.argsort(level, axis=1)[:, :per_bin * _OFFSET_BINS]
    V, L = (np.median(np.take_along_axis(a, low, 1).reshape(n, _OFFSET_BINS, per_bin), axis=2)
            for a in (var, level))
    logV = np.log(np.maximum(V, 1e-12))
    scale = float(np.median(np.abs(L))) or 1.0
    grid = np.r_[0.0, scale * np.geomspace(1e-2, 1e2, 81)]
    r = logV[None] - np.log(np.maximum(L[None] + grid[:, None, None], 1e-12))
    r -= r.mean(axis=2, keepdims=True)
    sse = (r * r).sum(axis=(1, 2))
    best = int(sse.argmin())
    return float(grid[best]) if sse[best] <= OFFSET_GAIN * sse[0] else 0.0


def noise_gain(X: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Per spectrum, noise variance per unit of signal (1 for Poisson counts).

    Second differences cancel the smooth signal: for white noise
    ``var(x[i-1] - 2 x[i] + x[i+1]) = 6 var(x)``. Each squared second
    difference is divided by the local level (a running mean over a few
    points) before the median, so that the ratio of variance to level is
    measured point by point: a median of the variance over a spectrum with
    a high background on one side and almost none on the other, divided by
    the median level, read about half the true gain on powder patterns.
    Points without a positive level (a zero baseline, a detector gap) are
    left out; the median keeps peaks (curvature, not noise) out.
    ``offset``: counts added to the level (:func:`noise_offset`).
    """
    X = np.asarray(X, dtype=np.float32)
    d2, level = _second_differences(X + np.float32(offset) if offset else X)
    ratio = np.where(level > 0, d2 * d2 / (6.0 * np.where(level > 0, level, 1.0)), np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row with no positive level
        gain = np.nanmedian(ratio, axis=1) / 0.4549  # median of chi2(1) = 0.4549
    return np.nan_to_num(gain, nan=0.0).astype(np.float32)


def strain_shift(X, rows, pos, s, u=0.0, field=None):
    """``X[rows]`` resampled so that the feature at position x moves to
    ``x * (1 + s)`` and then by ``u`` points (linear interpolation; ``pos`` is
    an increasing axis, ``s`` and ``u`` one value per row); ``field``: an
    optional (rows, points) strain added point by point (see
    :func:`strain_field`)."""
    p = X.shape[1]
    idx = np.arange(p, dtype=np.float64)
    strain = np.asarray(s)[:, None] if field is None else np.asarray(s)[:, None] + field
    # the value at position x comes from x / (1 + s) in the original
    q = np.interp(pos[None, :] / (1.0 + strain), pos, idx) - np.asarray(u)[..., None]
    np.clip(q, 0.0, p - 1.0, out=q)
    i0 = np.minimum(q.astype(np.intp), p - 2)
    f = (q - i0).astype(X.dtype)
    rows = np.asarray(rows)[:, None]
    return X[rows, i0] * (1.0 - f) + X[rows, i0 + 1] * f


def strain_field(rng, half_range, n_points, width):
    """One strain field per value of ``half_range`` (m,): (m, n_points)
    float64, varying smoothly along the axis over about ``width`` points
    (white noise smoothed by a Gaussian of that sigma), with a standard
    deviation of half ``half_range`` and clipped to it. Peaks a few
    ``width`` apart move independently, so the splits and spacings of
    neighbouring reflections change by up to twice ``half_range``."""
    from scipy.ndimage import gaussian_filter1d

    half_range = np.asarray(half_range, np.float64)
    field = gaussian_filter1d(rng.standard_normal((len(half_range), n_points)), width, axis=1)
    field *= np.sqrt(2.0 * np.sqrt(np.pi) * width)  # unit variance: smoothing divides it
    np.clip(field, -2.0, 2.0, out=field)
    field *= 0.5 * half_range[:, None]
    return field


def increasing_axis(axis, p):
    """Increasing float64 positions of the ``p`` points: the point index
    without an axis, ``axis`` when it increases strictly, ``-axis`` when it
    decreases strictly (a d-spacing axis: a strain scales positions about
    0 either way); any other axis raises :class:`.SpectraError`."""
    if axis is None:
        return np.arange(p, dtype=np.float64)
    axis = np.asarray(axis, dtype=np.float64)
    step = np.diff(axis)
    if axis.shape == (p,) and np.isfinite(axis).all():
        if (step > 0).all():
            return axis
        if (step < 0).all():
            return -axis
    raise SpectraError(f"axis must be finite and strictly increasing or decreasing, one "
                       f"position per point ({p}: 2-theta, q or d-spacing), or None: the "
                       "strain of the training copies scales positions about 0")


def _bounds(half_range, n):
    """``(low, high)`` per row from a half-range (a number, or one per row)
    or from (n, 2) bounds."""
    v = np.asarray(half_range, np.float64)
    if v.shape == (n, 2):
        return v[:, 0], v[:, 1]
    v = np.broadcast_to(v, (n,))
    return -v, v


class _CopyDraws(NamedTuple):
    """What each copy draws once (one row per copy): relative ``strain``,
    ``shift`` in points, ``noise`` variance per unit of signal, ``background``
    polynomial coefficients (3, in the spectrum's units), intensity
    ``scale``, half-ranges of ``local`` strain and of the ``split``
    variation, and the baseline's ``drift`` (None without a baseline)."""

    strain: np.ndarray
    shift: np.ndarray
    noise: np.ndarray
    background: np.ndarray
    scale: np.ndarray
    local: np.ndarray
    split: np.ndarray
    drift: Optional[np.ndarray]

    def rows(self, a, b) -> "_CopyDraws":
        """The draws of copies ``a:b``."""
        return _CopyDraws(*(None if v is None else v[a:b] for v in self))


def _draw_copies(X, src, rng, *, strain, shift, intensity, noise, background, gain,
                 noise_floor, local_strain, split_variation, offset) -> _CopyDraws:
    """The draws made once per copy, before any chunk of copies is
    perturbed (the baseline's drift is drawn after them, the strain field
    and the noise per chunk). Their order is part of the result: with the
    same ``rng`` a fit gets the same copies."""
    n, m = len(X), len(src)
    s_lo, s_hi = _bounds(strain, n)
    u_lo, u_hi = _bounds(shift, n)
    s = rng.uniform(s_lo[src], s_hi[src], m)
    u = rng.uniform(u_lo[src], u_hi[src], m)
    gain = (noise_gain(X, offset) if gain is None else np.asarray(gain, np.float32))[src]
    level = np.maximum(np.median(np.abs(X), axis=1), 1e-12)[src]
    floor = _per_row(noise_floor, n)[src]
    amp = floor + rng.uniform(0.0, noise, m)
    c = rng.uniform(-background, background, (m, 3)) * level[:, None]
    scale = rng.uniform(1.0 - intensity, 1.0 + intensity, m)
    return _CopyDraws(s, u, (gain * amp).astype(np.float32), c, scale,
                      _per_row(local_strain, n)[src], _per_row(split_variation, n)[src], None)


def _per_row(value, n):
    return np.broadcast_to(np.asarray(value, np.float64), (n,))


def _perturbed(X, src, pos, draws: _CopyDraws, rng, *, base, local_width, splits, split_rng,
               offset):
    """The copies of rows ``src`` of ``X`` perturbed as ``draws`` say (float32)."""
    p = X.shape[1]
    field = strain_field(rng, draws.local, p, local_width) if draws.local.any() else None
    if split_rng is None:
        Y = strain_shift(X, src, pos, draws.strain, draws.shift, field)
    else:  # each copy's own peaks moved first
        from .splits import split_moves  # here: .splits imports .denoise, which imports this

        moved = X[src] + split_moves(splits, src, draws.split, p, split_rng)
        Y = strain_shift(moved, np.arange(len(src)), pos, draws.strain, draws.shift, field)
    if base is not None:
        Y += draws.drift[:, None] * strain_shift(base, src, pos, draws.strain, draws.shift, field)
    # Poisson-like: variance proportional to the signal (plus the offset)
    Y += rng.standard_normal(Y.shape, dtype=np.float32) * np.sqrt(
        np.maximum(Y + np.float32(offset), 0.0) * draws.noise[:, None])
    t = np.linspace(-1.0, 1.0, p, dtype=np.float32)
    c = draws.background
    Y += (c[:, :1] + c[:, 1:2] * t + c[:, 2:3] * (t * t)).astype(np.float32)
    Y *= draws.scale[:, None].astype(np.float32)
    return Y


def add_spikes(X, per_spectrum, heights, rng):
    """Spikes added to the spectra ``X`` in place: in each, a Poisson number
    with mean ``per_spectrum`` of points at random, each raised by one of
    ``heights`` drawn at random -- the rate and heights of the spikes found
    in the labelled spectra, so that the networks, trained on them bridged,
    meet spikes where a spectrum classified has them."""
    rows = np.repeat(np.arange(len(X)), rng.poisson(per_spectrum, len(X)))
    points = rng.integers(0, X.shape[1], len(rows))
    np.add.at(X, (rows, points), rng.choice(np.asarray(heights, X.dtype), len(rows)))
    return X


def augment(X, axis, copies, rng, strain=0.01, shift=0.0, intensity=0.3,
            noise=1.0, background=0.1, gain=None, noise_floor=0.0, baseline=None,
            baseline_scale=0.0, local_strain=0.0, local_width=16.0, splits=None,
            split_variation=0.0, offset=0.0):
    """Return ``(Xa, src)``: ``copies`` perturbed copies of every row of ``X``
    (a number, or one per row; float32, copies of row i at ``src == i``).

    ``strain``: half-range of the relative position scaling; ``shift``:
    half-range of a translation in points (each a number, one per row of
    ``X``, or ``(low, high)`` bounds per row as an (n, 2) array, ``low <=
    0 <= high``: a class may be moved less one way than the other); ``intensity``: half-range of the
    relative intensity scale; ``noise``: extra noise up to ``noise`` times the
    measured noise variance; ``background``: amplitude of an added smooth
    background relative to the median level; ``gain``: the noise gain per
    row (default: measured on ``X``); ``noise_floor``: noise every copy gets
    at least, in the same units (a number or one per row): 1 for a row
    whose own noise was taken out (:mod:`.denoise`), so that its copies
    are as noisy as a measured spectrum; ``baseline``: (n, points), the
    background under each row's peaks (e.g.
    :meth:`.SegmentPreprocessor.baseline_points`), of which each copy gets
    ``1 ± baseline_scale`` times (strained and shifted with the row,
    before the noise: more background, more counting noise); ``local_strain``:
    half-range of a strain varying along the axis over ``local_width``
    points, added to ``strain`` (a number or one per row; see
    :func:`strain_field`). With ``local_strain`` 0 no field is drawn, and the
    copies are those of before it existed. ``splits``: per row a
    :class:`.splits.SplitPlan` of its peaks, or None; ``split_variation``:
    the half-range of the factor scaling each cluster's gaps (a number or
    one per row; see :mod:`.splits`). ``offset``: counts added to the level
    for the copies' noise (:func:`noise_offset`; ``gain`` is then measured
    with it).
    """
    X = np.asarray(X, dtype=np.float32)
    n, p = X.shape
    src = np.repeat(np.arange(n), copies)
    m = len(src)
    pos = increasing_axis(axis, p)
    draws = _draw_copies(X, src, rng, strain=strain, shift=shift, intensity=intensity,
                         noise=noise, background=background, gain=gain, offset=offset,
                         noise_floor=noise_floor, local_strain=local_strain,
                         split_variation=split_variation)
    # a child stream (spawning draws nothing from rng): copies of spectra
    # without a split to vary come out as without split_variation
    split_rng = rng.spawn(1)[0] if splits is not None and draws.split.any() else None
    base = None
    if baseline is not None and baseline_scale > 0:
        base = np.asarray(baseline, dtype=np.float32)
        draws = draws._replace(drift=rng.uniform(-baseline_scale, baseline_scale, m)
                               .astype(np.float32))
    Xa = np.empty((m, p), np.float32)
    # in chunks of copies: the float64 index arithmetic stays small whatever m is
    for a in range(0, m, _CHUNK):
        b = min(a + _CHUNK, m)
        Xa[a:b] = _perturbed(X, src[a:b], pos, draws.rows(a, b), rng, base=base,
                             local_width=local_width, splits=splits, split_rng=split_rng,
                             offset=offset)
    return Xa, src


def mixup(Z, Y, n, rng, scales=None):
    """``n`` mixtures of pairs of samples with *different* labels (fewer:
    pairs drawn with equal labels are skipped); returns ``(Z, Y, (i, j))``.

    ``Z``: normalised features, ``Y``: one-hot (or soft) targets. The mixing
    fraction is uniform, and the target is mixed with it: near a phase
    transition the spectra are mixtures of the two phases, and this is what
    teaches the networks to answer "in between" there instead of guessing
    confidently.

    ``scales`` (optional, per sample): the normalising scale of a sample's
    phases per unit fraction -- their scattering power. A mixture of
    fractions ``1 - a`` and ``a`` is ``(1 - a) s_i z_i + a s_j z_j`` before
    normalisation, so the features are mixed in those proportions while
    the target keeps ``a``: a phase that scatters 4x more dominates the
    normalised spectrum of a 50 % mixture (mixed with weights ``1 - a``
    and ``a``, the networks learnt that a 33 % mixture of it is its class).
    """
    lab = Y.argmax(1)
    i = rng.integers(0, len(Z), n)
    j = rng.integers(0, len(Z), n)
    keep = lab[i] != lab[j]
    i, j = i[keep], j[keep]
    a = rng.uniform(0.0, 1.0, len(i)).astype(np.float32)
    b = a
    if scales is not None:
        si, sj = (1.0 - a) * scales[i], a * scales[j]
        b = (sj / (si + sj)).astype(np.float32)
    shape = (-1,) + (1,) * (Z.ndim - 1)
    Zm = (1.0 - b).reshape(shape) * Z[i] + b.reshape(shape) * Z[j]
    Ym = (1.0 - a)[:, None] * Y[i] + a[:, None] * Y[j]
    return Zm.astype(np.float32), Ym.astype(np.float32), (i, j)
