"""Debian's unpatched DIALS (dxtbx 3.11, run by /usr/bin/python3) reads the
converted files: every pixel where extra_geom puts it, in panel order, with
the run's beam, wavelengths, masks, missing modules and pixel values.

Skips only where DIALS is not installed (CI installs it: ``daas setup --test``).
"""

import functools
import json
import os
import shutil
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
from extra_data import RunDirectory, by_id
from extra_geom import AGIPD_1MGeometry, LPD_1MGeometry

from server_ext.nxmx import convert_run, dials
from server_ext.nxmx.detectors import JUNGFRAU
from server_ext.nxmx.geometry import default_geometry, tiles

import nxmx_mockruns as mr
from crystal_truth import MCSTAS_TO_DXTBX

pytestmark = pytest.mark.skipif(not dials.dials_available(), reason=dials.install_hint())

DISTANCE_MM = 137.5
TOLERANCE_PX = 0.05
MISSING_MODULE = 5


def shifted(geom, n_modules, seed):
    """*geom* with every module moved by its own (x, y, z) shift (≤ 1.5 mm)."""
    rng = np.random.default_rng(seed)
    shifts = np.zeros((n_modules, 3))
    shifts[:, :2] = rng.uniform(-1.5e-3, 1.5e-3, (n_modules, 2))
    shifts[:, 2] = rng.uniform(-0.5e-3, 0.5e-3, n_modules)
    return geom.offset(shifts)


def agipd_geometry():
    quads = [(-531, 641), (-556, -4), (514, -167), (548.5, 471)]  # not the default layout
    return shifted(AGIPD_1MGeometry.from_quad_positions(quad_pos=quads), 16, seed=11)


def lpd_geometry():
    quads = [(14.2, 301), (-9.5, 11), (251.5, -13), (281.0, 272)]
    return shifted(LPD_1MGeometry.from_quad_positions(quad_pos=quads), 16, seed=12)


def jungfrau_geometry():
    return shifted(default_geometry(JUNGFRAU, 8), 8, seed=13)


@pytest.fixture(scope="session")
def agipd_gapped_dir(agipd_dir, tmp_path_factory):
    """The AGIPD mock run without module 5, and an XGM wavelength that
    changes from train to train."""
    d = mr.linked_copy(agipd_dir, tmp_path_factory.mktemp("agipd-gap") / "r",
                       exclude={f"CORR-R0238-AGIPD{MISSING_MODULE:02}-S00000.h5", "CORR-R0238-DA01-S00000.h5"})
    xgm = d / "CORR-R0238-DA01-S00000.h5"
    shutil.copy(agipd_dir / xgm.name, xgm)
    with h5py.File(xgm, "r+") as f:
        for src in mr.XGM_SOURCES:
            ds = f[f"CONTROL/{src}/pulseEnergy/wavelengthUsed/value"]
            ds[:] = 0.1 + 0.002 * np.arange(len(ds))
    return d


CASES = {
    # name: (run fixture, geometry, modules, convert options, image to compare, source pattern)
    "agipd": ("agipd_gapped_dir", agipd_geometry, 16, dict(trains=slice(0, 2)), 5,
              lambda m: (f"SPB_DET_AGIPD1M-1/DET/{m}CH0:xtdf", "image.data", "image.mask")),
    "lpd": ("lpd_dir", lpd_geometry, 16, dict(trains=slice(0, 1), photon_energy=9.3), 0,
            lambda m: (f"FXE_DET_LPD1M-1/DET/{m}CH0:xtdf", "image.data", "image.mask")),
    "jungfrau": ("jf_dir", jungfrau_geometry, 8, dict(trains=slice(0, 1), photon_energy=9.3), 0,
                 lambda m: (f"SPB_IRDA_JF4M/DET/JNGFR{m + 1:02}:daqOutput", "data.adc", "data.mask")),
}


