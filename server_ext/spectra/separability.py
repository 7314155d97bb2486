"""Held-out separability of candidate bins and their vote weights.

A candidate bin is a window of ``segments_per_bin`` consecutive segments. Its
separability is the accuracy, on *held-out* labelled spectra (perturbed
copies of spectra not used for training in that fold), of a nearest-centroid
classifier with a shared diagonal variance on the bin's features. All
candidates and all folds are evaluated at once with cumulative sums, so this
costs milliseconds. Measuring on held-out folds, with strain/noise/intensity
perturbations applied to the held-out copies, is what keeps a bin that merely
memorised its training curves (or a shift) from getting a high weight.
"""

from __future__ import annotations

import numpy as np

__all__ = ["candidate_starts", "stratified_folds", "cv_separability", "pair_separability",
           "vote_weight", "select_bins"]


def candidate_starts(n_segments: int, width: int, placement: str) -> np.ndarray:
    """Start segments of candidate windows: the fixed grid of equal bins, or
    (``"adaptive"``) every quarter bin so that a bin can be centred on where
    the classes differ. Either way the last window ends at the last segment,
    so every segment is in some candidate."""
    last = n_segments - width
    stride = width if placement == "fixed" else max(1, width // 4)
    starts = np.arange(0, last + 1, stride)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


def stratified_folds(y_idx: np.ndarray, n_folds: int, rng) -> np.ndarray:
    """Fold number per labelled spectrum, each class spread over the folds."""
    folds = np.empty(len(y_idx), dtype=np.intp)
    for c in np.unique(y_idx):
        members = np.flatnonzero(y_idx == c)
        rng.shuffle(members)
        folds[members] = np.arange(len(members)) % n_folds
    return folds


def _window_sums(E, starts, width):
    """Sum of E[..., s:s+width] for every start s (last axis = segments)."""
    c = np.concatenate([np.zeros(E.shape[:-1] + (1,), E.dtype), np.cumsum(E, axis=-1)], axis=-1)
    return c[..., starts + width] - c[..., starts]


def _held_out_distances(Z, y_idx, splits, starts, width, n_classes):
    """Per fold, ``(D, truth)``: the summed squared standardised distance
    of every held-out copy to every class centroid in every candidate
    window, (n_test, classes, candidates), and the copies' classes (the
    centroids and a shared diagonal variance from the fold's training
    copies)."""
    for train, test in splits:
        Zt, yt = Z[train], y_idx[train]
        mu = np.stack([Zt[yt == c].mean(0) for c in range(n_classes)])
        resid = Zt - mu[yt]
        var = resid.var(0) if len(Zt) > n_classes else np.zeros(Z.shape[1])
        var = np.maximum(var, 1e-2 * var.mean() + 1e-12)
        # E[i, c, s] = squared standardised distance of held-out i to class c
        E = (Z[test][:, None, :] - mu[None]) ** 2 / var
        yield _window_sums(E, starts, width), y_idx[test]


def cv_separability(Z, y_idx, splits, starts, width, n_classes):
    """Held-out accuracy and mean true-class probability per candidate.

    ``Z``: features of perturbed copies (n, n_segments); ``y_idx``: class
    index per copy; ``splits``: (train_mask, test_mask) pairs over the copies,
    one per fold.
    """
    acc = np.zeros(len(starts))
    soft = np.zeros(len(starts))
    for D, truth in _held_out_distances(Z, y_idx, splits, starts, width, n_classes):
        truth = truth[:, None]
        acc += (D.argmin(1) == truth).mean(0)
        logit = -0.5 * D / width
        logit -= logit.max(1, keepdims=True)
        p = np.exp(logit)
        p /= p.sum(1, keepdims=True)
        soft += np.take_along_axis(p, truth[:, None, :], axis=1)[:, 0].mean(0)
    k = len(splits)
    return acc / k, soft / k


def pair_separability(Z, y_idx, splits, starts, width, n_classes):
    """Per class pair, the held-out accuracy of the best candidate window
    at telling the pair apart (nearest centroid of the two): (classes,
    classes), symmetric, 1 on the diagonal. The hardest pair is what a
    change of the features (e.g. the strain alignment) must not cost."""
    acc = np.zeros((n_classes, n_classes, len(starts)))
    folds = np.zeros((n_classes, n_classes, 1))
    for D, truth in _held_out_distances(Z, y_idx, splits, starts, width, n_classes):
        for c in range(n_classes):
            for d in range(c + 1, n_classes):
                m = (truth == c) | (truth == d)
                if m.any():
                    right = np.where(D[m, c] <= D[m, d], c, d) == truth[m][:, None]
                    acc[c, d] += right.mean(0)
                    folds[c, d] += 1
    best = (acc / np.maximum(folds, 1)).max(axis=2)
    best = best + best.T
    np.fill_diagonal(best, 1.0)
    return best


def vote_weight(acc, n_classes):
    """The published weight ``W = max(1.4337 acc^2 - 0.4337, 0)`` (0 at 55 %,
    1 at 100 % for two classes), generalised to K classes by putting the zero
    5 points above chance: ``W = max((acc^2 - t^2) / (1 - t^2), 0)``,
    ``t = 1/K + 0.05``."""
    t = 1.0 / n_classes + 0.05
    return np.maximum((np.asarray(acc) ** 2 - t * t) / (1.0 - t * t), 0.0)


def select_bins(starts, width, acc, soft, weights, max_bins, max_overlap=0.5):
    """Greedy selection of the best-separated candidates, skipping any that
    overlaps an already chosen bin by more than ``max_overlap``; candidates
    with zero weight are never chosen unless nothing else is left (then the
    single best one is kept, so a model always exists)."""
    order = np.lexsort((-soft, -acc))
    chosen = []
    for j in order:
        if len(chosen) >= max_bins or weights[j] <= 0:
            break
        s = starts[j]
        if all(abs(int(s) - int(starts[c])) >= width * (1.0 - max_overlap) for c in chosen):
            chosen.append(j)
    if not chosen:
        chosen = [order[0]]
    return np.array(sorted(chosen, key=lambda c: starts[c]), dtype=np.intp)
