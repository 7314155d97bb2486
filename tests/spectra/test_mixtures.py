"""Labelled spectra at a phase transition are mixtures: they train with
their estimated phase fractions, not as wholly their label's class."""

import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier
from server_ext.spectra.mixtures import mixture_targets
from server_ext.spectra.nuisance import profiles
from server_ext.spectra.synthetic import make_powder_series

N_POINTS = 2010  # as in conftest.py


def minority_fraction(series):
    """Per spectrum, the fraction of the phase that is not its label's
    (the series' ``fraction`` runs 0..n_phases-1 through the mixtures)."""
    f = series.fraction - np.floor(series.fraction)
    return np.minimum(f, 1.0 - f)


def test_labelled_mixtures_get_their_phase_fractions_pure_spectra_their_label():
    """Three structures that scatter unequally, thermal drift inside each
    class: the labelled curves in the coexistence range get the fraction
    of the other phase (of phase, not of scattered intensity), the pure
    ones -- also those at the ends of a drift -- stay one-hot, and the
    label's class always keeps the majority."""
    s = make_powder_series("pattern", n_spectra=180, n_points=N_POINTS, random_state=2)
    train = np.arange(0, len(s.X), 5)
    y = s.y[train]
    prof, _ = profiles(s.X[train], 134, unit_sum=False)
    T = mixture_targets(prof, y, 3)
    np.testing.assert_allclose(T.sum(1), 1.0)
    assert (T[np.arange(len(y)), y] >= 0.5).all()
    truth = minority_fraction(s)[train]
    mixed = truth > 0.3
    assert mixed.sum() == 2  # one labelled curve in each transition
    other = 1.0 - T[np.arange(len(y)), y]
    assert (other[mixed] > 0.2).all()
    np.testing.assert_allclose(other[mixed], truth[mixed], atol=0.2)
    pure = truth < 0.01
    assert other[pure].max() <= 0.1


def test_a_labelled_mixture_between_mixtures_gets_its_fraction(benchmark_module):
    """The independent superlattice series, protocol B (every 5th curve
    labelled): in the ordered-cubic -> c/a 1.005 transition the labelled
    curve #235 (64 % cubic) lies between #230 (93 %) and #240 (19 %), so
    its nearest curves of the other class are mixtures themselves. With
    its own class fitted first and the neighbours counted as wholly their
    label's, #235 trained as 89 % cubic and #240 as 8 %; counted with what
    the neighbours hold, each within 0.08. (The disordered -> ordered
    transition before it, which only adds superlattice peaks of ~5 %, is
    not told from drift: its curves stay one-hot, as before.)"""
    d = benchmark_module("powder_physics").superlattice(random_state=2)
    train = np.arange(0, len(d["y"]), 5)
    y, truth = d["y"][train], d["fraction"][train]
    prof, _ = profiles(d["X"][train], 256, unit_sum=False)  # as fit does at 4,020 points
    T = mixture_targets(prof, y, 3)
    error = np.abs(T - truth).sum(1) / 2
    tetragonal = (truth[:, 2] > 0.03) & (truth.max(1) < 0.97)
    assert train[tetragonal].tolist() == [230, 235, 240]
    assert error[tetragonal].max() <= 0.08, np.round(T[tetragonal], 2)
    assert error[truth.max(1) >= 0.97].max() <= 0.03  # the pure curves


def protocol_c_targets(benchmark_module, layout, axis_kind, seed, sparse):
    """The protocol-C labelling of an own powder series (``sparse`` keeping
    one in six of its labels): its labels, true phase weights, profiles (as
    fit makes them at 4,020 points), the mask of the sparse class and the
    axis as positions."""
    s = make_powder_series(layout, n_spectra=360, n_points=4020, axis_kind=axis_kind,
                           cell_step=0.01, random_state=seed)
    train, _ = benchmark_module("spectra").protocol_c_split(s.y, sparse)
    prof, _ = profiles(s.X[train], 256, unit_sum=False)
    y = s.y[train]
    return y, s.weights[train], prof, y == sparse, s.axis


