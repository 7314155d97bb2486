"""``BinnedSpectraClassifier``: separable bins, one network per bin, weighted vote.

Pipeline (``fit``):

1. every labelled spectrum gets perturbed copies (strain, shift, noise,
   intensity, background; see :mod:`.augment`);
2. spectra become baseline-free, normalised segment means (:mod:`.preprocess`);
3. candidate bins -- the fixed grid of ``n_bins`` equal bins, or windows of
   the same width every quarter bin (``bin_placement="adaptive"``) -- are
   scored on held-out folds (:mod:`.separability`), and the best-separated,
   little-overlapping ones are kept, each with the published vote weight of
   its held-out accuracy;
4. one small Keras network per kept bin is trained on the copies plus
   label-mixed pairs (mixup), which calibrates the outputs between classes;
5. the networks and the vote are compiled into one batched NumPy computation
   (:mod:`.fused`), used by ``predict``/``predict_proba`` and the stream.

Example::

    from server_ext.spectra import BinnedSpectraClassifier
    clf = BinnedSpectraClassifier(random_state=0).fit(X_train, y_train)
    labels, confidence, ambiguous = clf.predict_with_confidence(X_new)
    clf.save("model.spectra")
    clf = BinnedSpectraClassifier.load("model.spectra")
"""

from __future__ import annotations

import json
import numbers
import os
import pathlib
import shutil
import tempfile

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from .augment import augment, mixup
from .errors import SpectraError
from .fused import FusedVote
from .preprocess import SegmentPreprocessor
from .separability import (candidate_starts, cv_separability, select_bins,
                           stratified_folds, vote_weight)

__all__ = ["BinnedSpectraClassifier", "SpectraNotFittedError"]

_FORMAT = "daas-spectra-classifier"
_VERSION = 2  # 2: segments cover every point (1 left a tail out)
_ARRAYS = ("bins_", "separability_", "weights_", "published_weights_", "candidates_",
           "candidate_separability_")


