"""``split_variation``: split pairs of reflections that narrow and widen in
the training copies while every peak keeps its shape.

A tetragonal cell's c/a falls towards its transition: its (h00)/(00l)
pairs move together, a single reflection of a cubic phase stays single
and sharp. The behaviour is shown on a series this project's generator did
not make (``benchmarks/powder_physics.py``): BaTiO3-like perovskite heated
from 300 K, tetragonal with c/a 1.015 falling to 1.010 at the transition,
then cubic, then cubic in a 1 % larger cell; in protocol A only the two
300 K curves of the tetragonal phase are labelled.
"""

import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier
from server_ext.spectra.augment import augment
from server_ext.spectra.denoise import denoise
from server_ext.spectra.splits import split_plan

N_POINTS = 3000
SIGMA = 2.0  # points: FWHM 4.7
# (centre, height): single peaks, a split pair 30 points apart (2 % of its
# position), an unresolved pair (6 points) and a weak pair (1 %)
PEAKS = ((300, 900), (600, 800), (900, 700), (1500, 1000), (1530, 500), (2000, 10),
         (2030, 10), (2400, 800), (2700, 600), (2706, 600))


def _pattern():
    x = np.arange(N_POINTS)
    return 20.0 + sum(h * np.exp(-0.5 * ((x - c) / SIGMA) ** 2) for c, h in PEAKS)


def _plan():
    c, h = np.array(PEAKS, np.float64).T
    return split_plan(c, np.full(len(c), 2.3548 * SIGMA), h, 0.0,
                      np.arange(N_POINTS, dtype=float), 0.025)


def test_only_a_resolved_strong_pair_close_together_is_a_split():
    # the weak pair is no reflection to move, the unresolved pair one peak
    # with no neighbour, like the single peaks
    plan = _plan()
    assert plan.n_clusters == 1
    np.testing.assert_array_equal(plan.centers, [1500, 1530])
    np.testing.assert_array_equal(plan.cluster, [0, 0])
    np.testing.assert_allclose(plan.offset, [-15.0, 15.0])
    # narrowed by more than (30 - 2 FWHM) / 30 the pair would merge
    np.testing.assert_allclose(plan.least, [(2 * 2.3548 * SIGMA - 30) / 30])
    # an unresolved pair close to a peak moves as one, about their centre
    close = ((1500, 1000), (1530, 500), (1533, 500))
    c, h = np.array(close, np.float64).T
    plan = split_plan(c, np.full(3, 2.3548 * SIGMA), h, 0.0, np.arange(N_POINTS, dtype=float),
                      0.025)
    np.testing.assert_allclose(plan.offset, [-15.75, 15.75, 15.75])


def test_the_peak_model_finds_the_same_split():
    rng = np.random.default_rng(0)
    X = rng.poisson(np.tile(_pattern(), (3, 1))).astype(np.float64)
    _, info = denoise(X)
    for i in info:
        assert i.modelled > 0.9, i.reason
        plan = split_plan(i.centers, i.fwhm, i.heights, i.eta,
                          np.arange(N_POINTS, dtype=float), 0.025)
        assert plan.n_clusters == 1
        np.testing.assert_allclose(plan.offset, [-15.0, 15.0], atol=0.3)
        np.testing.assert_allclose(plan.centers, [1500.0, 1530.0], atol=0.3)


def _centroid(row, around, half=5):
    c = around - half + int(np.argmax(row[around - half:around + half + 1]))
    w = np.arange(c - half, c + half + 1)
    v = row[w] - 20.0
    mean = (v * w).sum() / v.sum()
    return mean, np.sqrt((v * (w - mean) ** 2).sum() / v.sum())


