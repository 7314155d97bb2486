"""Small European XFEL runs for the NXmx tests, built with
``extra_data.tests.make_examples`` (file format 1.0) plus an XGM file, with
random values written into some frames so equality checks mean something.
"""

import os
from pathlib import Path

import h5py
import numpy as np
from extra_data.tests import make_examples
from extra_data.tests.mockdata import write_file
from extra_data.tests.mockdata.detectors import AGIPDModule, DSSCModule
from extra_data.tests.mockdata.xgm import XGM

XGM_SOURCES = ("SPB_XTD9_XGM/DOOCS/MAIN", "SA1_XTD2_XGM/DOOCS/MAIN")
WAVELENGTH_NM = 0.1  # 12.398 keV
DISTANCE_MM = 150.0  # detector distance the shared fixtures convert with


def add_xgm(run_dir, ntrains, rng, firsttrain=10000, pulses=None):
    """Write an XGM file with random pulse energies (µJ) and a wavelength."""
    path = Path(run_dir) / "CORR-R0238-DA01-S00000.h5"
    write_file(str(path), [XGM(s) for s in XGM_SOURCES], ntrains=ntrains,
               firsttrain=firsttrain, chunksize=ntrains, format_version="1.0")
    energies = {}
    with h5py.File(path, "r+") as f:
        for src in XGM_SOURCES:
            ds = f[f"INSTRUMENT/{src}:output/data/intensityTD"]
            e = np.full(ds.shape, 1.0, np.float32)  # unused slots read ~1 in real data
            n = pulses or 64
            e[:ntrains, :n] = rng.uniform(0, 1000, size=(ntrains, n))
            ds[:] = e
            energies[src] = e[:ntrains]
            f[f"CONTROL/{src}/pulseEnergy/wavelengthUsed/value"][:ntrains] = WAVELENGTH_NM
    return energies


def fill_random_frames(run_dir, source_fmt, dataset_key, modules, rows, rng, pattern="CORR-*AGIPD{mod:02}-S*.h5"):
    """Write random values into the given rows of each module's data."""
    for mod in modules:
        (path,) = Path(run_dir).glob(pattern.format(mod=mod))
        src = source_fmt.format(mod=mod)
        with h5py.File(path, "r+") as f:
            ds = f[f"INSTRUMENT/{src}/{dataset_key}"]
            for r in rows:
                ds[r] = rng.normal(100, 30, size=ds.shape[1:]).astype(ds.dtype)


# (train index, pulse) of the AGIPD frames holding random values; their XGM
# pulse energy is high so energy selections keep them.
AGIPD_RANDOM_FRAMES = [(0, 0), (0, 5), (0, 63), (1, 7), (40, 3)]


def make_agipd_run(run_dir, seed=0):
    """Corrected AGIPD-1M (64 trains x 64 pulses x 16 modules) with an XGM.

    Returns the XGM energies written (per source, (trains, pulses))."""
    rng = np.random.default_rng(seed)
    os.makedirs(run_dir, exist_ok=True)
    make_examples.make_spb_run(str(run_dir), raw=False, format_version="1.0")
    fill_random_frames(run_dir, "SPB_DET_AGIPD1M-1/DET/{mod}CH0:xtdf", "image/data",
                       range(16), [t * 64 + p for t, p in AGIPD_RANDOM_FRAMES], rng)
    # A few bad pixels in the first frame of module 3, with EuXFEL bits.
    (path,) = Path(run_dir).glob("CORR-*AGIPD03-S*.h5")
    with h5py.File(path, "r+") as f:
        mask = f["INSTRUMENT/SPB_DET_AGIPD1M-1/DET/3CH0:xtdf/image/mask"]
        m = np.zeros(mask.shape[1:], np.uint32)
        m[0, :4] = [1 << 0, 1 << 1, 1 << 19, (1 << 11) | (1 << 16)]
        mask[0] = m
    energies = add_xgm(run_dir, 64, rng)
    with h5py.File(Path(run_dir) / "CORR-R0238-DA01-S00000.h5", "r+") as f:
        for src, e in energies.items():
            for t, p in AGIPD_RANDOM_FRAMES:
                e[t, p] = 900.0
            f[f"INSTRUMENT/{src}:output/data/intensityTD"][:64] = e
    return energies


AGIPD_SOURCE = "SPB_DET_AGIPD1M-1/DET/{mod}CH0"


