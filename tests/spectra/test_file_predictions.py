"""``daas spectra predict``: every spectrum of a file classified, a block of
rows at a time, as ``predict`` classifies them in one batch."""

import csv
import json

import h5py
import numpy as np
import pytest

from hub_ext.cli import main
from server_ext.spectra import BinnedSpectraClassifier
from server_ext.spectra.file_predictions import PredictionTally, predict_file

FLAT, NAN_ROWS = 3, [10, 57, 101]  # a detector dropout; three spectra NaN at points 5-6


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    clf, _ = fitted
    path = tmp_path_factory.mktemp("model") / "model.spectra"
    clf.save(path)
    return path


@pytest.fixture(scope="module")
def scan(intensity_series, tmp_path_factory, write_nexus):
    """The series as a NeXus file (2-theta axis), a flat spectrum and three
    NaN at the same two points among them."""
    X = intensity_series.X.astype(np.float32)
    X[FLAT] = 7.0
    X[np.ix_(NAN_ROWS, [5, 6])] = np.nan
    return write_nexus(tmp_path_factory.mktemp("scan") / "scan.nxs", X, intensity_series.axis), X


def _read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_predict_writes_every_spectrums_label_as_predict_gives_it(fitted, saved, scan, tmp_path, capsys):
    clf, _ = fitted
    path, X = scan
    out = tmp_path / "labels.csv"
    assert main(["spectra", "predict", "--model", str(saved), str(path), "-o", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    bad = sorted([FLAT, *NAN_ROWS])
    good = np.setdiff1d(np.arange(len(X)), bad)
    labels, confidence, ambiguous = clf.predict_with_confidence(X[good])
    proba = clf.predict_proba(X[good])
    rows = _read_csv(out)
    names = [str(c) for c in clf.classes_]
    assert rows[0] == ["row", "label", "confidence", "ambiguous", *(f"p_{n}" for n in names)]
    assert [int(r[0]) for r in rows[1:]] == list(range(len(X)))
    for i in bad:
        assert rows[1 + i][1:] == [""] * (3 + len(names))
    got = [rows[1 + i] for i in good]
    assert [r[1] for r in got] == [str(v) for v in labels]
    np.testing.assert_allclose([float(r[2]) for r in got], confidence, atol=5e-5)
    assert [r[3] for r in got] == [str(int(v)) for v in ambiguous]
    np.testing.assert_allclose([[float(v) for v in r[4:]] for r in got], proba, atol=5e-5)

    assert printed[0] == f"{saved} on {path}: {len(X)} spectra, {len(good)} classified"
    assert printed[1].split() == ["class", "spectra", "share", "mean", "confidence", "ambiguous"]
    for line, name in zip(printed[2:4], names):
        n = int((labels.astype(str) == name).sum())
        assert line.split()[:3] == [name, str(n), f"{100 * n / len(X):.1f}"]
        assert float(line.split()[4]) == pytest.approx(confidence[labels.astype(str) == name].mean(), abs=1e-3)
    assert printed[4] == ("not classified (NaN or inf at points the model reads, or flat): 4 "
                          f"(rows {bad})")
    assert printed[5] == ("points 5-6 NaN or inf in every spectrum not classified; if the detector masks "
                          "them since training: --mask-points 5-6")
    assert printed[6] == f"wrote every spectrum's label, confidence, ambiguous flag and class probabilities to {out}"


def test_predict_in_blocks_counts_as_in_one(fitted, scan):
    """Blocks of 7 rows (the NaN spectra in three of them) count what one
    block of them all counts, the points named in each too."""
    clf, _ = fitted
    path, X = scan
    one, small = PredictionTally(clf.classes_), PredictionTally(clf.classes_)
    blocks = list(predict_file(clf, path, block=7))
    assert len(blocks) == -(-len(X) // 7)
    assert np.concatenate([b.rows for b in blocks]).tolist() == list(range(len(X)))
    for b in blocks:
        small.add(b)
    for b in predict_file(clf, path, block=len(X)):
        one.add(b)
    a, b = one.report(), small.report()
    for r in (a, b):  # the means: to rounding of sums in another order
        for c in r["per_class"].values():
            c["mean_confidence"] = round(c["mean_confidence"], 5)
    assert a == b
    assert a["unread"] == 4 and a["unread_rows"] == sorted([FLAT, *NAN_ROWS]) and a["unread_points"] == [5, 6]


def test_predict_json_and_mask_points(saved, scan, capsys):
    path, X = scan
    assert main(["spectra", "predict", "--model", str(saved), str(path), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["spectra"], r["classified"], r["unread"], r["unread_points"]) == (len(X), len(X) - 4, 4, [5, 6])
    assert r["output"] is None and sum(c["spectra"] for c in r["per_class"].values()) == len(X) - 4
    # the points bridged over as the remedy said: only the flat spectrum is left out
    assert main(["spectra", "predict", "--model", str(saved), str(path), "--mask-points", "5-6", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["classified"], r["unread_rows"], r["unread_points"]) == (len(X) - 1, [FLAT], None)


def test_predict_reads_the_spectra_through_another_axis(fitted, saved, intensity_series, tmp_path, capsys):
    """A file on another grid, its axis named: interpolated at the model's
    positions, as ``predict(X, axis=)``; a model fitted without an axis is
    refused such an axis, and reads a file's NeXus axis not at all."""
    clf, _ = fitted
    s = intensity_series
    axis = np.linspace(s.axis[0] - 0.5, s.axis[-1] + 0.5, 900)
    X = np.stack([np.interp(axis, s.axis, row) for row in s.X[::10]])
    path = tmp_path / "other-grid.h5"
    with h5py.File(path, "w") as f:
        f["spectra"], f["q"] = X, axis
    argv = ["spectra", "predict", "--model", str(saved), str(path), "--dataset", "/spectra"]
    assert main(argv + ["--axis-dataset", "/q", "-o", str(tmp_path / "l.csv")]) == 0
    assert [r[1] for r in _read_csv(tmp_path / "l.csv")[1:]] == [str(v) for v in clf.predict(X, axis=axis)]
    capsys.readouterr()
    assert main(argv) == 2  # 900 points read as the model's 2,010
    assert "has 900 points per spectrum; this model was trained on" in capsys.readouterr().err

    plain = BinnedSpectraClassifier(random_state=0, n_bins=4, epochs=5).fit(s.X[::5], s.y[::5])
    plain.save(tmp_path / "plain")
    assert main(["spectra", "predict", "--model", str(tmp_path / "plain"), str(path), "--dataset", "/spectra",
                 "--axis-dataset", "/q"]) == 2
    assert "axis" in capsys.readouterr().err


def test_predict_refuses_what_it_cannot_read_and_keeps_what_is_there(saved, scan, tmp_path, capsys):
    path, _ = scan
    kept = tmp_path / "kept.csv"
    kept.write_text("mine\n")
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f["spectra"], f["phase"] = np.zeros((0, 2010)), np.array([], dtype="S1")
    truncated = tmp_path / "truncated.nxs"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    damaged = tmp_path / "damaged.h5"  # gzipped chunks of 8 rows, one of them overwritten
    with h5py.File(path) as f, h5py.File(damaged, "w") as g:
        g.create_dataset("spectra", data=f["entry/data/intensity"][()], chunks=(8, 2010), compression="gzip")
        chunk = g["spectra"].id.get_chunk_info(12)
    with open(damaged, "r+b") as f:
        f.seek(chunk.byte_offset)
        f.write(b"\xff" * chunk.size)
    cases = [
        (["-o", str(kept), str(path)], f"{kept} exists; give another file, or remove it"),
        ([str(tmp_path / "none.nxs")], f"{tmp_path / 'none.nxs'} does not exist"),
        ([str(truncated), "-o", str(tmp_path / "t.csv")], "cannot read"),
        ([str(damaged), "-o", str(tmp_path / "t.csv")], f"cannot read rows 0-199 of /spectra in {damaged} "
                                                         "(a damaged file?)"),
        ([str(path), "--dataset", "/entry/data/two_theta"], "spectra must be (n_spectra, n_points)"),
        ([str(path), "--mask-points", "5-x"], "--mask-points"),
        ([str(empty)], f"/spectra in {empty} holds no spectra (shape (0, 2010))"),
    ]
    for args, message in cases:
        assert main(["spectra", "predict", "--model", str(saved), *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)
    # the labelled rows of such a file, for evaluate or train
    assert main(["spectra", "evaluate", "--model", str(saved), str(damaged), "--labels", "a=0:200"]) == 2
    assert f"cannot read the labelled rows of /spectra in {damaged} (a damaged file?)" in capsys.readouterr().err
    assert main(["spectra", "train", str(empty), "--labels", "@/phase", "--max-per-class", "5",
                 "-o", str(tmp_path / "m")]) == 2
    assert "holds no spectra" in capsys.readouterr().err
    assert kept.read_text() == "mine\n"
    assert not (tmp_path / "t.csv").exists() and not list(tmp_path.glob(".*.part"))