def _as_spectra(X, what="X"):
    try:
        X = np.asarray(X)
    except Exception as e:  # ragged lists and the like
        raise SpectraError(f"{what} must be a 2-D array of spectra (n_spectra, n_points): {e}")
    if X.ndim == 1:
        raise SpectraError(f"{what} has one dimension; pass spectra as rows of a 2-D "
                           "array, e.g. X.reshape(1, -1) for a single spectrum")
    if X.ndim != 2:
        raise SpectraError(f"{what} must be 2-D (n_spectra, n_points), got shape {X.shape}")
    if X.dtype.kind not in "fiub":
        raise SpectraError(f"{what} must be numeric, got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise SpectraError(f"{what} holds no spectra")
    return X


# (name, smallest value, None allowed)
_INT_PARAMS = [("n_bins", 1, False), ("n_features", 1, False), ("max_bins", 1, True),
               ("hidden_units", 1, False), ("epochs", 1, False), ("batch_size", 1, False),
               ("augment_copies", 1, True), ("cv_folds", 2, False), ("verbose", 0, False),
               ("max_train_per_class", 1, True)]
# (name, smallest, largest, None allowed)
_REAL_PARAMS = [("max_overlap", 0.0, 1.0, False), ("learning_rate", 1e-12, None, False),
                ("strain", 0.0, 0.5, False), ("shift", 0.0, None, True),
                ("intensity", 0.0, 0.99, False), ("noise", 0.0, None, False),
                ("background", 0.0, None, False), ("mixup", 0.0, None, False),
                ("ambiguity_threshold", 0.0, 1.0, False)]


def _check_number(est, name, kind, lo, hi, optional):
    value = getattr(est, name)
    if (value is None and optional) or (name == "verbose" and isinstance(value, bool)):
        return
    kind_name = "an int" if kind is numbers.Integral else "a number"
    if not isinstance(value, kind) or isinstance(value, (bool, np.bool_)):
        raise SpectraError(f"{name} must be {kind_name}{' or None' if optional else ''}, "
                           f"not {value!r} ({type(value).__name__})")
    if not np.isfinite(value) or value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise SpectraError(f"{name} must be {rng}, not {value!r}")


def _as_labels(y, n):
    """Labels as a NumPy array of numbers, booleans or str (what ``save``
    can store): object arrays (pandas, lists of str) are converted, bytes
    decoded; missing labels (None, NaN) are refused."""
    try:
        y = np.asarray(y)
    except ValueError as e:
        raise SpectraError(f"y must be one label per spectrum: {e}")
    if y.ndim != 1 or len(y) != n:
        raise SpectraError(f"y must be 1-D with one label per spectrum: got shape "
                           f"{y.shape} for {n} spectra")
    if y.dtype.kind == "S":
        y = np.char.decode(y, "utf-8")
    elif y.dtype.kind == "O":
        values = y.tolist()
        missing = [i for i, v in enumerate(values) if v is None
                   or (isinstance(v, float) and v != v)
                   or type(v).__name__ in ("NAType", "NaTType")]  # pandas' missing values
        if missing:
            raise SpectraError(f"{len(missing)} labels are missing (None or NaN, rows "
                               f"{missing[:10]}); label every spectrum or leave it out")
        if all(isinstance(v, (str, bytes)) for v in values):
            y = np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=str)
        elif all(isinstance(v, (numbers.Number, np.generic)) and not isinstance(v, (str, bytes))
                 for v in values):
            y = np.array(values)
        else:
            kinds = sorted({type(v).__name__ for v in values})
            raise SpectraError(f"labels must be all strings or all numbers, got {kinds}")
    if y.dtype.kind == "f" and np.isnan(y).any():
        bad = np.flatnonzero(np.isnan(y))
        raise SpectraError(f"{len(bad)} labels are NaN (rows {bad[:10].tolist()}); label every "
                           "spectrum or leave it out")
    if y.dtype.kind not in "biufU":
        raise SpectraError(f"labels must be numbers or strings, got dtype {y.dtype}")
    return y


class SpectraNotFittedError(SpectraError, NotFittedError):
    """The classifier is used before ``fit`` or ``load``. Also scikit-learn's
    ``NotFittedError`` (an ``AttributeError``), so ``hasattr(clf,
    "bin_models_")`` is ``False`` on an unfitted classifier."""


