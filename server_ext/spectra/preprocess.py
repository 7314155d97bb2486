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
"""

from __future__ import annotations

import numpy as np

from .errors import SpectraError

__all__ = ["SegmentPreprocessor", "FLAT_TOLERANCE"]

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
    """

    def __init__(self, n_points: int, n_segments: int, baseline_block: int | None):
        if not 1 <= n_segments <= n_points:
            raise SpectraError(f"{n_segments} segments do not fit {n_points} points")
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
        else:
            self.block_starts = np.zeros(0, np.intp)

    def config(self) -> dict:
        return {"n_points": self.n_points, "n_segments": self.n_segments,
                "baseline_block": self.baseline_block}

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
        return S

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
        return S

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
