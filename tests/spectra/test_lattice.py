import numpy as np

from server_ext.spectra.lattice import Structure, q_of, reflections, two_theta


def cubic(a, positions=((0, 0, 0),), factors=(20.0,)):
    return Structure(a, a, a, 90.0, np.array(positions, float), np.array(factors), b_iso=0.0)


def test_cubic_d_spacings_and_multiplicities():
    d, inten = reflections(cubic(4.0), d_min=1.5)
    # primitive cubic: d = a / sqrt(h2 + k2 + l2); one atom: |F|^2 equal, so
    # the intensity is the multiplicity (100: 6, 110: 12, 111: 8, 200: 6, 210: 24)
    np.testing.assert_allclose(d[::-1][:5], 4.0 / np.sqrt([1, 2, 3, 4, 5]), rtol=1e-5)
    np.testing.assert_allclose(inten[::-1][:5] / 400.0, [6, 12, 8, 6, 24])


def test_body_centred_extinctions_and_superlattice():
    bcc = cubic(4.0, positions=((0, 0, 0), (0.5, 0.5, 0.5)), factors=(20.0, 20.0))
    d, _ = reflections(bcc, d_min=1.5)
    # h + k + l odd is extinct: 100 and 111 are missing, 110 and 200 present
    assert not np.isclose(d, 4.0).any() and not np.isclose(d, 4.0 / np.sqrt(3)).any()
    assert np.isclose(d, 4.0 / np.sqrt(2)).any() and np.isclose(d, 2.0).any()
    d_s, _ = reflections(bcc, d_min=1.5, superlattice=True)
    assert np.isclose(d_s.max(), 4.0 / 0.5)  # (1/2 0 0) of the doubled cell


def test_a_larger_cell_moves_every_peak():
    s = cubic(4.0)
    d, _ = reflections(s, d_min=1.2)
    d2, _ = reflections(s.scaled(1.01), d_min=1.2)
    np.testing.assert_allclose(d2[-len(d):], d * 1.01, rtol=1e-9)
    tth, tth2 = two_theta(d, 1.5406), two_theta(d * 1.01, 1.5406)
    assert (tth2 < tth).all()
    # on a q axis a cell change is an exact scaling
    np.testing.assert_allclose(q_of(tth2, 1.5406), q_of(tth, 1.5406) / 1.01, rtol=1e-9)
