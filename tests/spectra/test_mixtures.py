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


def test_a_class_of_one_spectrum_keeps_its_label():
    rng = np.random.default_rng(0)
    prof = rng.uniform(0, 1, (5, 50))
    T = mixture_targets(prof, np.array([0, 0, 1, 1, 2]), 3)
    assert T[4].tolist() == [0.0, 0.0, 1.0]


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