class BinnedSpectraClassifier(ClassifierMixin, BaseEstimator):
    """Spectra classifier: separable bins, one network per bin, weighted vote.

    Parameters
    ----------
    n_bins : int
        The spectrum is cut into this many equal bins (15 in the published
        method); it sets the bin width and the most networks kept.
    n_features : int
        Inputs per bin network: a bin is this many segment means of about
        ``n_points / (n_bins * n_features)`` points each; the segments cover
        every point.
    bin_placement : {"adaptive", "fixed"}
        ``"fixed"``: the equal bins only. ``"adaptive"``: windows of the same
        width every quarter bin are candidates, so bins follow where the
        classes differ.
    max_bins : int or None
        At most this many networks (default ``n_bins``).
    max_overlap : float
        Largest overlap (fraction of a bin) between two kept bins.
    hidden_units, epochs, learning_rate, batch_size : network training.
    augment_copies : int or None
        Perturbed copies per labelled spectrum (default: enough for ~512
        training spectra, between 4 and 64).
    strain : float
        Half-range of the relative peak-position strain of the copies.
    shift : float or None
        Half-range of a translation of the copies, in points (default half a
        segment).
    intensity : float
        Half-range of the relative intensity scale of the copies.
    noise : float
        Extra noise on the copies, up to this times the measured noise variance.
    background : float
        Amplitude of the smooth background added to the copies (relative).
    mixup : float
        Label-mixed pairs added to training, as a fraction of the copies.
    baseline : bool
        Remove a baseline (lower envelope over one-bin blocks).
    cv_folds : int
        Folds for the held-out separability (fewer if a class has fewer
        labelled spectra).
    ambiguity_threshold : float
        A prediction whose probability is below this is flagged ambiguous.
    random_state : int or None
        Seed for the copies, folds, subsampling and network initialisation.
    verbose : int
        Keras training verbosity.
    max_train_per_class : int or None
        At most this many labelled spectra per class are used (more are
        subsampled, reproducibly for a given ``random_state``): beyond a
        few hundred spectra of one state, more add little but cost memory
        (each gets perturbed copies) and training time. ``None``: all.

    Attributes
    ----------
    classes_ : array of the labels seen in ``fit``.
    bins_ : (n_kept, 2) int array of point index ranges ``[start, stop)``.
    separability_ : held-out accuracy of each kept bin's network.
    published_weights_ : the published weight of that accuracy,
        ``max(1.4337 acc^2 - 0.4337, 0)``; bins where it is 0 are dropped.
    weights_ : vote weight of each kept bin (largest 1), fitted on held-out
        predictions starting from ``published_weights_``.
    beta_ : temperature of the vote (the fitted weights' sum).
    candidates_, candidate_separability_ : all candidate bins and their
        held-out nearest-centroid accuracy (the screening score).
    bin_models_ : list of the per-bin ``keras.Model`` (loaded on first use
        after ``load``).
    """

    def __init__(self, n_bins=15, n_features=16, bin_placement="adaptive", max_bins=None,
                 max_overlap=0.5, hidden_units=16, epochs=60, learning_rate=0.01,
                 batch_size=128, augment_copies=None, strain=0.015, shift=None,
                 intensity=0.3, noise=1.0, background=0.1, mixup=0.5, baseline=True,
                 cv_folds=5, ambiguity_threshold=0.8, random_state=None, verbose=0,
                 max_train_per_class=256):
        self.n_bins = n_bins
        self.n_features = n_features
        self.bin_placement = bin_placement
        self.max_bins = max_bins
        self.max_overlap = max_overlap
        self.hidden_units = hidden_units
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.augment_copies = augment_copies
        self.strain = strain
        self.shift = shift
        self.intensity = intensity
        self.noise = noise
        self.background = background
        self.mixup = mixup
        self.baseline = baseline
        self.cv_folds = cv_folds
        self.ambiguity_threshold = ambiguity_threshold
        self.random_state = random_state
        self.verbose = verbose
        self.max_train_per_class = max_train_per_class

    # ------------------------------------------------------------------ fit
    def _check_params(self, n_points):
        """Every parameter checked (types and ranges) before any work."""
        if self.bin_placement not in ("adaptive", "fixed"):
            raise SpectraError("bin_placement must be 'adaptive' or 'fixed', "
                               f"not {self.bin_placement!r}")
        for name, lo, optional in _INT_PARAMS:
            _check_number(self, name, numbers.Integral, lo, None, optional)
        for name, lo, hi, optional in _REAL_PARAMS:
            _check_number(self, name, numbers.Real, lo, hi, optional)
        if not isinstance(self.baseline, (bool, np.bool_)):
            raise SpectraError(f"baseline must be True or False, not {self.baseline!r}")
        if self.random_state is not None and (
                not isinstance(self.random_state, numbers.Integral)
                or isinstance(self.random_state, bool) or self.random_state < 0):
            raise SpectraError(f"random_state must be None or an int >= 0, "
                               f"not {self.random_state!r}")
        n_segments = min(int(self.n_bins) * int(self.n_features), n_points)
        if n_segments < self.n_features:
            raise SpectraError(f"spectra of {n_points} points are too short for "
                               f"{self.n_features} features per bin; lower n_features")
        return n_segments

    def fit(self, X, y, axis=None):
        """Learn the bins, their weights and one network per bin.

        ``X``: (n_spectra, n_points) labelled spectra; ``y``: any labels, 2 or
        more classes; ``axis``: optional (n_points,) increasing positions
        (e.g. 2-theta); the strain augmentation then scales about position 0
        instead of point 0. Returns ``self``.
        """
        X = _as_spectra(X)
        n_segments = self._check_params(X.shape[1])
        y = _as_labels(y, len(X))
        if not np.isfinite(X).all():
            bad = np.flatnonzero(~np.isfinite(X).all(1))
            raise SpectraError(f"{len(bad)} labelled spectra contain NaN or inf "
                               f"(rows {bad[:10].tolist()}); remove or repair them")
        if axis is not None:
            axis = np.asarray(axis, dtype=np.float64)
            if axis.shape != (X.shape[1],):
                raise SpectraError(f"axis must have one value per point ({X.shape[1]}), "
                                   f"got shape {axis.shape}")
        try:
            classes, y_idx = np.unique(y, return_inverse=True)
        except TypeError as e:
            raise SpectraError(f"labels must be mutually comparable: {e}")
        if len(classes) < 2:
            raise SpectraError(f"need at least 2 classes to classify, got {classes.tolist()}")
        prep = SegmentPreprocessor(X.shape[1], n_segments,
                                   self.n_features if self.baseline else 0)
        flat = ~prep.has_signal(prep.segment_means(X))
        if flat.any():
            bad = np.flatnonzero(flat)
            raise SpectraError(f"{len(bad)} labelled spectra are flat, with no signal (rows "
                               f"{bad[:10].tolist()}; a detector dropout?); remove them, they "
                               "say nothing about the sample's state")
        rng = np.random.default_rng(self.random_state)
        X, y_idx = self._subsample(X, y_idx, rng)
        n, n_points = X.shape
        n_classes = len(classes)
        copies = self.augment_copies or int(np.clip(np.ceil(512 / n), 4, 64))
        shift = 0.5 * prep.width if self.shift is None else float(self.shift)
        Xa, src = augment(X, axis, copies, rng, strain=self.strain, shift=shift,
                          intensity=self.intensity, noise=self.noise,
                          background=self.background)
        Xa = np.concatenate([X.astype(np.float32), Xa])
        src = np.concatenate([np.arange(n), src])
        Z = prep.transform(Xa)
        yc = y_idx[src]

        counts = np.bincount(y_idx, minlength=n_classes)
        n_folds = int(min(self.cv_folds, counts.min()))
        if n_folds >= 2:
            fold = stratified_folds(y_idx, n_folds, rng)[src]
            splits = [(fold != k, fold == k) for k in range(n_folds)]
        else:
            # a class with one labelled spectrum: hold out independent
            # perturbations of the same spectra instead
            odd = np.zeros(len(src), bool)
            odd[n:] = (np.arange(len(src) - n) % 2).astype(bool)
            splits = [(~odd, odd), (odd, ~odd)]
        starts = candidate_starts(prep.n_segments, self.n_features, self.bin_placement)
        acc, soft = cv_separability(Z, yc, splits, starts, self.n_features, n_classes)
        w_all = vote_weight(acc, n_classes)
        chosen = select_bins(starts, self.n_features, acc, soft, w_all,
                             int(self.max_bins or self.n_bins), self.max_overlap)

        segments = starts[chosen][:, None] + np.arange(self.n_features)[None, :]
        from .networks import bin_models, global_random_state_kept, unpack

        with global_random_state_kept():
            net = self._train_networks(Z[:, segments], yc, splits, n_classes, rng)
            keep = net["keep"]
            models = bin_models(*(a[keep] for a in net["final"]))
        sep, weights, beta = net["acc"], net["weights"], net["beta"]
        self.published_weights_ = net["prior"][keep]

        self.classes_ = classes
        self.n_features_in_ = n_points
        self.candidates_ = np.stack([prep.edges[starts], prep.edges[starts + self.n_features]], 1)
        self.candidate_separability_ = acc
        self.bins_ = self.candidates_[chosen[keep]]
        self.separability_ = sep[keep]
        self.weights_ = weights[keep]
        self.beta_ = float(beta)
        self._prep = prep
        self._fused = FusedVote(segments[keep], *unpack(models), self.weights_, self.beta_)
        self._bin_models = models
        self._model_dir = None
        return self

    def _subsample(self, X, y_idx, rng):
        """At most ``max_train_per_class`` spectra per class, in their order."""
        cap = self.max_train_per_class
        counts = np.bincount(y_idx)
        if cap is None or counts.max() <= cap:
            return X, y_idx
        keep = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(y_idx == c), min(cap, k), replace=False)
            for c, k in enumerate(counts)]))
        return X[keep], y_idx[keep]

    def _train_networks(self, Fb, yc, splits, n_classes, rng):
        """Train the per-bin networks once per fold and once on everything,
        side by side; score each bin's network on its held-out fold; fit the
        vote's temperature on held-out spectra and held-out mixtures."""
        from .fused import bin_proba, fit_vote
        from .networks import fold_standardisation, train_stacked

        n, n_bins = Fb.shape[:2]
        onehot = np.eye(n_classes, dtype=np.float32)[yc]
        masks = np.stack([tr for tr, _ in splits] + [np.ones(n, bool)], axis=1)
        F, T, M = Fb, onehot, masks
        n_mix = int(self.mixup * n)
        if n_mix:
            Fm, Tm, (i, j) = mixup(Fb, onehot, n_mix, rng)
            F = np.concatenate([Fb, Fm])
            T = np.concatenate([onehot, Tm])
            M = np.concatenate([masks, masks[i] & masks[j]])
        seed = None if self.random_state is None else int(rng.integers(2**31 - 1))
        mean, var, K1, c1, K2, c2 = train_stacked(
            F, T, M, int(self.hidden_units), int(self.epochs), float(self.learning_rate),
            int(self.batch_size), seed, self.verbose)

        def group(g):
            sl = slice(g * n_bins, (g + 1) * n_bins)
            return mean, var, K1[sl], c1[sl], K2[sl], c2[sl]

        def proba(F, g):  # (n, bins, features) -> (n, bins, classes)
            _, _, k1, b1, k2, b2 = group(g)
            W1, b1 = fold_standardisation(mean, var, k1, b1)
            P = bin_proba(np.ascontiguousarray(F.transpose(1, 0, 2), dtype=np.float32),
                          W1, b1[:, None, :], k2, b2[:, None, :])
            return P.transpose(1, 0, 2)

        # held-out predictions: pure copies, and mixtures of held-out copies
        P_pure, y_pure, P_mix, T_mix = [], [], [], []
        for g, (_, test) in enumerate(splits):
            P_pure.append(proba(Fb[test], g))
            y_pure.append(yc[test])
            Fm, Tm, _ = mixup(Fb[test], onehot[test], int(test.sum()), rng)
            if len(Fm):
                P_mix.append(proba(Fm, g))
                T_mix.append(Tm)
        P_pure, y_pure = np.concatenate(P_pure), np.concatenate(y_pure)
        acc = (P_pure.argmax(2) == y_pure[:, None]).mean(0)
        prior = vote_weight(acc, n_classes)
        keep = prior > 0
        if not keep.any():  # nothing separates: keep the best bin, say so by a tiny weight
            keep[np.argmax(acc)] = True
            prior = np.maximum(prior, 1e-3)
        P_cal = np.concatenate([P_pure] + P_mix)[:, keep].transpose(1, 0, 2)
        T_cal = np.concatenate([np.eye(n_classes)[y_pure]] + T_mix)
        u = fit_vote(P_cal, T_cal, prior[keep])
        weights = np.zeros(n_bins)
        weights[keep] = u / u.max()
        keep &= weights > 0
        return {"keep": keep, "acc": acc, "weights": weights, "prior": prior,
                "beta": float(u.sum()), "final": group(len(splits))}

    # ------------------------------------------------------------ inference
    def __sklearn_is_fitted__(self):
        return hasattr(self, "_fused")

    def _check_fitted(self):
        if not hasattr(self, "_fused"):
            raise SpectraNotFittedError("this classifier is not fitted yet: call fit(X, y) "
                               "or BinnedSpectraClassifier.load(path) first")

    def _segments(self, X, what="X"):
        self._check_fitted()
        X = _as_spectra(X, what)
        if X.shape[1] != self.n_features_in_:
            raise SpectraError(f"{what} has {X.shape[1]} points per spectrum; this model "
                               f"was trained on {self.n_features_in_}")
        S = self._prep.segment_means(X)
        return X, S

    def _proba_checked(self, X):
        """Probabilities, and the mask of flat spectra (which get 1/K each)."""
        X, S = self._segments(X)
        ok = self._prep.finite_rows(X, S)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            raise SpectraError(f"{len(bad)} spectra contain NaN or inf (rows "
                               f"{bad[:10].tolist()}); remove or repair them")
        flat = ~self._prep.has_signal(S)
        P = self._fused.proba(self._prep.normalise(S))
        P[flat] = 1.0 / P.shape[1]  # no evidence for any class
        return P, flat

    def classify_batch(self, X):
        """Classify a batch without raising on malformed rows.

        Returns ``(class_index, confidence, ambiguous, ok)``; rows with NaN or
        inf, and flat rows (no signal, e.g. a detector dropout), have
        ``ok == False`` and meaningless results. Shape problems still raise
        :class:`SpectraError`. Used by the stream.
        """
        X, S = self._segments(X)
        ok = self._prep.finite_rows(X, S)
        if not ok.all():
            S[~ok] = 0.0
        ok &= self._prep.has_signal(S)
        P = self._fused.proba(self._prep.normalise(S))
        idx = P.argmax(1)
        conf = P[np.arange(len(P)), idx]
        return idx, conf, conf < self.ambiguity_threshold, ok

    def predict_proba(self, X):
        """Calibrated class probabilities (n_spectra, n_classes), columns in
        the order of ``classes_``. A flat spectrum (all-zero or constant, as
        from a detector dropout) carries no evidence: ``1 / n_classes`` for
        every class."""
        return self._proba_checked(X)[0].astype(np.float64)

    def predict(self, X):
        """Most probable label per spectrum (for a flat spectrum an arbitrary
        one: use :meth:`predict_with_confidence` to see those)."""
        idx = self._proba_checked(X)[0].argmax(1)
        return self.classes_[idx]

    def predict_with_confidence(self, X):
        """``(labels, confidence, ambiguous)``: the label, its probability, and
        a mask of predictions below ``ambiguity_threshold`` -- typically the
        spectra near a transition, where the phases coexist. Flat spectra
        (no signal, e.g. a detector dropout) are always ambiguous, with
        confidence ``1 / n_classes``."""
        P, flat = self._proba_checked(X)
        idx = P.argmax(1)
        conf = P[np.arange(len(P)), idx].astype(np.float64)
        return self.classes_[idx], conf, (conf < self.ambiguity_threshold) | flat

    def transform_bins(self, X):
        """The per-bin network inputs, (n_bins_kept, n_spectra, n_features):
        ``bin_models_[b].predict(transform_bins(X)[b])`` are bin b's
        probabilities."""
        X, S = self._segments(X)
        return self._fused.features(self._prep.normalise(S))

    def bin_proba(self, X):
        """Per-bin probabilities from the fused computation, (bins, n, classes)."""
        return self._fused.bin_proba(self.transform_bins(X))

    @property
    def bin_models_(self):
        self._check_fitted()
        if self._bin_models is None:
            from .networks import keras_module

            keras = keras_module()
            try:
                self._bin_models = [
                    keras.models.load_model(self._model_dir / f"bin{b:02d}.keras", compile=False)
                    for b in range(len(self.bins_))
                ]
            except (OSError, ValueError) as e:
                raise SpectraError(f"the model directory {self._model_dir} is incomplete or "
                                   f"corrupt (a Keras model does not load: {e}); save or "
                                   "train it again")
        return self._bin_models

    # --------------------------------------------------------- persistence
    def save(self, path, overwrite=False):
        """Save to the directory ``path``: ``config.json``, ``arrays.npz``
        (NumPy, no pickle) and one ``binNN.keras`` file per network. Written
        under a temporary name and renamed; an existing ``path`` is replaced
        only with ``overwrite=True``."""
        self._check_fitted()
        path = pathlib.Path(path)
        if path.exists() and not overwrite:
            raise SpectraError(f"{path} exists; choose another path or pass overwrite=True")
        models = self.bin_models_
        params = self.get_params()
        config = {
            "format": _FORMAT, "version": _VERSION, "params": params,
            "classes": self.classes_.tolist(), "classes_dtype": self.classes_.dtype.str,
            "n_points": int(self.n_features_in_), "preprocessor": self._prep.config(),
            "beta": float(self.beta_),
        }
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        f = self._fused
        arrays.update(segments=f.segments, W1=f.W1, b1=f.b1[:, 0], W2=f.W2, b2=f.b2[:, 0])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        try:
            (tmp / "config.json").write_text(json.dumps(config, indent=1))
            np.savez(tmp / "arrays.npz", **arrays)
            for b, m in enumerate(models):
                m.save(tmp / f"bin{b:02d}.keras")
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._model_dir = path
        return path

    @classmethod
    def load(cls, path):
        """Load a classifier saved by :meth:`save`. The fused inference is
        ready at once; the Keras models (and TensorFlow) load on first use of
        ``bin_models_``."""
        path = pathlib.Path(path)
        try:
            config = json.loads((path / "config.json").read_text())
            with np.load(path / "arrays.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as e:
            raise SpectraError(f"{path} is not a saved spectra classifier ({e}); "
                               "create one with BinnedSpectraClassifier.save or "
                               "'daas spectra train'")
        if config.get("format") != _FORMAT:
            raise SpectraError(f"{path} is not a saved spectra classifier")
        if config.get("version") != _VERSION:
            raise SpectraError(f"{path} was saved by another version of the spectra classifier "
                               f"(format version {config.get('version')}, this one reads "
                               f"{_VERSION}); train it again with 'daas spectra train'")
        try:
            clf = cls(**config["params"])
            clf.classes_ = np.asarray(config["classes"], dtype=np.dtype(config["classes_dtype"]))
            clf.n_features_in_ = int(config["n_points"])
            for k in _ARRAYS:
                setattr(clf, k, arrays[k])
            clf._prep = SegmentPreprocessor(**config["preprocessor"])
            clf.beta_ = float(config["beta"])
            clf._fused = FusedVote(arrays["segments"], arrays["W1"], arrays["b1"],
                                   arrays["W2"], arrays["b2"], arrays["weights_"], clf.beta_)
            clf._check_params(clf.n_features_in_)
            n_bins = len(clf.bins_)
            shapes_agree = (len(clf._fused.W1) == len(clf.weights_) == n_bins
                            and clf._fused.segments.max() < clf._prep.n_segments)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise SpectraError(f"the model directory {path} is incomplete or corrupt "
                               f"({type(e).__name__}: {e}); save or train it again")
        missing = [f"bin{b:02d}.keras" for b in range(n_bins)
                   if not (path / f"bin{b:02d}.keras").is_file()]
        if not shapes_agree or missing:
            what = f"missing {', '.join(missing)}" if missing else "arrays of different sizes"
            raise SpectraError(f"the model directory {path} is incomplete or corrupt ({what}); "
                               "save or train it again")
        clf._bin_models = None
        clf._model_dir = path
        return clf
