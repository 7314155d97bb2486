"""``daas nxmx convert|validate|info`` end to end (in-process)."""

import json

import h5py
import numpy as np
import pytest

from hub_ext.cli import main as daas
from server_ext.nxmx import dials


def test_convert_validate_info(agipd_dir, tmp_path, capsys):
    out = tmp_path / "r.nxs"
    rc = daas(["nxmx", "convert", str(agipd_dir), "-o", str(out), "--trains", "1:3",
               "--min-pulse-energy", "200", "--distance", "110", "--mode", "copy"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.out.strip() == str(out)
    assert "default AGIPD-1M layout" in captured.err  # the warning is shown
    assert "nxmx" in captured.err  # progress bar
    assert "readers need the HDF5 bitshuffle plugin" in captured.err and "--compression gzip" in captured.err
    with h5py.File(out) as f:
        assert set(np.unique(f["/entry/data/train_id"][()])) <= {10001, 10002}
        assert f["/entry/instrument/ELE_D0/distance"][()] == 110

    assert daas(["nxmx", "validate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "compliant NXmx" in text and "false positives ignored" in text
    if dials.dials_available():  # what DIALS' own reader made of the file
        assert "[dxtbx] read: FormatNXmx: 128 panels of 128x64 px" in text and "still images" in text
    else:
        assert "[dxtbx] not checked: DIALS is not installed" in text and "apt-get install" in text

    assert daas(["nxmx", "validate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True

    assert daas(["nxmx", "info", str(agipd_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    (det,) = info["detectors"]
    assert det["kind"] == "AGIPD-1M" and det["modules"] == list(range(16))
    assert det["frames_per_train_max"] == 64 and info["trains"] == 64
    assert "SPB_XTD9_XGM/DOOCS/MAIN:output" in info["xgm"]
    assert daas(["nxmx", "info", str(agipd_dir)]) == 0
    assert "AGIPD-1M" in capsys.readouterr().out


def test_validate_exit_code_for_noncompliant_file(tmp_path, capsys):
    bad = tmp_path / "bad.nxs"
    with h5py.File(bad, "w") as f:
        f.create_group("entry").attrs["NX_class"] = "NXentry"
    assert daas(["nxmx", "validate", str(bad)]) == 1
    assert "NOT compliant" in capsys.readouterr().out


def test_bad_trains_argument(agipd_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        daas(["nxmx", "convert", str(agipd_dir), "-o", str(tmp_path / "x.nxs"), "--trains", "abc"])
    assert e.value.code == 2
    assert "START:STOP" in capsys.readouterr().err
