"""The still simulator obeys Bragg's law on any cell, orientation and geometry."""

import numpy as np
import pytest
from extra_geom import AGIPD_1MGeometry

from server_ext.nxmx.detectors import JUNGFRAU
from server_ext.nxmx.geometry import default_geometry, tiles
from server_ext.nxmx.simulate import Crystal, paint, random_rotation, reflections_on_detector


def d_spacing(cell, hkl):
    """Textbook d(hkl) from the metric tensor (independent of Crystal.B)."""
    a, b, c = cell[:3]
    al, be, ga = np.radians(cell[3:])
    G = np.array([[a * a, a * b * np.cos(ga), a * c * np.cos(be)],
                  [a * b * np.cos(ga), b * b, b * c * np.cos(al)],
                  [a * c * np.cos(be), b * c * np.cos(al), c * c]])
    h = np.asarray(hkl, float)
    return 1 / np.sqrt(h @ np.linalg.inv(G) @ h)


@pytest.mark.parametrize("cell", [(52.3, 61.7, 47.1, 90, 103.4, 90), (40.0, 50.0, 60.0, 80, 95, 110)])
def test_reciprocal_basis_matches_the_metric_tensor(cell):
    crystal = Crystal(cell, random_rotation(np.random.default_rng(1)))
    for hkl in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (2, -3, 5), (-4, 1, 1)]:
        assert np.isclose(1 / np.linalg.norm(crystal.A @ hkl), d_spacing(cell, hkl), rtol=1e-12)
    U = crystal.U
    np.testing.assert_allclose(U @ U.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(U), 1)


@pytest.mark.parametrize("geom", [
    AGIPD_1MGeometry.from_quad_positions(quad_pos=[(-531, 641), (-556, -4), (514, -167), (548.5, 471)])
    .offset(np.random.default_rng(3).uniform(-1e-3, 1e-3, (16, 3))),
    default_geometry(JUNGFRAU, 4),
], ids=["agipd-shifted", "jungfrau"])
def test_spots_lie_where_bragg_puts_them(geom):
    rng = np.random.default_rng(7)
    cell, wavelength, distance = (40.0, 50.0, 60.0, 80, 95, 110), 1.2, 110.0
    crystal = Crystal(cell, random_rotation(rng))
    spots = reflections_on_detector(geom, crystal, wavelength, distance, rng=rng, excitation_width=6e-4)
    assert len(spots) > 50
    by_module = {}
    for t in tiles(geom):
        by_module.setdefault(t.module, []).append(t)
    for spot in spots:
        (t,) = [t for t in by_module[spot.module]
                if t.ss_slice.start <= spot.slow < t.ss_slice.stop and t.fs_slice.start <= spot.fast < t.fs_slice.stop]
        pos = (t.corner_mm + [0, 0, distance] + (spot.slow - t.ss_slice.start) * t.ss_vec_mm
               + (spot.fast - t.fs_slice.start) * t.fs_vec_mm)
        q_obs = pos / np.linalg.norm(pos) / wavelength - [0, 0, 1 / wavelength]
        # |q| is the reflection's 1/d exactly: the spot sits on its Bragg cone ...
        assert np.isclose(np.linalg.norm(q_obs), 1 / d_spacing(cell, spot.hkl), rtol=1e-9)
        # ... close to the lattice point itself (within a few excitation widths).
        assert np.linalg.norm(q_obs - crystal.A @ spot.hkl) < 3 * 6e-4


def test_paint_keeps_spots_in_their_tile_and_adds_their_photons():
    geom = default_geometry(JUNGFRAU, 2)
    rng = np.random.default_rng(5)
    crystal = Crystal((60.0, 60.0, 60.0, 90, 90, 90), random_rotation(rng))
    spots = reflections_on_detector(geom, crystal, 1.0, 100.0, rng=rng)
    frame = paint(tuple(geom.expected_data_shape), geom, spots, rng, background=0.0)
    assert frame.dtype == np.float32 and frame.shape == tuple(geom.expected_data_shape)
    # Poisson counts: whole photons, about the painted total (spots cut at tile edges lose a little).
    assert np.all(frame == np.round(frame))
    total = sum(s.photons for s in spots)
    assert 0.8 * total < frame.sum() < 1.05 * total + 5 * np.sqrt(total)
