"""Demo datasets in European XFEL run format, made once on the first ``daas demo``.

The runs come from ``extra_data.tests.make_examples``'s mock-file machinery
(the same files extra-data tests itself on); the pixel data stays unwritten
(sparse) except a few frames filled with simulated diffraction, so a demo run
costs a few MB of disk and looks like something in a viewer.

Other parts of the project add datasets through the ``daas.demo_data``
entry-point group: a ``write(data_dir) -> dict`` function with at least
``path``.
"""

import os
from importlib.metadata import entry_points
from pathlib import Path

import h5py
import numpy as np

#: Train/pulse indices of the frames that get simulated diffraction.
FILLED_TRAINS = range(4)
FILLED_PULSES = range(4)
AGIPD_SOURCE = "SPB_DET_AGIPD1M-1/DET/{}CH0"
XGM_SOURCE = "SPB_XTD9_XGM/DOOCS/MAIN"
WAVELENGTH_NM = 0.1333  # 9.3 keV, as the XGM records it


def _diffraction(radius_mm, rng, rings=(18.0, 31.0, 44.0), n_spots=300):
    """Powder rings plus Bragg spots on top of Poisson background, in photons."""
    img = rng.poisson(0.3, radius_mm.shape).astype(np.float32)
    for r in rings:
        img += 40.0 * np.exp(-0.5 * ((radius_mm - r) / 0.6) ** 2) * np.exp(-radius_mm / 80)
    flat = img.reshape(-1)
    spots = rng.choice(flat.size, n_spots, replace=False)
    flat[spots] += rng.gamma(2.0, 200.0, n_spots).astype(np.float32)
    return img


def write_xgm(path, ntrains, pulses, rng):
    """An XGM file (two XGMs) with pulse energies in µJ and the recorded wavelength."""
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.xgm import XGM

    sources = (XGM_SOURCE, "SA1_XTD2_XGM/DOOCS/MAIN")
    write_file(str(path), [XGM(s) for s in sources], ntrains=ntrains, chunksize=32, format_version="1.0")
    with h5py.File(path, "r+") as f:
        for source in sources:
            td = f[f"INSTRUMENT/{source}:output/data/intensityTD"]
            buf = np.zeros(td.shape, td.dtype)
            buf[:, :pulses] = rng.normal(1500.0, 150.0, (td.shape[0], pulses)).clip(min=0)
            td[:] = buf
            f[f"CONTROL/{source}/pulseEnergy/wavelengthUsed/value"][:] = WAVELENGTH_NM


def write_agipd_run(run_dir, ntrains=64, frames_per_train=64, seed=2120):
    """A corrected SPB AGIPD-1M run with XGM, a few frames filled with diffraction."""
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.detectors import AGIPDModule
    from extra_geom import AGIPD_1MGeometry

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for modno in range(16):
        write_file(
            str(run_dir / f"CORR-R0029-AGIPD{modno:02}-S00000.h5"),
            [AGIPDModule(AGIPD_SOURCE.format(modno), raw=False, frames_per_train=frames_per_train)],
            ntrains=ntrains, chunksize=32, format_version="1.0",
        )
    rng = np.random.default_rng(seed)
    write_xgm(run_dir / "RAW-R0029-DA01-S00000.h5", ntrains, frames_per_train, rng)
    geom = AGIPD_1MGeometry.from_quad_positions(
        quad_pos=[(-525, 625), (-550, -10), (520, -160), (542.5, 475)]
    )
    xy = geom.get_pixel_positions()[..., :2] * 1e3  # m -> mm
    radius = np.hypot(xy[..., 0], xy[..., 1])
    frames = [t * frames_per_train + p for t in FILLED_TRAINS for p in FILLED_PULSES]
    images = {i: _diffraction(radius, rng) for i in frames}
    for modno in range(16):
        path = run_dir / f"CORR-R0029-AGIPD{modno:02}-S00000.h5"
        with h5py.File(path, "r+") as f:
            data = f[f"INSTRUMENT/{AGIPD_SOURCE.format(modno)}:xtdf/image/data"]
            for i, img in images.items():
                data[i] = img[modno]
    return {"path": str(run_dir), "detector": "AGIPD1M", "n_trains": ntrains}


def write_jungfrau_run(run_dir):
    """An SPB JUNGFRAU 4M run (8 modules, memory cells)."""
    from extra_data.tests.make_examples import make_jungfrau_run

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    make_jungfrau_run(str(run_dir))
    # Chunks span 7 trains x 1 cell x 64x128 px: fill one frame of two modules
    # only, or the sparse files grow by ~15 MB per module and cell.
    rng = np.random.default_rng(2121)
    write_xgm(run_dir / "RAW-R0012-DA01-S00000.h5", 100, 16, rng)
    for path in sorted(run_dir.glob("*JNGFR0[12]-S00000.h5")):
        with h5py.File(path, "r+") as f:
            for _, ds in _datasets_named(f, "adc"):
                ds[0, 0] = rng.poisson(2.0, ds.shape[2:]).astype(ds.dtype)
    return {"path": str(run_dir), "detector": "JUNGFRAU", "n_trains": 100}


def _datasets_named(f, leaf):
    found = []
    f.visititems(lambda name, obj: found.append((name, obj))
                 if isinstance(obj, h5py.Dataset) and name.endswith("/" + leaf) else None)
    return found


def write_plain_dataset(path, title, seed):
    """A small non-EuXFEL dataset (one NeXus-like HDF5 file) for the other facility."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with h5py.File(path / "scan_00001.h5", "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["title"] = title
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "data"
        data["data"] = rng.poisson(5.0, (10, 256, 256)).astype(np.uint16)
    return {"path": str(path)}


def make_read_only(path):
    """Drop write permission below ``path`` (files and folders): the demo's datasets are archives."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files + dirs:
            p = os.path.join(root, name)
            os.chmod(p, os.stat(p).st_mode & ~0o222)


def plugin_writers():
    """``daas.demo_data`` entry points: name -> write(data_dir) function."""
    return {ep.name: ep for ep in entry_points(group="daas.demo_data")}
