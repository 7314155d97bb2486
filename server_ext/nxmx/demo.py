"""Simulated serial-crystallography runs in European XFEL format.

``write_stills_run`` writes a corrected AGIPD-1M run (``extra_data``'s mock
files, file format 1.0) plus an XGM, and paints kinematic stills of a
crystal (:mod:`.simulate`) into chosen frames; it returns the truth
(orientation and painted spots per frame). ``write_demo_run`` is the
``daas.demo_data`` plugin: lysozyme stills for ``daas demo``.

Only frames with stills are written, so a run costs a few MB of disk: the
other frames stay unallocated (zeros). The XGM records a strong pulse for
the stills and almost none for the rest, so ``min_pulse_energy=`` selects
exactly the stills.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .simulate import Crystal, detector_d_min, random_rotation, still

#: Tetragonal hen egg-white lysozyme (P 43 21 2).
LYSOZYME_CELL = (79.1, 79.1, 37.9, 90.0, 90.0, 90.0)
LYSOZYME_SPACE_GROUP = "P43212"
AGIPD_SOURCE = "SPB_DET_AGIPD1M-1/DET/{}CH0"
XGM_SOURCES = ("SPB_XTD9_XGM/DOOCS/MAIN", "SA1_XTD2_XGM/DOOCS/MAIN")
#: XGM pulse energies (µJ) of frames with and without a still.
HIT_PULSE_ENERGY_UJ = 1500.0
MISS_PULSE_ENERGY_UJ = 20.0
#: ``min_pulse_energy`` that keeps exactly the stills of these runs.
STILLS_MIN_PULSE_ENERGY_UJ = 500.0


@dataclass
class StillsRun:
    """A written run and the truth behind its stills."""

    path: Path
    geometry: object  # the extra_geom geometry the stills were painted with
    distance_mm: float
    wavelength_A: float
    unit_cell: tuple
    frames: list = field(default_factory=list)  # (train index, pulse index) per still
    crystals: list = field(default_factory=list)  # Crystal per still
    spots: list = field(default_factory=list)  # [PaintedSpot] per still


def _write_xgm(path, ntrains, frames_per_train, energies, wavelength_nm):
    import h5py
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.xgm import XGM

    write_file(str(path), [XGM(s) for s in XGM_SOURCES], ntrains=ntrains, chunksize=32,
               format_version="1.0")
    with h5py.File(path, "r+") as f:
        for source in XGM_SOURCES:
            td = f[f"INSTRUMENT/{source}:output/data/intensityTD"]
            buf = np.zeros(td.shape, td.dtype)
            buf[:ntrains, :frames_per_train] = energies
            td[:] = buf
            f[f"CONTROL/{source}/pulseEnergy/wavelengthUsed/value"][:] = wavelength_nm


def write_stills_run(run_dir, *, geometry=None, unit_cell=LYSOZYME_CELL, ntrains: int = 4,
                     frames_per_train: int = 4, stills=None, wavelength_nm: float = 0.1333,
                     distance_mm: float = 120.0, modules=range(16), seed: int = 0,
                     run_number: int = 29, **simulation) -> StillsRun:
    """Write a corrected AGIPD-1M run whose frames *stills* hold simulated stills.

    *stills*: (train index, pulse index) pairs (default: every frame); each
    gets a crystal of *unit_cell* in a random orientation. *geometry*: the
    ``extra_geom`` AGIPD geometry the stills are painted with (default: the
    converter's default layout); convert with the same geometry and
    *distance_mm* to put them where they belong. *modules*: the modules
    that recorded data (others are missing from the run). Other keyword
    arguments go to :func:`.simulate.still` (``excitation_width``,
    ``mean_photons``, ``d_min``, ``background``, ``spot_sigma_px``).
    """
    import h5py
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.detectors import AGIPDModule

    from .detectors import AGIPD_1M
    from .geometry import default_geometry

    geom = geometry if geometry is not None else default_geometry(AGIPD_1M, 16)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if stills is None:
        stills = [(t, p) for t in range(ntrains) for p in range(frames_per_train)]
    wavelength_A = wavelength_nm * 10.0
    run = StillsRun(run_dir, geom, float(distance_mm), wavelength_A, tuple(unit_cell))
    frames = {}
    simulation.setdefault("d_min", detector_d_min(geom, distance_mm, wavelength_A))
    for t, p in stills:
        crystal = Crystal(tuple(unit_cell), random_rotation(rng))
        frame, spots = still(geom, crystal, wavelength_A, distance_mm, rng, **simulation)
        frames[t * frames_per_train + p] = frame
        run.frames.append((t, p))
        run.crystals.append(crystal)
        run.spots.append(spots)
    for modno in modules:
        path = run_dir / f"CORR-R{run_number:04d}-AGIPD{modno:02d}-S00000.h5"
        source = AGIPD_SOURCE.format(modno)
        write_file(str(path), [AGIPDModule(source, raw=False, frames_per_train=frames_per_train)],
                   ntrains=ntrains, chunksize=32, format_version="1.0")
        with h5py.File(path, "r+") as f:
            data = f[f"INSTRUMENT/{source}:xtdf/image/data"]
            for row, frame in sorted(frames.items()):
                data[row] = frame[modno]
    energies = np.full((ntrains, frames_per_train), MISS_PULSE_ENERGY_UJ)
    for t, p in stills:
        energies[t, p] = HIT_PULSE_ENERGY_UJ
    _write_xgm(run_dir / f"RAW-R{run_number:04d}-DA01-S00000.h5", ntrains, frames_per_train,
               energies, wavelength_nm)
    return run


def write_demo_run(data_dir) -> dict:
    """``daas.demo_data`` plugin: an SPB AGIPD-1M run with lysozyme stills.

    64 trains of 64 frames; trains 0-3, pulses 0-3 hold stills of lysozyme
    (P43212) in random orientations, painted with the converter's default
    geometry and distance, so ``convert_run(path, out,
    min_pulse_energy=STILLS_MIN_PULSE_ENERGY_UJ)`` gives 16 stills that
    DIALS indexes with ``unit_cell=LYSOZYME_CELL``, ``space_group="P43212"``.
    """
    stills = [(t, p) for t in range(4) for p in range(4)]
    run = write_stills_run(Path(data_dir) / "r0029", ntrains=64, frames_per_train=64,
                           stills=stills, seed=2120)
    return {"path": str(run.path), "detector": "AGIPD1M", "n_trains": 64,
            "unit_cell": list(LYSOZYME_CELL), "space_group": LYSOZYME_SPACE_GROUP,
            "min_pulse_energy": STILLS_MIN_PULSE_ENERGY_UJ}
