"""Spectra whose background (or a pedestal) was subtracted keep that
background's counting noise where they now read little: the noise is
that of the level plus an offset, which ``fit`` measures and gives the
copies it trains on and the denoising; counting spectra get none."""

import json

import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier, SpectraError
from server_ext.spectra import classifier as classifier_module
from server_ext.spectra.augment import augment, noise_gain, noise_offset
from server_ext.spectra.findings import findings
from server_ext.spectra.synthetic import make_powder_series


@pytest.fixture(scope="module")
def counts():
    """Poisson counts on a background of ~300-900 under powder peaks."""
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 1.0, 4000)
    level = 300 + 600 * np.exp(-x / 0.3) + sum(
        a * np.exp(-0.5 * ((x - c) / 0.002) ** 2) for a, c in ((5e3, 0.2), (2e3, 0.5), (8e3, 0.7)))
    return rng.poisson(np.tile(level, (8, 1))).astype(np.float64)


def test_counting_noise_has_no_offset(counts):
    X = counts
    assert noise_offset(X) == 0.0
    assert noise_offset(3.0 * X) == 0.0  # another gain
    rng = np.random.default_rng(1)
    assert noise_offset(rng.poisson(np.full((4, 2000), 0.3)).astype(float)) == 0.0  # a few counts
    for layout in ("weak", "shift", "pattern"):
        assert noise_offset(make_powder_series(layout, n_spectra=30, n_points=2010,
                                               random_state=2).X) == 0.0
    assert noise_offset(np.zeros((2, 300))) == 0.0 and noise_offset(X[:, :20]) == 0.0


def test_a_subtracted_background_leaves_its_noise(counts, benchmark_module):
    """Less each spectrum's 5 % quantile (~330 counts here; the
    benchmark's fault) the offset reads that background, and the gain
    with it is that of the counts again."""
    X = counts
    Z = benchmark_module("spectra").with_detector_fault(X, "subtracted", 0)
    removed = float(np.quantile(X, 0.05, axis=1).mean())
    assert 0.5 * removed < noise_offset(Z) < 2.0 * removed
    np.testing.assert_allclose(noise_gain(Z, noise_offset(Z)), noise_gain(X), rtol=0.25)
    assert noise_gain(Z).min() > 1.5  # read without it: too high on every peak

    # the copies' noise: of the level plus the offset
    flat = np.full((1, 3000), 10.0)
    copies, _ = augment(flat, None, 40, np.random.default_rng(0), strain=0.0, intensity=0.0,
                        noise=0.0, noise_floor=1.0, background=0.0, gain=np.ones(1),
                        offset=90.0)
    assert 90.0 < np.var(copies - 10.0) < 110.0


@pytest.fixture(scope="module")
def superlattice(benchmark_module):
    """The independent superlattice series, seed 1, background subtracted:
    protocol A (two curves per class)."""
    bm = benchmark_module("spectra")
    d = benchmark_module("powder_physics").SCENARIOS["superlattice"](random_state=1)
    X = bm.with_detector_fault(d["X"], "subtracted", 1)
    train = bm.extremes(d["y"])
    test = np.setdiff1d(np.arange(len(X)), train)
    return X[train], d["y"][train], X[test], d["y"][test], d["axis"]


def test_the_copies_of_subtracted_spectra_get_their_noise(superlattice, monkeypatch, tmp_path):
    """With the copies' noise of the level alone the networks learnt
    copies far noisier on the peaks than the spectra classified, and far
    cleaner on the background."""
    X, y, test, y_test, axis = superlattice
    clf = BinnedSpectraClassifier(random_state=1).fit(X, y, axis=axis)
    assert 300 < clf.noise_offset_ < 1000  # some 800 counts were taken off
    assert clf.score(test, y_test) >= 0.97
    assert any(line.startswith("noise above counting noise at low levels")
               for line in findings(clf))
    path = clf.save(tmp_path / "m")
    assert BinnedSpectraClassifier.load(path).noise_offset_ == clf.noise_offset_
    config = json.loads((path / "config.json").read_text())
    del config["noise_offset"]  # saved before it was measured
    (path / "config.json").write_text(json.dumps(config))
    assert BinnedSpectraClassifier.load(path).noise_offset_ is None
    for wrong in (-1.0, "800", True):
        (path / "config.json").write_text(json.dumps(dict(config, noise_offset=wrong)))
        with pytest.raises(SpectraError, match="incomplete or corrupt"):
            BinnedSpectraClassifier.load(path)

    monkeypatch.setattr(classifier_module, "noise_offset", lambda X: 0.0)
    before = BinnedSpectraClassifier(random_state=1).fit(X, y, axis=axis)
    assert before.score(test, y_test) < 0.95