def make_agipd_sequence_run(run_dir, ntrains=9, trains_per_file=3, pulses=5, seed=5):
    """Corrected AGIPD-1M split into several sequence files per module
    (S00000, S00001, ...), each frame holding its own random values in a
    stripe of rows, so a frame read from the wrong file or offset differs.

    Returns the XGM energies written (per source, (trains, pulses))."""
    rng = np.random.default_rng(seed)
    os.makedirs(run_dir, exist_ok=True)
    for seq, first in enumerate(range(0, ntrains, trains_per_file)):
        n = min(trains_per_file, ntrains - first)
        for mod in range(16):
            path = Path(run_dir) / f"CORR-R0239-AGIPD{mod:02}-S{seq:05}.h5"
            src = AGIPD_SOURCE.format(mod=mod)
            write_file(str(path), [AGIPDModule(src, raw=False, frames_per_train=pulses)],
                       ntrains=n, firsttrain=10000 + first, chunksize=32, format_version="1.0")
            with h5py.File(path, "r+") as f:
                ds = f[f"INSTRUMENT/{src}:xtdf/image/data"]
                stripe = rng.normal(100, 30, size=(ds.shape[0], 32, ds.shape[2])).astype(ds.dtype)
                ds[:, :32, :] = stripe
    return add_xgm(run_dir, ntrains, rng, pulses=pulses)


def make_lpd_run(run_dir, seed=1):
    """Corrected LPD-1M from ``make_fxe_run`` (no XGM)."""
    rng = np.random.default_rng(seed)
    os.makedirs(run_dir, exist_ok=True)
    make_examples.make_fxe_run(str(run_dir), raw=False, format_version="1.0")
    fill_random_frames(run_dir, "FXE_DET_LPD1M-1/DET/{mod}CH0:xtdf", "image/data",
                       range(16), [0, 130, 128 * 20 + 5], rng, pattern="CORR-*LPD{mod:02}-S*.h5")


def make_jungfrau_run(run_dir, seed=2):
    """Corrected JUNGFRAU (8 modules, 16 memory cells) from ``make_examples``."""
    rng = np.random.default_rng(seed)
    os.makedirs(run_dir, exist_ok=True)
    make_examples.make_jungfrau_run(str(run_dir))
    for mod in range(1, 9):
        (path,) = Path(run_dir).glob(f"RAW-*JNGFR{mod:02}-S*.h5")
        src = f"SPB_IRDA_JF4M/DET/JNGFR{mod:02}:daqOutput"
        with h5py.File(path, "r+") as f:
            ds = f[f"INSTRUMENT/{src}/data/adc"]
            for row, cell in [(0, 0), (0, 15), (3, 7), (50, 2)]:
                ds[row, cell] = rng.normal(10, 3, size=ds.shape[2:]).astype(ds.dtype)
            f[f"INSTRUMENT/{src}/data/memoryCell"][:100] = np.arange(16)[::-1]


def make_dssc_run(run_dir):
    """A corrected DSSC run: a multi-module detector the converter refuses."""
    os.makedirs(run_dir, exist_ok=True)
    for mod in range(2):
        write_file(str(Path(run_dir) / f"CORR-R0001-DSSC{mod:02}-S00000.h5"),
                   [DSSCModule(f"SCS_DET_DSSC1M-1/DET/{mod}CH0", raw=False, frames_per_train=4)],
                   ntrains=3, chunksize=3, format_version="1.0")


def make_xgm_only_run(run_dir):
    os.makedirs(run_dir, exist_ok=True)
    add_xgm(run_dir, 4, np.random.default_rng(3))


def make_raw_agipd_run(run_dir):
    os.makedirs(run_dir, exist_ok=True)
    make_examples.make_spb_run(str(run_dir), raw=True, format_version="1.0")


def linked_copy(src_dir, dst_dir, exclude=()):
    """A run directory of symlinks to *src_dir*'s files (cheap to alter)."""
    os.makedirs(dst_dir, exist_ok=True)
    for p in Path(src_dir).glob("*.h5"):
        if p.name not in exclude:
            os.symlink(p.resolve(), Path(dst_dir) / p.name)
    return Path(dst_dir)


def as_modules(image, kind, n_modules):
    """NXmx image(s) (or masks), ``(..., slow, fast)``, as ``(..., modules,
    slow, fast)``: the files stack the tiles along the slow axis (the tile
    slices are the same for every geometry of a detector kind)."""
    from server_ext.nxmx.geometry import default_geometry, image_layout

    return image_layout(default_geometry(kind, n_modules)).to_modules(image)


def module_rows(data, i, m, kind, n_modules):
    """Module *m* of frame *i* of an NXmx ``/entry/data/data``."""
    return as_modules(data[i], kind, n_modules)[m]
