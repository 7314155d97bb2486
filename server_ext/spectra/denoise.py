"""Peak-model denoising of labelled spectra, for the training copies.

With two labelled spectra per class, every training copy inherits its
source's noise realisation, and the per-bin networks can learn that noise
instead of a weak peak of a few percent. Here a labelled spectrum is
replaced, before it is copied, by a model of its noise-free mean: a smooth
background (cubic B-splines) plus peaks of one shape (pseudo-Voigt) whose
width follows the position smoothly, as an instrument's resolution does
(Caglioti-like widening). Everything is measured on the spectra themselves:

* the noise: Poisson-like, variance ``gain * level`` with the gain of
  :func:`.augment.noise_gain`;
* the shape: the widths and Lorentzian fraction of the strongest isolated
  peaks, a robust quadratic of the width against the position;
* the peaks: matching pursuit -- the residual is matched-filtered with the
  local peak shape, every local maximum above a significance threshold
  (a false-alarm rate per spectrum, ``significance``, over the number of
  independent peak positions) becomes a peak, all amplitudes and the
  background are refitted (weighted least squares) and the positions
  refined to a fraction of a point (Gauss-Newton), until nothing
  significant is left; peaks that lose their significance are dropped;
* the check: the same model refitted on the even points only must explain
  the odd points within the noise, window by window. Where it does not (a
  shape the model cannot follow), the raw spectrum is kept; where most of a
  spectrum fails, or nothing could be measured (no noise, no peak, NaN), the
  whole raw spectrum is returned.

The copies of a denoised spectrum then need fresh noise of at least the
measured gain (see :func:`.augment.augment`'s ``noise_floor``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .augment import noise_gain
from .compiled import compiled

__all__ = ["DenoisedSpectrum", "PeakShape", "denoise", "peak_shape"]

_STRONG = 30.0  # peaks used to measure the shape: prominence in noise sigmas
_MAX_SHAPE_PEAKS = 12  # per spectrum
_SHAPE_SPECTRA = 4  # spectra the shape is measured on
SUPPORT_FWHM = 12.0  # a peak column spans +-this many FWHM
_KNOTS_PER_FWHM = 80.0  # background knot spacing, in peak widths
_WINDOW_FWHM = 4.0  # check windows, in peak widths
_WINDOW_P = 1e-4  # a window fails when its odd-point chi2 is this unlikely
_MAX_FAILED = 0.25  # more failed windows than this: the raw spectrum
_ROUNDS = 25  # matching-pursuit rounds at most (each adds every significant peak left)
_FREE_WIDTH_Z = 25.0  # peaks this significant get their own width
_RIDGE = 1e-9  # added to the normal matrix's diagonal, relative to its largest entry


@dataclasses.dataclass
class PeakShape:
    """Pseudo-Voigt peaks: FWHM (points) ``= polyval(width_poly, i / n_points)``
    at point ``i``, Lorentzian fraction ``eta``."""

    width_poly: np.ndarray
    eta: float
    n_points: int

    def fwhm(self, pos):
        w = np.polyval(self.width_poly, np.asarray(pos, np.float64) / self.n_points)
        return np.clip(w, 1.0, None)


@dataclasses.dataclass
class DenoisedSpectrum:
    """One spectrum's outcome: ``modelled`` fraction of points replaced by
    the model (0: the raw spectrum), ``centers`` of the peaks found
    (points, sub-point, increasing), ``reason`` when it fell back to the raw
    spectrum; each peak's ``fwhm`` (points) and height (``heights``), and
    the profile's Lorentzian fraction ``eta`` (see :func:`pseudo_voigt`)."""

    modelled: float
    centers: np.ndarray
    reason: str = ""
    fwhm: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))
    heights: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))
    eta: float = 0.0


def pseudo_voigt(d, eta):
    """Unit-height profile at ``d = (x - c) / fwhm`` and its derivative in ``d``."""
    u = d * d
    lor = 1.0 / (1.0 + 4.0 * u)
    gau = np.exp(-4.0 * math.log(2.0) * u)
    g = eta * lor + (1.0 - eta) * gau
    dg = -eta * 8.0 * d * lor * lor - (1.0 - eta) * 8.0 * math.log(2.0) * d * gau
    return g, dg


def _variance(level, gain):
    """Poisson-like variance ``gain * level``, floored so that empty regions
    (a zero baseline) keep a finite weight."""
    floor = max(1e-3 * float(np.max(level)), 1e-12)
    return gain * np.maximum(level, floor)


