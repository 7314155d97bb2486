"""Raw spectra -> baseline-free, intensity-normalised segment means.

Everything the classifier sees is computed from *segment means*: the spectrum
is cut into ``n_segments`` contiguous segments that cover every point -- the
first ``n_points % n_segments`` one point wider than the rest -- and each is
averaged. This is one cheap pass over the raw data (one ``add.reduceat``)
and everything after it works on an array ~``width`` times smaller, which is what makes streaming at MHz pulse rates possible. Averaging over a
segment also absorbs small peak shifts and most of the counting noise.

Baseline: the minimum of the segment means in each baseline block (a block
is one bin wide by default) placed at the block centre and linearly
interpolated -- a coarse lower envelope in the spirit of the
asymmetric-least-squares baseline of the published method, but linear in the
block minima and therefore fast. Normalisation: divide by the mean of the
baseline-free segment means, which removes global intensity changes (beam
intensity, exposure, sample amount).

Bridged points (the hot and dead pixels ``fit`` finds, :mod:`.bad_pixels`,
and the points a detector masks, NaN in every labelled spectrum):
every spectrum's segment means are those of the spectrum with these points
replaced by the straight line between their nearest other points, so that
a pixel the detector reads wrongly is no feature of any spectrum, labelled
or classified. Bridging is linear in the points: the few segments that
hold them are recomputed from their other points and the bridging ones,
so that what a bridged point reads -- NaN where a detector masks it --
never enters a segment mean.
"""

from __future__ import annotations

import numpy as np

from .compiled import compiled
from .errors import SpectraError

__all__ = ["SegmentPreprocessor", "FLAT_TOLERANCE", "bridge_points"]

#: a spectrum whose segment means vary by at most this fraction of their
#: largest magnitude is flat (see ``SegmentPreprocessor.has_signal``)
FLAT_TOLERANCE = 1e-5


def _interp_plan(centers, n_segments):
    """Left neighbour index and weight of the right neighbour for a linear
    interpolation of values at ``centers`` onto every segment index
    (constant beyond the first/last centre)."""
    x = np.arange(n_segments, dtype=np.float64)
    if len(centers) == 1:
        return np.zeros(n_segments, np.intp), np.zeros(n_segments, np.float32)
    left = np.clip(np.searchsorted(centers, x, side="right") - 1, 0, len(centers) - 2)
    frac = (x - centers[left]) / (centers[left + 1] - centers[left])
    return left.astype(np.intp), np.clip(frac, 0.0, 1.0).astype(np.float32)


def _bridge_plan(points, n_points):
    """For every point of ``points`` (sorted, unique), its nearest other
    points below and above and the weight of the one above: the straight
    line between them (the nearest one beyond either end of the axis)."""
    rest = np.setdiff1d(np.arange(n_points), points)
    above = np.clip(np.searchsorted(rest, points), 0, len(rest) - 1)
    below = np.clip(above - 1, 0, len(rest) - 1)
    lo, hi = rest[below], rest[above]
    weight = np.where(hi > lo, (points - lo) / np.maximum(hi - lo, 1), 0.0)
    weight = np.where(points > hi, 1.0, np.clip(weight, 0.0, 1.0))
    return lo, hi, weight


def bridge_points(X, points) -> np.ndarray:
    """A copy of the spectra ``X`` with the ``points`` replaced by the
    straight line between their nearest other points."""
    X = np.array(X, copy=True)
    points = np.unique(np.asarray(points, np.intp))
    if points.size and points.size < X.shape[1]:
        lo, hi, weight = _bridge_plan(points, X.shape[1])
        X[:, points] = X[:, lo] * (1.0 - weight) + X[:, hi] * weight
    return X


