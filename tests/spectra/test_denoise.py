"""Peak-model denoising of labelled spectra (:mod:`server_ext.spectra.denoise`)
on peaks + background + Poisson counts with a known noise-free mean."""

import numpy as np
import pytest

from server_ext.spectra.augment import augment
from server_ext.spectra.denoise import denoise, peak_shape

P = 2000
IDX = np.arange(P, dtype=np.float64)
# strong peaks at sub-point positions, widening along the axis (Caglioti-like)
STRONG = np.array([151.3, 402.7, 655.1, 903.45, 1210.8, 1500.2, 1801.6])
HEIGHTS = np.array([2500.0, 1200.0, 3000.0, 800.0, 1800.0, 1000.0, 2200.0])
WEAK = 1052.35  # a weak peak, ~6 noise sigmas after the matched filter
WEAK_HEIGHT = 45.0


def fwhm(x):
    return 4.0 + 2.0 * (x / P) ** 2


def profile(center, height, eta=0.5):
    d = ((IDX - center) / fwhm(center)) ** 2
    return height * (eta / (1 + 4 * d) + (1 - eta) * np.exp(-4 * np.log(2) * d))


def truth(weak=True):
    mean = 150.0 * np.exp(-IDX / 900.0) + 120.0
    for c, h in zip(STRONG, HEIGHTS):
        mean += profile(c, h)
    return mean + (profile(WEAK, WEAK_HEIGHT) if weak else 0.0)


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(4)
    mean = truth()
    return mean, rng.poisson(np.tile(mean, (3, 1))).astype(np.float64)


@pytest.fixture(scope="module")
def denoised(counts):
    return denoise(counts[1])


def test_the_peak_shape_is_measured_from_the_strong_peaks(counts):
    shape = peak_shape(counts[1])
    np.testing.assert_allclose(shape.fwhm(STRONG), fwhm(STRONG), rtol=0.1)
    assert 0.3 < shape.eta < 0.7


def test_noise_removed_positions_kept_weak_peak_found(counts, denoised):
    mean, X = counts
    Xd, info = denoised
    for row, spectrum in zip(Xd, info):
        assert spectrum.reason == "" and spectrum.modelled > 0.95
        # most of the noise is gone...
        assert np.sqrt(np.mean((row - mean) ** 2)) < 0.5 * np.sqrt(np.mean((X[0] - mean) ** 2))
        # ...the peaks stay where they are, to a small fraction of a point
        nearest = np.abs(spectrum.centers[None, :] - STRONG[:, None]).min(1)
        assert (nearest < 0.1).all(), nearest
        # the weak peak is kept (its position known to ~fwhm / SNR), little else invented
        assert np.abs(spectrum.centers - WEAK).min() < 0.3 * fwhm(WEAK)
        known = np.append(STRONG, WEAK)
        invented = np.abs(spectrum.centers[:, None] - known[None, :]).min(1) > 2 * fwhm(known).max()
        assert invented.sum() <= 1, spectrum.centers[invented]


def test_a_spectrum_without_the_weak_peak_gets_none(counts):
    """The same pattern without the weak peak: nothing appears there."""
    X = np.random.default_rng(5).poisson(np.tile(truth(weak=False), (2, 1))).astype(np.float64)
    Xd, info = denoise(X, shape=peak_shape(counts[1]))
    for spectrum in info:
        assert np.abs(spectrum.centers - WEAK).min() > 2 * fwhm(WEAK)
    window = slice(int(WEAK) - 6, int(WEAK) + 7)
    assert np.abs(Xd[:, window] - truth(weak=False)[window]).max() < 0.3 * WEAK_HEIGHT


def test_what_the_model_cannot_explain_stays_raw(counts):
    """A box-shaped reflection (not a peak of the measured shape) keeps its
    raw points; a sawtooth (ramps and steps, no peak of that shape) is
    returned unchanged, saying why."""
    rng = np.random.default_rng(6)
    shape = peak_shape(counts[1])
    box = truth().copy()
    box[700:760] += 1500.0
    sawtooth = 400.0 + 1500.0 * (np.arange(P) % 40) / 40.0
    X = rng.poisson(np.stack([box, sawtooth])).astype(np.float64)
    Xd, info = denoise(X, shape=shape)
    # its sharp edges, which no sum of such peaks follows, stay raw (the flat
    # top may be followed within the noise)
    for edge in (slice(697, 704), slice(756, 763)):
        np.testing.assert_array_equal(Xd[0, edge], X[0, edge])
    assert 0.9 < info[0].modelled < 1.0  # the rest of the spectrum is modelled
    np.testing.assert_array_equal(Xd[1], X[1])
    assert info[1].modelled == 0.0 and "does not explain" in info[1].reason


