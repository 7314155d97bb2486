"""Features that do not move with the sample (a peak of the sample
environment), declared with ``fixed_ranges``: they must not hide a
difference of peak position between classes. Hot and dead pixels are
found without being declared: ``test_bad_pixels.py``."""

import json

import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier, SpectraError
from server_ext.spectra.bad_pixels import bad_pixels
from server_ext.spectra.nuisance import position_tolerance
from server_ext.spectra.synthetic import make_powder_series


def _environment_peak(X, centre, seed):
    """A Gaussian peak (sigma 3 points, a tenth of the strongest sample
    peaks) at point ``centre`` of every spectrum, with its counting noise."""
    i = np.arange(X.shape[1])
    peak = 0.1 * np.percentile(X, 99.9) * np.exp(-0.5 * ((i - centre) / 3.0) ** 2)
    return X + np.random.default_rng(seed).poisson(np.broadcast_to(peak, X.shape))


def test_an_environment_peak_is_no_pattern_once_declared():
    """A and A' in a 1 % larger cell (`shift`, every 4th curve labelled),
    a peak of the sample environment at point 1500 of every spectrum:
    moved onto A', A's profile leaves that peak twice, where it is and
    where the displacement took it, and the pair passes for "pattern".
    Declared, the windows that hold it or take it in are neither fitted
    nor judged: "position" again, as without it. A and B (two
    structures) stay "pattern" either way. The peak is 3 points wide,
    no pixel: nothing is found without the declaration."""
    n, p = 120, 2010
    s = make_powder_series("shift", n_spectra=n, n_points=p, random_state=0)
    train = np.arange(0, n, 4)
    X = _environment_peak(s.X[train].astype(np.float64), 1500, seed=0)

    assert not bad_pixels(X, s.y[train], 3).any()

    def verdicts(fixed):
        t = position_tolerance(X, s.y[train], 3, s.axis, p // 15, 0.015, p / 480, fixed)
        return {q["classes"]: q["separated_by"] for q in t.pairs}

    assert verdicts(None)[(0, 2)] == "pattern"
    fixed = np.zeros(p, bool)
    fixed[1490:1511] = True
    assert verdicts(fixed) == {(0, 1): "pattern", (0, 2): "position", (1, 2): "pattern"}


def test_an_environment_peak_declared_keeps_a_cell_change_signal(benchmark_module):
    """The independent `isostructural_shift` series (four classes, each the
    same structure in a cell ~1 % larger than the last), protocol A, with
    a peak of the sample environment at one 2-theta in every spectrum
    (a cryostat window, the capillary). Undeclared it makes every pair
    look as if it differed by pattern: no cell change is learnt, the
    copies are strained across it, and neighbouring classes are confused
    (90.62 % here). Declared, every pair is told apart by position again."""
    d = benchmark_module("powder_physics").isostructural_shift(random_state=1)
    y, axis = d["y"], d["axis"]
    X = _environment_peak(d["X"], 2500, seed=1)
    train = benchmark_module("spectra").extremes(y)
    test = np.setdiff1d(np.arange(len(y)), train)
    found = {}
    for ranges in (None, [(axis[2490], axis[2510])]):
        clf = BinnedSpectraClassifier(random_state=1, fixed_ranges=ranges)
        clf.fit(X[train], y[train], axis=axis)
        pairs = [q["classes"] for q in clf.position_pairs_ if q["separated_by"] == "position"]
        found[ranges is None] = pairs, (clf.predict(X[test]) == y[test]).mean()
    assert found[True][0] == []
    assert found[False][0] == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert found[False][1] >= 0.99 and found[False][1] > found[True][1] + 0.05, found


def test_fixed_ranges_are_checked_and_saved(tmp_path):
    s = make_powder_series("shift", n_spectra=60, n_points=600, random_state=0)
    X, y = s.X[::3], s.y[::3]
    for ranges, message in (([(5.0, 1.0)], "low above high"), ([(1.0,)], "pairs of finite"),
                            ([(np.nan, 1.0)], "pairs of finite"), (3, "pairs of finite"),
                            ([(-9.0, -8.0)], "holds no point: the axis")):
        with pytest.raises(SpectraError, match=message):
            BinnedSpectraClassifier(epochs=2, fixed_ranges=ranges).fit(X, y, axis=s.axis)
    with pytest.raises(SpectraError, match="holds no point: the point indices"):
        BinnedSpectraClassifier(epochs=2, fixed_ranges=[(600, 700)]).fit(X, y)
    ranges = [(float(s.axis[100]), float(s.axis[104]))]
    clf = BinnedSpectraClassifier(epochs=2, random_state=0, fixed_ranges=ranges)
    clf.fit(X, y, axis=s.axis)
    path = clf.save(tmp_path / "m")
    assert json.loads((path / "config.json").read_text())["params"]["fixed_ranges"] == \
        [list(r) for r in ranges]
    loaded = BinnedSpectraClassifier.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(s.X), clf.predict_proba(s.X))
