"""Points the detector masks, or reads wrongly, only after the model was
fitted (a pixel that dies during the beamtime, a module switched off):
``mask_points`` bridges them in every spectrum classified from then on,
so the spectra may be NaN there; bad points are refused and change
nothing; a batch NaN at the same points everywhere is refused naming the
remedy."""

import json

import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier, SpectraError
from server_ext.spectra.classifier import SpectraNotFittedError
from server_ext.spectra.findings import findings
from server_ext.spectra.preprocess import bridge_points
from server_ext.spectra.synthetic import make_powder_series

N, P = 120, 2010
PIXEL, GAP = 700, np.arange(1000, 1040)  # a pixel beside a peak, a gap over two
MASKED = np.r_[PIXEL, GAP]


def masked(X, value=np.nan):
    X = np.array(X, np.float64)
    X[:, MASKED] = value
    return X


@pytest.fixture(scope="module")
def fitted():
    """A -> B -> A' (A' is A in a 1 % larger cell), every 4th curve
    labelled as read (nothing masked), fitted once; the curves between
    them to classify."""
    s = make_powder_series("shift", n_spectra=N, n_points=P, random_state=0)
    train, test = np.arange(0, N, 4), np.arange(2, N, 4)
    clf = BinnedSpectraClassifier(random_state=0).fit(s.X[train], s.y[train], axis=s.axis)
    return clf, s.X[test], s.y[test]


def test_points_masked_after_fitting_are_bridged(fitted, tmp_path):
    clf, X, y = fitted
    path = clf.save(tmp_path / "m")
    clf = BinnedSpectraClassifier.load(path)  # the module's model stays as fitted
    assert clf.masked_points_.tolist() == []
    before = clf.predict_proba(X)
    with pytest.raises(SpectraError, match=r"points \[700, 1000, 1001, .*\] are NaN or inf in "
                       r"every spectrum: if the detector masks them now, mask_points"):
        clf.predict(masked(X))
    assert not clf.classify_batch(masked(X))[3].any()

    assert clf.mask_points(MASKED) is clf
    assert clf.masked_points_.tolist() == MASKED.tolist()
    # reported as masked, not as read NaN in the labelled spectra alone
    assert "masked points, NaN or inf in every labelled spectrum or masked since fitting " \
        "(bridged over in every spectrum): points 700, 1000-1039" in list(findings(clf))
    proba = clf.predict_proba(masked(X))
    # what the points read is never used: the spectra classify as if they
    # read the straight line between their neighbours there
    np.testing.assert_allclose(proba, clf.predict_proba(bridge_points(X, MASKED)), atol=1e-5)
    for value in (0.0, 1e6, -np.inf):
        np.testing.assert_array_equal(clf.predict_proba(masked(X, value)), proba)
    assert clf.classify_batch(masked(X))[3].all()
    # the networks were never shown the gap: the pair told apart by
    # position only (A / A') still is
    assert clf.score(masked(X), y) >= 0.97
    assert np.abs(proba - before).max() > 0  # the bridged points' segments did change

    clf.mask_points([PIXEL, 1500])  # more later: added to those before
    assert clf.masked_points_.tolist() == sorted([*MASKED.tolist(), 1500])
    resaved = clf.save(tmp_path / "m2")
    config = json.loads((resaved / "config.json").read_text())
    assert config["masked_points"] == config["bridged"] == clf.masked_points_.tolist()
    X2 = masked(X)
    X2[:, 1500] = np.nan
    np.testing.assert_array_equal(BinnedSpectraClassifier.load(resaved).predict_proba(X2),
                                  clf.predict_proba(X2))
    for wrong in ([P], [-1], ["gap"], [PIXEL]):  # the last leaves masked points unbridged
        (resaved / "config.json").write_text(json.dumps(dict(config, bridged=wrong)))
        with pytest.raises(SpectraError, match="incomplete or corrupt"):
            BinnedSpectraClassifier.load(resaved)


def test_a_model_saved_before_masked_points_takes_them(fitted, tmp_path):
    clf, X, _ = fitted
    path = clf.save(tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    old = dict(config, version=10)
    del old["masked_points"], old["bridged"]  # as a format-10 model was saved
    (path / "config.json").write_text(json.dumps(old))
    older = BinnedSpectraClassifier.load(path)
    assert older.masked_points_ is None
    older.mask_points(MASKED)
    assert older.masked_points_.tolist() == MASKED.tolist()
    np.testing.assert_array_equal(older.predict_proba(masked(X)),
                                  BinnedSpectraClassifier.load(path).mask_points(MASKED)
                                  .predict_proba(masked(X, 0.0)))


@pytest.mark.parametrize("points, message", [
    ([-1], r"points \[-1\] lie outside the spectra's points 0-2009"),
    ([5, P], r"points \[2010\] lie outside"),
    ([1.5], "must be point indices"),
    (["700"], "must be point indices"),
    ([True], "must be point indices"),
    (np.arange(P - 1), "would leave fewer than two points read"),
])
def test_bad_points_are_refused_and_change_nothing(fitted, points, message):
    clf, X, _ = fitted
    before = clf.predict_proba(X)
    with pytest.raises(SpectraError, match=message):
        clf.mask_points(points)
    assert clf.masked_points_.tolist() == []
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_an_unfitted_model_masks_nothing():
    with pytest.raises(SpectraNotFittedError):
        BinnedSpectraClassifier().mask_points([3])


def test_nan_in_some_spectra_only_is_no_mask(fitted):
    """A NaN in a few spectra of a batch is a broken spectrum, not a masked
    pixel: refused without the remedy."""
    clf, X, _ = fitted
    read = np.array(X, np.float64)
    read[[1, 3], 50] = np.nan
    with pytest.raises(SpectraError, match=r"2 spectra contain NaN or inf \(rows \[1, 3\], "
                       r"points \[50\]\); remove or repair them$"):
        clf.predict(read)


def test_pulses_without_data_are_no_mask(fitted):
    """A batch of spectra NaN at every point (pulses without data): refused
    without offering to mask every point."""
    clf, X, _ = fitted
    empty = np.full((3, X.shape[1]), np.nan)
    with pytest.raises(SpectraError, match=r"3 spectra contain NaN or inf \(rows \[0, 1, 2\], "
                       r"points \[0, 1, .*\]\); remove or repair them$"):
        clf.predict(empty)
