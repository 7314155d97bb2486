"""Batch inference: raw spectra -> class probabilities, in cache-sized
chunks on all cores.

Each chunk of rows goes through the whole computation while its
intermediates are still in cache, so the raw data is read once from memory
and nothing of its size is ever written. Every step is one NumPy call for
all bins at once (no loop over bins), so the cost per spectrum barely
depends on how many bins were kept:

1. segment means: one BLAS matrix-vector product per spectrum over a
   reshape of its points (:meth:`.SegmentPreprocessor.segment_means_fast`);
2. on those, one compiled pass per row
   (:meth:`.SegmentPreprocessor.normalise_rows`): the finite and flat
   checks, the baseline's block minima, the baseline subtracted in place
   and the normalising scale;
3. the first layer of every bin network: the bins' windows of segment means
   gathered as ``(rows, bins, segments_per_bin)`` and one batched product
   with the stacked weights, then ``h = . / scale + b1`` -- the normalised
   spectrum is never formed;
4. second layer (one batched product), clipped log-softmax of every bin
   (element-wise over a handful of classes), and the weighted vote as one
   product with a ``(bins * classes, classes)`` matrix.

With a strain alignment (:mod:`.align`) each row's strain is estimated
(one product with the templates) and undone (one compiled pass per row:
the best template, its refinement and the interpolation) before step 3,
which takes its windows from the aligned rows (neither the estimate nor
the linear interpolation depends on a row's scale).

Chunks run on a small pool of threads: NumPy releases the GIL in its loops
and in the BLAS products, which is where the time goes; BLAS itself is kept
single-threaded there (its threads would only fight ours for the cores over
products this small; :mod:`.blas_limit`). The result equals the reference computation
(``SegmentPreprocessor.normalise`` then ``FusedVote.proba``) to float32
rounding.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .blas_limit import BlasLimit
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


#: seconds BLAS stays at one thread after the last batch (:mod:`.blas_limit`):
#: a stream's next train, evaluate's next chunk, come sooner
BLAS_HOLD_S = 1.0
_BLAS = BlasLimit(BLAS_HOLD_S)


def _forget_pool():
    # a forked child has the pool object but none of its threads, nor the
    # limit's holder (its BLAS stays at one thread if forked while held)
    global _POOL, _POOL_LOCK, _BLAS
    _POOL, _POOL_LOCK = None, threading.Lock()
    _BLAS = BlasLimit(BLAS_HOLD_S)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


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
        # the weighted vote over bins as a product: (bins * classes, classes)
        K = self.n_classes
        vote = np.zeros((self.n_bins, K, K), np.float32)
        vote[:, np.arange(K), np.arange(K)] = fused.vote[:, None]
        self.vote_matrix = vote.reshape(self.n_bins * K, K)
        self.beta = fused.beta
        self.log_eps = np.float32(np.log(EPS))

    def _hidden(self, S, inv, inputs=None):
        """First-layer activations of every bin, (rows, bins, hidden);
        ``inputs``: the bins' windows (rows, bins, width) if not from ``S``."""
        n = len(S)
        if inputs is None:
            windows = np.lib.stride_tricks.sliding_window_view(S, self.width, axis=1)
            inputs = windows[:, self.starts]  # (rows, bins, width): one gather
        h = np.empty((n, self.n_bins, self.hidden), np.float32)
        np.matmul(inputs.transpose(1, 0, 2), self.W1, out=h.transpose(1, 0, 2))
        flat = h.reshape(n, -1)
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

    def _chunk(self, X, P, finite, signal, a, b, resample=None, votes=None):
        S = self.prep.segment_means_fast(X[a:b] if resample is None else resample(X[a:b]))
        inv = self.prep.normalise_rows(S, finite[a:b], signal[a:b])  # S: baseline-free
        if self.aligner is None:
            h = self._hidden(S, inv)
        else:
            # neither the strain estimate (argmax and parabola of
            # correlations) nor the linear interpolation changes with a
            # row's positive scale: the scale is applied to the first
            # layer's products, as without alignment
            Z = self.aligner.align(S, self.aligned_columns)
            h = self._hidden(S, inv, Z.reshape(len(S), self.n_bins, self.width)) \
                if self.window_columns else self._hidden(Z, inv)
        o = self._bin_log_proba(h)
        P[a:b] = self._vote(o)
        if votes is not None:
            votes[a:b] = o.argmax(2)

    def score(self, X, resample=None, bin_votes=False):
        """``(P, finite, signal)`` for the rows of ``X`` (n, n_points): class
        probabilities (float32; a row with NaN or inf is scored as if all
        zero), which rows are finite, and which have a signal (not flat).
        ``resample``: brings ``X``'s points onto the model's, chunk by chunk
        (:class:`.resample.ResamplePlan`), where they are others.
        ``bin_votes``: also each bin's own most probable class (n, bins), last."""
        n = len(X)
        P = np.empty((n, self.n_classes), np.float32)
        finite = np.empty(n, bool)
        signal = np.empty(n, bool)
        votes = np.empty((n, self.n_bins), np.intp) if bin_votes else None
        bounds = [(a, min(a + CHUNK_ROWS, n)) for a in range(0, n, CHUNK_ROWS)]
        if len(bounds) == 1 or _threads() == 1:
            for a, b in bounds:
                self._chunk(X, P, finite, signal, a, b, resample, votes)
        else:
            with _BLAS:
                for _ in _pool().map(lambda ab: self._chunk(X, P, finite, signal, *ab, resample, votes),
                                     bounds):
                    pass
        return (P, finite, signal, votes) if bin_votes else (P, finite, signal)
