"""Batch inference: raw spectra -> class probabilities, in cache-sized
chunks on all cores.

Each chunk of rows goes through the whole computation while its
intermediates are still in cache, so the raw data is read once from memory
and nothing of its size is ever written:

1. segment means: one ``add.reduceat`` pass over the raw points (pooling
   before any matrix product);
2. the finite and flat checks, and the baseline's block minima, on those;
3. the first layer of every bin network with the baseline and the
   normalisation folded in: baseline and normalising scale are linear in
   the segment means and block minima, so ``h = (S_bin @ W1 - mins @ BW1) /
   scale + b1`` -- the normalised spectrum is never formed;
4. second layer, clipped log-softmax, weighted vote.

Chunks run on a small pool of threads: NumPy releases the GIL in
``add.reduceat`` and in the BLAS products, which is where the time goes;
BLAS itself is kept single-threaded there (its threads would only fight
ours for the cores over products this small). The result equals the
reference computation (``SegmentPreprocessor.normalise`` then
``FusedVote.proba``) to float32 rounding.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .fused import EPS

__all__ = ["InferencePlan", "CHUNK_ROWS"]

#: rows per chunk: a chunk's segment means and activations stay within L2
CHUNK_ROWS = 1024
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


class InferencePlan:
    """The fitted preprocessing and fused vote, rearranged for one pass.

    ``prep``: a :class:`.preprocess.SegmentPreprocessor`; ``fused``: a
    :class:`.fused.FusedVote` whose bins are consecutive segments.
    """

    def __init__(self, prep, fused):
        if not fused._consecutive:
            raise ValueError("the one-pass inference needs bins of consecutive segments")
        self.prep, self.fused = prep, fused
        self.width = fused.segments.shape[1]
        self.starts = [int(s) for s in fused.segments[:, 0]]
        self.W1, self.b1 = fused.W1, fused.b1[:, 0]
        self.W2T = np.ascontiguousarray(fused.W2.transpose(0, 2, 1))
        self.b2 = fused.b2[:, 0]
        self.vote, self.beta = fused.vote, fused.beta
        self.n_classes = fused.W2.shape[2]
        self.mean_weights = np.full(prep.n_segments, 1.0 / prep.n_segments, np.float32)
        if prep.baseline_block:
            B = prep._interp  # (blocks, segments): baseline = mins @ B
            self.baseline_W1 = [np.ascontiguousarray(B[:, s:s + self.width] @ w)
                                for s, w in zip(self.starts, self.W1)]
            self.baseline_mean = B.mean(axis=1).astype(np.float32)

    def _block_minima(self, S):
        prep = self.prep
        if not prep._block:
            return np.minimum.reduceat(S, prep.block_starts, axis=1)
        # strided minimum across the block: vectorised over rows and blocks
        blocks = S.reshape(len(S), -1, prep._block)
        mins = blocks[:, :, 0].copy()
        for j in range(1, prep._block):
            np.minimum(mins, blocks[:, :, j], out=mins)
        return mins

    def _chunk(self, X, P, finite, signal, a, b):
        S = self.prep.segment_means(X[a:b])
        ok = np.isfinite(S).all(axis=1)
        if not ok.all():
            S[~ok] = 0.0
        finite[a:b] = ok
        signal[a:b] = self.prep.has_signal(S)
        scale = S @ self.mean_weights
        mins = None
        if self.prep.baseline_block:
            mins = self._block_minima(S)
            scale -= mins @ self.baseline_mean
        scale[~(scale > 0)] = 1.0  # as normalise: no signal above the baseline
        inv = (1.0 / scale)[:, None]
        log_eps = np.float32(np.log(EPS))
        # class-major (classes, rows): the reductions over the few classes
        # become element-wise operations across a handful of long rows
        L = np.zeros((self.n_classes, b - a), np.float32)
        for k, start in enumerate(self.starts):
            h = S[:, start:start + self.width] @ self.W1[k]
            if mins is not None:
                h -= mins @ self.baseline_W1[k]
            h *= inv
            h += self.b1[k]
            np.maximum(h, 0.0, out=h)
            o = self.W2T[k] @ h.T
            o += self.b2[k][:, None]
            o -= o.max(axis=0)
            o -= np.log(np.exp(o).sum(axis=0))
            np.maximum(o, log_eps, out=o)
            o *= self.vote[k]
            L += o
        L *= self.beta
        L -= L.max(axis=0)
        np.exp(L, out=L)
        L /= L.sum(axis=0)
        P[a:b] = L.T

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
