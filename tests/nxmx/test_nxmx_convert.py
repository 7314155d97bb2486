"""Frames and metadata in converted files match the run read by extra_data."""

import re
import sys
from pathlib import Path
import threading

import h5py
import numpy as np
import pytest
from extra_data import RunDirectory, by_id

from server_ext.nxmx import ConversionCancelled, ConversionError, OutputError, convert_run
from server_ext.nxmx.beam import HC_J_M, TRAIN_PERIOD_S
from server_ext.nxmx.detectors import AGIPD_1M, JUNGFRAU, LPD_1M
from server_ext.nxmx.mask import NX_DEAD, NX_GAP, NX_NOISY, NX_VIRTUAL

sys.path.insert(0, str(Path(__file__).parent))
import nxmx_mockruns as mr  # noqa: E402
from nxmx_mockruns import AGIPD_RANDOM_FRAMES  # noqa: E402

LPD_RANDOM_FRAMES = [(0, 0), (1, 2), (20, 5)]
AGIPD_SRC = "SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def xtdf_frame(run, src, train, pulse):
    sel = run.select_trains(by_id[[int(train)]])
    pulses = sel[src, "image.pulseId"].ndarray().ravel()
    (i,) = np.flatnonzero(pulses == pulse)
    return sel[src, "image.data"].ndarray()[i]


def sample_frames(f, n, rng, interesting=()):
    total = f["/entry/data/data"].shape[0]
    return sorted(set(rng.choice(total, size=min(n, total), replace=False)) | set(interesting))


def check_xtdf_frames(path, run_dir, src_fmt, modules, random_frames, n=6, seed=0, kind=AGIPD_1M):
    """Compare sampled frames, including those holding random values, with
    extra_data's reading of the same (train, pulse)."""
    run = RunDirectory(str(run_dir))
    rng = np.random.default_rng(seed)
    with h5py.File(path, "r") as f:
        data = f["/entry/data/data"]
        tid, pid = f["/entry/data/train_id"][()], f["/entry/data/pulse_id"][()]
        t0 = run.train_ids[0]
        labels = list(zip(tid - t0, pid))
        interesting = [labels.index(tp) for tp in random_frames if tp in labels]
        assert interesting, "frames with random values must be among those checked"
        checked = 0
        for i in sample_frames(f, n, rng, interesting):
            for m in modules:
                expected = xtdf_frame(run, src_fmt.format(m), tid[i], pid[i])
                np.testing.assert_array_equal(mr.module_rows(data, i, m, kind, 16), expected)
                checked += 1
        assert all(np.any(mr.module_rows(data, i, modules[0], kind, 16)) for i in interesting)
    return checked


def test_virtual_frames_equal_extra_data(agipd_virtual, agipd_dir):
    with h5py.File(agipd_virtual, "r") as f:
        data = f["/entry/data/data"]
        assert data.is_virtual
        assert data.shape == (64 * 64, 16 * 512, 128)  # modules stacked along slow
        assert {s.file_name for s in data.virtual_sources()} == {
            str(p.resolve()) for p in agipd_dir.glob("CORR-*AGIPD*.h5")}
    assert check_xtdf_frames(agipd_virtual, agipd_dir, AGIPD_SRC, [0, 7, 15], AGIPD_RANDOM_FRAMES) >= 9


def test_per_frame_labels(agipd_virtual, agipd_dir):
    run = RunDirectory(str(agipd_dir))
    kd = run[AGIPD_SRC.format(0), "image.pulseId"]
    with h5py.File(agipd_virtual, "r") as f:
        g = f["/entry/data"]
        assert g.attrs["signal"] == "data"
        np.testing.assert_array_equal(g["train_id"][()], kd.train_id_coordinates())
        np.testing.assert_array_equal(g["pulse_id"][()], kd.ndarray().ravel())
        np.testing.assert_array_equal(g["cell_id"][()], run[AGIPD_SRC.format(0), "image.cellId"].ndarray().ravel())


def test_selection_by_train_and_pulse_energy(agipd_selected, agipd_run):
    run_dir, energies = agipd_run
    xgm = energies["SPB_XTD9_XGM/DOOCS/MAIN"]  # the instrument's own XGM is preferred
    trains = np.arange(10000, 10064)[2:50]
    expected = [(t, p) for t in trains for p in range(64) if xgm[t - 10000, p] >= 500]
    with h5py.File(agipd_selected, "r") as f:
        got = list(zip(f["/entry/data/train_id"][()], f["/entry/data/pulse_id"][()]))
        assert got == expected
        e = f["/entry/instrument/beam/total_flux_integrated"][()]
        wl = f["/entry/instrument/beam/incident_wavelength"][()]
    np.testing.assert_allclose(wl, 1.0)  # 0.1 nm
    photon_J = HC_J_M / 1e-10
    np.testing.assert_allclose(e, [xgm[t - 10000, p] * 1e-6 / photon_J for t, p in expected], rtol=1e-6)
    assert check_xtdf_frames(agipd_selected, run_dir, AGIPD_SRC, [3, 12], AGIPD_RANDOM_FRAMES) > 0