def test_nan_flat_and_peakless_spectra_are_returned_unchanged(counts):
    X = np.stack([counts[1][0], counts[1][0], np.zeros(P), np.full(P, 7.0)])
    X[1, 10] = np.nan
    Xd, info = denoise(X)
    np.testing.assert_array_equal(Xd[1:], X[1:])
    assert info[0].modelled > 0.95
    assert "NaN" in info[1].reason
    assert info[2].reason and info[3].reason
    # background and noise only: no peak shape to measure, nothing modelled
    flat = np.random.default_rng(7).poisson(np.full((2, P), 300.0)).astype(np.float64)
    Xd, info = denoise(flat)
    np.testing.assert_array_equal(Xd, flat)
    assert all("peak shape" in i.reason for i in info)


def test_copies_of_a_denoised_spectrum_get_at_least_the_measured_noise():
    """``noise_floor=1``: the copies of a noise-free row are as noisy as a
    Poisson spectrum of the given gain, even with no extra noise asked."""
    level = np.full((1, 4000), 400.0, np.float32)
    Xa, _ = augment(level, None, 20, np.random.default_rng(0), strain=0.0, intensity=0.0,
                    noise=0.0, background=0.0, gain=np.array([2.0]), noise_floor=1.0)
    np.testing.assert_allclose(Xa.var(1), 2.0 * 400.0, rtol=0.1)
    Xa, _ = augment(level, None, 2, np.random.default_rng(0), strain=0.0, intensity=0.0,
                    noise=0.0, background=0.0, gain=np.array([2.0]))
    assert Xa.var() == 0.0  # no floor, no extra noise: the row as it is


def test_the_compiled_normal_equations_are_the_weighted_products():
    """The fits' normal equations, summed over overlapping columns only,
    equal ``A^T W A`` (as its non-zeros, plus the ridge) and ``A^T W x`` --
    with columns that are not one run of rows (two of them overlapping
    without a common row), an empty column and columns that touch at one
    row."""
    from scipy import sparse

    from server_ext.spectra.compiled import compiled
    from server_ext.spectra.denoise import PeakShape, _Model, _normal_equations

    rng = np.random.default_rng(7)
    dense = np.zeros((300, 9))
    dense[10:60, 0] = rng.normal(size=50)
    dense[59:120, 1] = rng.normal(size=61)  # meets column 0 at row 59 only
    dense[[5, 80, 81, 250], 2] = rng.normal(size=4)  # scattered rows
    dense[200:300, 4] = rng.normal(size=100)  # column 3 stays empty
    dense[::7, 5] = rng.normal(size=43)
    dense[100:101, 6] = 2.0
    dense[0:300, 7] = rng.normal(size=300)
    dense[290:300, 8] = rng.normal(size=10)
    weight, x = rng.uniform(0.1, 2.0, 300), rng.normal(size=300)
    A = sparse.csc_matrix(dense)
    rows, cols, values, rhs, diag = compiled(_normal_equations)(A.indptr, A.indices, A.data,
                                                                 weight, x, 1e-3)
    N = sparse.coo_matrix((values, (rows, cols)), (9, 9))
    products = dense.T @ (weight[:, None] * dense)
    np.testing.assert_allclose(diag, products.diagonal(), rtol=1e-12)
    ridge = 1e-3 * products.diagonal().max() * np.eye(9)
    np.testing.assert_allclose(N.toarray(), products + ridge, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rhs, dense.T @ (weight * x), rtol=1e-12, atol=1e-12)
    # only what is not zero, the whole diagonal (the empty column's: the ridge)
    assert N.nnz == np.count_nonzero(products + ridge) == len(set(zip(rows, cols)))
    assert N.toarray()[3].sum() == 1e-3 * (diag.max() + 1e-30)  # the ridge alone, of its own diagonal
    assert N.toarray()[0, 1] == dense[59, 0] * weight[59] * dense[59, 1]
    # a system without a finite solution is an error that denoise() answers by
    # keeping the spectrum as measured, not NaN amplitudes
    model = _Model(300, PeakShape(np.array([5.0]), 0.5, 300))
    assert np.isfinite(model.solve(A, x, weight)[0]).all()
    with pytest.raises((RuntimeError, np.linalg.LinAlgError)):
        model.solve(A, x, np.where(np.arange(300) == 80, np.nan, weight))