def test_in_a_sparse_class_drift_is_explained_by_its_own_class(benchmark_module):
    """The own ``weak`` series, seed 2, A + weak peaks (class 1) labelled on
    3 curves against 18 of A, distorted A and another structure: its own
    nearest curves lie six labels apart along the drift, the other
    classes' next to them, and the plain joint fit reads the drift as a
    mixture. Marked sparse, its own class's curves are strained onto each
    curve first: the pure curves stay one-hot, and the other classes'
    curves, whose contents are solved with theirs, come within 0.1 of
    their phases (0.27 off by the plain test). (The curve at the
    transition, 47 % A, differs from A + weak peaks by the weak peaks
    only: as in a balanced labelling, that is not told from drift, and it
    stays one-hot.)"""
    y, truth, prof, sparse, axis = protocol_c_targets(benchmark_module, "weak", "2theta", 2, 1)
    pure = sparse & (truth[:, 1] > 0.99)
    assert pure.sum() == 2
    tested = mixture_targets(prof, y, 4)
    assert (tested[pure, 1] <= 0.6).all()  # both read as mixtures
    T = mixture_targets(prof, y, 4, sparse=sparse, pos=axis)
    assert (T[pure, 1] == 1.0).all()
    error = np.abs(T - truth).sum(1) / 2
    assert (np.abs(tested - truth).sum(1) / 2)[~sparse].max() > 0.2
    assert error[~sparse].max() <= 0.1


def test_a_sparse_class_s_mixture_is_found_though_its_own_curves_lie_far(benchmark_module):
    """The own ``pattern`` series on q, seed 3, its third structure (class
    2) labelled on 4 curves, the first at the transition (59 % of it): the
    plain joint fit, its own nearest curves 30 apart, believed the other
    phase at only 0.25, and a threshold that keeps drift out took it as
    pure (0.41 off). Strained onto it, its own class explains the drift,
    and the other phase what is left: every labelled curve's target within
    0.08 of its phases."""
    y, truth, prof, sparse, axis = protocol_c_targets(benchmark_module, "pattern", "q", 3, 2)
    mixed = sparse & (truth[:, 2] < 0.7)
    assert mixed.sum() == 1 and sparse.sum() == 4
    T = mixture_targets(prof, y, 3, sparse=sparse, pos=axis)
    assert T[mixed, 2] < 0.7
    assert (T[sparse & ~mixed, 2] == 1.0).all()
    assert (np.abs(T - truth).sum(1) / 2).max() <= 0.08


@pytest.mark.parametrize("axis", ["q", "d"])
def test_a_sparse_class_s_member_is_strained_back_onto_the_spectrum(axis):
    """A curve whose peaks all sit 2 % further out in q (a smaller cell),
    against q or against d = 2 pi / q (decreasing, its points unevenly
    spaced): strained onto the first, it matches it within what linear
    interpolation loses; unstrained, hardly at all."""
    from server_ext.spectra.augment import increasing_axis
    from server_ext.spectra.mixtures import _strained_onto

    q = np.linspace(1.0, 6.0, 2000)
    peaks = np.array([1.7, 2.4, 3.1, 3.9, 4.6, 5.3])
    P = np.stack([np.exp(-0.5 * ((q[:, None] - peaks * f) / 0.01) ** 2).sum(1) for f in (1.0, 1.02)])
    unit = P / np.linalg.norm(P, axis=1, keepdims=True)
    assert unit[0] @ unit[1] < 0.1
    pos = increasing_axis(q if axis == "q" else 2 * np.pi / q, len(q))
    moved = _strained_onto(P, 0, [1], pos)[0]
    assert moved @ unit[0] / np.linalg.norm(moved) > 0.99


def test_a_class_of_one_spectrum_keeps_its_label():
    rng = np.random.default_rng(0)
    prof = rng.uniform(0, 1, (5, 50))
    y = np.array([0, 0, 1, 1, 2])
    assert mixture_targets(prof, y, 3)[4].tolist() == [0.0, 0.0, 1.0]
    # as fit marks it: sparse (its copy multiplier > 1), no member to strain onto it
    assert mixture_targets(prof, y, 3, sparse=y == 2)[4].tolist() == [0.0, 0.0, 1.0]


@pytest.fixture(scope="module")
def shift4_series():
    """A -> A' -> C -> C': every transition has a labelled curve inside it."""
    return make_powder_series("shift4", n_spectra=180, n_points=N_POINTS, random_state=0)


