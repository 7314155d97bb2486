"""Demo datasets in European XFEL run format, made once on the first ``daas demo``.

The runs come from ``extra_data.tests.make_examples``'s mock-file machinery
(the same files extra-data tests itself on); the pixel data stays unwritten
(sparse) except a few frames, so a demo run costs a few MB of disk.

Other parts of the project add datasets through the ``daas.demo_data``
entry-point group: a ``write(data_dir) -> dict`` function with at least
``path`` (the AGIPD run with simulated lysozyme stills comes from
``server_ext.nxmx.demo``, next to the simulator it uses).
"""

import os
from importlib.metadata import entry_points
from pathlib import Path

import h5py
import numpy as np

XGM_SOURCE = "SPB_XTD9_XGM/DOOCS/MAIN"
WAVELENGTH_NM = 0.1333  # 9.3 keV, as the XGM records it


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