class SegmentPreprocessor:
    """Segment pooling, baseline removal and normalisation.

    Parameters
    ----------
    n_points : int
        Points per spectrum.
    n_segments : int
        Segments covering all points: ``n_points % n_segments`` of
        ``width + 1`` points, then the others of ``width`` points.
    baseline_block : int or None
        Segments per baseline block; ``None`` or 0 disables the baseline.
    bridged : sequence of int, optional
        Points bridged over in every spectrum (see the module doc).
    """

    def __init__(self, n_points: int, n_segments: int, baseline_block: int | None,
                 bridged=()):
        if not 1 <= n_segments <= n_points:
            raise SpectraError(f"{n_segments} segments do not fit {n_points} points")
        bridged = np.unique(np.asarray(bridged, np.intp).reshape(-1))
        if bridged.size and not (0 <= bridged[0] and bridged[-1] < n_points
                                 and bridged.size < n_points):
            raise SpectraError(f"bridged points {bridged.tolist()} do not fit {n_points} points")
        self.bridged = bridged
        self.n_points = int(n_points)
        self.n_segments = int(n_segments)
        self.width, self._n_wide = divmod(self.n_points, self.n_segments)
        wide = np.arange(self._n_wide + 1) * (self.width + 1)
        #: point index ranges: segment k is ``edges[k]:edges[k + 1]``
        self.edges = np.concatenate(
            [wide, wide[-1] + self.width * np.arange(1, self.n_segments - self._n_wide + 1)])
        self._inv_width = (1.0 / np.diff(self.edges)).astype(np.float32)
        # segment_means_fast: the wide segments' and the others' averaging vectors
        self._mean_vectors = (np.full(self.width + 1, 1.0 / (self.width + 1), np.float32),
                              np.full(self.width, 1.0 / max(self.width, 1), np.float32))
        self._bridge = self._bridged_segment_plan()
        self.baseline_block = int(baseline_block or 0)
        if self.baseline_block:
            n_blocks = max(1, int(round(self.n_segments / self.baseline_block)))
            edges = np.linspace(0, self.n_segments, n_blocks + 1).round().astype(np.intp)
            self.block_starts = edges[:-1]
            sizes = np.diff(edges)
            # equal blocks: the minima are one reshape-and-reduce
            self._block = int(sizes[0]) if (sizes == sizes[0]).all() else 0
            centers = 0.5 * (edges[:-1] + edges[1:] - 1)
            left, frac = _interp_plan(centers, self.n_segments)
            # the baseline is linear in the block minima: one small matrix product
            self._interp = np.zeros((n_blocks, self.n_segments), np.float32)
            cols = np.arange(self.n_segments)
            np.add.at(self._interp, (left, cols), 1.0 - frac)
            np.add.at(self._interp, (np.minimum(left + 1, n_blocks - 1), cols), frac)
            # for normalise_rows, the same interpolation as runs of segments
            # between one pair of blocks: each run's bounds, its two blocks,
            # and every segment's weights
            starts = np.concatenate([[0], np.flatnonzero(np.diff(left)) + 1])
            self._baseline_plan = (np.append(starts, self.n_segments), left[starts],
                                   np.minimum(left[starts] + 1, n_blocks - 1),
                                   (1.0 - frac).astype(np.float32), frac)
        else:
            self.block_starts = np.zeros(0, np.intp)
            weight = np.zeros(self.n_segments, np.float32)  # unused: no blocks
            self._baseline_plan = (np.array([0, self.n_segments]), np.zeros(1, np.intp),
                                   np.zeros(1, np.intp), weight, weight)

    def config(self) -> dict:
        """The parameters but ``bridged`` (a model stores them as its
        ``bad_pixels_``)."""
        return {"n_points": self.n_points, "n_segments": self.n_segments,
                "baseline_block": self.baseline_block}

    def _bridged_segment_plan(self):
        """``(points, segments, C)``: with the bridged points, the segment
        means' columns ``segments`` are ``X[:, points] @ C``, which reads no
        bridged point; None with nothing bridged."""
        if not self.bridged.size:
            return None
        lo, hi, weight = _bridge_plan(self.bridged, self.n_points)
        held = np.searchsorted(self.edges, self.bridged, side="right") - 1
        segments = np.unique(held)
        inside = np.concatenate([np.arange(self.edges[k], self.edges[k + 1]) for k in segments])
        inside = np.setdiff1d(inside, self.bridged)
        points = np.unique(np.concatenate([inside, lo, hi]))
        C = np.zeros((len(points), len(segments)), np.float64)
        owner = np.searchsorted(segments, np.searchsorted(self.edges, inside, side="right") - 1)
        column = np.searchsorted(segments, held)
        scale = self._inv_width[segments].astype(np.float64)
        np.add.at(C, (np.searchsorted(points, inside), owner), scale[owner])
        for row, w in ((lo, 1.0 - weight), (hi, weight)):
            np.add.at(C, (np.searchsorted(points, row), column), w * scale[column])
        return points, segments, C.astype(np.float32)

    def _bridged(self, X, S):
        if self._bridge is not None:
            points, segments, C = self._bridge
            S[:, segments] = X[:, points] @ C
        return S

    def segment_means(self, X: np.ndarray) -> np.ndarray:
        """Segment means (n, n_segments) as float32, in one pass.

        ``X`` must be 2-D with ``n_points`` columns. Non-float32 input is
        converted first (a copy); float32 input is not copied. One
        ``add.reduceat`` over the rows streams the raw data once, which is
        what bounds the speed (a strided matrix-vector product per spectrum
        was 3x slower on 2 cores).
        """
        if X.dtype != np.float32:
            X = np.asarray(X, dtype=np.float32)
        S = np.add.reduceat(X, self.edges[:-1], axis=1)
        S *= self._inv_width
        return self._bridged(X, S)

    def segment_means_fast(self, X: np.ndarray) -> np.ndarray:
        """The segment means of :meth:`segment_means`, equal to float32
        rounding, 3-4x faster: the segments of one width are a reshape of the
        rows, and their means one BLAS matrix-vector product per spectrum
        with a constant ``1 / width`` vector (``add.reduceat`` pays a call
        per segment and spectrum). Used by inference; ``fit`` keeps
        :meth:`segment_means`, so the training features stay bit-stable."""
        if X.dtype != np.float32:
            X = np.asarray(X, dtype=np.float32)
        n = len(X)
        S = np.empty((n, self.n_segments), np.float32)
        cut = self._n_wide * (self.width + 1)
        if self._n_wide:
            np.matmul(X[:, :cut].reshape(n, self._n_wide, self.width + 1),
                      self._mean_vectors[0], out=S[:, :self._n_wide])
        np.matmul(X[:, cut:].reshape(n, self.n_segments - self._n_wide, self.width),
                  self._mean_vectors[1], out=S[:, self._n_wide:])
        return self._bridged(X, S)

    def has_signal(self, S: np.ndarray) -> np.ndarray:
        """Rows with a signal: not flat (all-zero or constant, as from a
        detector dropout) to within float32 rounding. Such a row carries
        no information about the sample's state."""
        hi, lo = S.max(axis=1), S.min(axis=1)
        level = np.maximum(hi, -lo)  # = max |S|, without an |S| temporary
        return (hi - lo) > FLAT_TOLERANCE * level

    def block_minima(self, S: np.ndarray) -> np.ndarray:
        """The baseline's block minima of segment means ``S`` (rows,
        blocks); the baseline is ``block_minima(S) @ _interp``."""
        if not self._block:
            return np.minimum.reduceat(S, self.block_starts, axis=1)
        # strided minimum across the block, in place: faster than a
        # reduction over the short last axis or a pairwise tree
        blocks = S.reshape(len(S), -1, self._block)
        mins = blocks[:, :, 0].copy()
        for j in range(1, self._block):
            np.minimum(mins, blocks[:, :, j], out=mins)
        return mins

    def baseline(self, S: np.ndarray) -> np.ndarray:
        """The baseline of segment means ``S`` at every segment (all zero
        without a baseline)."""
        if self.baseline_block:
            return self.block_minima(S) @ self._interp
        return np.zeros_like(S)

    def baseline_free(self, S: np.ndarray) -> np.ndarray:
        """Segment means ``S`` less their baseline (a new array); their row
        means are the normalising scales."""
        if self.baseline_block:
            return S - self.baseline(S)
        return S.copy()

    def baseline_points(self, X: np.ndarray) -> np.ndarray:
        """The baseline of each raw spectrum at every point (float32):
        linear between the segment centres, constant beyond the first and
        last; all zero without a baseline."""
        B = self.baseline(self.segment_means(X))
        centers = 0.5 * (self.edges[:-1] + self.edges[1:] - 1)
        left, weight = _interp_plan(centers, self.n_points)
        right = np.minimum(left + 1, self.n_segments - 1)
        return B[:, left] + (B[:, right] - B[:, left]) * weight

    def normalise(self, S: np.ndarray) -> np.ndarray:
        """Baseline-free, normalised segment means (float32, new array)."""
        Y = self.baseline_free(S)
        scale = Y.mean(axis=1, keepdims=True)
        # a spectrum with no signal above its baseline stays all-zero
        scale[~(scale > 0)] = 1.0
        Y /= scale
        return Y

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``normalise(segment_means(X))``."""
        return self.normalise(self.segment_means(X))

    def normalise_rows(self, S: np.ndarray, finite: np.ndarray, signal: np.ndarray) -> np.ndarray:
        """What inference needs of the segment means ``S`` (n, n_segments;
        float32, C-contiguous), in one compiled pass per row while the row is
        in cache: which rows are finite (a row with NaN or inf is set to
        zero) and have a signal (:meth:`has_signal`), written to ``finite``
        and ``signal``; each row less its baseline, in place; and the
        inverse normalising scales (n, 1) -- :meth:`normalise` is ``S *
        inverse``, to float32 rounding. As whole-chunk NumPy steps (the
        checks, the block minima, the baseline as a product with its
        interpolation matrix) these cost 0.5-1.0 us per spectrum at 240-480
        segments on this project's 2-core machine, compiled 0.2-0.4."""
        inverse = np.empty((len(S), 1), np.float32)
        kernel = compiled(_normalise_rows, reorder=True)
        kernel(S, self.block_starts, *self._baseline_plan, np.float32(FLAT_TOLERANCE),
               inverse[:, 0], finite, signal)
        return inverse


