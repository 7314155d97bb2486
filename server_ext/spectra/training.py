"""Training steps of ``BinnedSpectraClassifier.fit`` after the bins are chosen:
held-out splits, the per-bin networks (one per fold and one on everything,
trained side by side), their held-out accuracy, and the calibrated vote.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Optional

import numpy as np

from .augment import mixup
from .separability import stratified_folds, vote_weight

__all__ = ["FitProgress", "TrainedBins", "held_out_splits", "train_bin_networks"]


class FitProgress(NamedTuple):
    """One progress report of ``fit``: ``stage`` is ``"screen"`` (bins
    chosen; ``total`` = bins to train), ``"train"`` (``done`` of ``total``
    epochs of all bins' networks) or ``"calibrate"`` (vote weights fitted;
    ``total`` = bins kept)."""

    stage: str
    done: int
    total: int


ProgressHook = Optional[Callable[[FitProgress], None]]


@dataclasses.dataclass
class TrainedBins:
    """Result of :func:`train_bin_networks` for the screened bins.

    ``held_out_accuracy``: each bin network's accuracy on held-out copies;
    ``published_weights``: the published weight of that accuracy;
    ``kept``: bins that keep a vote; ``vote_weights``: fitted vote weight
    per bin (largest 1, 0 where not kept); ``temperature``: the vote's
    calibrated temperature; ``networks``: the networks trained on all
    copies, ``(mean, var, K1, c1, K2, c2)`` as from
    :func:`.networks.train_stacked`, one slice per bin.
    """

    held_out_accuracy: np.ndarray
    published_weights: np.ndarray
    kept: np.ndarray
    vote_weights: np.ndarray
    temperature: float
    networks: tuple


def held_out_splits(y_idx, src, cv_folds, rng):
    """``(train_mask, test_mask)`` pairs over the copies (``src``: labelled
    spectrum of each copy, the labelled spectra first; ``y_idx``: class of
    each labelled spectrum): whole labelled spectra, with all their copies,
    held out per fold. With a class of a single labelled spectrum,
    independent perturbations of the same spectra are held out instead."""
    counts = np.bincount(y_idx)
    n_folds = int(min(cv_folds, counts.min()))
    if n_folds >= 2:
        fold = stratified_folds(y_idx, n_folds, rng)[src]
        return [(fold != k, fold == k) for k in range(n_folds)]
    n_labelled = len(y_idx)
    odd = np.zeros(len(src), bool)
    odd[n_labelled:] = (np.arange(len(src) - n_labelled) % 2).astype(bool)
    return [(~odd, odd), (odd, ~odd)]


def _with_mixtures(features, targets, masks, n_mix, rng, scales=None):
    """Append ``n_mix`` label-mixed pairs; a mixture trains a group only if
    both its sources do."""
    if not n_mix:
        return features, targets, masks
    mixed, mixed_targets, (i, j) = mixup(features, targets, n_mix, rng, scales)
    return (np.concatenate([features, mixed]), np.concatenate([targets, mixed_targets]),
            np.concatenate([masks, masks[i] & masks[j]]))


def train_bin_networks(features, labels, splits, n_classes, *, hidden_units, epochs,
                       learning_rate, batch_size, mixup_fraction, seeded, rng,
                       verbose=0, progress: ProgressHook = None,
                       targets=None, scales=None) -> TrainedBins:
    """Train the bin networks once per fold and once on all copies, side by
    side; score each bin on its held-out copies; fit the vote on held-out
    copies and held-out mixtures.

    ``features``: (n_copies, bins, segments_per_bin); ``labels``: class
    index per copy; ``splits``: from :func:`held_out_splits`; ``seeded``:
    network initialisation and batches drawn from ``rng`` (reproducible);
    ``targets``: optional (n_copies, n_classes) training and calibration
    targets (the estimated fractions of copies of a labelled mixture, see
    :mod:`.mixtures`; default one-hot ``labels``); ``scales``: optional
    scattering power per copy, what the mixtures are mixed in proportion
    to (see :func:`.augment.mixup`). Held-out accuracy is always measured
    against ``labels``.
    """
    from .fused import bin_proba, fit_vote
    from .networks import fold_standardisation, train_stacked

    n, n_bins = features.shape[:2]
    onehot = (np.eye(n_classes, dtype=np.float32)[labels] if targets is None
              else np.asarray(targets, np.float32))
    groups = np.stack([train for train, _ in splits] + [np.ones(n, bool)], axis=1)
    inputs, targets, masks = _with_mixtures(features, onehot, groups, int(mixup_fraction * n), rng,
                                            scales)
    seed = int(rng.integers(2**31 - 1)) if seeded else None
    on_epochs = None if progress is None else (
        lambda done: progress(FitProgress("train", done, epochs)))
    mean, var, K1, c1, K2, c2 = train_stacked(
        inputs, targets, masks, hidden_units, epochs, learning_rate, batch_size, seed,
        verbose, on_epochs=on_epochs)

    def group(g):
        sl = slice(g * n_bins, (g + 1) * n_bins)
        return mean, var, K1[sl], c1[sl], K2[sl], c2[sl]

    def proba(x, g):  # (n, bins, segments) -> (n, bins, classes)
        _, _, k1, b1, k2, b2 = group(g)
        W1, b1 = fold_standardisation(mean, var, k1, b1)
        P = bin_proba(np.ascontiguousarray(x.transpose(1, 0, 2), dtype=np.float32),
                      W1, b1[:, None, :], k2, b2[:, None, :])
        return P.transpose(1, 0, 2)

    # held-out predictions: pure copies, and mixtures of held-out copies
    pure, pure_labels, pure_targets, mixed, mixed_targets = [], [], [], [], []
    for g, (_, test) in enumerate(splits):
        pure.append(proba(features[test], g))
        pure_labels.append(labels[test])
        pure_targets.append(onehot[test])
        x_mix, t_mix, _ = mixup(features[test], onehot[test], int(test.sum()), rng,
                                None if scales is None else scales[test])
        if len(x_mix):
            mixed.append(proba(x_mix, g))
            mixed_targets.append(t_mix)
    pure, pure_labels = np.concatenate(pure), np.concatenate(pure_labels)
    pure_targets = np.concatenate(pure_targets)
    accuracy = (pure.argmax(2) == pure_labels[:, None]).mean(0)
    published = vote_weight(accuracy, n_classes)
    kept = published > 0
    if not kept.any():  # nothing separates: keep the best bin, say so by a tiny weight
        kept[np.argmax(accuracy)] = True
        published = np.maximum(published, 1e-3)
    calibration = np.concatenate([pure] + mixed)[:, kept].transpose(1, 0, 2)
    calibration_targets = np.concatenate([pure_targets] + mixed_targets)
    u = fit_vote(calibration, calibration_targets, published[kept])
    weights = np.zeros(n_bins)
    weights[kept] = u / u.max()
    kept &= weights > 0
    if progress is not None:
        progress(FitProgress("calibrate", int(kept.sum()), int(kept.sum())))
    return TrainedBins(accuracy, published, kept, weights, float(u.sum()), group(len(splits)))