def test_split_pairs_narrow_and_widen_and_peaks_keep_their_shape():
    X = _pattern()[None, :].astype(np.float32)
    quiet = dict(strain=0.0, shift=0.0, intensity=0.0, noise=0.0, background=0.0)
    plain, _ = augment(X, None, 200, np.random.default_rng(1), **quiet)
    varied, _ = augment(X, None, 200, np.random.default_rng(1), splits=[_plan()],
                        split_variation=0.5, **quiet)
    gaps, widths = [], []
    for row in varied:
        first, w1 = _centroid(row, 1500, 8)
        second, w2 = _centroid(row, int(round(2 * 1515 - first)), 5)
        gaps.append(second - first)
        widths.append((w1, w2))
        # a single peak stays where it was, as it was
        for c in (600, 2400):
            np.testing.assert_allclose(_centroid(row, c), _centroid(X[0], c), atol=0.02)
    gaps = np.array(gaps)
    # up to half wider, and narrower as far as the pair stays resolved
    # (2 FWHM = 9.4 points), which half would not reach
    assert gaps.min() > 0.5 * 30 - 0.5 and gaps.max() < 1.5 * 30 + 0.5
    assert gaps.min() < 20 and gaps.max() > 40
    np.testing.assert_allclose(widths, [[_centroid(X[0], 1500, 8)[1],
                                         _centroid(X[0], 1530, 5)[1]]] * len(gaps), rtol=0.02)
    narrow, _ = augment(X, None, 200, np.random.default_rng(1), splits=[_plan()],
                        split_variation=0.9, **quiet)
    firsts = [_centroid(row, 1500, 8)[0] for row in narrow]
    assert 2 * 2.3548 * SIGMA - 0.5 < 2 * (1515 - max(firsts)) < 12
    # no variation, or no plan for the row: the copies of before
    for kw in (dict(splits=[_plan()], split_variation=0.0),
               dict(splits=[None], split_variation=0.5)):
        again, _ = augment(X, None, 200, np.random.default_rng(1), **kw, **quiet)
        np.testing.assert_array_equal(again, plain)


@pytest.mark.parametrize("name, series_seed, on, others, floor, gain", [
    ("local_strain", 1, 0.002, {"split_variation": 0.0}, 0.95, 0.02),
    ("split_variation", 2, 0.5, {}, 0.965, 0.015),
])
def test_a_narrowing_split_keeps_its_class(perovskite_protocol_a, name, series_seed, on, others,
                                           floor, gain):
    """Protocol A, six network seeds, with and without one augmentation:
    with it more of the tetragonal spectra up to the transition stay
    tetragonal; without, those above ~470 K, whose split has narrowed by a
    third, are called cubic. Which of them is a toss-up for a single model
    (each seed's networks extrapolate differently), so the test asks for
    the mean. Measured, network seeds 0-5: the local strain (series seed
    1, splits not varied) 90.96-99.15 % (mean 96.0 %) against 83.62-97.18 %
    (mean 92.5 %); the splits varied by half (series seed 2, the default
    local strain) 96.61-99.72 % (mean 97.83 %) against 92.37-98.59 % (mean
    95.15 %)."""
    assert getattr(BinnedSpectraClassifier(), name) == on  # the default is measured
    with_it = [perovskite_protocol_a(series_seed, s, **others, **{name: on}) for s in range(6)]
    without = [perovskite_protocol_a(series_seed, s, **others, **{name: 0.0}) for s in range(6)]
    assert np.mean(with_it) >= floor, (with_it, without)
    assert np.mean(with_it) >= np.mean(without) + gain, (with_it, without)


@pytest.mark.parametrize("peaks", [(), ((1500, 1000),), ((1500, 1000), (1530, -50))])
def test_fewer_than_two_peaks_make_no_split(peaks):
    c, h = np.array(peaks, np.float64).reshape(-1, 2).T
    plan = split_plan(c, np.full(len(c), 4.7), h, 0.3, np.arange(N_POINTS, dtype=float), 0.025)
    assert plan.n_clusters == 0 and len(plan.centers) == 0
    X = _pattern()[None, :].astype(np.float32)
    moved, _ = augment(X, None, 5, np.random.default_rng(0), splits=[plan], split_variation=0.5)
    plain, _ = augment(X, None, 5, np.random.default_rng(0))
    np.testing.assert_array_equal(moved, plain)
