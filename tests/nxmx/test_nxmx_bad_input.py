"""Each kind of bad input raises its ConversionError and writes nothing."""

import os
import warnings

import h5py
import numpy as np
import pytest
from extra_geom import LPD_1MGeometry

import nxmx_mockruns as mr
from hub_ext.cli import main as daas
from server_ext.nxmx import (ConversionError, CorruptRunError, DetectorNotFoundError,
                             GeometryError, MissingMetadataError, NoFramesError, NotARunError,
                             OutputError, RawDataError, UnsupportedDetectorError, convert_run)
from server_ext.nxmx.geometry import default_geometry
from server_ext.nxmx.detectors import AGIPD_1M


@pytest.fixture
def out(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d / "run.nxs"


def convert(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_run(*args, **kwargs)


def assert_nothing_written(out):
    assert not out.exists()
    assert list(out.parent.iterdir()) == [], "no temporary file is left behind"


def test_error_base_is_a_user_error():
    assert ConversionError.user_error is True
    for cls in (NotARunError, CorruptRunError, DetectorNotFoundError, UnsupportedDetectorError,
                RawDataError, GeometryError, NoFramesError, MissingMetadataError, OutputError):
        assert issubclass(cls, ConversionError)


def test_not_a_run_directory(tmp_path, out):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotARunError, match="no .h5 files"):
        convert(tmp_path / "empty", out)
    with pytest.raises(NotARunError, match="not a directory"):
        convert(tmp_path / "missing", out)
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(NotARunError, match="run directory"):
        convert(f, out)
    assert_nothing_written(out)


def test_no_detector(tmp_path, out):
    mr.make_xgm_only_run(tmp_path / "xgm")
    with pytest.raises(DetectorNotFoundError, match="no supported detector"):
        convert(tmp_path / "xgm", out, photon_energy=9)
    assert_nothing_written(out)


def test_several_detectors_need_a_choice(agipd_dir, lpd_dir, tmp_path, out):
    both = mr.linked_copy(agipd_dir, tmp_path / "both")
    mr.linked_copy(lpd_dir, both)
    with pytest.raises(DetectorNotFoundError, match="--detector") as e:
        convert(both, out)
    assert "SPB_DET_AGIPD1M-1" in str(e.value) and "FXE_DET_LPD1M-1" in str(e.value)
    assert_nothing_written(out)
    # Naming one (by prefix or by a module's source) resolves it.
    p = convert(both, out, detector="FXE_DET_LPD1M", trains=slice(0, 1), photon_energy=9)
    assert p.exists()
    p.unlink()
    p = convert(both, out, detector="SPB_DET_AGIPD1M-1/DET/3CH0:xtdf", trains=slice(0, 1))
    assert p.exists()


def test_unknown_detector(agipd_dir, tmp_path, out):
    with pytest.raises(DetectorNotFoundError, match="unknown detector 'MID_DET_EPIX'.*SPB_DET_AGIPD1M-1"):
        convert(agipd_dir, out, detector="MID_DET_EPIX")
    mr.make_dssc_run(tmp_path / "dssc")
    with pytest.raises(DetectorNotFoundError, match="SCS_DET_DSSC1M-1, which is not supported"):
        convert(tmp_path / "dssc", out, photon_energy=9)
    with pytest.raises(UnsupportedDetectorError, match="does not support"):
        convert(tmp_path / "dssc", out, detector="SCS_DET_DSSC1M-1", photon_energy=9)
    assert_nothing_written(out)


def test_raw_agipd_is_refused(tmp_path, out):
    mr.make_raw_agipd_run(tmp_path / "raw")
    with pytest.raises(RawDataError, match="corrected"):
        convert(tmp_path / "raw", out, photon_energy=9)
    assert_nothing_written(out)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_file_in_run(agipd_dir, tmp_path, out, damage):
    name = "CORR-R0238-AGIPD05-S00000.h5"
    run = mr.linked_copy(agipd_dir, tmp_path / "run", exclude=[name])
    data = (agipd_dir / name).read_bytes()
    (run / name).write_bytes(data[: len(data) // 3] if damage == "truncated" else b"\0" * 4096)
    with pytest.raises(CorruptRunError, match=name):
        convert(run, out)
    assert_nothing_written(out)


def test_zero_frames_after_selection(agipd_dir, out):
    with pytest.raises(NoFramesError, match="no trains"):
        convert(agipd_dir, out, trains=slice(1000, 1010))
    with pytest.raises(NoFramesError, match="lower --min-pulse-energy"):
        convert(agipd_dir, out, min_pulse_energy=1e6)
    assert_nothing_written(out)


def test_missing_wavelength(lpd_dir, out):
    with pytest.raises(MissingMetadataError, match="--photon-energy"):
        convert(lpd_dir, out)
    with pytest.raises(MissingMetadataError, match="no XGM"):
        convert(lpd_dir, out, photon_energy=9, min_pulse_energy=10)
    assert_nothing_written(out)


def test_unwritable_output(agipd_dir, tmp_path, out):
    with pytest.raises(OutputError, match="does not exist"):
        convert(agipd_dir, tmp_path / "no" / "such" / "x.nxs")
    with pytest.raises(OutputError, match="is a directory"):
        convert(agipd_dir, tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        if os.access(ro, os.W_OK):
            # root ignores permissions: a path through a regular file is unwritable for anyone
            blocker = tmp_path / "blocker"
            blocker.write_text("x")
            target = blocker / "x.nxs"
        else:
            target = ro / "x.nxs"
        with pytest.raises(OutputError, match="cannot write"):
            convert(agipd_dir, target)
    finally:
        os.chmod(ro, 0o755)
    assert list(ro.iterdir()) == []
    assert_nothing_written(out)


def test_geometry_for_the_wrong_detector(agipd_dir, lpd_dir, tmp_path, out):
    lpd_geom = LPD_1MGeometry.from_quad_positions([(11.4, 299), (-11.5, 8), (254.5, -16), (278.5, 275)])
    with pytest.raises(GeometryError, match="LPD_1MGeometry.*AGIPD-1M"):
        convert(agipd_dir, out, geometry=lpd_geom)
    lpd_file = tmp_path / "lpd.geom"
    lpd_geom.write_crystfel_geom(str(lpd_file))
    with pytest.raises(GeometryError, match="lpd.geom"):
        convert(agipd_dir, out, geometry=lpd_file)
    agipd_file = tmp_path / "agipd.geom"
    default_geometry(AGIPD_1M, 16).write_crystfel_geom(str(agipd_file))
    with pytest.raises(GeometryError, match="agipd.geom"):
        convert(lpd_dir, out, geometry=agipd_file, photon_energy=9)
    with pytest.raises(GeometryError, match="does not exist"):
        convert(agipd_dir, out, geometry=tmp_path / "nope.geom")
    assert_nothing_written(out)


def test_cli_reports_errors_without_traceback(agipd_dir, tmp_path, out, capsys):
    rc = daas(["nxmx", "convert", str(tmp_path / "missing"), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "daas nxmx: error:" in err and "not a directory" in err and "Traceback" not in err
    rc = daas(["nxmx", "convert", str(agipd_dir), "-o", str(out), "--trains", "500:600"])
    assert rc == 2 and "no trains" in capsys.readouterr().err
    assert_nothing_written(out)


@pytest.mark.parametrize("mode", ["virtual", "copy"])
def test_repeated_train_and_pulse(tmp_path, out, mode):
    run = tmp_path / "dup"
    mr.make_agipd_sequence_run(run, ntrains=4, trains_per_file=2, pulses=3)
    src = "SPB_DET_AGIPD1M-1/DET/4CH0:xtdf"
    with h5py.File(run / "CORR-R0239-AGIPD04-S00001.h5", "r+") as f:
        f[f"INSTRUMENT/{src}/image/pulseId"][:] = 0  # e.g. pulse IDs not filled in
    with pytest.raises(CorruptRunError, match=rf"{src} has two frames labelled train 10002, pulse 0"
                       r" \(in CORR-R0239-AGIPD04-S00001.h5\).*--trains"):
        convert(run, out, mode=mode, photon_energy=9)
    assert_nothing_written(out)


@pytest.mark.parametrize("length", [5, 7])
def test_label_length_differs_from_data(tmp_path, out, length):
    run = tmp_path / "labels"
    mr.make_agipd_sequence_run(run, ntrains=2, trains_per_file=2, pulses=3)
    path = "INSTRUMENT/SPB_DET_AGIPD1M-1/DET/2CH0:xtdf/image/pulseId"
    with h5py.File(run / "CORR-R0239-AGIPD02-S00000.h5", "r+") as f:
        assert f[path].shape == (6,)
        del f[path]
        f[path] = np.arange(length, dtype=np.uint64)
    with pytest.raises(CorruptRunError, match=rf"AGIPD02-S00000.h5: {path} has shape \({length},\)"
                       r" but .*image/data holds 6 frames"):
        convert(run, out, photon_energy=9)
    assert_nothing_written(out)


@pytest.mark.parametrize("kwargs,message", [
    (dict(mode="fast"), "mode must be one of virtual, copy, not 'fast'"),
    (dict(distance=0), r"distance must be a number > 0 \(mm\), got 0"),
    (dict(distance=float("nan")), "distance must be a number > 0"),
    (dict(distance="120"), r"distance must be a number > 0 \(mm\), got '120'"),
    (dict(photon_energy=-9.3), r"photon_energy must be a number > 0 \(keV\)"),
    (dict(photon_energy=float("inf")), "photon_energy must be a number > 0"),
    (dict(min_pulse_energy=-1), r"min_pulse_energy must be a number >= 0 \(µJ\)"),
    (dict(min_pulse_energy=True), "min_pulse_energy must be a number >= 0"),
    (dict(threads=0), "threads must be a whole number >= 1"),
    (dict(threads=2.5), "threads must be a whole number >= 1"),
])
def test_arguments_checked_before_any_work(tmp_path, out, kwargs, message):
    # The run does not exist: the argument is reported first, before the run is opened.
    with pytest.raises(ConversionError, match=message):
        convert(tmp_path / "no-such-run", out, **kwargs)
    assert_nothing_written(out)


def test_good_numbers_of_any_type_are_accepted(agipd_dir, out):
    p = convert(agipd_dir, out, trains=slice(0, 1), distance=np.float32(120), photon_energy=9,
                min_pulse_energy=0, threads=np.int64(1), mode="copy")
    assert p.exists()
