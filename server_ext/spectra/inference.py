"""Batch inference: raw spectra -> class probabilities, in cache-sized
chunks on all cores.

Each chunk of rows goes through the whole computation while its
intermediates are still in cache, so the raw data is read once from memory
and nothing of its size is ever written. Every step is one NumPy call for
all bins at once (no loop over bins), so the cost per spectrum barely
depends on how many bins were kept:

1. segment means: one BLAS matrix-vector product per spectrum over a
   reshape of its points (:meth:`.SegmentPreprocessor.segment_means_fast`);
2. the finite and flat checks, and the baseline's block minima, on those;
3. the normaliser: baseline and normalising scale are linear in the segment
   means and block minima, so one product ``mins @ baseline_W`` gives the
   baseline's share of every first-layer unit of every bin and of the scale;
4. the first layer of every bin network: the bins' windows of segment means
   gathered as ``(rows, bins, segments_per_bin)`` and one batched product
   with the stacked weights, then ``h = (. - baseline share) / scale + b1``
   -- the normalised spectrum is never formed;
5. second layer (one batched product), clipped log-softmax of every bin
   (element-wise over a handful of classes), and the weighted vote as one
   product with a ``(bins * classes, classes)`` matrix.

With a strain alignment (:mod:`.align`) the baseline is subtracted from
the segment means (one product with its interpolation matrix), each row's
strain is estimated (one product with the templates) and undone (one
compiled pass per row: the best template, its refinement and the
interpolation), and the first layer takes its windows from the aligned rows; the
normalising scale is applied to its products as in step 4 (neither the
estimate nor the linear interpolation depends on a row's scale).

Chunks run on a small pool of threads: NumPy releases the GIL in its loops
and in the BLAS products, which is where the time goes; BLAS itself is kept
single-threaded there (its threads would only fight ours for the cores over
products this small). The result equals the reference computation
(``SegmentPreprocessor.normalise`` then ``FusedVote.proba``) to float32
rounding.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .fused import EPS

__all__ = ["InferencePlan", "CHUNK_ROWS"]

#: rows per chunk: a chunk's segment means and activations stay within L2
#: (512 measured 1.5-2x faster than 1024 per spectrum on this machine's 2 cores)
CHUNK_ROWS = 512
_POOL = None
_POOL_LOCK = threading.Lock()


def _threads():
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_threads(), thread_name_prefix="spectra-infer")
        return _POOL


_CONTROLLER = None


def _single_threaded_blas():
    """Limit BLAS to one thread for the duration (``threadpoolctl``); the
    controller is made once: finding the libraries costs milliseconds,
    the limit itself microseconds."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def _forget_pool():
    # a forked child has the pool object but none of its threads
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _inverse(scale):
    """The inverse normalising scales (rows, 1) of baseline-free row means
    ``scale`` (overwritten): 1 where there is no signal above the baseline,
    as :meth:`.SegmentPreprocessor.normalise`."""
    scale[~(scale > 0)] = 1.0
    return (1.0 / scale)[:, None]