def _lower_envelope(x, half=None):
    """A smooth curve under the peaks: repeated clipping to a running mean
    (peaks narrower than ``half`` points, default 1 % of the spectrum, are
    cut away)."""
    from scipy.ndimage import uniform_filter1d

    half = max(len(x) // 100, 5) if half is None else half
    b = x.astype(np.float64)
    for _ in range(12):
        b = np.minimum(b, uniform_filter1d(b, 2 * half + 1, mode="nearest"))
    return uniform_filter1d(b, 2 * half + 1, mode="nearest")


def _strong_peaks(x, gain):
    """``(center, fwhm, eta)`` rows for the strongest isolated peaks of one
    spectrum, each fitted alone (pseudo-Voigt on a straight line)."""
    from scipy.optimize import least_squares
    from scipy.signal import find_peaks, peak_widths

    p = len(x)
    base = _lower_envelope(x)
    sigma = np.sqrt(_variance(np.maximum(base, 0), gain))
    smooth = np.convolve(x, np.ones(3) / 3, mode="same") - base
    peaks, props = find_peaks(smooth, prominence=_STRONG * np.median(sigma))
    if not len(peaks):
        return np.empty((0, 3))
    peaks = peaks[np.argsort(-props["prominences"])][:_MAX_SHAPE_PEAKS]
    widths = peak_widths(smooth, peaks, rel_height=0.5)[0]
    out = []
    idx = np.arange(p, dtype=np.float64)
    for c0, w0 in zip(peaks, widths):
        w0 = max(float(w0), 1.5)
        half = int(math.ceil(3 * w0)) + 2
        a, b = max(c0 - half, 0), min(c0 + half + 1, p)
        if b - a < 8:
            continue
        xs, ys = idx[a:b], x[a:b].astype(np.float64)
        wt = 1.0 / np.sqrt(_variance(np.maximum(ys, 0), gain))

        def resid(q):
            c, h, w, eta, b0, b1 = q
            return (h * pseudo_voigt((xs - c) / w, eta)[0] + b0 + b1 * (xs - c) - ys) * wt

        h0 = float(x[c0] - base[c0])
        start = [float(c0), h0, w0, 0.5, float(base[c0]), 0.0]
        lo = [c0 - w0, 0.0, 0.5, 0.0, -np.inf, -np.inf]
        hi = [c0 + w0, 10 * abs(h0) + 1, 4 * w0, 1.0, np.inf, np.inf]
        try:
            fit = least_squares(resid, start, bounds=(lo, hi), x_scale="jac", max_nfev=200)
        except ValueError:
            continue
        chi2 = float(np.mean(fit.fun ** 2))
        if fit.success and chi2 < 3.0:  # an isolated peak of this shape, not a doublet
            out.append((fit.x[0], fit.x[2], fit.x[3]))
    return np.array(out).reshape(-1, 3)


def peak_shape(X, gains=None) -> PeakShape | None:
    """The peak shape shared by the spectra ``X`` (one instrument), from
    their strongest isolated peaks; ``None`` when fewer than 3 are found."""
    X = np.asarray(X, np.float64)
    gains = noise_gain(X) if gains is None else gains
    usable = np.flatnonzero((gains > 0) & np.isfinite(X).all(1))
    # the shape is the instrument's: a few spectra, spread over the set, tell it
    usable = usable[np.linspace(0, len(usable) - 1, min(len(usable), _SHAPE_SPECTRA)).astype(int)]
    found = [_strong_peaks(X[i], gains[i]) for i in usable]
    found = np.concatenate(found) if found else np.empty((0, 3))
    if len(found) < 3:
        return None
    from scipy.optimize import least_squares

    n = X.shape[1]
    t, w = found[:, 0] / n, found[:, 1]
    degree = 2 if len(found) >= 8 else 0
    start = np.zeros(degree + 1)
    start[-1] = np.median(w)
    fit = least_squares(lambda q: (np.polyval(q, t) - w) / np.median(w), start,
                        loss="soft_l1", f_scale=0.1)
    return PeakShape(fit.x, float(np.median(found[:, 2])), n)


class _Model:
    """Background B-splines plus peaks on one spectrum; weighted linear fits."""

    def __init__(self, p, shape: PeakShape):
        from scipy.interpolate import BSpline

        self.p, self.shape = p, shape
        self.idx = np.arange(p, dtype=np.float64)
        spacing = max(_KNOTS_PER_FWHM * float(np.median(shape.fwhm(self.idx))), 8.0)
        n_inner = max(int(p / spacing), 1)
        inner = np.linspace(0.0, p - 1.0, n_inner + 1)
        knots = np.concatenate([[inner[0]] * 3, inner, [inner[-1]] * 3])
        self.background = BSpline.design_matrix(self.idx, knots, 3).tocsc()

    def columns(self, peaks):
        """Sparse peak columns (unit height) and their derivatives in the
        centre and in the log width; ``peaks``: (n, 2) centre, width scale."""
        from scipy import sparse

        shape = (self.p, len(peaks))
        if not len(peaks):
            empty = sparse.csc_matrix(shape)
            return empty, empty, empty
        c = peaks[:, 0]
        w = self.shape.fwhm(c) * peaks[:, 1]
        half = int(math.ceil(SUPPORT_FWHM * w.max())) + 1
        rows = np.floor(c).astype(np.intp)[:, None] + np.arange(-half, half + 1)[None, :]
        inside = ((rows >= 0) & (rows < self.p)
                  & (np.abs(rows - c[:, None]) <= SUPPORT_FWHM * w[:, None]))
        d = (rows - c[:, None]) / w[:, None]
        g, dg = pseudo_voigt(d, self.shape.eta)
        # row by row of ``rows`` is column by column, each in increasing rows
        indices = rows[inside]
        indptr = np.concatenate([[0], np.cumsum(inside.sum(1))])
        # d g / d c and d g / d log(w)
        return tuple(sparse.csc_matrix((v[inside], indices, indptr), shape)
                     for v in (g, -dg / w[:, None], -dg * d))

    def solve(self, A, x, weight):
        """Weighted least squares ``A q ~ x`` through the normal equations:
        ``(q, errors)``, the errors each coefficient's with the others held
        (``1 / sqrt(N_kk)``; a dense inverse for the marginal ones would
        cost most of the time). Every column is local, so the normal
        matrix is summed over the overlaps of the columns only, as its
        non-zeros (compiled: scipy.sparse's products spent most of a fit
        building their results). A singular system raises
        ``RuntimeError``, one without a finite solution ``LinAlgError``."""
        from scipy import sparse
        from scipy.sparse.linalg import splu

        A = A.tocsc()
        if not A.has_sorted_indices:  # a sorted copy: the caller's matrix stays as given
            A = A.sorted_indices()
        rows, cols, values, rhs, diag = compiled(_normal_equations)(
            A.indptr, A.indices, A.data, weight, x, _RIDGE)
        m = A.shape[1]
        # factorised sparse: with hundreds of peaks a dense LU would cost more than the rest
        q = splu(sparse.csc_matrix((values, (rows, cols)), (m, m))).solve(rhs)
        if not np.isfinite(q).all():
            raise np.linalg.LinAlgError("no finite solution of the normal equations")
        return q, 1.0 / np.sqrt(np.maximum(diag, 1e-300))

    def fit(self, x, weight, peaks, refine=2):
        """Amplitudes (background, peaks) for the given peaks ((n, 2):
        centre, width scale), the centres -- and the widths of the peaks
        strong enough to measure their own -- refined by ``refine``
        Gauss-Newton steps. Returns ``(model, peaks, amplitudes, z)``, ``z``
        each peak's amplitude over its error."""
        from scipy import sparse

        peaks = np.array(peaks, np.float64).reshape(-1, 2)
        nb, k = self.background.shape[1], len(peaks)
        for step in range(refine + 1):
            G, dC, dW = self.columns(peaks)
            A = sparse.hstack([self.background, G]).tocsc()
            q, se = self.solve(A, x, weight)
            amp = q[nb:]
            if step == refine or not k:
                break
            # Gauss-Newton: columns amp * dg/dc, and amp * dg/dlog(w) where free
            free = np.flatnonzero(amp / se[nb:] >= _FREE_WIDTH_Z)
            J = sparse.hstack([A, dC @ sparse.diags(amp),
                               (dW @ sparse.diags(amp)).tocsc()[:, free]]).tocsc()
            qj, _ = self.solve(J, x - A @ q, weight)
            reach = 0.3 * self.shape.fwhm(peaks[:, 0]) * peaks[:, 1]
            delta = np.clip(qj[nb + k:nb + 2 * k], -reach, reach)
            peaks[:, 0] = np.clip(peaks[:, 0] + np.where(amp > 0, delta, 0.0), 0.0, self.p - 1.0)
            scale = peaks[free, 1] * np.exp(np.clip(qj[nb + 2 * k:], -0.2, 0.2))
            peaks[free, 1] = np.clip(scale, 0.5, 2.0)
        model = A @ q
        return model, peaks, amp, amp / se[nb:]


def _normal_equations(indptr, indices, data, weight, x, ridge):
    """``A^T W A + ridge * max(diag) I`` as coordinates ``(rows, cols,
    values)``, and ``A^T W x``, of a CSC matrix ``A`` (sorted row indices)
    with ``W = diag(weight)``: every diagonal entry, the others (both
    triangles) only where not zero; last, the diagonal before the ridge.
    Each column's weighted values are scattered into a work row and read
    back by the columns that start within its rows (in order of their
    first rows: every pair that overlaps is met once)."""
    m = len(indptr) - 1
    first = np.full(m, len(x))
    last = np.full(m, -1)
    for j in range(m):
        if indptr[j] < indptr[j + 1]:
            first[j], last[j] = indices[indptr[j]], indices[indptr[j + 1] - 1]
    order = np.argsort(first, kind="mergesort")
    starts = first[order]
    # where each column's followers (in that order) stop starting within it
    stop = np.searchsorted(starts, last[order], side="right")
    room = m
    for i in range(m):
        room += 2 * max(stop[i] - i - 1, 0)
    rows = np.empty(room, np.int64)
    cols = np.empty(room, np.int64)
    values = np.empty(room)
    diag = np.zeros(m)
    rhs = np.zeros(m)
    work = np.zeros(len(x))
    n = m
    for i in range(m):
        j = order[i]
        a, b = indptr[j], indptr[j + 1]
        for t in range(a, b):
            v = data[t] * weight[indices[t]]
            work[indices[t]] = v
            rhs[j] += v * x[indices[t]]
            diag[j] += v * data[t]
        for u in range(i + 1, stop[i]):
            k = order[u]
            total = 0.0
            for t in range(indptr[k], indptr[k + 1]):
                r = indices[t]
                if r > last[j]:
                    break
                total += work[r] * data[t]
            if total != 0.0:
                rows[n], cols[n], values[n] = j, k, total
                rows[n + 1], cols[n + 1], values[n + 1] = k, j, total
                n += 2
        for t in range(a, b):
            work[indices[t]] = 0.0
    shift = ridge * (diag.max() + 1e-30)
    for j in range(m):
        rows[j], cols[j], values[j] = j, j, diag[j] + shift
    return rows[:n], cols[:n], values[:n], rhs, diag


def _matched_filter(model: _Model, resid, weight, fwhm_grid):
    """Significance of a peak at every point (weighted matched filter with
    the local width: each width class filtered with its own kernel)."""
    from scipy.ndimage import correlate1d

    z = np.zeros(len(resid))
    fwhm = model.shape.fwhm(model.idx)
    for lo, hi in zip(fwhm_grid[:-1], fwhm_grid[1:]):
        sel = (fwhm >= lo) & (fwhm <= hi)
        if not sel.any():
            continue
        w = 0.5 * (lo + hi)
        half = int(math.ceil(SUPPORT_FWHM * w))
        g, _ = pseudo_voigt(np.arange(-half, half + 1) / w, model.shape.eta)
        # filtered over this class's points and the kernel's reach only: a
        # point's value needs its neighbours within ``half``, and past the
        # spectrum's ends the zeros of mode "constant", as over all points
        first, last = np.flatnonzero(sel)[[0, -1]]
        a, b = max(first - half, 0), min(last + half + 1, len(resid))
        num = correlate1d(resid[a:b] * weight[a:b], g, mode="constant")
        den = correlate1d(weight[a:b], g * g, mode="constant")
        z[a:b][sel[a:b]] = (num / np.sqrt(np.maximum(den, 1e-30)))[sel[a:b]]
    return z


def _pursuit(model: _Model, x, gain, threshold, keep_threshold, level):
    """Peaks added while significant ones are left: (n, 2) centre, width
    scale; ``level``: the first estimate of the noise-free spectrum."""
    from scipy.signal import find_peaks

    fwhm = model.shape.fwhm(model.idx)
    grid = np.geomspace(fwhm.min(), fwhm.max() * 1.0001, 9) if fwhm.max() > fwhm.min() * 1.05 \
        else np.array([fwhm.min() * 0.99, fwhm.max() * 1.01])
    peaks = np.empty((0, 2))
    for _ in range(_ROUNDS):
        weight = 1.0 / _variance(np.maximum(level, 0), gain)
        fitted, peaks, amp, z = model.fit(x, weight, peaks, refine=1 if len(peaks) else 0)
        order = np.argsort(peaks[:, 0])
        peaks, amp, z = peaks[order], amp[order], z[order]
        keep = (amp > 0) & (z >= keep_threshold)
        # two peaks drawn onto one: one is enough
        keep[1:] &= np.diff(peaks[:, 0]) > 0.1 * model.shape.fwhm(peaks[1:, 0])
        if not keep.all():
            peaks = peaks[keep]
            fitted, peaks, amp, z = model.fit(x, weight, peaks, refine=0)
        level = np.maximum(fitted, 0)
        score = _matched_filter(model, x - fitted, weight, grid)
        new, _ = find_peaks(score, height=threshold, distance=max(int(fwhm.min()), 1))
        if len(peaks):  # not on a peak already there: a second one beside it
            near = np.abs(new[:, None] - peaks[None, :, 0]) < 0.1 * model.shape.fwhm(new)[:, None]
            new = new[~near.any(1)]
        if not len(new):
            break
        peaks = np.concatenate([peaks, np.stack([new, np.ones(len(new))], 1)])
    return peaks


def _checked_windows(model: _Model, x, gain, peaks, fitted):
    """The model refitted on the even points must explain the odd ones:
    per window of a few peak widths, ``True`` where it does."""
    from scipy.stats import chi2

    even = np.zeros(len(x))
    even[::2] = 1.0
    var = _variance(np.maximum(fitted, 0), gain)
    half_fit, _, _, _ = model.fit(x, even / var, peaks, refine=0)
    r2 = (x - half_fit) ** 2 / var
    r2[::2] = 0.0
    win = max(int(_WINDOW_FWHM * np.median(model.shape.fwhm(model.idx))), 8)
    starts = np.arange(0, len(x), win)
    sums = np.add.reduceat(r2, starts)
    dof = np.add.reduceat(1.0 - even, starts)
    ok = chi2.sf(sums, np.maximum(dof, 1)) >= _WINDOW_P
    return np.repeat(ok, np.diff(np.append(starts, len(x))))


def denoise(X, gains=None, shape: PeakShape | None = None, significance: float = 0.01):
    """``(Xd, info)``: the spectra ``X`` with the noise replaced by a peak
    model where the model explains them (see the module notes), and one
    :class:`DenoisedSpectrum` per row.

    ``gains``: noise gain per spectrum (default :func:`.augment.noise_gain`);
    ``shape``: the peak shape (default: measured on ``X``);
    ``significance``: chance per spectrum of one noise peak being taken
    for a peak. Rows that cannot be modelled are returned unchanged.
    """
    X = np.asarray(X, np.float64)
    n, p = X.shape
    finite = np.isfinite(X).all(1)
    gains = noise_gain(np.where(finite[:, None], X, 0.0)) if gains is None \
        else np.asarray(gains, np.float64)
    out = X.copy()
    info = [DenoisedSpectrum(0.0, np.empty(0), "") for _ in range(n)]
    usable = finite & (gains > 0) & (np.ptp(np.where(finite[:, None], X, 0.0), axis=1) > 0)
    if shape is None and usable.any():
        shape = peak_shape(X[usable], gains[usable])
    for i in range(n):
        if not finite[i]:
            info[i].reason = "NaN or inf"
        elif not usable[i]:
            info[i].reason = "no noise or no signal measured"
        elif shape is None:
            info[i].reason = "no peak shape measured (fewer than 3 isolated peaks)"
        if info[i].reason:
            continue
        try:
            out[i], info[i] = _denoise_one(X[i], gains[i], shape, significance)
        except (np.linalg.LinAlgError, RuntimeError, ValueError) as e:
            # a singular fit: the spectrum is not for this model; keep it as measured
            info[i].reason = f"the peak model could not be fitted ({e})"
    return out, info


def _denoise_one(x, gain, shape, significance):
    """One spectrum: ``(denoised, DenoisedSpectrum)``."""
    from scipy.stats import norm

    p = len(x)
    model = _Model(p, shape)
    positions = p / float(np.median(shape.fwhm(model.idx)))
    threshold = float(norm.isf(significance / positions))
    level = np.maximum(_lower_envelope(x), 0)
    peaks = _pursuit(model, x, gain, threshold, 0.75 * threshold, level)
    for _ in range(2):  # weights from the model's own level
        fitted, peaks, amp, _ = model.fit(x, 1.0 / _variance(level, gain), peaks, refine=2)
        level = np.maximum(fitted, 0)
    order = np.argsort(peaks[:, 0])
    centers = peaks[order, 0]
    fwhm = shape.fwhm(centers) * peaks[order, 1]
    heights = amp[order]
    ok = _checked_windows(model, x, gain, peaks, fitted)
    if ok.mean() < 1.0 - _MAX_FAILED:
        return x, DenoisedSpectrum(0.0, centers, "the peak model does not explain it", fwhm,
                                   heights, shape.eta)
    return np.where(ok, fitted, x), DenoisedSpectrum(float(ok.mean()), centers, "", fwhm, heights,
                                                       shape.eta)
