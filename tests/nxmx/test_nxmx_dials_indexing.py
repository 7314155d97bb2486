"""Simulated stills of a known crystal, converted, are found and indexed by
Debian's DIALS (dials.import, dials.find_spots, dials.ssx_index): spots
where they were painted, most images indexed, the true cell and orientation.

Skips only where DIALS is not installed (CI installs it: ``daas setup --test``).
"""

import warnings

import numpy as np
import pytest
from extra_geom import AGIPD_1MGeometry
from scipy.spatial import cKDTree

from server_ext.nxmx import DialsError, convert_run, dials
from server_ext.nxmx.demo import STILLS_MIN_PULSE_ENERGY_UJ, write_stills_run
from server_ext.nxmx.geometry import tiles

from crystal_truth import misorientation_deg, relative_cell_error

pytestmark = pytest.mark.skipif(not dials.dials_available(), reason=dials.install_hint())

# A monoclinic cell (beta != 90°) in P21: nothing special about its axes.
UNIT_CELL = (52.3, 61.7, 47.1, 90.0, 103.4, 90.0)
SPACE_GROUP = "P21"
SPACE_GROUP_NUMBER = 4
DISTANCE_MM = 131.0
#: Each DIALS program's limit in these tests: far below pytest's 600 s.
STEP_TIMEOUT_S = 420


@pytest.fixture(scope="session")
def stills_run(tmp_path_factory):
    """Four stills (2 trains x 2 pulses, among frames without diffraction) on
    a non-default AGIPD layout with per-module shifts."""
    quads = [(-527, 636), (-553, -2), (517, -163), (545, 468)]
    geom = AGIPD_1MGeometry.from_quad_positions(quad_pos=quads)
    shifts = np.zeros((16, 2))
    shifts[:, 0] = np.linspace(-0.6e-3, 0.6e-3, 16)
    shifts[:, 1] = np.linspace(0.4e-3, -0.4e-3, 16)[::-1]
    geom = geom.offset(shifts)
    return write_stills_run(tmp_path_factory.mktemp("stills") / "r0042", geometry=geom, unit_cell=UNIT_CELL,
                            ntrains=3, frames_per_train=3, stills=[(0, 0), (0, 2), (1, 1), (2, 0)],
                            wavelength_nm=0.1305, distance_mm=DISTANCE_MM, seed=42, run_number=42,
                            excitation_width=6e-4)


def _convert(run, out, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_run(run.path, out, geometry=run.geometry, distance=run.distance_mm,
                           min_pulse_energy=STILLS_MIN_PULSE_ENERGY_UJ, **kw)


@pytest.fixture(scope="session", params=["virtual", "copy"])
def indexed(request, stills_run, tmp_path_factory):
    mode = request.param
    d = tmp_path_factory.mktemp(f"dials-{mode}")
    path = _convert(stills_run, d / "stills.nxs", mode=mode)
    summary = dials.find_and_index(path, d / "work", unit_cell=UNIT_CELL, space_group=SPACE_GROUP,
                                   timeout=STEP_TIMEOUT_S, nproc=2)
    return mode, summary


def test_spots_are_found_where_they_were_painted(indexed, stills_run):
    _, summary = indexed
    assert summary.images == len(stills_run.frames) == 4
    panels = list(tiles(stills_run.geometry))
    for image, painted in enumerate(stills_run.spots):
        found = np.array([(panels[s.panel].module * 512 + panels[s.panel].ss_slice.start + s.y,
                           panels[s.panel].fs_slice.start + s.x)
                          for s in summary.spots if s.image == image])
        assert len(found) == summary.spots_per_image[image] >= 100
        every = np.array([(p.module * 512 + p.slow, p.fast) for p in painted])
        strong = np.array([(p.module * 512 + p.slow, p.fast) for p in painted if p.photons >= 150])
        dist_found, _ = cKDTree(every).query(found)
        dist_strong, _ = cKDTree(found).query(strong)
        assert np.mean(dist_found <= 1.5) >= 0.95, "found spots lie on painted reflections"
        assert np.mean(dist_strong <= 1.0) >= 0.9, "strong painted reflections are found"


def test_stills_index_with_the_true_cell_and_orientation(indexed, stills_run):
    mode, summary = indexed
    assert len(summary.indexed_images) >= 3, f"{mode}: only {summary.indexed_images} of 4 indexed"
    for crystal in summary.indexed:
        assert crystal.space_group_number == SPACE_GROUP_NUMBER, crystal.space_group
        assert relative_cell_error(UNIT_CELL, crystal.unit_cell) < 0.01, crystal.unit_cell
        angle = misorientation_deg(stills_run.crystals[crystal.image].A, crystal.A)
        assert angle is not None and angle < 0.1, f"image {crystal.image}: {angle}° from the truth"
        assert crystal.indexed_spots >= 50
    assert relative_cell_error(UNIT_CELL, summary.unit_cell) < 0.01


def test_bad_arguments_are_clear_errors(stills_run, tmp_path):
    with pytest.raises(DialsError, match="does not exist"):
        dials.find_and_index(tmp_path / "none.nxs", tmp_path / "w")
    (tmp_path / "x.nxs").write_text("not hdf5")
    with pytest.raises(DialsError, match="unit_cell must be six positive numbers"):
        dials.find_and_index(tmp_path / "x.nxs", tmp_path / "w", unit_cell=(1, 2), space_group="P1")
    with pytest.raises(DialsError, match="dials.import of x.nxs failed"):
        dials.find_and_index(tmp_path / "x.nxs", tmp_path / "w", timeout=STEP_TIMEOUT_S)