#: independent maxima and minima per row where there is no baseline: one
#: SIMD register of float32, so that the compiled reductions vectorise (a
#: single running maximum is a chain of dependent comparisons, 4x slower)
LANES = 16


def _normalise_rows(S, block_starts, runs, left, right, w_left, w_right, tolerance,
                    inverse, finite, signal):
    """:meth:`SegmentPreprocessor.normalise_rows`, row by row; no baseline
    where ``block_starts`` is empty. Run ``i`` of the baseline is segments
    ``runs[i]:runs[i + 1]``, interpolated between the minima of blocks
    ``left[i]`` and ``right[i]`` with each segment's ``w_left``, ``w_right``.
    Indices are unsigned where numba cannot see that they are not negative:
    its wrap-around of negative indices would keep the loops from
    vectorising."""
    n, m = S.shape
    n_blocks = len(block_starts)
    mins = np.empty(max(n_blocks, 1), np.float32)
    hi, lo = np.empty(LANES, np.float32), np.empty(LANES, np.float32)
    lanes, body = np.uint64(LANES), np.uint64(m - m % LANES)
    for r in range(n):
        row = S[r]
        total = 0.0  # float64: a sum of finite float32 cannot overflow, NaN and inf pass
        for j in range(m):
            total += row[j]
        if not np.isfinite(total):
            row[:] = 0.0
            finite[r], signal[r], inverse[r] = False, False, 1.0
            continue
        finite[r] = True
        top, bottom = row[0], row[0]
        if n_blocks:  # the blocks cover the row: their extremes are the row's
            for b in range(n_blocks):
                start = np.uint64(block_starts[b])
                end = np.uint64(block_starts[b + 1] if b + 1 < n_blocks else m)
                least, most = row[start], row[start]
                for j in range(start + np.uint64(1), end):
                    v = row[j]
                    least = v if v < least else least
                    most = v if v > most else most
                mins[b] = least
                top = most if most > top else top
                bottom = least if least < bottom else bottom
        else:
            hi[:] = row[0]
            lo[:] = row[0]
            for j in range(np.uint64(0), body, lanes):
                for k in range(lanes):
                    v = row[j + k]
                    hi[k] = v if v > hi[k] else hi[k]
                    lo[k] = v if v < lo[k] else lo[k]
            for k in range(LANES):
                top, bottom = max(top, hi[k]), min(bottom, lo[k])
            for j in range(body, np.uint64(m)):
                top, bottom = max(top, row[j]), min(bottom, row[j])
        signal[r] = top - bottom > tolerance * max(top, -bottom)
        if n_blocks:
            for i in range(len(runs) - 1):
                a, b = mins[left[i]], mins[right[i]]
                for j in range(np.uint64(runs[i]), np.uint64(runs[i + 1])):
                    row[j] -= a * w_left[j] + b * w_right[j]
            # summed apart: a sum inside each short run pays a reduction per run
            total = 0.0
            for j in range(m):
                total += row[j]
        scale = total / m
        # a spectrum with no signal above its baseline stays all-zero
        inverse[r] = 1.0 / scale if scale > 0 else 1.0