def test_spectra_next_to_a_labelled_mixture_are_called_for_their_majority(shift4_series):
    """Protocol B (every 5th curve labelled): a hard-labelled 45/55 curve
    taught the bins that the 57/43 test spectrum beside it belongs to the
    next class (so it was with ``learn_mixtures=False`` when this test was
    written; not asserted, a later improvement may repair it otherwise);
    trained with its fractions, every test spectrum with a majority of
    55 % or more is called for it."""
    s = shift4_series
    train = np.arange(0, len(s.X), 5)
    test = np.setdiff1d(np.arange(len(s.X)), train)
    clf = BinnedSpectraClassifier(epochs=30, random_state=0)
    clf.fit(s.X[train], s.y[train], axis=s.axis)
    soft = clf.label_targets_.max(1) < 1.0
    clear = minority_fraction(s)[test] <= 0.45
    wrong = clf.predict(s.X[test]) != s.y[test]
    assert soft.sum() >= 3  # the labelled curves inside the transitions
    assert not wrong[clear].any(), test[clear & wrong]


def _two_phases(fractions, rng, strong=4.0):
    """Raw mixtures of two phases on a background, phase 1 scattering
    ``strong`` times more per unit of phase: peaks of unit and ``strong``
    height, a beam that varies by 5 %, Poisson counts."""
    x = np.arange(N_POINTS)
    centres = rng.choice(np.arange(40, N_POINTS - 40), (2, 24), replace=False)
    heights = np.array([[1.0], [strong]]) * rng.uniform(0.3, 1.0, (2, 24))

    def pattern(k):
        return (heights[k, :, None] * np.exp(-0.5 * ((x - centres[k, :, None]) / 2.5) ** 2)).sum(0)

    a, b = pattern(0), pattern(1)
    f = np.asarray(fractions, np.float64)[:, None]
    beam = rng.uniform(0.95, 1.05, (len(f), 1))
    return rng.poisson(400 * beam * ((1 - f) * a + f * b + 0.1)).astype(np.float32)


def test_a_mixture_is_called_for_its_majority_phase_not_the_one_that_scatters_more():
    """Phase 1 scatters 4x more than phase 0: in a 30 % mixture of it, 63 %
    of the normalised spectrum's signal is phase 1's. Trained on pure
    spectra only, the mixtures of mixup are what places the transition:
    mixed as fractions of the normalised spectra, the networks learnt
    that such a spectrum is phase 1 (so it was when this test was
    written; not asserted). Mixed in proportion to each class's scale
    (``class_scales_``), every mixture is called for its majority phase."""
    rng = np.random.default_rng(5)
    train_f = np.repeat([0.0, 1.0], 30)
    test_f = np.repeat([0.2, 0.3, 0.35, 0.65, 0.7, 0.8], 20)
    X = _two_phases(np.concatenate([train_f, test_f]), rng)
    X_train, X_test = X[:len(train_f)], X[len(train_f):]
    clf = BinnedSpectraClassifier(epochs=30, random_state=0)
    clf.fit(X_train, (train_f > 0.5).astype(int))
    np.testing.assert_allclose(clf.class_scales_, [0.25, 1.0], rtol=0.15)
    P = clf.predict_proba(X_test)[:, 1]
    majority = (test_f > 0.5).astype(int)
    assert (clf.predict(X_test) == majority).all(), [
        (f, round(float(P[test_f == f].mean()), 2)) for f in np.unique(test_f)]
    # the probability of phase 1 rises with its fraction (20, 35, 65, 80 %)
    means = [P[test_f == f].mean() for f in (0.2, 0.35, 0.65, 0.8)]
    assert np.all(np.diff(means) > 0), means


def test_classes_of_one_structure_share_one_scale_whatever_the_beam():
    """Class 1 is phase 0 under a 30 % stronger beam (as a drift along a
    series gives): it scatters no more than class 0, so both get one
    scale; phase 1 keeps its own, 4x."""
    X = _two_phases(np.repeat([0.0, 0.0, 1.0], 10), np.random.default_rng(6))
    X[10:20] *= 1.3
    clf = BinnedSpectraClassifier(epochs=1, random_state=0).fit(X, np.repeat([0, 1, 2], 10))
    s = clf.class_scales_
    assert s[0] == s[1] and s[2] == 1.0
    assert 0.2 < s[0] < 0.4, s
