"""All bins' networks and the weighted vote as one batched NumPy computation.

Inference does not call Keras: the per-bin networks are unpacked into
stacked weight arrays (standardisation folded into the first layer) and
evaluated for all bins and all spectra of a batch with two batched matrix
products. The result equals the Keras models' output to float32 rounding
(checked by the tests to 1e-5).
"""

from __future__ import annotations

import numpy as np

__all__ = ["FusedVote", "bin_proba", "pool", "fit_vote"]

#: per-bin probabilities are clipped to [EPS, 1] before the log: one bin that
#: is confidently wrong (a detector artefact, a peak the training never saw)
#: can shift the vote by at most its weight times log(1/EPS)
EPS = 0.01


def bin_proba(Fb, W1, b1, W2, b2):
    """Per-bin class probabilities (bins, n, classes) of the stacked MLPs on
    inputs ``Fb`` (bins, n, features); ``b1``/``b2`` broadcast as (bins, 1,
    units). The one NumPy forward pass of the networks: inference, and the
    held-out scoring during ``fit``."""
    h = np.matmul(Fb, W1)
    h += b1
    np.maximum(h, 0.0, out=h)
    o = np.matmul(h, W2)
    o += b2
    o -= o.max(axis=2, keepdims=True)
    np.exp(o, out=o)
    o /= o.sum(axis=2, keepdims=True)
    return o


def pool(P, vote, beta):
    """Weighted log-linear vote of per-bin probabilities ``P`` (bins, n,
    classes): ``softmax(beta * sum_b vote_b * log p_b)``. ``vote`` sums to 1;
    ``beta`` is the calibrated temperature (1: weighted geometric mean)."""
    L = np.tensordot(vote, np.log(np.maximum(P, EPS)), axes=(0, 0))
    L *= beta
    L -= L.max(axis=1, keepdims=True)
    np.exp(L, out=L)
    L /= L.sum(axis=1, keepdims=True)
    return L


def fit_vote(P, T, prior, ridge=1e-3):
    """Non-negative vote weights ``u`` (bins,) minimising the cross-entropy of
    ``softmax(sum_b u_b log p_b)`` against soft targets ``T`` on held-out
    per-bin probabilities ``P`` (bins, n, classes), starting from ``prior``.

    Held-out mixtures among the targets keep the weights finite and the
    probabilities calibrated; a bin that looks separable but misleads on
    held-out spectra (e.g. it learnt a drift) loses weight. A small ridge
    keeps the problem well posed."""
    from scipy.optimize import minimize

    L = np.log(np.maximum(P, EPS)).astype(np.float64)  # (bins, n, classes)
    T = np.asarray(T, np.float64)

    def objective(u):
        z = np.tensordot(u, L, axes=(0, 0))
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        p = np.exp(logp)
        loss = -(T * logp).sum(1).mean() + ridge * (u * u).sum()
        grad = -np.einsum("bnc,nc->b", L, T - p) / len(T) + 2 * ridge * u
        return loss, grad

    # start at the published weights, scaled to the best single temperature
    prior = np.asarray(prior, np.float64)
    scales = np.logspace(-1, 2, 31)
    start = prior * scales[int(np.argmin([objective(prior * s)[0] for s in scales]))]
    res = minimize(objective, start, jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * len(prior))
    u = res.x if np.isfinite(res.fun) and res.x.sum() > 0 else start
    return np.maximum(u, 0.0)


class FusedVote:
    """Batched per-bin MLPs plus the weighted vote.

    ``segments`` (bins, features): the segment indices feeding each bin;
    ``W1`` (bins, features, hidden), ``b1`` (bins, hidden), ``W2`` (bins,
    hidden, classes), ``b2`` (bins, classes); ``weights`` (bins,); ``beta``:
    the vote's calibrated temperature (see :func:`pool`).
    """

    def __init__(self, segments, W1, b1, W2, b2, weights, beta=1.0):
        self.segments = np.asarray(segments, dtype=np.intp)
        # a bin's segments are consecutive: its inputs are a slice, no gather
        first = self.segments[:, :1]
        self._consecutive = bool(
            (self.segments == first + np.arange(self.segments.shape[1])).all())
        self.W1 = np.ascontiguousarray(W1, dtype=np.float32)
        self.b1 = np.ascontiguousarray(b1, dtype=np.float32)[:, None, :]
        self.W2 = np.ascontiguousarray(W2, dtype=np.float32)
        self.b2 = np.ascontiguousarray(b2, dtype=np.float32)[:, None, :]
        w = np.asarray(weights, dtype=np.float64)
        self.vote = (w / w.sum()).astype(np.float32)
        self.beta = np.float32(beta)

    def features(self, Z):
        """Per-bin inputs (bins, n, features) gathered from segment features."""
        return np.ascontiguousarray(np.moveaxis(Z[:, self.segments], 1, 0))

    def bin_proba(self, Fb):
        """Per-bin class probabilities (bins, n, classes) from ``features``."""
        return bin_proba(Fb, self.W1, self.b1, self.W2, self.b2)

    def proba(self, Z):
        """Calibrated weighted vote (n, classes) from segment features.

        Bin by bin on slices of ``Z`` (no gathered copy): two small matrix
        products, then the clipped log-softmax added to the vote. The same
        as ``pool(bin_proba(features(Z)))`` to float32 rounding, with
        temporaries of (n, hidden) instead of (bins, n, features)."""
        if not self._consecutive:
            return pool(self.bin_proba(self.features(Z)), self.vote, self.beta)
        width = self.segments.shape[1]
        log_eps = np.float32(np.log(EPS))
        L = np.zeros((len(Z), self.W2.shape[2]), np.float32)
        for b, start in enumerate(self.segments[:, 0]):
            h = Z[:, start:start + width] @ self.W1[b]
            h += self.b1[b]
            np.maximum(h, 0.0, out=h)
            o = h @ self.W2[b]
            o += self.b2[b]
            o -= o.max(axis=1, keepdims=True)
            o -= np.log(np.exp(o).sum(axis=1, keepdims=True))
            np.maximum(o, log_eps, out=o)
            o *= self.vote[b]
            L += o
        L *= self.beta
        L -= L.max(axis=1, keepdims=True)
        np.exp(L, out=L)
        L /= L.sum(axis=1, keepdims=True)
        return L
