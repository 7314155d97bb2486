"""Hot and dead pixels are found in the labelled spectra, bridged over in
every spectrum and left out of the position test, so that they are no
feature of any class and cannot hide a difference of peak position
between classes; a sample's peaks never pass for them."""

import json

import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier, SpectraError
from server_ext.spectra import bad_pixels as bad_pixels_module
from server_ext.spectra.bad_pixels import bad_pixels
from server_ext.spectra.nuisance import position_tolerance
from server_ext.spectra.preprocess import SegmentPreprocessor, bridge_points
from server_ext.spectra.findings import findings
from server_ext.spectra.synthetic import make_powder_series, make_transition_series

N, P = 120, 2010
#: clear of the sample's peaks: on a peak's flank the peak's own curvature
#: beside a weak pixel (or pair) can hide it, and it is not found
AT = 1400


@pytest.fixture(scope="module")
def shift_labelled():
    """A -> B -> A' (A' is A in a 1 % larger cell), every 4th curve."""
    s = make_powder_series("shift", n_spectra=N, n_points=P, random_state=0)
    train = np.arange(0, N, 4)
    return s.X[train].astype(np.float64), s.y[train], s.axis


@pytest.fixture(scope="module")
def with_pixel(benchmark_module):
    """``with_pixel(kind, X)``: ``X`` with a bad pixel (or pair) of the
    benchmark's ``kind`` at :data:`AT` in every spectrum."""
    put = benchmark_module("spectra").with_detector_fault

    def with_pixel(kind, X):
        if kind == "dead":
            X = X + 4 * np.median(X)  # a dead pixel counts only above a background it lacks
        return put(X, kind, 0, at=AT)

    return with_pixel


@pytest.mark.parametrize("kind, points", [("hot", [AT]), ("noisy", [AT]),
                                          ("pair", [AT, AT + 1]), ("dead", [AT])])
def test_bad_pixels_are_found_and_nothing_else(shift_labelled, with_pixel, kind, points):
    X, y, _ = shift_labelled
    assert bad_pixels(X, y, 3).nonzero()[0].tolist() == []
    assert bad_pixels(with_pixel(kind, X), y, 3).nonzero()[0].tolist() == points


def test_spectra_too_short_to_judge_a_run_are_not_searched(shift_labelled, with_pixel):
    X, y, _ = shift_labelled
    for points in (2, 7):
        short = with_pixel("hot", X)[:, AT - 1:AT - 1 + points]
        assert bad_pixels(short, y, 3).tolist() == [False] * points


def test_a_pixel_of_one_class_only_is_a_difference_not_a_bad_pixel(shift_labelled):
    X, y, _ = shift_labelled
    X = X.copy()
    X[y == 1, AT] = 20 * np.median(X)
    assert not bad_pixels(X, y, 3).any()