class InferencePlan:
    """The fitted preprocessing and fused vote, rearranged for one pass.

    ``prep``: a :class:`.preprocess.SegmentPreprocessor`; ``fused``: a
    :class:`.fused.FusedVote` whose bins are consecutive segments;
    ``aligner``: an optional :class:`.align.StrainAligner`.
    """

    def __init__(self, prep, fused, aligner=None):
        if not fused._consecutive:
            raise ValueError("the one-pass inference needs bins of consecutive segments")
        self.prep, self.fused, self.aligner = prep, fused, aligner
        if aligner is not None:
            # only the kept bins' windows are aligned, unless they overlap so
            # much that aligning every segment once is less work
            self.window_columns = fused.segments.size <= prep.n_segments
            self.aligned_columns = aligner.columns(
                fused.segments.reshape(-1) if self.window_columns else None)
        self.n_bins, self.width = fused.segments.shape
        self.hidden = fused.W1.shape[2]
        self.n_classes = fused.W2.shape[2]
        self.starts = np.ascontiguousarray(fused.segments[:, 0])
        self.W1, self.W2 = fused.W1, fused.W2
        self.b1 = fused.b1.reshape(-1)  # (bins * hidden,)
        self.b2 = fused.b2.reshape(-1)  # (bins * classes,)
        self.mean_weights = np.full(prep.n_segments, 1.0 / prep.n_segments, np.float32)
        if prep.baseline_block:
            B = prep._interp  # (blocks, segments): baseline = mins @ B
            if aligner is None:
                # (blocks, bins * hidden + 1): the baseline's share of every
                # first-layer unit, then of the normalising scale (the mean)
                self.baseline_W = np.ascontiguousarray(np.concatenate(
                    [B[:, s:s + self.width] @ w for s, w in zip(self.starts, self.W1)]
                    + [B.mean(axis=1, keepdims=True)], axis=1), dtype=np.float32)
            else:  # aligned: the baseline is subtracted, only its share of the scale
                self.baseline_mean = B.mean(axis=1)
        # the weighted vote over bins as a product: (bins * classes, classes)
        K = self.n_classes
        vote = np.zeros((self.n_bins, K, K), np.float32)
        vote[:, np.arange(K), np.arange(K)] = fused.vote[:, None]
        self.vote_matrix = vote.reshape(self.n_bins * K, K)
        self.beta = fused.beta
        self.log_eps = np.float32(np.log(EPS))

    def _normaliser(self, S, scale):
        """``(baseline, inv)``: the baseline's share of every first-layer
        unit (rows, bins * hidden), or ``None`` without a baseline; and the
        inverse normalising scale (rows, 1). ``scale``: the rows' mean
        segment means (overwritten)."""
        baseline = None
        if self.prep.baseline_block:
            share = self.prep.block_minima(S) @ self.baseline_W
            scale -= share[:, -1]
            baseline = share[:, :-1]
        return baseline, _inverse(scale)

    def _hidden(self, S, baseline, inv, inputs=None):
        """First-layer activations of every bin, (rows, bins, hidden);
        ``inputs``: the bins' windows (rows, bins, width) if not from ``S``."""
        n = len(S)
        if inputs is None:
            windows = np.lib.stride_tricks.sliding_window_view(S, self.width, axis=1)
            inputs = windows[:, self.starts]  # (rows, bins, width): one gather
        h = np.empty((n, self.n_bins, self.hidden), np.float32)
        np.matmul(inputs.transpose(1, 0, 2), self.W1, out=h.transpose(1, 0, 2))
        flat = h.reshape(n, -1)
        if baseline is not None:
            flat -= baseline
        flat *= inv
        flat += self.b1
        np.maximum(flat, 0.0, out=flat)
        return h

    def _bin_log_proba(self, h):
        """Every bin's clipped class log-probabilities, (rows, bins, classes):
        the reductions over the few classes are element-wise operations
        across the classes' strided slices."""
        n, K = len(h), self.n_classes
        o = np.empty((n, self.n_bins, K), np.float32)
        np.matmul(h.transpose(1, 0, 2), self.W2, out=o.transpose(1, 0, 2))
        o.reshape(n, -1)[...] += self.b2
        top = o[..., 0].copy()
        for k in range(1, K):
            np.maximum(top, o[..., k], out=top)
        o -= top[..., None]
        e = np.exp(o)
        total = e[..., 0].copy()
        for k in range(1, K):
            total += e[..., k]
        o -= np.log(total, out=total)[..., None]
        np.maximum(o, self.log_eps, out=o)
        return o

    def _vote(self, o):
        """The calibrated weighted vote (rows, classes) of clipped bin
        log-probabilities."""
        L = o.reshape(len(o), -1) @ self.vote_matrix
        L *= self.beta
        top = L[:, 0].copy()
        for k in range(1, self.n_classes):
            np.maximum(top, L[:, k], out=top)
        L -= top[:, None]
        np.exp(L, out=L)
        L /= L.sum(axis=1, keepdims=True)
        return L

    def _chunk(self, X, P, finite, signal, a, b):
        S = self.prep.segment_means_fast(X[a:b])
        mean = S @ self.mean_weights
        # NaN and inf propagate into the mean: one check per row, not per segment
        ok = np.isfinite(mean)
        if not ok.all():
            ok = np.isfinite(S).all(axis=1)  # a mean that overflowed is no NaN
            S[~ok] = 0.0
            mean = S @ self.mean_weights
        finite[a:b] = ok
        signal[a:b] = self.prep.has_signal(S)
        h = self._hidden(S, *self._normaliser(S, mean)) if self.aligner is None else \
            self._hidden_aligned(S, mean)
        P[a:b] = self._vote(self._bin_log_proba(h))

    def _hidden_aligned(self, S, mean):
        """First-layer activations of every bin with each row's strain
        undone. The alignment interpolates linearly and the strain estimate
        compares a row with the templates (argmax and parabola), so neither
        changes with a row's positive scale: the baseline is removed from
        the segment means in place (``S`` and ``mean`` are overwritten) and
        the normalising scale applied to the first layer's products, as
        without alignment -- the normalised spectrum is never formed."""
        if self.prep.baseline_block:
            mins = self.prep.block_minima(S)
            S -= mins @ self.prep._interp
            mean -= mins @ self.baseline_mean
        inv = _inverse(mean)
        Z = self.aligner.align(S, self.aligned_columns)
        if self.window_columns:
            return self._hidden(S, None, inv, Z.reshape(len(S), self.n_bins, self.width))
        return self._hidden(Z, None, inv)

    def score(self, X):
        """``(P, finite, signal)`` for the rows of ``X`` (n, n_points): class
        probabilities (float32; a row with NaN or inf is scored as if all
        zero), which rows are finite, and which have a signal (not flat)."""
        n = len(X)
        P = np.empty((n, self.n_classes), np.float32)
        finite = np.empty(n, bool)
        signal = np.empty(n, bool)
        bounds = [(a, min(a + CHUNK_ROWS, n)) for a in range(0, n, CHUNK_ROWS)]
        if len(bounds) == 1 or _threads() == 1:
            for a, b in bounds:
                self._chunk(X, P, finite, signal, a, b)
            return P, finite, signal
        with _single_threaded_blas():
            for _ in _pool().map(lambda ab: self._chunk(X, P, finite, signal, *ab), bounds):
                pass
        return P, finite, signal
