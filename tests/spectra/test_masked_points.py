"""Points a detector masks (NaN in every labelled spectrum: a masked
pixel, the gap between two modules) are bridged over in every spectrum,
so that the spectra classified may be NaN there too; a NaN anywhere else
is refused with the rows and points named, and nothing is changed."""

import json

import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier, SpectraError
from server_ext.spectra.findings import findings
from server_ext.spectra.preprocess import SegmentPreprocessor, bridge_points
from server_ext.spectra.synthetic import make_powder_series

N, P = 120, 2010
PIXEL, GAP = 700, np.arange(1000, 1040)  # a masked pixel beside a peak, a gap over two
MASKED = np.r_[PIXEL, GAP]


def masked(X):
    X = np.array(X, np.float64)
    X[:, MASKED] = np.nan
    return X


@pytest.fixture(scope="module")
def shift():
    """A -> B -> A' (A' is A in a 1 % larger cell): every 4th curve
    labelled, the curves between them classified, NaN at the masked
    points."""
    s = make_powder_series("shift", n_spectra=N, n_points=P, random_state=0)
    train, test = np.arange(0, N, 4), np.arange(2, N, 4)
    return s, train, test


def test_segment_means_never_read_a_bridged_point():
    rng = np.random.default_rng(0)
    X = rng.gamma(2.0, 50.0, (40, 301)).astype(np.float32)
    for points in ([0], [150, 151], [299, 300], np.arange(100, 140)):
        exact = SegmentPreprocessor(301, 40, 5).segment_means(bridge_points(X, points))
        prep = SegmentPreprocessor(301, 40, 5, bridged=points)
        for value in (np.nan, np.inf, -np.inf):
            read = X.copy()
            read[:, points] = value
            np.testing.assert_allclose(prep.segment_means(read), exact, rtol=1e-5, atol=1e-3)
            np.testing.assert_allclose(prep.segment_means_fast(read), exact, rtol=1e-5,
                                       atol=1e-3)
        read = X.copy()
        read[3, np.setdiff1d(np.arange(301), points)[17]] = np.nan  # a point it reads
        assert np.isnan(prep.segment_means_fast(read)[3]).any()
        assert np.isfinite(prep.segment_means_fast(read)[[2, 4]]).all()


def test_masked_points_are_bridged_in_every_spectrum(shift, tmp_path):
    """Fitted with NaN at the masked points, the model classifies spectra
    NaN there as those that read anything there, saved and loaded too; the
    points are reported and kept out of the hot-pixel search."""
    s, train, test = shift
    X = masked(s.X[train])
    before = X.copy()
    clf = BinnedSpectraClassifier(random_state=0).fit(X, s.y[train], axis=s.axis)
    np.testing.assert_array_equal(X, before)  # the caller's spectra are not changed
    assert clf.masked_points_.tolist() == MASKED.tolist() and clf.bad_pixels_.tolist() == []
    assert "masked points, NaN or inf in every labelled spectrum or masked since fitting " \
        "(bridged over in every spectrum): points 700, 1000-1039" in list(findings(clf))
    proba = clf.predict_proba(masked(s.X[test]))
    for value in (0.0, 1e6):
        read = s.X[test].copy()
        read[:, MASKED] = value
        np.testing.assert_array_equal(clf.predict_proba(read), proba)
    # the classes A and A' differ by peak position alone; learnt as such
    assert clf.score(masked(s.X[test]), s.y[test]) >= 0.97
    pairs = {p["classes"]: p["separated_by"] for p in clf.position_pairs_}
    assert pairs[(0, 2)] == "position"
    idx, _, _, ok = clf.classify_batch(masked(s.X[test]))
    assert ok.all() and (idx == clf.predict(masked(s.X[test]))).all()

    path = clf.save(tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    assert config["version"] == 11 and config["masked_points"] == MASKED.tolist()
    loaded = BinnedSpectraClassifier.load(path)
    assert loaded.masked_points_.tolist() == MASKED.tolist()
    np.testing.assert_array_equal(loaded.predict_proba(masked(s.X[test])), proba)
    # a model saved before them had none: None, and a NaN there is refused
    old = dict(config, version=10)
    del old["masked_points"], old["bridged"]  # as a format-10 model was saved
    (path / "config.json").write_text(json.dumps(old))
    older = BinnedSpectraClassifier.load(path)
    assert older.masked_points_ is None
    with pytest.raises(SpectraError, match=r"points \[700, 1000, 1001"):
        older.predict(masked(s.X[test]))
    for wrong in ([P], [-1], ["gap"]):
        (path / "config.json").write_text(json.dumps(dict(config, masked_points=wrong)))
        with pytest.raises(SpectraError, match="incomplete or corrupt"):
            BinnedSpectraClassifier.load(path)


def test_nan_at_a_point_that_is_read_is_refused(shift):
    """In the labelled spectra a NaN at a point other spectra read is no
    mask but a broken spectrum; in those classified, a NaN outside the
    model's masked points likewise: refused, with rows and points."""
    s, train, test = shift
    X = masked(s.X[train])
    X[[3, 8], 1500] = np.nan
    X[8, 20] = np.inf
    before = X.copy()
    with pytest.raises(SpectraError, match=r"2 labelled spectra contain NaN or inf at points "
                       r"that other labelled spectra read \(rows \[3, 8\], points \[20, 1500\]\)"):
        BinnedSpectraClassifier(epochs=2, random_state=0).fit(X, s.y[train])
    np.testing.assert_array_equal(X, before)
    with pytest.raises(SpectraError, match="NaN or inf at every point"):
        BinnedSpectraClassifier().fit(np.full((4, P), np.nan), [0, 0, 1, 1])

    clf = BinnedSpectraClassifier(epochs=2, random_state=0).fit(masked(s.X[train]), s.y[train])
    read = masked(s.X[test])
    read[4, 10] = np.nan
    with pytest.raises(SpectraError, match=r"1 spectra contain NaN or inf \(rows \[4\], "
                       r"points \[10\]\)"):
        clf.predict_proba(read)
    ok = clf.classify_batch(read)[3]
    assert not ok[4] and ok[np.arange(len(read)) != 4].all()