def test_copy_mode_is_self_contained_and_equal(agipd_copy, agipd_run):
    run_dir, energies = agipd_run
    with h5py.File(agipd_copy, "r") as f:
        data = f["/entry/data/data"]
        assert not data.is_virtual
        assert "32008" in data._filters  # bitshuffle
        assert data._filters["32008"][4] == 2  # with LZ4
        assert data.chunks == (1, 16 * 512, 128)  # one frame per chunk
        tid = f["/entry/data/train_id"][()]
        assert set(tid) <= {10000, 10001}
        n = int((energies["SPB_XTD9_XGM/DOOCS/MAIN"][:2, :64] >= 300).sum())
        assert data.shape[0] == n
    assert check_xtdf_frames(agipd_copy, run_dir, AGIPD_SRC, [0, 9], AGIPD_RANDOM_FRAMES, n=4) > 0


def test_copy_mode_parallel_matches_serial(agipd_dir, tmp_path):
    kw = dict(mode="copy", trains=slice(0, 1), distance=100, photon_energy=12)
    with pytest.warns(UserWarning):
        a = convert_run(agipd_dir, tmp_path / "a.nxs", threads=1, **kw)
    with pytest.warns(UserWarning):
        b = convert_run(agipd_dir, tmp_path / "b.nxs", threads=3, **kw)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        np.testing.assert_array_equal(fa["/entry/data/data"][:, :512], fb["/entry/data/data"][:, :512])
        assert fa["/entry/data/data"].id.read_direct_chunk((5, 0, 0)) == \
            fb["/entry/data/data"].id.read_direct_chunk((5, 0, 0))


def test_lpd_frames(lpd_virtual, lpd_dir):
    with h5py.File(lpd_virtual, "r") as f:
        assert f["/entry/data/data"].shape == (480 * 128, 16 * 16 * 32, 128)  # tiles stacked along slow
        assert len([k for k in f["/entry/instrument/ELE_D0"] if k.startswith("module_")]) == 16 * 16
    check_xtdf_frames(lpd_virtual, lpd_dir, "FXE_DET_LPD1M-1/DET/{}CH0:xtdf", [0, 15], LPD_RANDOM_FRAMES,
                      kind=LPD_1M)


@pytest.mark.parametrize("fixture", ["jf_virtual", "jf_copy"])
def test_jungfrau_frames(fixture, jf_dir, request):
    path = request.getfixturevalue(fixture)
    run = RunDirectory(str(jf_dir))
    rng = np.random.default_rng(4)
    with h5py.File(path, "r") as f:
        data = f["/entry/data/data"]
        tid, pid, cid = (f[f"/entry/data/{k}"][()] for k in ("train_id", "pulse_id", "cell_id"))
        assert data.shape[1:] == (8 * 8 * 256, 256)  # tiles stacked along slow
        assert np.array_equal(cid[:16], np.arange(16)[::-1])  # memoryCell, not the slot
        for i in sample_frames(f, 4, rng, [0, 15, 3 * 16 + 7]):
            for m in (0, 7):
                src = f"SPB_IRDA_JF4M/DET/JNGFR{m + 1:02}:daqOutput"
                expected = run.select_trains(by_id[[int(tid[i])]])[src, "data.adc"].ndarray()[0, pid[i]]
                np.testing.assert_array_equal(mr.module_rows(data, i, m, JUNGFRAU, 8), expected)
        assert np.any(mr.module_rows(data, 15, 0, JUNGFRAU, 8))


def test_entry_metadata(agipd_virtual, agipd_dir):
    run = RunDirectory(str(agipd_dir))
    ts = run.train_timestamps()
    with h5py.File(agipd_virtual, "r") as f:
        e = f["/entry"]
        assert e["definition"].shape == () and e["definition"][()] == b"NXmx"
        assert e.attrs["version"] == "1.0"
        for k in ("start_time", "end_time_estimated", "end_time"):
            assert ISO_Z.match(e[k][()].decode()), k
        assert e["start_time"][()].decode().startswith(str(ts[0].astype("datetime64[s]")))
        assert e["end_time_estimated"][()].decode().startswith(str(ts[-1].astype("datetime64[s]")))
        assert "700000" in e["title"][()].decode() and "238" in e["title"][()].decode()
        assert e["source/name"][()] == b"European XFEL"
        assert e["source/type"][()] == b"Free-Electron Laser"
        assert e["source/probe"][()] == b"x-ray"
        assert e["instrument/name"][()] == b"European XFEL SPB/SFX"
        assert e["sample/depends_on"][()] == b"."
        beam = e["instrument/beam"]
        assert beam.attrs["flux"] == "total_flux_integrated"
        assert beam["total_flux"].attrs["units"] == "Hz"
        np.testing.assert_allclose(beam["total_flux"][()] * TRAIN_PERIOD_S, beam["total_flux_integrated"][()])
        assert beam["incident_wavelength"].shape == (64 * 64,)
        det = e["instrument/ELE_D0"]
        assert det["sensor_material"][()] == b"Si"
        assert det["sensor_thickness"][()] == 0.5 and det["sensor_thickness"].attrs["units"] == "mm"
        assert det["distance"][()] == 150.0
        for k in ("saturation_value", "underload_value", "count_time", "frame_time", "description"):
            assert k in det
        assert det["data"].id == f["/entry/data/data"].id  # hard link


