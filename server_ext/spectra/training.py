"""Training steps of ``BinnedSpectraClassifier.fit`` after the bins are chosen:
held-out splits, the per-bin networks (one per fold and one on everything,
trained side by side), their held-out accuracy, and the calibrated vote.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

import numpy as np

from .augment import mixup
from .separability import stratified_folds, vote_weight

if TYPE_CHECKING:
    from .networks import BinNetworks

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
    calibrated temperature; ``networks``: the bins' networks trained on all
    copies.
    """

    held_out_accuracy: np.ndarray
    published_weights: np.ndarray
    kept: np.ndarray
    vote_weights: np.ndarray
    temperature: float
    networks: "BinNetworks"


def held_out_splits(y_idx, src, cv_folds, rng, n_measured):
    """``(train_mask, test_mask)`` pairs over the copies (``src``: labelled
    spectrum of each copy, the ``n_measured`` rows of the labelled spectra
    themselves first; ``y_idx``: class of each labelled spectrum): whole
    labelled spectra, with all their copies, held out per fold. With a
    class of a single labelled spectrum, independent perturbations of the
    same spectra are held out instead."""
    counts = np.bincount(y_idx)
    n_folds = int(min(cv_folds, counts.min()))
    if n_folds >= 2:
        fold = stratified_folds(y_idx, n_folds, rng)[src]
        return [(fold != k, fold == k) for k in range(n_folds)]
    odd = np.zeros(len(src), bool)
    odd[n_measured:] = (np.arange(len(src) - n_measured) % 2).astype(bool)
    return [(~odd, odd), (odd, ~odd)]


def _with_mixtures(features, targets, masks, n_mix, rng, scales=None):
    """Append ``n_mix`` label-mixed pairs; a mixture trains a group only if
    both its sources do."""
    if not n_mix:
        return features, targets, masks
    mixed, mixed_targets, (i, j) = mixup(features, targets, n_mix, rng, scales)
    return (np.concatenate([features, mixed]), np.concatenate([targets, mixed_targets]),
            np.concatenate([masks, masks[i] & masks[j]]))


class _HeldOut(NamedTuple):
    """The bin networks' probabilities (n, bins, classes) on copies their
    fold did not train on: ``pure`` copies with their ``labels``; and the
    calibration set, the pure copies then mixtures of held-out copies, with
    ``calibration_targets``."""

    pure: np.ndarray
    labels: np.ndarray
    calibration: np.ndarray
    calibration_targets: np.ndarray


def _proba(folded, x):
    """(n, bins, segments) -> each bin's class probabilities (n, bins, classes);
    ``folded``: :meth:`.networks.BinNetworks.folded` of the bins' networks."""
    from .fused import bin_proba

    W1, b1, W2, b2 = folded
    P = bin_proba(np.ascontiguousarray(x.transpose(1, 0, 2), dtype=np.float32),
                  W1, b1[:, None, :], W2, b2[:, None, :])
    return P.transpose(1, 0, 2)


def _held_out(fold_networks, features, labels, onehot, splits, rng, scales) -> _HeldOut:
    """Each fold's networks on its held-out copies, and on as many mixtures
    of pairs of them (mixed as :func:`.augment.mixup` mixes)."""
    pure, pure_labels, pure_targets, mixed, mixed_targets = [], [], [], [], []
    for networks, (_, test) in zip(fold_networks, splits):
        folded = networks.folded()
        pure.append(_proba(folded, features[test]))
        pure_labels.append(labels[test])
        pure_targets.append(onehot[test])
        x_mix, t_mix, _ = mixup(features[test], onehot[test], int(test.sum()), rng,
                                None if scales is None else scales[test])
        if len(x_mix):
            mixed.append(_proba(folded, x_mix))
            mixed_targets.append(t_mix)
    return _HeldOut(np.concatenate(pure), np.concatenate(pure_labels),
                    np.concatenate(pure + mixed), np.concatenate(pure_targets + mixed_targets))


def _vote(held_out: _HeldOut, n_classes):
    """Score each bin on the held-out copies, keep those whose published
    weight is positive and fit their vote: ``(accuracy, published, kept,
    weights, temperature)``, weights largest 1 and 0 where not kept."""
    from .fused import fit_vote

    accuracy = (held_out.pure.argmax(2) == held_out.labels[:, None]).mean(0)
    published = vote_weight(accuracy, n_classes)
    kept = published > 0
    if not kept.any():  # nothing separates: keep the best bin, say so by a tiny weight
        kept[np.argmax(accuracy)] = True
        published = np.maximum(published, 1e-3)
    u = fit_vote(held_out.calibration[:, kept].transpose(1, 0, 2), held_out.calibration_targets,
                 published[kept])
    weights = np.zeros(len(accuracy))
    weights[kept] = u / u.max()
    return accuracy, published, kept & (weights > 0), weights, float(u.sum())


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
    from .networks import train_stacked

    n = len(features)
    onehot = (np.eye(n_classes, dtype=np.float32)[labels] if targets is None
              else np.asarray(targets, np.float32))
    groups = np.stack([train for train, _ in splits] + [np.ones(n, bool)], axis=1)
    inputs, training_targets, masks = _with_mixtures(features, onehot, groups,
                                                     int(mixup_fraction * n), rng, scales)
    seed = int(rng.integers(2**31 - 1)) if seeded else None
    on_epochs = None if progress is None else (
        lambda done: progress(FitProgress("train", done, epochs)))
    *fold_networks, on_all = train_stacked(
        inputs, training_targets, masks, hidden_units=hidden_units, epochs=epochs,
        learning_rate=learning_rate, batch_size=batch_size, seed=seed, verbose=verbose,
        on_epochs=on_epochs)
    held_out = _held_out(fold_networks, features, labels, onehot, splits, rng, scales)
    accuracy, published, kept, weights, temperature = _vote(held_out, n_classes)
    if progress is not None:
        progress(FitProgress("calibrate", int(kept.sum()), int(kept.sum())))
    return TrainedBins(accuracy, published, kept, weights, temperature, on_all)