def _convert(run_dir, out, geom, mode, options):
    kw = dict(options)
    if mode != "virtual":
        kw.update(mode="copy", compression=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_run(run_dir, out, geometry=geom, distance=DISTANCE_MM, **kw)


def _run_frame(run_dir, case, n_modules, train_id, pulse_id, key):
    """(modules, slow, fast) of one frame as extra_data reads it; NaN for absent modules."""
    run = RunDirectory(str(run_dir)).select_trains(by_id[[int(train_id)]])
    out = None
    for m in range(n_modules):
        src, data_key, mask_key = CASES[case][5](m)
        if src not in run.all_sources:
            continue
        k = {"data": data_key, "mask": mask_key}[key]
        arr = run[src, k].ndarray()
        if arr.ndim == 4:  # JUNGFRAU: (entries, cells, slow, fast); pulse_id is the cell slot
            arr = arr[0, pulse_id]
        else:
            pulses = run[src, "image.pulseId"].ndarray().ravel()
            arr = arr[int(np.flatnonzero(pulses == pulse_id)[0])]
        if out is None:
            out = np.full((n_modules,) + arr.shape, np.nan)
        out[m] = arr
    return out


@pytest.mark.parametrize("case,mode", [
    # Every detector in virtual and copy mode; each copy compression on two of them.
    ("agipd", "virtual"), ("agipd", "bitshuffle"), ("agipd", "gzip"),
    ("lpd", "virtual"), ("lpd", "gzip"), ("jungfrau", "virtual"), ("jungfrau", "bitshuffle"),
])
def test_dxtbx_reads_what_the_run_holds(case, mode, request, tmp_path):
    fixture, make_geom, n_modules, options, image, _ = CASES[case]
    run_dir = request.getfixturevalue(fixture)
    geom = make_geom()
    path = _convert(run_dir, tmp_path / f"{case}.nxs", geom, mode, options)
    with h5py.File(path, "r") as f:
        n_frames = f["/entry/data/data"].shape[0]
        wavelengths = f["/entry/instrument/beam/incident_wavelength"][()]
        train_id, pulse_id = f["/entry/data/train_id"][image], f["/entry/data/pulse_id"][image]

    reading = dials.read_with_dxtbx(path, arrays_dir=tmp_path, image=image)

    # Stills, one per frame, with the per-frame wavelength and the beam along +z (McStas).
    assert reading.format_class == "FormatNXmx"
    assert reading.still and reading.images == n_frames
    np.testing.assert_allclose(reading.wavelengths_A, np.broadcast_to(wavelengths, (n_frames,)), rtol=1e-6)
    if case == "agipd":  # the XGM's wavelength changes from train to train
        assert len(set(np.round(reading.wavelengths_A, 6))) == 2
    np.testing.assert_allclose(MCSTAS_TO_DXTBX @ reading.sample_to_source, [0, 0, -1], atol=1e-12)

    # Every pixel centre where extra_geom puts it, panel by panel in tile order.
    expected = geom.get_pixel_positions(centre=True) * 1e3 + [0.0, 0.0, DISTANCE_MM]
    all_tiles = list(tiles(geom))
    assert reading.n_panels == len(all_tiles)
    worst = 0.0
    for panel, t in zip(reading.panels, all_tiles):
        assert panel.name.endswith(f"module_{t.module:02d}_asic_{t.tile:02d}")
        nf, ns = t.fs_slice.stop - t.fs_slice.start, t.ss_slice.stop - t.ss_slice.start
        assert panel.image_size == (nf, ns)
        px = np.linalg.norm(t.fs_vec_mm)
        np.testing.assert_allclose(panel.pixel_size_mm, (px, np.linalg.norm(t.ss_vec_mm)), rtol=1e-9)
        ss, fs = np.meshgrid(np.arange(ns) + 0.5, np.arange(nf) + 0.5, indexing="ij")
        lab = (np.asarray(panel.origin_mm) + fs[..., None] * px * np.asarray(panel.fast_axis)
               + ss[..., None] * px * np.asarray(panel.slow_axis))
        got = lab @ MCSTAS_TO_DXTBX.T  # dxtbx's frame -> McStas
        want = expected[t.module, t.ss_slice, t.fs_slice]
        worst = max(worst, float(np.abs(got - want).max() / px))
    assert worst <= TOLERANCE_PX, f"a pixel is {worst:.3f} px from where extra_geom puts it"

    # Pixel values and masks of one frame, per module, as the run has them.
    def assemble(arr):
        out = np.zeros(geom.expected_data_shape, arr.dtype)
        for a, t in zip(arr, all_tiles):
            out[t.module, t.ss_slice, t.fs_slice] = a
        return out

    data = assemble(np.load(tmp_path / "data.npy"))
    valid = assemble(np.load(tmp_path / "mask.npy"))
    run_data = _run_frame(run_dir, case, n_modules, train_id, pulse_id, "data")
    first = _run_frame(run_dir, case, n_modules, f_first(path, "train_id"), f_first(path, "pulse_id"), "mask")
    present = ~np.isnan(run_data).all(axis=(1, 2))
    np.testing.assert_array_equal(data[present], run_data[present])
    assert np.any(data[present]), "the compared frame holds values"
    if case == "agipd":
        assert not present[MISSING_MODULE] and present.sum() == 15
        assert np.isnan(data[MISSING_MODULE]).all()
        assert not valid[MISSING_MODULE].any(), "a missing module is masked"
        assert (~valid[3, 0, :4]).all() and valid[3, 0, 4], "the run's bad pixels are masked"
    # The static mask is the first frame's: masked exactly where the run flags a pixel.
    np.testing.assert_array_equal(valid[present], first[present] == 0)


def f_first(path, key):
    with h5py.File(path, "r") as f:
        return f[f"/entry/data/{key}"][0]


def test_missing_bitshuffle_plugin_is_explained_and_gzip_needs_none(agipd_dir, tmp_path, tmp_path_factory,
                                                                   monkeypatch):
    """Where DIALS' HDF5 has no bitshuffle filter, the user is told why and
    what to do (validate: a warning about the set-up, not about the file);
    the gzip copy reads with no plugin at all."""
    from server_ext.nxmx import validate

    geom = agipd_geometry()
    shuffled = _convert(agipd_dir, tmp_path / "b.nxs", geom, "bitshuffle", dict(trains=slice(0, 1)))
    deflated = _convert(agipd_dir, tmp_path / "g.nxs", geom, "gzip", dict(trains=slice(0, 1)))
    empty = tmp_path / "no-plugins"
    empty.mkdir()
    monkeypatch.setenv("HDF5_PLUGIN_PATH", str(empty))  # DIALS' HDF5 finds no filter plugin
    with pytest.raises(dials.DialsError, match="bitshuffle") as e:
        dials.read_with_dxtbx(shuffled)
    assert "apt-get install bitshuffle" in str(e.value) and "--compression gzip" in str(e.value)
    assert dials.read_with_dxtbx(deflated).images == 64
    # a plugin folder that does not exist: HDF5 says only "can't open directory"
    for plugins in (empty, tmp_path_factory.mktemp("plugin-path") / "absent"):  # no "bitshuffle" in its path
        monkeypatch.setenv("HDF5_PLUGIN_PATH", str(plugins))
        report = validate(shuffled, checkers=("structure", "dxtbx"))
        assert report.ok, str(report)
        (warning,) = [f for f in report.findings if f.checker == "dxtbx"]
        assert warning.severity == "warning" and "HDF5_PLUGIN_PATH" in warning.message


def test_dials_reads_compressed_data_after_tensorflow_was_imported(agipd_dir, tmp_path):
    """Importing TensorFlow sets HDF5_PLUGIN_PATH=disable in os.environ (its own
    h5py then loads no plugin); DIALS, started later from that process (a kernel,
    a Dask worker that trained a classifier), must still decode bitshuffle data."""
    shuffled = _convert(agipd_dir, tmp_path / "b.nxs", agipd_geometry(), "bitshuffle", dict(trains=slice(0, 1)))
    script = (
        "import json, os, sys, tensorflow\n"
        "from server_ext.nxmx import dials, validate\n"
        "report = validate(sys.argv[1], checkers=('dxtbx',))\n"
        "print(json.dumps({'plugin_path': os.environ.get('HDF5_PLUGIN_PATH'), 'ok': report.ok,\n"
        "                  'findings': [str(f) for f in report.findings], 'read': report.read}))\n")
    r = subprocess.run([sys.executable, "-c", script, str(shuffled)], capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["plugin_path"] == "disable"  # what TensorFlow does to its process
    assert out["ok"] and out["findings"] == [], out
    assert out["read"]["dxtbx"]["format_class"] == "FormatNXmx" and out["read"]["dxtbx"]["images"] == 64


def test_dials_past_its_time_limit_is_a_warning_not_an_error(agipd_dir, tmp_path, monkeypatch):
    """A DIALS too slow on a loaded machine says nothing about the file."""
    from server_ext.nxmx import validate

    deflated = _convert(agipd_dir, tmp_path / "g.nxs", agipd_geometry(), "gzip", dict(trains=slice(0, 1)))
    # 0.2 s: less than DIALS' interpreter needs to import dxtbx, on any machine
    monkeypatch.setattr(dials, "read_with_dxtbx", functools.partial(dials.read_with_dxtbx, timeout=0.2))
    report = validate(deflated, checkers=("structure", "dxtbx"))
    assert report.ok, str(report)
    (warning,) = [f for f in report.findings if f.checker == "dxtbx"]
    assert warning.severity == "warning" and "did not finish within" in warning.message
    assert "dxtbx" not in report.read