def test_pixel_mask_translated(agipd_virtual):
    with h5py.File(agipd_virtual, "r") as f:
        mask = f["/entry/instrument/ELE_D0/pixel_mask"]
        assert mask.dtype == np.uint32 and mask.shape == (16 * 512, 128)  # 2-D, as the image
        row = mr.as_modules(mask[()], AGIPD_1M, 16)[3, 0, :5]
    assert list(row) == [NX_DEAD, NX_NOISY, NX_GAP, NX_DEAD | NX_VIRTUAL, 0]


def test_interrupted_conversion_leaves_nothing(agipd_dir, tmp_path):
    out = tmp_path / "x.nxs"

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning):
        convert_run(agipd_dir, out, progress=interrupt, photon_energy=12)
    assert list(tmp_path.iterdir()) == []

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ConversionCancelled), pytest.warns(UserWarning):
        convert_run(agipd_dir, out, cancel=cancel, mode="copy", trains=slice(0, 1), photon_energy=12)
    assert list(tmp_path.iterdir()) == []


def test_progress_and_overwrite(agipd_dir, tmp_path):
    out = tmp_path / "p.nxs"
    calls = []
    with pytest.warns(UserWarning):
        convert_run(agipd_dir, out, progress=lambda d, t: calls.append((d, t)), trains=slice(0, 3))
    assert calls[-1][0] == calls[-1][1] and len(calls) >= 16
    before = out.stat().st_mtime_ns
    with pytest.raises(OutputError, match="overwrite"):
        convert_run(agipd_dir, out, trains=slice(0, 1))
    assert out.stat().st_mtime_ns == before
    with pytest.warns(UserWarning):
        convert_run(agipd_dir, out, trains=slice(0, 1), overwrite=True)
    with h5py.File(out) as f:
        assert f["/entry/data/data"].shape[0] == 64


def test_pixel_mask_of_modules_without_mask_or_data(tmp_path):
    run = tmp_path / "r"
    mr.make_agipd_sequence_run(run, ntrains=2, trains_per_file=2, pulses=2)
    src = "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf/image/mask"
    with h5py.File(run / "CORR-R0239-AGIPD03-S00000.h5", "r+") as f:
        f[src.format(3)][0, 5, 7] = 1 << 0  # one bad pixel: the run has a mask
    with h5py.File(run / "CORR-R0239-AGIPD05-S00000.h5", "r+") as f:
        del f[src.format(5)]  # present module, no mask dataset
    (run / "CORR-R0239-AGIPD15-S00000.h5").unlink()  # absent module
    with pytest.warns(UserWarning):
        out = convert_run(run, tmp_path / "m.nxs", distance=100)
    with h5py.File(out) as f:
        mask = mr.as_modules(f["/entry/instrument/ELE_D0/pixel_mask"][()], AGIPD_1M, 16)
    assert mask[3, 5, 7] == NX_DEAD and np.count_nonzero(mask[3]) == 1
    assert not mask[5].any(), "a module without a mask has no flags"
    assert (mask[15] == NX_GAP).all(), "a module without data is a gap"
    assert not mask[[0, 1, 2, 4, 14]].any()


def test_copy_mode_gzip_needs_no_plugin(agipd_dir, agipd_virtual, tmp_path):
    with pytest.warns(UserWarning):
        out = convert_run(agipd_dir, tmp_path / "g.nxs", mode="copy", compression="gzip",
                          trains=slice(0, 1), distance=150.0, threads=2)
    with h5py.File(out) as f, h5py.File(agipd_virtual) as v:
        data = f["/entry/data/data"]
        plist = data.id.get_create_plist()
        filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
        assert filters == {h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE}  # built into every HDF5
        assert data.chunks == (1, 16 * 512, 128)
        for i in (0, 5, 63):  # frames with random values and without
            np.testing.assert_array_equal(data[i], v["/entry/data/data"][i])


@pytest.mark.parametrize("kw,match", [
    (dict(compression="gzip"), "pass mode='copy'"),
    (dict(mode="copy", compression="zstd"), "compression must be one of bitshuffle, gzip"),
])
def test_bad_compression_is_refused_before_work(agipd_dir, tmp_path, kw, match):
    with pytest.raises(ConversionError, match=match):
        convert_run(agipd_dir, tmp_path / "c.nxs", **kw)
    assert list(tmp_path.iterdir()) == []


def test_no_bit_depth_readout_for_float_data(agipd_virtual):
    # dxtbx would turn corrected values of 2**bits - 1 and - 2 into -1 / -2.
    with h5py.File(agipd_virtual) as f:
        assert f["/entry/data/data"].dtype.kind == "f"
        assert "bit_depth_readout" not in f["/entry/instrument/ELE_D0"]
