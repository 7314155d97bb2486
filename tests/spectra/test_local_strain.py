"""``local_strain``: a strain of the training copies that varies along the axis.

One isotropic strain moves every peak by the same relative amount. A
non-cubic cell expands anisotropically: on heating a tetragonal
(h00)/(00l) split narrows while the whole pattern expands, which no
isotropic strain of the labelled curves produces. The behaviour is shown on
a series this project's generator did not make
(``benchmarks/powder_physics.py``, written without reading
``server_ext/spectra/synthetic.py``): BaTiO3-like perovskite heated from
300 K, tetragonal with c/a 1.015 falling to 1.010 at the transition, then
cubic, then cubic in a 1 % larger cell; in protocol A only the two 300 K
curves of the tetragonal phase are labelled (``test_splits.py`` fits it,
beside the varied splits, which narrow that split too).
"""

import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier, SpectraError
from server_ext.spectra.augment import augment, strain_field
from server_ext.spectra.synthetic import make_powder_series


def test_strain_field_is_bounded_smooth_and_per_row():
    half = np.repeat([0.0, 0.002, 0.004], 200)
    field = strain_field(np.random.default_rng(0), half, 4020, 16.0)
    assert field.shape == (600, 4020)
    assert not field[:200].any()  # a half-range of 0: no field
    for rows, h in ((slice(200, 400), 0.002), (slice(400, 600), 0.004)):
        f = field[rows]
        assert np.abs(f).max() <= h + 1e-15
        assert 0.4 * h < f.std() < 0.55 * h  # half the half-range, a little clipped
    f = field[200:]
    lag = lambda k: np.mean(f[:, k:] * f[:, :-k]) / np.mean(f * f)  # noqa: E731
    assert lag(1) > 0.99 and 0.3 < lag(24) < 0.8 and abs(lag(160)) < 0.05


def _two_peaks(n_points=3000, at=(1500.0, 1520.0)):
    x = np.arange(n_points)
    return (10.0 + sum(1000.0 * np.exp(-0.5 * ((x - c) / 2.0) ** 2) for c in at))[None, :]


def _separations(Xa, lo=1440, hi=1600):
    """Each copy's distance between the centroids of its two peaks (found
    wherever the strain put them, between points ``lo`` and ``hi``)."""
    out = []
    for row in Xa[:, lo:hi] - 10.0:
        first = int(np.argmax(row))
        masked = row.copy()
        masked[max(0, first - 8):first + 9] = 0.0
        pair = sorted((first, int(np.argmax(masked))))
        centroids = []
        for c in pair:
            w = np.arange(c - 6, c + 7)
            centroids.append((row[w] * w).sum() / row[w].sum())
        out.append(centroids[1] - centroids[0])
    return np.array(out)


def test_local_strain_moves_neighbouring_peaks_apart_and_together():
    X = _two_peaks()
    quiet = dict(strain=0.01, shift=0.0, intensity=0.0, noise=0.0, background=0.0)
    plain, _ = augment(X, None, 300, np.random.default_rng(1), **quiet)
    local, _ = augment(X, None, 300, np.random.default_rng(1), local_strain=0.003, **quiet)
    sep_plain, sep_local = _separations(plain), _separations(local)
    # an isotropic strain of 1 % scales the 20-point split by 0.2 point at most
    assert np.abs(sep_plain - 20.0).max() < 0.3
    # the local strain narrows it in some copies and widens it in others
    assert sep_local.std() > 5 * sep_plain.std()
    assert sep_local.min() < 19.0 and sep_local.max() > 21.0
    # both peaks still move with the isotropic strain: the pattern stays whole
    assert np.abs(sep_local - 20.0).max() < 0.35 * 20.0
    # 0 draws no field: the copies are those made before local_strain existed
    again, _ = augment(X, None, 300, np.random.default_rng(1), local_strain=0.0, **quiet)
    np.testing.assert_array_equal(again, plain)


@pytest.mark.parametrize("value", [-0.001, 0.2, "small", None])
def test_bad_local_strain_is_refused(value):
    X = np.random.default_rng(0).uniform(1, 2, (4, 600))
    with pytest.raises(SpectraError, match="local_strain must be"):
        BinnedSpectraClassifier(local_strain=value).fit(X, [0, 0, 1, 1])


def test_the_field_strains_only_the_copies_of_denoised_spectra(monkeypatch):
    """Where every class is labelled at least ``denoise_below`` times, the
    copies are made from the measured spectra, which show how each class's
    cell varies: they get no field, and the model is the one fitted with
    ``local_strain=0``. From two curves per class (denoised) the copies
    get it."""
    import server_ext.spectra.classifier as classifier_module

    half_ranges, floors = [], []
    real = classifier_module.augment

    def spy(*args, **kw):
        half_ranges.append(np.asarray(kw["local_strain"], np.float64))
        floors.append(np.asarray(kw["noise_floor"], np.float64))
        return real(*args, **kw)

    monkeypatch.setattr(classifier_module, "augment", spy)
    s = make_powder_series("shift", n_spectra=120, n_points=2010, random_state=0)
    many = np.arange(0, len(s.y), 3)
    assert np.bincount(s.y[many]).min() >= BinnedSpectraClassifier().denoise_below
    P = [BinnedSpectraClassifier(epochs=5, random_state=0, local_strain=value)
         .fit(s.X[many], s.y[many], axis=s.axis).predict_proba(s.X) for value in (0.002, 0.0)]
    assert not half_ranges[0].any()
    np.testing.assert_array_equal(P[0], P[1])

    two = np.concatenate([np.flatnonzero(s.y == c)[[0, -1]] for c in np.unique(s.y)])
    BinnedSpectraClassifier(epochs=5, random_state=0).fit(s.X[two], s.y[two], axis=s.axis)
    denoised = floors[-1] > 0  # a modelled curve's copies get fresh noise of at least 1
    assert denoised.any()
    np.testing.assert_array_equal(half_ranges[-1] > 0, denoised)
