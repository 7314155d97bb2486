"""``BinnedSpectraClassifier``: separable bins, one network per bin, weighted vote.

Pipeline (``fit``, one method per step):

0. the labels say which peak movement is signal (:mod:`.nuisance`): classes
   that differ by position (same structure, other cell) get copies moved
   towards each other by only a fraction of the displacement between them
   (away from each other freely), the others the full strain and shift;
1. every labelled spectrum gets perturbed copies (strain, a smaller strain
   varying along the axis, shift, noise, intensity, background; see
   :mod:`.augment`); those of a class with few
   labelled spectra are first denoised by a peak model (:mod:`.denoise`),
   so that the copies do not all carry one of a few noise realisations;
2. spectra become baseline-free, normalised segment means (:mod:`.preprocess`),
   each spectrum's strain undone unless that tells some classes apart worse
   on held-out copies (:mod:`.align`);
3. candidate bins -- the fixed grid of ``n_bins`` equal bins, or windows of
   the same width every quarter bin (``bin_placement="adaptive"``) -- are
   scored on held-out folds (:mod:`.separability`), and the best-separated,
   little-overlapping ones are kept, each with the published vote weight of
   its held-out accuracy;
4. one small Keras network per kept bin is trained on the copies plus
   label-mixed pairs (mixup), which calibrates the outputs between classes
   (:mod:`.training`);
5. the networks and the vote are compiled into one batched NumPy computation
   (:mod:`.fused`), used by ``predict``/``predict_proba`` and the stream.

Example::

    from server_ext.spectra import BinnedSpectraClassifier
    clf = BinnedSpectraClassifier(random_state=0).fit(X_train, y_train)
    labels, confidence, ambiguous = clf.predict_with_confidence(X_new)
    clf.save("model.spectra")
    clf = BinnedSpectraClassifier.load("model.spectra")   # see :mod:`.persistence`
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .align import StrainAligner, alignment_is_safe, aligns, class_templates
from .augment import add_spikes, augment, increasing_axis, noise_gain, noise_offset
from .bad_pixels import bad_pixels, bridge_spikes, spikes
from .denoise import denoise
from .errors import SpectraError
from .fused import FusedVote
from .inference import InferencePlan
from .inputs import (INT_PARAMS, REAL_PARAMS, as_fixed_ranges, as_labels, as_spectra,
                     at_most_per_class, check_number, fixed_points, masked_points, point_indices,
                     unread_points)
from .nuisance import PositionTolerance, position_tolerance
from .persistence import load_bin_models, load_classifier, save_classifier
from .preprocess import SegmentPreprocessor, bridge_points
from .separability import (candidate_starts, cv_separability, pair_separability, select_bins,
                           vote_weight)
from .splits import split_plan
from .training import FitProgress, ProgressHook, held_out_splits, train_bin_networks

__all__ = ["BinnedSpectraClassifier", "SpectraNotFittedError", "FitProgress",
           "auto_segments_per_bin"]

#: the strain estimate searches the copies' strain plus this much: the drift
#: of the labelled spectra about their class mean and of the test spectra
ALIGN_MARGIN = 0.01
#: ``segments_per_bin="auto"``: segments of about this many points, and
#: this range of segments per bin (see the parameter)
SEGMENT_POINTS = 8
AUTO_SEGMENTS_PER_BIN = (16, 32)
#: ``local_strain`` varies over about this many segments (the Gaussian's
#: sigma): reflections one or two segments apart, as a split pair is at
#: 8-point segments, move apart or together
LOCAL_SEGMENTS = 2.0
#: ``split_variation``: reflections closer than this, relative to their
#: position, are a split pair (see :mod:`.splits`)
SPLIT_MAX = 0.025


def auto_segments_per_bin(n_points: int, n_bins: int = 15) -> int:
    """``segments_per_bin="auto"`` for spectra of ``n_points`` cut into
    ``n_bins``: segments of about ``SEGMENT_POINTS``, within
    ``AUTO_SEGMENTS_PER_BIN``."""
    fewest, most = AUTO_SEGMENTS_PER_BIN
    return int(min(most, max(fewest, n_points // (n_bins * SEGMENT_POINTS))))


def copy_multiplier(y_idx) -> np.ndarray:
    """Per labelled spectrum, how many times more its class is copied than
    the largest: the ratio of their label counts, rounded, at least 1 (1
    wherever the labelling is balanced or nearly so)."""
    counts = np.bincount(y_idx)
    return np.maximum(1, np.rint(counts.max() / counts)).astype(int)[y_idx]


class SpectraNotFittedError(SpectraError, NotFittedError):
    """The classifier is used before ``fit`` or ``load``. Also scikit-learn's
    ``NotFittedError`` (an ``AttributeError``), so ``hasattr(clf,
    "bin_models_")`` is ``False`` on an unfitted classifier."""


@dataclasses.dataclass
class _Labelled:
    """Checked labelled spectra: ``X`` (n, points), class index ``y``,
    ``classes`` (the labels), ``axis`` (or None), their segment means
    ``S`` (n, segments), and ``masked``: the points that no labelled
    spectrum reads (non-finite in all), bridged over in ``X``."""

    X: np.ndarray
    y: np.ndarray
    classes: np.ndarray
    axis: np.ndarray | None
    S: np.ndarray
    masked: np.ndarray


@dataclasses.dataclass
class _Copies:
    """Training copies as segment features: ``features`` (n_copies,
    segments), ``labels`` (class index), ``source`` (labelled spectrum of
    each copy; the labelled spectra themselves come first, ``n_measured``
    rows: each as many times as its copies are multiplied), ``targets``
    (n_copies, n_classes: the training target of each copy's labelled
    spectrum, one-hot or its estimated mixture fractions)."""

    features: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    targets: np.ndarray
    n_measured: int


@dataclasses.dataclass
class _Screening:
    """Candidate bins (start segments) with their held-out nearest-centroid
    accuracy, and the indices of the chosen ones."""

    starts: np.ndarray
    accuracy: np.ndarray
    chosen: np.ndarray


class BinnedSpectraClassifier(ClassifierMixin, BaseEstimator):
    """Spectra classifier: separable bins, one network per bin, weighted vote.

    Parameters
    ----------
    n_bins : int
        The spectrum is cut into this many equal bins (15 in the published
        method); it sets the bin width and the most networks kept.
    segments_per_bin : int or "auto"
        Inputs per bin network: a bin is this many segment means of about
        ``n_points / (n_bins * segments_per_bin)`` points each; the segments
        cover every point. ``"auto"`` (default): segments of about
        ``SEGMENT_POINTS`` (8) points, between 16 and 32 per bin (32 for
        4,020 points and 15 bins, 16 for 2,010). A segment must be narrower
        than the peak splittings that tell classes apart: a tetragonal
        c/a of 1.005 splits a cubic peak by 11-20 of 4,020 points, inside
        one segment of 17 (16 per bin), and the independent physics series
        met 25 of 36 goals with 32 per bin against 18 with 16. It must
        also average enough points against the noise: of 2,010 points, 32
        per bin (4 points a segment) told a weak peak from two curves per
        class at 88 % against 95 % with 16. ``segments_per_bin_`` is the
        count used.
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
        training spectra, between 4 and 64); a class labelled with fewer
        spectra than another gets that many times more copies of each
        (the ratio rounded), and its measured spectra train that many
        times too, so that every class trains on about as many of each.
    strain : float
        Half-range of the relative peak-position strain of the copies (the
        most: see ``learn_position``).
    local_strain : float
        Half-range of a further strain of the copies that varies along the
        axis (over about two segments): neighbouring reflections move by
        different amounts, as when a non-cubic cell expands anisotropically
        -- a tetragonal split that narrows on heating, which one isotropic
        strain cannot produce. Only the copies of denoised spectra
        (``denoise_below``): where every class is labelled many times,
        their measured spectra show how the cell varies, and the field,
        which also stretches each peak, blurs a split of a few tenths of
        a per cent (README, "A strain that varies along the axis").
        Scaled per class like ``strain`` (see ``learn_position``); 0: none.
    split_variation : float
        Half-range of the factor by which the gaps between neighbouring
        reflections of the copies scale, pair by pair: a split pair (peaks
        closer than ``SPLIT_MAX`` of their position) narrows or widens by up
        to this fraction of itself while each peak keeps its shape -- a
        non-cubic cell's distortion falling towards its transition. Only
        the copies of denoised spectra (``denoise_below``), whose peaks the
        peak model has found (see :mod:`.splits`); scaled per class like
        ``strain``; 0: none.
    shift : float or None
        Half-range of a translation of the copies, in points (default half a
        segment).
    learn_position : bool
        Learn from the labelled spectra which classes differ by peak
        position (see :mod:`.nuisance`) and move the copies of those classes
        towards each other by only a fraction of that difference (away from
        each other freely). ``False``: every movement up
        to ``strain``/``shift`` is nuisance for every class.
    fixed_ranges : sequence of (low, high), optional
        Axis ranges (in ``axis`` units, point indices without an axis,
        both ends included) holding features that do not move with the
        sample: a peak of the sample environment (a cryostat window, the
        capillary, a sample holder). Such a feature is the same in every
        class, but it stays where it is while the classes' peaks move,
        and unless declared it makes every pair of classes look as if it
        differed by pattern, so that a difference by position is not
        learnt (the ranges are left out of that test only; the networks
        see every point). Hot and dead pixels are found without it
        (``bad_pixels_``); declare one only where that search misses it.
    learn_mixtures : bool
        A labelled spectrum that is a mixture of two classes (at a phase
        transition, where they coexist) trains with its estimated fractions
        as targets instead of its label alone, its class keeping at least
        half (see :mod:`.mixtures`; in a class labelled at least 1.5 times
        more sparsely than the largest, its own labelled spectra are first
        strained onto the one tested: they lie too far apart along the
        series to tell a mixture from drift otherwise). ``False``: every
        labelled spectrum is trained as wholly its class.
    align_strain : {"auto", True, False}
        Estimate each spectrum's strain (from its correlation with the
        class means strained over a grid) and undo it before the bins see
        it, in training and inference (see :mod:`.align`): the copies keep
        their random strain, but the networks see them aligned to a
        fraction of a segment, so a weak peak stays in its segments.
        ``"auto"`` (default): when ``strain > 0``, no class pair differs
        by position (aligning would undo that difference), and the
        aligned held-out copies tell no class pair apart worse
        (``alignment_evidence_``). It costs 1.4-1.7x in inference, and
        it keeps a class whose peaks drift beyond the copies' strain
        (README, "Strain alignment").
        ``True``: whenever possible; ``False``: never.
    intensity : float
        Half-range of the relative intensity scale of the copies.
    noise : float
        Extra noise on the copies, up to this times the measured noise variance.
    background : float
        Amplitude of the smooth background added to the copies (relative).
    background_drift : float
        Each copy's own background (the baseline under its peaks, as the
        baseline removal estimates it) is scaled by ``1 ± background_drift``:
        along a series the background's level drifts (air scatter, sample
        environment) while the sample's state stays, and what the baseline
        removal leaves of it moves the normalised peaks (on the ``weak``
        series, A spectra at the other end of their stretch were called A +
        weak peaks). Where peaks crowd, the estimate holds peak tails too,
        which a larger factor distorts (README, "Background drift"). The
        price: classes told apart by their background alone (an amorphous
        hump growing) are learnt less. 0: never.
    denoise_below : int
        Where a class has fewer labelled spectra than this, the labelled
        spectra (of every class alike) are replaced by a peak model of
        their noise-free mean before they are copied (where the model
        explains them; see :mod:`.denoise`), and their copies get fresh
        noise of at least the measured level: with a few labelled spectra,
        every copy would otherwise carry one of a few noise realisations,
        which the networks learn in place of a weak peak. With many, the
        realisations average out. 0: never.
    mixup : float
        Label-mixed pairs added to training, as a fraction of the copies:
        the targets mix as phase fractions, the features in proportion to
        each class's scattering power (``class_scales_``), as the phases of
        a real mixture do.
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
    segments_per_bin_ : the segments per bin used (``segments_per_bin``,
        "auto" resolved).
    bins_ : (n_kept, 2) int array of point index ranges ``[start, stop)``.
    separability_ : held-out accuracy of each kept bin's network.
    published_weights_ : the published weight of that accuracy,
        ``max(1.4337 acc^2 - 0.4337, 0)``; bins where it is 0 are dropped.
    weights_ : vote weight of each kept bin (largest 1), fitted on held-out
        predictions starting from ``published_weights_``.
    beta_ : temperature of the vote (the fitted weights' sum).
    candidates_, candidate_separability_ : all candidate bins and their
        held-out nearest-centroid accuracy (the screening score).
    position_scale_ : per class, the fraction of ``strain``/``shift`` its
        training copies got towards the class it is separated from (below
        1: the class differs from another by peak position; away from that
        class they got all of it).
    strain_aligned_ : whether each spectrum's strain is undone before the
        bins (see ``align_strain``).
    alignment_evidence_ : what "auto" decided on: per class pair, the
        held-out accuracy of its best candidate window without and with
        the alignment, two (n_classes, n_classes) arrays; None where "auto"
        did not weigh it (``align_strain`` True or False, or alignment
        impossible).
    position_pairs_ : the class pairs examined in ``fit`` and what told
        each apart (see :class:`.nuisance.PositionTolerance`).
    class_scales_ : per class, the normalising scale of its spectra at a
        fraction of 1, relative to the largest (its scattering power; one
        for classes of one structure): the mixtures of ``mixup`` are mixed
        in proportion to it (None: as fractions, where a class has no
        signal above its baseline).
    label_targets_ : (n_used, n_classes) training target of each labelled
        spectrum used (after ``max_train_per_class``): one-hot, or the
        estimated fractions of a mixture.
        These four are None in a model saved before format 5 (see
        :mod:`.persistence`), which did not store them.
    bad_pixels_ : point indices of the hot and dead pixels found in the
        labelled spectra (see :mod:`.bad_pixels`): bridged over in every
        spectrum, labelled or classified, and left out of the position
        test like ``fixed_ranges``; empty where none was found; None in a
        model saved before they were recorded (format 9 models were
        fitted, and classify, without bridging them).
    masked_points_ : point indices that no labelled spectrum reads (NaN or
        inf in every one: pixels the detector masks), bridged over in every
        spectrum like ``bad_pixels_``, so that a spectrum classified may be
        NaN there too; with them, the points :meth:`mask_points` added after
        fitting; empty where there are none; None in a model saved before
        format 11 (which had none: ``fit`` refused them) until
        :meth:`mask_points` adds some.
    spikes_ : how many points of single labelled spectra (used, after
        ``max_train_per_class``) were spikes -- a cosmic ray, a readout
        glitch (see :func:`.bad_pixels.spikes`) -- bridged before training,
        while the copies trained on get spikes as often and as high; None
        in a model saved before they were counted.
    axis_ : the positions of the points (the ``axis`` fitted with), or None:
        spectra on another axis are classified through it (``axis=`` of
        :meth:`predict_proba`); None too in a model saved before it was kept.
    noise_offset_ : counts added to the level for the noise of the copies
        trained on and of the denoising (see :func:`.augment.noise_offset`):
        0 for counting noise; more where a background or pedestal was
        subtracted from the spectra and its noise stayed; None in a model
        saved before it was measured.
    bin_models_ : list of the per-bin ``keras.Model`` (loaded on first use
        after ``load``).
    """

    def __init__(self, n_bins=15, segments_per_bin="auto", bin_placement="adaptive", max_bins=None,
                 max_overlap=0.5, hidden_units=16, epochs=60, learning_rate=0.01,
                 batch_size=128, augment_copies=None, strain=0.015, local_strain=0.002,
                 split_variation=0.5,
                 shift=None, learn_position=True, fixed_ranges=None, learn_mixtures=True,
                 align_strain="auto",
                 intensity=0.3, noise=1.0,
                 background=0.1, background_drift=0.5, denoise_below=8, mixup=0.5,
                 baseline=True, cv_folds=5, ambiguity_threshold=0.8, random_state=None,
                 verbose=0, max_train_per_class=256):
        self.n_bins = n_bins
        self.segments_per_bin = segments_per_bin
        self.bin_placement = bin_placement
        self.max_bins = max_bins
        self.max_overlap = max_overlap
        self.hidden_units = hidden_units
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.augment_copies = augment_copies
        self.strain = strain
        self.local_strain = local_strain
        self.split_variation = split_variation
        self.shift = shift
        self.learn_position = learn_position
        self.fixed_ranges = fixed_ranges
        self.learn_mixtures = learn_mixtures
        self.align_strain = align_strain
        self.intensity = intensity
        self.noise = noise
        self.background = background
        self.background_drift = background_drift
        self.denoise_below = denoise_below
        self.mixup = mixup
        self.baseline = baseline
        self.cv_folds = cv_folds
        self.ambiguity_threshold = ambiguity_threshold
        self.random_state = random_state
        self.verbose = verbose
        self.max_train_per_class = max_train_per_class

    # ------------------------------------------------------------------ fit
    def _check_params(self, n_points):
        """Every parameter checked (types and ranges) before any work;
        returns the number of segments and of segments per bin."""
        if self.bin_placement not in ("adaptive", "fixed"):
            raise SpectraError("bin_placement must be 'adaptive' or 'fixed', "
                               f"not {self.bin_placement!r}")
        for name, lo, optional in INT_PARAMS:
            check_number(self, name, numbers.Integral, lo, None, optional)
        for name, lo, hi, optional in REAL_PARAMS:
            check_number(self, name, numbers.Real, lo, hi, optional)
        if not (isinstance(self.align_strain, (bool, np.bool_)) or self.align_strain == "auto"):
            raise SpectraError("align_strain must be 'auto', True or False, "
                               f"not {self.align_strain!r}")
        as_fixed_ranges(self.fixed_ranges)
        for name in ("baseline", "learn_position", "learn_mixtures"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise SpectraError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if self.random_state is not None and (
                not isinstance(self.random_state, numbers.Integral)
                or isinstance(self.random_state, bool) or self.random_state < 0):
            raise SpectraError(f"random_state must be None or an int >= 0, "
                               f"not {self.random_state!r}")
        per_bin = self._segments_per_bin(n_points)
        n_segments = min(int(self.n_bins) * per_bin, n_points)
        if n_segments < per_bin:
            raise SpectraError(f"spectra of {n_points} points are too short for "
                               f"{per_bin} segments per bin; lower segments_per_bin")
        return n_segments, per_bin

    def _segments_per_bin(self, n_points) -> int:
        """``segments_per_bin``, "auto" resolved for spectra of ``n_points``."""
        if isinstance(self.segments_per_bin, str) and self.segments_per_bin == "auto":
            return auto_segments_per_bin(n_points, int(self.n_bins))
        value = self.segments_per_bin
        if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) \
                or value < 1:
            raise SpectraError(f"segments_per_bin must be 'auto' or an int >= 1, not {value!r}")
        return int(value)

    def fit(self, X, y, axis=None, progress: ProgressHook = None):
        """Learn the bins, their weights and one network per bin.

        ``X``: (n_spectra, n_points) labelled spectra; ``y``: any labels, 2 or
        more classes; ``axis``: optional (n_points,) positions, strictly
        increasing or decreasing (2-theta, q, d-spacing); the strain
        augmentation then scales about position 0 instead of point 0 (an
        axis that is not monotonic is refused). ``progress``: optional callable given
        a :class:`FitProgress` after the bins are chosen, about ten times
        while their networks train, and when the vote is calibrated.
        Returns ``self``.
        """
        X = as_spectra(X)
        n_segments, self.segments_per_bin_ = self._check_params(X.shape[1])
        prep = SegmentPreprocessor(X.shape[1], n_segments,
                                   self.segments_per_bin_ if self.baseline else 0)
        data = self._labelled(X, y, axis, prep)
        rng = np.random.default_rng(self.random_state)
        data = self._subsample(data, rng)
        data, prep, pixels, spike_heights = self._detector_faults_bridged(data, prep)
        tolerance = self._position_tolerance(data, prep, prep.bridged)
        # strains searched: the copies' reach plus ALIGN_MARGIN
        templates = class_templates(prep, data.X, data.y, len(data.classes), data.axis,
                                    float(self.strain) + ALIGN_MARGIN)
        aligner = self._strain_aligner(data, tolerance, prep, templates)
        targets = self._label_targets(data, prep)
        class_scales = self._class_scales(data, targets, prep, templates.structure)
        offset = noise_offset(data.X)
        copies = self._perturbed_copies(data, tolerance, targets, prep, rng, spike_heights,
                                        offset)
        splits = held_out_splits(data.y, copies.source, self.cv_folds, rng, copies.n_measured)
        aligner, copies, evidence = self._alignment(aligner, copies, splits, prep,
                                                    len(data.classes))
        screening = self._screen_bins(copies, splits, prep, len(data.classes))
        if progress is not None:
            progress(FitProgress("screen", len(screening.chosen), len(screening.chosen)))
        segments = (screening.starts[screening.chosen][:, None]
                    + np.arange(self.segments_per_bin_)[None, :])
        from .networks import bin_models, global_random_state_kept

        with global_random_state_kept():
            trained = train_bin_networks(
                copies.features[:, segments], copies.labels, splits, len(data.classes),
                hidden_units=int(self.hidden_units), epochs=int(self.epochs),
                learning_rate=float(self.learning_rate), batch_size=int(self.batch_size),
                mixup_fraction=float(self.mixup), seeded=self.random_state is not None,
                rng=rng, verbose=self.verbose, progress=progress, targets=copies.targets,
                scales=None if class_scales is None else copies.targets @ class_scales)
            models = bin_models(trained.networks.select(trained.kept))
        self._set_fitted(data, prep, tolerance, aligner, screening, segments, trained, models)
        self.bad_pixels_ = pixels
        self.masked_points_ = data.masked
        self.axis_ = None if data.axis is None else data.axis.copy()
        self.spikes_ = len(spike_heights)
        self.noise_offset_ = offset
        self.label_targets_ = targets
        self.class_scales_ = class_scales
        self.alignment_evidence_ = evidence
        self.trained_on_ = None  # where the labelled spectra came from: the caller says, at save
        return self

    def _labelled(self, X, y, axis, prep) -> _Labelled:
        """The labelled spectra checked: labels, axis, NaN only at masked
        points (bridged over), no flat spectrum."""
        y = as_labels(y, len(X))
        masked = masked_points(X)
        if masked.size:
            X = bridge_points(X, masked)
        if axis is not None:
            axis = np.asarray(axis, dtype=np.float64)
            if axis.shape != (X.shape[1],):
                raise SpectraError(f"axis must have one value per point ({X.shape[1]}), "
                                   f"got shape {axis.shape}")
            increasing_axis(axis, X.shape[1])  # refuses one that is not monotonic
        try:
            classes, y_idx = np.unique(y, return_inverse=True)
        except TypeError as e:
            raise SpectraError(f"labels must be mutually comparable: {e}")
        if len(classes) < 2:
            raise SpectraError(f"need at least 2 classes to classify, got {classes.tolist()}")
        S = prep.segment_means(X)
        flat = ~prep.has_signal(S)
        if flat.any():
            bad = np.flatnonzero(flat)
            raise SpectraError(f"{len(bad)} labelled spectra are flat, with no signal (rows "
                               f"{bad[:10].tolist()}; a detector dropout?); remove them, they "
                               "say nothing about the sample's state", rows=bad)
        return _Labelled(X, y_idx.reshape(-1), classes, axis, S, masked)

    def _subsample(self, data: _Labelled, rng) -> _Labelled:
        """At most ``max_train_per_class`` spectra per class, in their order."""
        keep = at_most_per_class(data.y, self.max_train_per_class, rng)
        if len(keep) == len(data.y):
            return data
        return dataclasses.replace(data, X=data.X[keep], y=data.y[keep], S=data.S[keep])

    def _detector_faults_bridged(self, data: _Labelled, prep):
        """``(data, prep, pixels, spike_heights)``: the hot and dead pixels
        found in the labelled spectra (:mod:`.bad_pixels`; point indices),
        bridged in them and, by the returned ``prep``, in every spectrum
        classified, as are the masked points; then the spikes of single
        labelled spectra, bridged where they are (``spike_heights``: what
        bridging took off each point)."""
        pixels = np.flatnonzero(bad_pixels(data.X, data.y, len(data.classes)))
        bridged = np.union1d(pixels, data.masked)
        if bridged.size:
            prep = SegmentPreprocessor(prep.n_points, prep.n_segments, prep.baseline_block,
                                       bridged=bridged)
        if pixels.size:  # over the masked points again too, as prep bridges
            data = dataclasses.replace(data, X=bridge_points(data.X, bridged))
        spiked = spikes(data.X, data.y, len(data.classes))
        heights = np.zeros(0)
        if spiked.any():
            unspiked = bridge_spikes(data.X, spiked)
            heights = (data.X - unspiked)[spiked]
            data = dataclasses.replace(data, X=unspiked)
        if pixels.size or spiked.any():
            data = dataclasses.replace(data, S=prep.segment_means(data.X))
        return data, prep, pixels, heights

    def _shift_points(self, prep):
        return 0.5 * prep.width if self.shift is None else float(self.shift)

    def _position_tolerance(self, data: _Labelled, prep, bridged) -> PositionTolerance:
        """Per class, how much of the strain/shift augmentation is nuisance
        (``bridged``: the bad pixels found and the masked points, left out
        like ``fixed_ranges``)."""
        n_classes = len(data.classes)
        fixed = fixed_points(self.fixed_ranges, data.axis, data.X.shape[1])
        fixed[bridged] = True
        if not self.learn_position or (self.strain == 0 and self._shift_points(prep) == 0):
            return PositionTolerance.full(n_classes)
        return position_tolerance(data.X, data.y, n_classes, data.axis,
                                  prep.width * self.segments_per_bin_, float(self.strain),
                                  self._shift_points(prep), fixed)

    def _strain_aligner(self, data: _Labelled, tolerance, prep,
                        templates) -> StrainAligner | None:
        """The strain estimate and alignment from the strained class means
        ``templates``, or None where it is off (see ``align_strain``)."""
        if not aligns(self.align_strain, self.strain, tolerance.pairs):
            return None
        return StrainAligner.from_templates(prep, templates, data.axis)

    def _label_targets(self, data: _Labelled, prep) -> np.ndarray:
        """Per labelled spectrum, its training target: one-hot, or its
        estimated fractions where it is a mixture of two classes."""
        if not self.learn_mixtures:
            return np.eye(len(data.classes))[data.y]
        from .mixtures import mixture_targets
        from .nuisance import profiles

        # not normalised: a neighbour's weight is then how much of its
        # phases the spectrum holds, whatever each phase's scattering power
        prof, _ = profiles(data.X, max(3, int(prep.width * self.segments_per_bin_)),
                           unit_sum=False)
        # a sparse class's own nearest curves lie several labels apart along the series,
        # another class's next to them: unstrained, the drift between reads as a mixture
        return mixture_targets(prof, data.y, len(data.classes),
                               sparse=copy_multiplier(data.y) > 1,
                               pos=increasing_axis(data.axis, data.X.shape[1]))

    def _class_scales(self, data: _Labelled, targets, prep, structure) -> np.ndarray | None:
        """Per class, the normalising scale of its phase at a fraction of 1
        (its scattering power), relative to the largest: non-negative least
        squares of the labelled spectra's scales on their targets (a
        mixture's scale is its fractions' sum). Classes of one structure
        (``structure``: per class the first class of its structure) share
        one scale: the beam's drift along a series would otherwise tell
        them apart (``weak`` seed 2 in protocol A: A 0.38, A + weak peaks
        0.50). None (the mixtures are mixed as fractions) where a
        structure gets no scale."""
        from scipy.optimize import nnls

        scales = prep.baseline_free(data.S).mean(axis=1)
        if not (np.isfinite(scales).all() and (scales > 0).all()):
            return None
        groups, member = np.unique(structure, return_inverse=True)
        if len(groups) == 1:
            return np.ones(len(structure))
        per_structure, _ = nnls(np.asarray(targets, np.float64) @ np.eye(len(groups))[member],
                                scales.astype(np.float64))
        if not (per_structure > 0).all():
            return None
        per_class = per_structure[member]
        return per_class / per_class.max()

    def _perturbed_copies(self, data: _Labelled, tolerance, targets, prep, rng,
                          spike_heights, offset) -> _Copies:
        """The labelled spectra and their perturbed copies, as segment
        features; the copies with spikes as often and as high as
        ``spike_heights`` (those found in the labelled spectra) say, and
        noise as for the level plus ``offset`` counts (:func:`.noise_offset`)."""
        n = len(data.X)
        copies = self.augment_copies or int(np.clip(np.ceil(512 / n), 4, 64))
        # a class labelled 6 times less, trained on 6 times fewer copies, is learnt as a
        # rarity: the bins' networks and the vote overrule it on every spectrum in doubt
        balance = copy_multiplier(data.y)
        copies = copies * balance
        # per labelled spectrum, (low, high) bounds of its copies' movement
        reach = np.stack([-tolerance.lower[data.y], tolerance.upper[data.y]], 1)
        X = data.X.astype(np.float32)
        sources, gains, floor, splits = self._denoised(X, data.y, data.axis, offset)
        modelled = floor > 0  # denoised: a floor of fresh noise in place of its own
        perturbed, source = augment(sources, data.axis, copies, rng, strain=self.strain * reach,
                                    shift=self._shift_points(prep) * reach,
                                    intensity=self.intensity, noise=self.noise,
                                    background=self.background, gain=gains, noise_floor=floor,
                                    # without a baseline there is none to drift
                                    baseline=(prep.baseline_points(sources)
                                              if prep.baseline_block else None),
                                    baseline_scale=self.background_drift,
                                    # a class labelled many times shows its own cell's
                                    # variation among its measured spectra (as for splits)
                                    local_strain=(self.local_strain * tolerance.scale[data.y]
                                                  * modelled),
                                    local_width=LOCAL_SEGMENTS * prep.width, splits=splits,
                                    split_variation=(self.split_variation
                                                     * tolerance.scale[data.y]), offset=offset)
        if len(spike_heights):
            add_spikes(perturbed, len(spike_heights) / n, spike_heights, rng)
        # the measured spectra too: beside copies of denoised curves, six measured spectra
        # of one class to each of the sparse one's, and what a measurement has that those
        # copies lack (its own noise) is learnt as that class's mark where the two look alike
        measured = np.repeat(np.arange(n), balance)
        source = np.concatenate([measured, source])
        features = prep.normalise(np.concatenate([data.S[measured],
                                                  prep.segment_means(perturbed)]))
        return _Copies(features, data.y[source], source, targets[source], len(measured))

    def _alignment(self, aligner, copies: _Copies, splits, prep, n_classes):
        """``(aligner, copies, evidence)``: the copies aligned by ``aligner``
        where it is given and, for "auto", unless aligning tells some
        classes apart worse on held-out copies (:func:`.align.alignment_is_safe`;
        ``evidence``: the per-pair separability without and with it), else
        ``(None, copies, evidence)``."""
        if aligner is None:
            return None, copies, None
        aligned = dataclasses.replace(copies, features=aligner.align(copies.features))
        if self.align_strain != "auto":
            return aligner, aligned, None
        width = self.segments_per_bin_
        starts = candidate_starts(prep.n_segments, width, self.bin_placement)
        evidence = tuple(pair_separability(c.features, c.labels, splits, starts, width, n_classes)
                         for c in (copies, aligned))
        if alignment_is_safe(*evidence):
            return aligner, aligned, evidence
        return None, copies, evidence

    def _denoised(self, X, y, axis, offset):
        """The spectra the copies are made from, their noise gains, the
        least noise each copy gets and where their peaks lie: where a class
        has fewer than ``denoise_below`` labelled spectra, every spectrum
        denoised, with a floor of 1 and a :class:`.splits.SplitPlan`; else
        the spectra as measured (their splits vary among their many). The
        noise is that of the level plus ``offset`` counts."""
        gains = noise_gain(X, offset)
        floor = np.zeros(len(X))
        plans = [None] * len(X)
        # all classes or none: denoised copies of one class against measured copies of
        # another differ by how they were made, which the networks learn in place of
        # the sample (a split the denoising smoothed, read as a class's mark)
        if np.bincount(y).min() >= self.denoise_below:
            return X, gains, floor, plans
        if offset:  # the denoising's counting noise: of the level plus the offset
            modelled, info = denoise(X + np.float32(offset), gains)
            modelled -= offset
        else:
            modelled, info = denoise(X, gains)
        floor[:] = [float(i.modelled > 0) for i in info]
        pos = increasing_axis(axis, X.shape[1])
        for r, i in enumerate(info):
            if i.modelled > 0:
                plans[r] = split_plan(i.centers, i.fwhm, i.heights, i.eta, pos,
                                      SPLIT_MAX)
        return modelled.astype(X.dtype), gains, floor, plans

    def _screen_bins(self, copies: _Copies, splits, prep, n_classes) -> _Screening:
        """Score every candidate bin on held-out copies; choose the best
        little-overlapping ones."""
        width = self.segments_per_bin_
        starts = candidate_starts(prep.n_segments, width, self.bin_placement)
        accuracy, soft = cv_separability(copies.features, copies.labels, splits, starts, width,
                                         n_classes)
        chosen = select_bins(starts, width, accuracy, soft, vote_weight(accuracy, n_classes),
                             int(self.max_bins or self.n_bins), self.max_overlap)
        return _Screening(starts, accuracy, chosen)

    def _set_fitted(self, data, prep, tolerance, aligner, screening, segments, trained,
                    models):
        from .networks import unpack

        kept = trained.kept
        starts = screening.starts
        self.classes_ = data.classes
        self.n_features_in_ = data.X.shape[1]
        self.candidates_ = np.stack([prep.edges[starts],
                                     prep.edges[starts + self.segments_per_bin_]], 1)
        self.candidate_separability_ = screening.accuracy
        self.bins_ = self.candidates_[screening.chosen[kept]]
        self.separability_ = trained.held_out_accuracy[kept]
        self.published_weights_ = trained.published_weights[kept]
        self.weights_ = trained.vote_weights[kept]
        self.beta_ = trained.temperature
        self.position_scale_ = tolerance.scale
        self.position_pairs_ = tolerance.pairs
        self._prep = prep
        self._aligner = aligner
        self._fused = FusedVote(segments[kept], *unpack(models), self.weights_, self.beta_)
        self._bin_models = models
        self._model_dir = None

    # ------------------------------------------------------------ inference
    def __sklearn_is_fitted__(self):
        return hasattr(self, "_fused")

    def _require_fitted(self):
        try:
            check_is_fitted(self)
        except NotFittedError:
            raise SpectraNotFittedError("this classifier is not fitted yet: call fit(X, y) "
                                        "or BinnedSpectraClassifier.load(path) first") from None

    def _plan(self):
        plan = self.__dict__.get("_inference")
        if (plan is None or plan.prep is not self._prep or plan.fused is not self._fused
                or plan.aligner is not self._aligner):
            plan = self._inference = InferencePlan(self._prep, self._fused, self._aligner)
        return plan

    def axis_plan(self, axis):
        """The interpolation that brings spectra measured on ``axis`` (one
        position per point, in the units of the axis the model was fitted
        on) onto the model's points (:class:`.resample.ResamplePlan`), or a
        :class:`SpectraError` saying why it cannot: a model fitted without
        an axis, an axis that does not cover the model's. Kept for the
        next call with the same axis."""
        from .resample import ResamplePlan

        self.require_axis()
        axis = np.asarray(axis, dtype=np.float64).reshape(-1)
        key = axis.tobytes()
        cached = self.__dict__.get("_axis_plan")
        if cached is None or cached[0] != key:
            cached = self._axis_plan = (key, ResamplePlan(axis, self.axis_))
        return cached[1]

    def require_axis(self):
        """A :class:`SpectraError` unless the model was fitted with an axis,
        without which it cannot read spectra measured on another."""
        self._require_fitted()
        if self.axis_ is None:
            raise SpectraError("this model was fitted without an axis, so it cannot read spectra "
                               f"on another: pass spectra of its {self.n_features_in_} points, "
                               "or fit it with axis=")

    def _read(self, X, axis):
        """``(X, resample)``: the spectra checked, and the interpolation onto
        the model's points where ``axis`` is another (else None), which
        inference runs chunk by chunk."""
        if axis is None:
            return self._checked(X), None
        self._require_fitted()
        X = as_spectra(X)
        axis = np.asarray(axis, dtype=np.float64)
        if axis.shape != (X.shape[1],):
            raise SpectraError(f"axis must have one value per point of X ({X.shape[1]}), got "
                               f"shape {axis.shape}")
        if self.axis_ is not None and np.array_equal(axis, self.axis_):
            return self._checked(X), None
        return X, self.axis_plan(axis)

    def _checked(self, X, what="X"):
        self._require_fitted()
        X = as_spectra(X, what)
        if X.shape[1] != self.n_features_in_:
            raise SpectraError(f"{what} has {X.shape[1]} points per spectrum; this model "
                               f"was trained on {self.n_features_in_}")
        return X

    def _proba_checked(self, X, axis=None):
        """Probabilities, and the mask of flat spectra (which get 1/K each)."""
        X, resample = self._read(X, axis)
        P, finite, signal = self._plan().score(X, resample)
        if not finite.all():
            if resample is not None:  # the points named are the model's
                X = resample(X)
            bad = np.flatnonzero(~finite)
            points = np.setdiff1d(np.flatnonzero(~np.isfinite(X[bad[:10]]).all(0)),
                                  self._prep.bridged)
            hint = "remove or repair them"
            if len(bad) == len(X) > 1:
                # the same points unreadable in every spectrum: the detector
                # masks them now, which the labelled spectra did not show
                everywhere = unread_points(X, self._prep.bridged)
                if everywhere is not None and everywhere.size:
                    hint = (f"points {everywhere[:10].tolist()} are NaN or inf in every "
                            "spectrum: if the detector masks them now, mask_points("
                            f"{everywhere.tolist() if everywhere.size <= 10 else '...'}) "
                            "bridges them in every spectrum from then on")
            raise SpectraError(f"{len(bad)} spectra contain NaN or inf (rows "
                               f"{bad[:10].tolist()}, points {points[:10].tolist()}); {hint}")
        flat = ~signal
        P[flat] = 1.0 / P.shape[1]  # no evidence for any class
        return P, flat

    def classify_batch(self, X, axis=None, return_proba=False, return_bin_votes=False):
        """Classify a batch without raising on malformed rows.

        Returns ``(class_index, confidence, ambiguous, ok)``, and with
        ``return_proba`` the probabilities (``classes_`` order), with
        ``return_bin_votes`` each kept bin's own most probable class index
        (n, bins: what the vote weighed), after them; rows
        with NaN or inf, and flat rows (no signal, e.g. a detector dropout),
        have ``ok == False`` and meaningless results. Shape problems still
        raise :class:`SpectraError`. Used by the stream. ``axis``: as for
        :meth:`predict_proba`.
        """
        X, resample = self._read(X, axis)
        P, finite, signal, *votes = self._plan().score(X, resample, bin_votes=return_bin_votes)
        idx = P.argmax(1)
        conf = P[np.arange(len(P)), idx]
        out = idx, conf, conf < self.ambiguity_threshold, finite & signal
        return (*out, *((P,) if return_proba else ()), *votes)

    def mask_points(self, points):
        """Bridge ``points`` (point indices) in every spectrum classified from
        now on, as ``fit`` bridges the points no labelled spectrum reads: for
        pixels that the detector masks (NaN), or that went hot or dead, after
        the model was fitted. Their segments are then computed with the
        straight line between the nearest points read, so that what the
        points read is never used; the networks are not retrained, and saw
        what the points read then (README: "Points masked after fitting",
        for what that costs). Added to ``masked_points_`` and saved with
        the model. Returns ``self``. A batch being classified meanwhile (a
        stream's) finishes as it began; the next one bridges them."""
        self._require_fitted()
        points = point_indices(points, self.n_features_in_)
        bridged = np.union1d(self._prep.bridged, points)
        if bridged.size >= self.n_features_in_ - 1:
            raise SpectraError(f"masking points {points[:10].tolist()} would leave fewer than "
                               "two points read in each spectrum")
        self._prep = SegmentPreprocessor(**self._prep.config(), bridged=bridged)
        known = np.zeros(0, np.intp) if self.masked_points_ is None else self.masked_points_
        self.masked_points_ = np.union1d(known, points).astype(np.intp)
        return self

    def warm_up(self):
        """Compile (or load from numba's cache) the inference kernels now, so that the
        first spectra classified do not wait for it: in a fresh process, numba's import
        and the kernels' loading take 0.3-0.5 s. Returns ``self``."""
        self._require_fitted()
        self._plan().score(np.linspace(1.0, 2.0, self.n_features_in_, dtype=np.float32)[None])
        return self

    def predict_proba(self, X, axis=None):
        """Calibrated class probabilities (n_spectra, n_classes), columns in
        the order of ``classes_``. A flat spectrum (all-zero or constant, as
        from a detector dropout) carries no evidence: ``1 / n_classes`` for
        every class. ``axis``: the positions of ``X``'s points where they
        are not the model's (another grid or range; on q, another
        wavelength), in the units of the axis it was fitted on: the spectra
        are interpolated at the model's positions (:meth:`axis_plan`)."""
        return self._proba_checked(X, axis)[0].astype(np.float64)

    def predict(self, X, axis=None):
        """Most probable label per spectrum (for a flat spectrum an arbitrary
        one: use :meth:`predict_with_confidence` to see those); ``axis`` as
        for :meth:`predict_proba`."""
        idx = self._proba_checked(X, axis)[0].argmax(1)
        return self.classes_[idx]

    def predict_with_confidence(self, X, axis=None):
        """``(labels, confidence, ambiguous)``: the label, its probability, and
        a mask of predictions below ``ambiguity_threshold`` -- typically the
        spectra near a transition, where the phases coexist. Flat spectra
        (no signal, e.g. a detector dropout) are always ambiguous, with
        confidence ``1 / n_classes``. ``axis`` as for :meth:`predict_proba`."""
        P, flat = self._proba_checked(X, axis)
        idx = P.argmax(1)
        conf = P[np.arange(len(P)), idx].astype(np.float64)
        return self.classes_[idx], conf, (conf < self.ambiguity_threshold) | flat

    def transform_bins(self, X):
        """The per-bin network inputs, (n_bins_kept, n_spectra, segments_per_bin):
        ``bin_models_[b].predict(transform_bins(X)[b])`` are bin b's
        probabilities."""
        return self._fused.features(self.segment_features(X))

    def segment_features(self, X):
        """Baseline-free, normalised segment means (n_spectra, segments),
        each spectrum's strain undone where ``strain_aligned_``: what the
        bins' windows are taken from."""
        Z = self._prep.transform(self._checked(X))
        return Z if self._aligner is None else self._aligner.align(Z)

    @property
    def bridged_points_(self) -> np.ndarray:
        """Point indices bridged over in every spectrum classified: the bad
        pixels (where the model's format bridges them) and the masked
        points; what a spectrum reads there is never used."""
        self._require_fitted()
        return self._prep.bridged

    @property
    def strain_aligned_(self) -> bool:
        self._require_fitted()
        return self._aligner is not None

    def bin_proba(self, X, axis=None):
        """Per-bin probabilities from the fused computation, (bins, n, classes);
        ``axis`` as for :meth:`predict_proba`."""
        X, resample = self._read(X, axis)
        return self._fused.bin_proba(self.transform_bins(X if resample is None else resample(X)))

    @property
    def bin_models_(self):
        self._require_fitted()
        if self._bin_models is None:
            self._bin_models = load_bin_models(self._model_dir, len(self.bins_))
        return self._bin_models

    # --------------------------------------------------------- persistence
    def save(self, path, overwrite=False, trained_on: dict | None = None):
        """Save to the directory ``path`` (see :mod:`.persistence`); an
        existing ``path`` is replaced only with ``overwrite=True``. Returns
        the path. ``trained_on``: where the labelled spectra came from (JSON
        types: ``data``, ``labels``, ``dataset``, ``source``, ``key``, as
        ``daas spectra train`` names them), kept as ``trained_on_``; one read
        with the model is kept when not given."""
        self._require_fitted()
        if trained_on is not None:
            self.trained_on_ = dict(trained_on)
        self._model_dir = save_classifier(self, path, overwrite)
        return self._model_dir

    @classmethod
    def load(cls, path):
        """Load a classifier saved by :meth:`save`. The fused inference is
        ready at once; the Keras models (and TensorFlow) load on first use of
        ``bin_models_``."""
        return load_classifier(cls, path)