def test_a_hot_pixel_hides_no_cell_change(shift_labelled, with_pixel):
    """Moved onto A', A's profile leaves the pixel twice, where it is and
    where the displacement took it, and the pair passes for one that
    differs by pattern. Found and left out, every verdict is as without
    the pixel."""
    X, y, axis = shift_labelled

    def verdicts(spectra, fixed=None):
        t = position_tolerance(spectra, y, 3, axis, P // 15, 0.015, P / 480, fixed)
        return {q["classes"]: q["separated_by"] for q in t.pairs}

    clean = verdicts(X)
    assert clean == {(0, 1): "pattern", (0, 2): "position", (1, 2): "pattern"}
    hot = with_pixel("hot", X)
    assert verdicts(hot)[(0, 2)] == "pattern"
    assert verdicts(hot, bad_pixels(hot, y, 3)) == clean


def test_peaks_as_narrow_as_a_pixel_are_not_searched(monkeypatch):
    """At 500 points the original transition's sharpest peaks are one
    point wide: with the resolution check off, sample peaks pass for
    pixels. With it, nothing is searched in such spectra -- a hot pixel
    there is not found either (declare it with ``fixed_ranges``)."""
    s = make_transition_series(n_spectra=N, n_points=500, kind="both", random_state=0)
    X, y = s.X[::4].astype(np.float64), s.y[::4]
    assert not bad_pixels(X, y, 2).any()
    hot = X.copy()
    hot[:, 375] = 20 * np.median(X)
    assert not bad_pixels(hot, y, 2).any()
    monkeypatch.setattr(bad_pixels_module, "RESOLVED", 0.0)
    assert len(bad_pixels(X, y, 2).nonzero()[0]) >= 3


def test_the_pixels_found_are_reported_and_saved(shift_labelled, with_pixel, tmp_path):
    X, y, axis = shift_labelled
    clf = BinnedSpectraClassifier(epochs=2, random_state=0).fit(with_pixel("hot", X), y, axis=axis)
    assert clf.bad_pixels_.tolist() == [AT]
    assert f"hot or dead pixels found (bridged over in every spectrum): points {AT}" \
        in list(findings(clf))
    path = clf.save(tmp_path / "m")
    assert BinnedSpectraClassifier.load(path).bad_pixels_.tolist() == [AT]
    # a model saved before they were recorded says so: None, not "none found"
    config = json.loads((path / "config.json").read_text())
    config["version"] = 9
    del config["bad_pixels"]
    (path / "config.json").write_text(json.dumps(config))
    old = BinnedSpectraClassifier.load(path)
    assert old.bad_pixels_ is None
    assert not any("pixels" in line for line in findings(old))
    for wrong in ([P], [-1], ["left"]):
        (path / "config.json").write_text(json.dumps(dict(config, bad_pixels=wrong)))
        with pytest.raises(SpectraError, match="incomplete or corrupt"):
            BinnedSpectraClassifier.load(path)
    # searched whether or not position is learnt
    off = BinnedSpectraClassifier(epochs=2, random_state=0, learn_position=False)
    assert off.fit(with_pixel("hot", X), y, axis=axis).bad_pixels_.tolist() == [AT]
    assert BinnedSpectraClassifier(epochs=2, random_state=0).fit(X, y, axis=axis) \
        .bad_pixels_.tolist() == []



def test_bridged_segment_means_are_those_of_the_bridged_spectra():
    """Bridging recomputes the few segments that hold the points,
    exact and fast alike, at the ends of the axis and side by side too."""
    rng = np.random.default_rng(0)
    X = rng.gamma(2.0, 50.0, (40, 301)).astype(np.float32)
    for points in ([0], [150], [150, 151], [7, 9], [299, 300], [0, 1, 2, 150, 300]):
        bridged = bridge_points(X, points)
        for k in points:
            lo = max([j for j in range(k) if j not in points], default=None)
            hi = min([j for j in range(k + 1, 301) if j not in points], default=None)
            line = X[:, hi if lo is None else lo] if lo is None or hi is None else \
                X[:, lo] + (X[:, hi] - X[:, lo]) * (k - lo) / (hi - lo)
            np.testing.assert_allclose(bridged[:, k], line, rtol=1e-6)
        untouched = np.setdiff1d(np.arange(301), points)
        np.testing.assert_array_equal(bridged[:, untouched], X[:, untouched])
        exact = SegmentPreprocessor(301, 40, 5).segment_means(bridged)
        prep = SegmentPreprocessor(301, 40, 5, bridged=points)
        np.testing.assert_allclose(prep.segment_means(X), exact, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(prep.segment_means_fast(X), exact, rtol=1e-5, atol=1e-3)
    for wrong in ([301], [-1], np.arange(301)):
        with pytest.raises(SpectraError, match="do not fit 301 points"):
            SegmentPreprocessor(301, 40, 5, bridged=wrong)


def test_a_found_pixel_is_no_feature_of_any_spectrum(shift_labelled, with_pixel, tmp_path):
    """Found, the pixel is bridged over in the labelled spectra and in
    every spectrum classified: whatever it reads there, the probabilities
    are the same, and so after saving and loading. A model of format 9
    was fitted with the pixel in, and classifies with it in."""
    X, y, axis = shift_labelled
    clf = BinnedSpectraClassifier(epochs=2, random_state=0).fit(with_pixel("noisy", X), y,
                                                                axis=axis)
    assert clf.bad_pixels_.tolist() == [AT]
    test = with_pixel("noisy", make_powder_series("shift", n_spectra=N, n_points=P,
                                                  random_state=1).X[2::4])
    proba = clf.predict_proba(test)
    reads = {}
    for value in (0.0, 100 * test.max()):
        reads[value] = test.copy()
        reads[value][:, AT] = value
        np.testing.assert_allclose(clf.predict_proba(reads[value]), proba, atol=1e-5)
    np.testing.assert_allclose(clf.predict_proba(bridge_points(test, [AT])), proba, atol=1e-5)
    path = clf.save(tmp_path / "m")
    loaded = BinnedSpectraClassifier.load(path)
    np.testing.assert_allclose(loaded.predict_proba(reads[0.0]), proba, atol=1e-5)
    config = json.loads((path / "config.json").read_text())
    assert config["version"] == 11 and config["bad_pixels"] == [AT]
    assert config["bridged"] == [AT]
    old = dict(config, version=9)
    del old["bridged"]  # as a version 9 model was saved
    (path / "config.json").write_text(json.dumps(old))
    hottest = reads[100 * test.max()]
    version9 = BinnedSpectraClassifier.load(path)
    unbridged = version9.predict_proba(hottest)
    assert np.abs(unbridged - proba).max() > 0.1
    # saved again, it still classifies with the pixel in, as it did
    resaved = BinnedSpectraClassifier.load(version9.save(tmp_path / "again"))
    assert resaved.bad_pixels_.tolist() == [AT]
    np.testing.assert_array_equal(resaved.predict_proba(hottest), unbridged)
