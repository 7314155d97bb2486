import os
import re

import h5py
import numpy as np
import pytest

from hub_ext.cli import main
from server_ext.spectra.findings import axis_span
from server_ext.spectra.synthetic import make_transition_series, write_demo_run


@pytest.fixture(scope="module")
def nexus_file(tmp_path_factory):
    s = make_transition_series(n_spectra=120, n_points=1200, kind="both", random_state=4)
    path = tmp_path_factory.mktemp("nx") / "series.nxs"
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        data = entry.create_group("data")
        data.attrs.update(NX_class="NXdata", signal="intensity", axes=[".", "two_theta"])
        data["intensity"] = s.X
        data["two_theta"] = s.axis
        entry["phase"] = np.array(["low", "high"])[s.y].astype("S")
        f["other/raw"] = np.zeros((3, 7))  # a second 2-D dataset: NeXus default decides
    return path, s


def test_train_then_classify_a_run(nexus_file, tmp_path, capsys):
    path, s = nexus_file
    model = tmp_path / "model"
    assert main(["spectra", "train", str(path), "--labels", "low=0:25", "high=95:120",
                 "-o", str(model)]) == 0
    out = capsys.readouterr().out
    assert "classes high (25), low (25)" in out and "saved" in out
    assert "classes told apart by peak position: none" in out
    assert "strain alignment: " in out
    info = write_demo_run(tmp_path / "data", n_trains=10, pulses_per_train=3, n_points=1200)
    assert main(["spectra", "classify", "--model", str(model), "--run", info["path"],
                 "--source-name", info["source"], "--interval", "1000"]) == 0
    out = capsys.readouterr().out
    assert "trains 10 spectra 30 malformed 0" in out and "labels: " in out
    # the phases by train, without a results file too: from the run's first train to its last
    runs = out.split("phases by train: ")[1].splitlines()[0].split(", ")
    assert runs[0].startswith(f"{info['first_train']}-") or runs[0].startswith(f"{info['first_train']} ")
    assert runs[-1].split()[0].split("-")[-1] == str(info["first_train"] + 9), runs


def test_info_says_what_a_saved_model_is(nexus_file, tmp_path, capsys):
    """``daas spectra info``: the classes, the spectra and their axis, where the labelled
    spectra came from, the bins and the findings -- what train printed, read back
    from the model; ``--json`` the server's summary of it."""
    import json

    from server_ext.extension.tasks import model_summary
    from server_ext.spectra import BinnedSpectraClassifier

    path, s = nexus_file
    model = tmp_path / "model"
    assert main(["spectra", "train", str(path), "--labels", "low=0:25", "high=95:120", "-o", str(model)]) == 0
    trained = capsys.readouterr().out
    assert trained.startswith(f"trained on 50 spectra of 1200 points on an axis from {s.axis[0]:g} to "
                              f"{s.axis[-1]:g}, classes high (25), low (25), in "), trained
    assert main(["spectra", "info", str(model)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"{model}: classes high, low; spectra of 1200 points, "
                      f"on an axis from {s.axis[0]:g} to {s.axis[-1]:g}")
    assert out[1] == f"trained on {path}, labels low=0:25 high=95:120"
    # the bins and the findings as train printed them
    assert out[2:] == trained.splitlines()[1:-1] and trained.splitlines()[-1] == f"saved {model}"
    # each bin where it lies on the axis too: which reflections it holds
    clf = BinnedSpectraClassifier.load(model)
    assert out[2].split() == ["bin", "(points)", "on", "the", "axis", "held-out", "accuracy", "weight"]
    assert [line.split()[:2] for line in out[3:3 + len(clf.bins_)]] == [
        [f"{a}-{b}", axis_span([s.axis[a], s.axis[b - 1]])] for a, b in clf.bins_]
    assert main(["spectra", "info", "--json", str(model)]) == 0
    report = json.loads(capsys.readouterr().out)
    server = model_summary(clf)
    assert {k: report[k] for k in server if k != "findings"} == {k: v for k, v in server.items() if k != "findings"}
    assert report["findings"][0] == server["findings"][0] and len(report["findings"]) == len(server["findings"])
    assert report["axis"] == {"first": float(s.axis[0]), "last": float(s.axis[-1])}
    assert report["bins_on_axis"] == [[s.axis[a], s.axis[b - 1]] for a, b in clf.bins_]
    assert report["trained_on"] == {"data": str(path), "labels": ["low=0:25", "high=95:120"]}
    assert report["model"] == str(model)

    # saved from Python without where it came from, fitted without an axis
    bare = BinnedSpectraClassifier(n_bins=3, epochs=5, cv_folds=2, random_state=0).fit(s.X[::4], s.y[::4])
    bare.save(tmp_path / "bare")
    assert main(["spectra", "info", str(tmp_path / "bare")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("; spectra of 1200 points") and out[1].startswith("trained on: not recorded")
    assert out[2].split() == ["bin", "(points)", "held-out", "accuracy", "weight"]  # no axis to place them on
    assert any(line.startswith("no axis: ") and "--axis-dataset (a file)" in line for line in out)
    assert main(["spectra", "info", str(tmp_path / "nothing")]) == 2
    assert "is not a saved spectra classifier" in capsys.readouterr().err


def test_classify_part_of_a_run(fitted, tmp_path, capsys):
    """``--train-ids FIRST-LAST``: only those trains of a run replayed and
    kept; a span holding none of the run's trains refused before any file
    is made, naming those it holds; on a bridge, refused."""
    from server_ext.spectra import read_results
    from server_ext.spectra.train_span import parse_span, span_text

    clf, _ = fitted
    model = clf.save(tmp_path / "model")
    info = write_demo_run(tmp_path / "data", n_trains=10, pulses_per_train=3, n_points=2010)
    first = info["first_train"]
    (run_file,) = (tmp_path / "data" / "r0001").glob("*.h5")
    with h5py.File(run_file, "r") as f:
        X = f[f"INSTRUMENT/{info['source']}/data/intensity"][()]
    base = ["spectra", "classify", "--model", str(model), "--run", info["path"],
            "--source-name", info["source"], "--key", info["key"], "--interval", "1000"]
    for span, kept in ((f"{first + 2}-{first + 5}", range(2, 6)), (f"{first + 8}-", range(8, 10)),
                       (f"-{first}", range(1)), (f"{first + 4}", range(4, 5))):
        out_file = tmp_path / f"part-{span}.h5"
        assert main(base + ["--train-ids", span, "-o", str(out_file)]) == 0
        out = capsys.readouterr().out
        assert f"trains {len(kept)} spectra {3 * len(kept)} malformed 0" in out, out
        assert main(["spectra", "results", str(out_file)]) == 0
        assert f" {info['key']} {span_text(*parse_span(span))}\n" in capsys.readouterr().out
        r = read_results(out_file)
        assert r.trains["train_id"].tolist() == [first + i for i in kept]
        assert r.about["train_ids"] == span_text(*parse_span(span))  # the file says it holds a part
        rows = np.concatenate([np.arange(3 * i, 3 * i + 3) for i in kept])
        np.testing.assert_array_equal(r.classes[r.label].astype(clf.classes_.dtype), clf.predict(X[rows]))
    for extra, message in (
            (["--train-ids", "1-5", "-o", str(tmp_path / "none.h5")],
             f"no train of the run's {info['source']} in trains 1-5: its 10 trains are {first} to {first + 9}"),
            (["--train-ids", f"{first + 10}-", "-o", str(tmp_path / "none.h5")],
             f"in trains from {first + 10}: its 10 trains"),
    ):
        assert main(base + extra) == 2
        captured = capsys.readouterr()
        assert message in captured.err and "Traceback" not in captured.err, captured.err
    assert not (tmp_path / "none.h5").exists()
    assert main(["spectra", "classify", "--model", str(model), "--source", "tcp://127.0.0.1:1",
                 "--train-ids", "1-5"]) == 2
    assert "--train-ids selects the trains of a replayed run (--run)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--train-ids", f"{first + 5}-{first + 2}"])
    assert f"train {first + 5} comes after train {first + 2}" in capsys.readouterr().err


def test_numbers_the_commands_cannot_use_are_refused_before_anything_is_read(capsys):
    """-1 trains/s was a replay as fast as possible; --min-confidence 90 (for 90 %) selected
    nothing and said nothing."""
    classify = ["classify", "--model", "no-model", "--run", "no-run", "--source-name", "S"]
    for argv, said in (
            ([*classify, "--train-rate", "-1"], "argument --train-rate: expected a number above 0, not '-1'"),
            ([*classify, "--train-rate", "nan"], "argument --train-rate: expected a number above 0, not 'nan'"),
            ([*classify, "--timeout", "0"], "argument --timeout: expected a number above 0, not '0'"),
            ([*classify, "--max-trains", "0"], "argument --max-trains: expected a whole number above 0"),
            (["results", "no-file.h5", "--min-confidence", "90"],
             "argument --min-confidence: a confidence is from 0 to 1 (0.9, not 90), not 90"),
            (["results", "no-file.h5", "--min-confidence", "high"],
             "argument --min-confidence: expected a number from 0 to 1, not 'high'"),
            (["results", "no-file.h5", "--trains-per-block", "0"],
             "argument --trains-per-block: expected a whole number above 0, not '0'")):
        with pytest.raises(SystemExit):
            main(["spectra", *argv])
        assert said in capsys.readouterr().err, argv


def test_train_with_label_dataset_and_errors(nexus_file, tmp_path, capsys):
    path, s = nexus_file
    assert main(["spectra", "train", str(path), "--labels", "@/entry/phase",
                 "-o", str(tmp_path / "m"), "--placement", "fixed"]) == 0
    capsys.readouterr()
    cases = [
        (["spectra", "train", str(path), "--labels", "low=0-25", "-o", "x"], "NAME=START:STOP"),
        (["spectra", "train", str(path), "--labels", "low=0:25", "-o", "x"], "at least two"),
        (["spectra", "train", str(path), "--labels", "a=0:5", "b=100:500", "-o", "x"],
         "outside the 120 spectra"),
        (["spectra", "train", str(tmp_path / "none.h5"), "--labels", "a=0:1", "b=1:2", "-o",
          "x"], "does not exist"),
        # an existing model is refused before anything is read or trained: here the data is missing
        (["spectra", "train", str(tmp_path / "none.h5"), "--labels", "a=0:1", "b=1:2", "-o",
          str(tmp_path / "m")], "m exists; choose another path, or --overwrite to replace it"),
        (["spectra", "train", str(path), "--labels", "@/entry/phase", "-o", "x",
          "--fixed-range", "3"], "give LOW:HIGH"),
        (["spectra", "train", str(path), "--labels", "@/entry/phase", "-o", "x",
          "--fixed-range", "1e6:2e6"], "holds no point"),
        (["spectra", "classify", "--model", str(tmp_path), "--run", str(tmp_path)],
         "not a saved spectra classifier"),
        (["spectra", "classify", "--model", str(tmp_path / "m"), "--run", str(tmp_path)],
         "needs --source-name"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err


def test_train_from_run_train_ranges(tmp_path, capsys):
    info = write_demo_run(tmp_path, n_trains=40, pulses_per_train=3, n_points=1200)
    (lo0, lo1), (hi0, hi1) = info["labels"]["low"], info["labels"]["high"]
    assert main(["spectra", "train", info["path"], "--source", info["source"], "--key",
                 info["key"], "--labels", f"low={lo0}:{lo1}", f"high={hi0}:{hi1}",
                 "-o", str(tmp_path / "m"), "--position-nuisance",
                 "--fixed-range", "100:102", "7:7"]) == 0
    out = capsys.readouterr().out
    assert f"trained on {3 * (lo1 - lo0 + hi1 - hi0)} spectra" in out
    assert f"classes high ({3 * (hi1 - hi0)}), low ({3 * (lo1 - lo0)})" in out  # how many of each
    assert "classes told apart by peak position: none" in out
    from server_ext.spectra import BinnedSpectraClassifier

    model = BinnedSpectraClassifier.load(tmp_path / "m")
    assert model.learn_position is False and model.position_pairs_ == []
    assert model.fixed_ranges == [[100.0, 102.0], [7.0, 7.0]]  # point indices: no axis
    assert main(["spectra", "train", info["path"], "--source", info["source"], "--labels",
                 "low=1:2", "high=3:4", "-o", str(tmp_path / "n")]) == 2
    assert "no train of the run" in capsys.readouterr().err


def test_run_loader_caps_spectra_per_label(tmp_path):
    from server_ext.spectra.datafiles import load_labelled_run

    info = write_demo_run(tmp_path, n_trains=20, pulses_per_train=8, n_points=300)
    f = info["first_train"]
    labels = [f"low={f}:{f + 6}", f"high={f + 14}:{f + 20}"]
    X_all, y_all, _ = load_labelled_run(info["path"], labels, info["source"], info["key"])
    assert X_all.shape == (96, 300)
    X, y, _ = load_labelled_run(info["path"], labels, info["source"], info["key"],
                                max_per_label=10, random_state=1)
    assert X.shape == (20, 300) and sorted(y.tolist()) == ["high"] * 10 + ["low"] * 10
    # every kept spectrum is one of the run's, drawn from several trains
    rows = [int(np.flatnonzero((X_all == r).all(1))[0]) for r in X]
    assert len({r // 8 for r in rows[:10]}) >= 5
    X2, _, _ = load_labelled_run(info["path"], labels, info["source"], info["key"],
                                 max_per_label=10, random_state=1)
    np.testing.assert_array_equal(X, X2)
    # where each spectrum was read, capped or not: its train and pulse
    from extra_data import RunDirectory, by_id

    kd = RunDirectory(info["path"])[info["source"], info["key"]]
    for cap in (None, 10):
        X, _, _, origins = load_labelled_run(info["path"], labels, info["source"], info["key"],
                                             max_per_label=cap, random_state=1,
                                             return_origins=True)
        assert len(origins.trains) == len(origins.pulses) == len(X)
        for i, (tid, pulse) in enumerate(zip(origins.trains, origins.pulses)):
            np.testing.assert_array_equal(kd.select_trains(by_id[[int(tid)]]).ndarray()[pulse], X[i])
    run_name = info["path"].rstrip("/").rsplit("/", 1)[-1]
    assert origins.describe([0]).startswith(f"{run_name} ({info['source']} {info['key']}): "
                                            f"train {origins.trains[0]} pulse {origins.pulses[0]}")


def test_file_loader_reads_at_most_max_per_label_a_class(tmp_path):
    """A file's labelled rows capped per label as a run's are: drawn at
    random from all of a label's ranges, reproducibly, in the order named,
    each spectrum the file's row it says."""
    from server_ext.spectra.datafiles import load_labelled_file

    n = 3000
    X = np.arange(n, dtype=np.float32)[:, None] * np.ones(32, np.float32)  # row r reads r
    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("spectra", data=X, chunks=(64, 32))
        f["phase"] = np.where(np.arange(n) < 1000, b"low", b"high")
    labels = ["high=1000:2500", "low=0:600", "low=2600:3000"]  # low labelled twice, after high
    named = {"high": set(range(1000, 2500)), "low": {*range(0, 600), *range(2600, 3000)}}
    got, y, _, origins = load_labelled_file(path, labels, max_per_label=100, random_state=1,
                                            return_origins=True)
    np.testing.assert_array_equal(got[:, 0], origins.rows)
    np.testing.assert_array_equal(got, X[origins.rows])
    assert y.tolist() == ["high"] * 100 + ["low"] * 100
    for name in named:
        rows = origins.rows[y == name]
        assert set(rows.tolist()) <= named[name] and (np.diff(rows) > 0).all()
    assert (origins.rows[y == "low"] >= 2600).any() and (origins.rows[y == "low"] < 600).any()
    again = load_labelled_file(path, labels, max_per_label=100, random_state=1, return_origins=True)[3]
    other = load_labelled_file(path, labels, max_per_label=100, random_state=2, return_origins=True)[3]
    np.testing.assert_array_equal(again.rows, origins.rows)
    assert not np.array_equal(other.rows, origins.rows)
    # a cap no label reaches, and none: every labelled row, in the order named
    for cap in (1500, None):
        got, y, _ = load_labelled_file(path, labels, max_per_label=cap)
        np.testing.assert_array_equal(got[:, 0], [*range(1000, 2500), *range(0, 600), *range(2600, 3000)])
    # a label dataset capped alike; one label left under the cap keeps all its rows
    got, y, _ = load_labelled_file(path, ["@/phase"], max_per_label=1200, random_state=0)
    assert sorted(np.unique(y, return_counts=True)[1].tolist()) == [1000, 1200]
    np.testing.assert_array_equal(got[y == "low", 0], np.arange(1000))
    assert (got[y == "high", 0] >= 1000).all() and len(set(got[y == "high", 0])) == 1200
    # what train and evaluate read through (a file or a run): the file's rows so capped
    from server_ext.spectra.datafiles import load_labelled

    got, y, _ = load_labelled(str(path), labels, dataset="/spectra", max_per_label=40, random_state=3)
    assert np.unique(y, return_counts=True)[1].tolist() == [40, 40]


def test_read_rows_reads_blocks_where_rows_lie_close_and_single_rows_where_sparse():
    from server_ext.spectra.datafiles import read_rows

    class Recorded:  # an HDF5 dataset's reads, recorded: how many rows each one took
        def __init__(self, a):
            self.a, self.shape, self.dtype, self.reads = a, a.shape, a.dtype, []

        def __getitem__(self, index):
            out = self.a[index]
            self.reads.append(1 if out.ndim == 1 else len(out))
            return out

    a = np.random.default_rng(0).normal(size=(10_000, 8))
    rng = np.random.default_rng(1)
    sparse = rng.choice(10_000, 40, replace=False)  # in no order
    scattered = rng.choice(np.arange(100, 900), 200, replace=False)  # a quarter of 800 rows
    for rows in (sparse, scattered, np.arange(5000, 7000), np.array([9999]), np.arange(10_000)):
        d = Recorded(a)
        np.testing.assert_array_equal(read_rows(d, rows, block=256), a[rows])
        assert max(d.reads) <= 256
        if rows is sparse:
            assert d.reads == [1] * 40
        elif rows is scattered:  # blocks of 256 rows holding 16 or more of those kept
            assert len(rows) < sum(d.reads) <= 16 * len(rows)
        else:
            assert sum(d.reads) == len(rows)


def test_bad_data_files_are_clear_errors(nexus_file, tmp_path, capsys):
    path, s = nexus_file
    broken = tmp_path / "broken.nxs"
    with h5py.File(broken, "w") as f:
        f.attrs["default"] = "entry"
        data = f.create_group("entry")
        data.attrs.update(NX_class="NXdata", signal="counts")  # no such dataset
        data["intensity"] = s.X
    nan_axis = tmp_path / "nan-axis.h5"
    with h5py.File(nan_axis, "w") as f:
        f["spectra"], f["two_theta"] = s.X, np.where(np.arange(s.X.shape[1]) == 5, np.nan, s.axis)
    train = ["spectra", "train", "--labels", "a=0:5", "b=100:110", "-o", str(tmp_path / "m")]
    cases = [
        ([str(nan_axis), "--axis-dataset", "/two_theta"],
         "axis dataset '/two_theta' has NaN or inf at points [5]"),
        ([str(path), "--dataset", "/entry/data"], "is a group, not a dataset"),
        ([str(broken)], "NeXus signal 'counts'"),
        ([str(path), "--axis-dataset", "/entry/data/intensity"], "needs one value per point"),
        ([str(path), "--axis-dataset", "/entry"], "is a group, not a dataset"),
        ([str(path), "--labels", "a=0:30", "b=20:40"], "overlap"),
    ]
    for extra, message in cases:
        argv = train[:2] + extra[:1] + train[2:] + extra[1:]
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "m").exists()


def test_classify_prints_the_summary_on_ctrl_c(fitted, bridge, tmp_path):
    """Ctrl-C: the summary printed, the results file kept with every pulse
    classified, saying it was interrupted."""
    import json
    import queue
    import signal
    import subprocess
    import sys
    import threading

    clf, _ = fitted
    model = clf.save(tmp_path / "model")
    X = make_transition_series(n_spectra=12, n_points=clf.n_features_in_, random_state=1).X
    src, key = "SPB_TEST/PROC/SPECTRA:output", "data.intensity"
    for i in range(3):
        bridge.feed({src: {key: X[4 * i:4 * i + 4]}}, {src: {"timestamp.tid": 100 + i}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub_ext.cli", "spectra", "classify", "--model", str(model),
         "--source", bridge.endpoint, "--key", key, "--interval", "0", "--timeout", "30",
         "--overflow", "block", "-o", str(tmp_path / "results.h5")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout],
                                  daemon=True)
        reader.start()
        seen = []
        while not any(x.startswith("train 102:") for x in seen):
            try:
                seen.append(lines.get(timeout=60))  # the three trains are classified
            except queue.Empty:
                pytest.fail(f"no 'train 102:' line within 60 s; printed: {''.join(seen)!r}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        reader.join(10)
        out = "".join(seen) + "".join(lines.queue)
        assert "interrupted" in out and "done: " in out and "trains 3 spectra 12" in out
        # each train's line names the run of trains it is in: counted here from the model's labels
        runs = []
        for tid, labels in zip((100, 101, 102), clf.predict(X).reshape(3, 4)):
            names, n = np.unique(labels, return_counts=True)
            phase = str(names[n.argmax()]) if n.max() >= 0.9 * 4 else "mixed"
            if runs and runs[-1][1] == phase:
                runs[-1][2] += 1
            else:
                runs.append([tid, phase, 1])
        first, phase, n = runs[-1]
        line = next(x for x in seen if x.startswith("train 102:"))
        assert line.rstrip().endswith(f"; phase now: {phase} since train {first} ({n} train"
                                      f"{'s' if n > 1 else ''}, run {len(runs)})"), line
        assert "labels: " in out and "Traceback" not in proc.stderr.read()
        assert f"results of 12 pulses in 3 trains: {tmp_path / 'results.h5'} (interrupted)" in out
        with h5py.File(tmp_path / "results.h5", "r") as f:
            assert f.attrs["state"] == "interrupted" and json.loads(f.attrs["stats"])["spectra"] == 12
            classes = f["classes"].asstr()[()]
            np.testing.assert_array_equal(f["pulses/train_id"][()], np.repeat([100, 101, 102], 4))
            np.testing.assert_array_equal(classes[f["pulses/label"][()]].astype(clf.classes_.dtype),
                                          clf.predict(X))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_progress_lines_on_a_terminal_leave_no_tail(tmp_path, capsys):
    """On a terminal each progress line overwrites the one before ('\\r'): a
    shorter one (a new run of trains: "(1 train, run 2)" after "(12 trains,
    run 1)") is padded with blanks instead of leaving the end of the longer
    one on the screen."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    info = write_demo_run(tmp_path, n_trains=40, pulses_per_train=2, n_points=1200)
    (lo0, lo1), (hi0, hi1) = info["labels"]["low"], info["labels"]["high"]
    model = tmp_path / "m"
    assert main(["spectra", "train", info["path"], "--source", info["source"], "--key",
                 info["key"], "--labels", f"low={lo0}:{lo1}", f"high={hi0}:{hi1}",
                 "-o", str(model)]) == 0
    capsys.readouterr()
    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub_ext.cli", "spectra", "classify", "--model", str(model),
         "--run", info["path"], "--source-name", info["source"], "--key", info["key"],
         "--interval", "0"], stdout=child, stderr=subprocess.PIPE)
    os.close(child)
    out, deadline = b"", time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([parent], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(parent, 65536)
            except OSError:  # the child's end closed (EIO)
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(10) == 0, proc.stderr.read()
    finally:
        os.close(parent)
        proc.kill()
        proc.stderr.close()
    lines = out.decode().split("\r")
    progress = [x for x in lines if x.startswith("train ") and "phase now: " in x]
    assert len(progress) >= 39, out
    assert len({x.split("phase now: ")[1].split()[0] for x in progress}) > 1  # the phase changed
    widths = [len(x) for x in progress]
    assert widths == sorted(widths), widths
    assert len(set(len(x.rstrip()) for x in progress)) > 1  # some were shorter than before


def test_classify_ends_at_max_trains_and_on_a_quiet_bridge(fitted, bridge, tmp_path, capsys):
    clf, _ = fitted
    model = clf.save(tmp_path / "model")
    X = make_transition_series(n_spectra=24, n_points=clf.n_features_in_, random_state=2).X
    src, key = "SPB_TEST/PROC/SPECTRA:output", "data.intensity"
    for i in range(6):
        bridge.feed({src: {key: X[4 * i:4 * i + 4]}}, {src: {"timestamp.tid": 200 + i}})
    base = ["spectra", "classify", "--model", str(model), "--source", bridge.endpoint,
            "--key", key, "--interval", "1000", "--overflow", "block"]
    assert main(base + ["--max-trains", "4"]) == 0
    out = capsys.readouterr().out
    assert "received 4 trains 4 spectra 16 malformed 0 dropped 0" in out
    # the 2 trains left, then silence: one reconnection, then a clear error
    assert main(base + ["--timeout", "0.2", "--max-reconnects", "1"]) == 2
    cap = capsys.readouterr()
    assert "received 2 trains 2 spectra 8" in cap.out and "reconnects 1" in cap.out
    assert "stopped answering" in cap.err and "reconnected 1 time (2 trains received)" in cap.err
    assert "Traceback" not in cap.err
    # silent from the start: nothing classified, and said so
    assert main(base + ["--timeout", "0.2", "--max-reconnects", "0"]) == 2
    cap = capsys.readouterr()
    assert "labels: none: no spectrum classified" in cap.out and "ambiguous=" not in cap.out
    assert "reconnected 0 times (0 trains received)" in cap.err
    with pytest.raises(SystemExit):
        main(base + ["--max-reconnects", "-1"])
    assert "expected a whole number >= 0 or 'forever'" in capsys.readouterr().err


def test_trains_without_an_id_are_said_so(fitted, intensity_series, bridge, tmp_path, capsys):
    """A bridge whose messages carry no ``timestamp.tid``: its trains are
    "(no id)" in what is printed and ``None`` in the phases read back, not
    the file's marker for them."""
    from server_ext.spectra import read_results

    clf, _ = fitted
    model = clf.save(tmp_path / "model")
    X = intensity_series.X
    predicted = clf.predict(X)
    first, second = clf.classes_
    src, key = "SPB_TEST/PROC/SPECTRA:output", "data.intensity"
    for i, (tid, label) in enumerate(((None, first), (None, first), (300, second), (301, second))):
        meta = {"source": src} if tid is None else {"source": src, "timestamp.tid": tid}
        bridge.feed({src: {key: X[predicted == label][4 * i:4 * i + 4]}}, {src: meta})
    out_file = tmp_path / "no-ids.h5"
    assert main(["spectra", "classify", "--model", str(model), "--source", bridge.endpoint,
                 "--key", key, "--interval", "0", "--overflow", "block", "--max-trains", "4",
                 "-o", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert f"phases by train: (no id)-(no id) {first}, 300-301 {second}\n" in out, out
    assert f"phase now: {first} since train (no id) (1 train, run 1)" in out, out
    assert f"phase now: {second} since train 300 (2 trains, run 2)" in out, out
    assert "18446744073709551615" not in out and "train None" not in out
    progress = [line.split(":")[0] for line in out.splitlines() if line.startswith("train ")]
    assert progress == ["train (no id)"] * 2 + ["train 300", "train 301"], out
    assert read_results(out_file).phases() == [(None, None, str(first), 2), (300, 301, str(second), 2)]
    ids = tmp_path / "first.csv"
    assert main(["spectra", "results", str(out_file), "--label", str(first), "--ids", str(ids)]) == 0
    assert ids.read_text() == "train_id,pulse\n" + ",0\n,1\n,2\n,3\n" * 2  # as in --phases
    capsys.readouterr()
    assert main(["spectra", "results", str(out_file), "--label", str(second)]) == 0
    out = capsys.readouterr().out
    assert "16 pulses classified in 4 trains ((no id) to 301)" in out, out
    assert f"  trains (no id)-(no id) (2): {first}\n  trains 300-301 (2): {second}\n" in out, out
    assert "selected (label " + str(second) + "): 8 pulses in 2 trains, 300 to 301" in out, out


def test_train_says_what_fit_found(shift_signal_fitted, fitted):
    """The lines after the bins: the pair told apart by position (A / A'
    of the shift series: labels 0 and 2), and the alignment "auto" weighed
    and took on the intensity series (no class pair separated worse)."""
    from server_ext.spectra.findings import findings

    shift, _ = shift_signal_fitted
    position, hint, alignment = findings(shift, retrain="train again with --position-nuisance")
    assert position == "classes told apart by peak position: 0/2"
    assert "--position-nuisance" in hint and alignment == "strain alignment: off"
    assert "train again with learn_position=False)" in list(findings(shift))[1]
    intensity, _ = fitted
    position, alignment = findings(intensity)
    assert position.endswith(": none")
    # two classes, one pair: its change, not "by +0.060 to +0.060"
    assert re.fullmatch(r"strain alignment: on \(weighed on held-out copies: aligning changes the class "
                        r"pair's separability by [+-]\d\.\d{3}\)", alignment), alignment


def test_train_from_a_file_with_masked_points(nexus_file, tmp_path, capsys):
    """A detector's masked points, NaN in every spectrum of the file, are
    bridged and said; a NaN in one labelled spectrum only is a clear error
    and no model is written."""
    path, s = nexus_file
    X = s.X.astype(np.float64)
    X[:, [300, 301, 302, 900]] = np.nan
    masked = tmp_path / "masked.nxs"
    with h5py.File(masked, "w") as f:
        f["intensity"] = X
    train = ["spectra", "train", str(masked), "--labels", "low=0:25", "high=95:120", "-o"]
    assert main(train + [str(tmp_path / "m")]) == 0
    assert "(bridged over in every spectrum): points 300-302, 900" in capsys.readouterr().out
    with h5py.File(masked, "a") as f:
        f["intensity"][100, 10] = np.nan  # the 31st labelled spectrum: "high" from row 95
    assert main(train + [str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err
    assert "1 labelled spectra contain NaN or inf at points that other labelled spectra read " \
        "(rows [30], points [10])" in err
    assert err.rstrip().endswith("-- in masked.nxs: /intensity rows [100]")
    assert not (tmp_path / "m2").exists()


def test_a_flat_spectrum_of_a_run_is_named_by_train_and_pulse(tmp_path, capsys):
    """Errors about labelled spectra name where they are in the run, not
    only their place among the spectra loaded."""
    info = write_demo_run(tmp_path / "run", n_trains=20, pulses_per_train=3, n_points=600)
    (lo0, lo1), (hi0, hi1) = info["labels"]["low"], info["labels"]["high"]
    for path in (tmp_path / "run").rglob("*.h5"):
        with h5py.File(path, "a") as f:
            tids = f["INDEX/trainId"][()]
            data = f.get(f"INSTRUMENT/{info['source']}/{info['key'].replace('.', '/')}")
            if data is not None and lo0 + 1 in tids:
                first = int(f[f"INDEX/{info['source']}/{info['key'].split('.')[0]}/first"][
                    int(np.flatnonzero(tids == lo0 + 1)[0])])
                data[first + 2] = 0.0  # pulse 2 of the second "low" train: a dropout
    assert main(["spectra", "train", info["path"], "--source", info["source"], "--key",
                 info["key"], "--labels", f"low={lo0}:{lo1}", f"high={hi0}:{hi1}",
                 "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "1 labelled spectra are flat" in err
    assert f"train {lo0 + 1} pulse 2" in err and not (tmp_path / "m").exists()


def test_classify_bridges_points_masked_since_training(fitted, bridge, tmp_path, capsys):
    """Spectra NaN at points the model reads are counted malformed, with the
    remedy said; --mask-points bridges them; a bad list is a clear error."""
    clf, _ = fitted
    model = clf.save(tmp_path / "model")
    X = make_transition_series(n_spectra=16, n_points=clf.n_features_in_, random_state=2).X
    X = X.astype(np.float64)
    X[:, [300, 301, 302]] = np.nan
    src, key = "SPB_TEST/PROC/SPECTRA:output", "data.intensity"
    for i in range(4):
        bridge.feed({src: {key: X[4 * i:4 * i + 4]}}, {src: {"timestamp.tid": 300 + i}})
    base = ["spectra", "classify", "--model", str(model), "--source", bridge.endpoint,
            "--key", key, "--interval", "1000", "--overflow", "block", "--max-trains", "2"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "trains 2 spectra 0 malformed 8" in out
    assert "malformed 8 spectra: points 300-302 NaN or inf in every one with NaN or inf " \
        "(of the last train with such); if the detector masks them since training: " \
        "--mask-points 300-302" in out
    assert main(base + ["--mask-points", "300-302"]) == 0
    out = capsys.readouterr().out
    assert "masked since training (bridged over in every spectrum): points 300-302" in out
    assert "trains 2 spectra 8 malformed 0" in out and "--mask-points" not in out.split(
        "points 300-302")[1]
    for wrong, message in (("300-x", "give point indices and ranges"),
                           ("302-300", "the range 302-300 runs backwards"),
                           ("0-99999999999", "holds more points than any spectrum"),
                           (f"{clf.n_features_in_}", "lie outside the spectra's points")):
        assert main(base + ["--mask-points", wrong]) == 2
        assert message in capsys.readouterr().err


def test_classify_reads_spectra_on_the_detectors_axis(fitted, bridge, tmp_path, capsys):
    """Spectra on a coarser grid than the model's: every one malformed as
    they come; with --axis (a text file, a .npy file or an HDF5 dataset of
    the detector's positions) classified as predict does through that axis.
    An axis that cannot be read through is refused before the bridge is
    read, saying why."""
    clf, _ = fitted
    model = clf.save(tmp_path / "model")
    s = make_transition_series(n_spectra=16, n_points=700, kind="intensity", random_state=2)
    src, key = "SPB_TEST/PROC/SPECTRA:output", "data.intensity"
    np.savetxt(tmp_path / "axis.txt", s.axis)
    np.save(tmp_path / "axis.npy", s.axis)
    with h5py.File(tmp_path / "calibration.h5", "w") as f:
        f["detector/two_theta"] = s.axis
        f["detector/table"] = np.stack([s.axis, s.axis])
    base = ["spectra", "classify", "--model", str(model), "--source", bridge.endpoint,
            "--key", key, "--interval", "1000", "--overflow", "block", "--max-trains", "2"]
    expected = dict(zip(*np.unique(clf.predict(s.X[:8], axis=s.axis), return_counts=True)))
    for i, axis in enumerate((None, "axis.txt", "axis.npy", "calibration.h5:/detector/two_theta")):
        for j in range(2):
            bridge.feed({src: {key: s.X[4 * j:4 * j + 4]}}, {src: {"timestamp.tid": 400 + 2 * i + j}})
        assert main(base + ([] if axis is None else ["--axis", str(tmp_path / axis)])) == 0
        out = capsys.readouterr().out
        if axis is None:
            assert "trains 2 spectra 0 malformed 8" in out
            continue
        assert f"spectra of 700 points on the axis of {tmp_path / axis} (10 to 90), " \
               f"interpolated at the model's {clf.n_features_in_} positions" in out
        assert "trains 2 spectra 8 malformed 0" in out
        assert "labels: " + ", ".join(f"{k}={v}" for k, v in sorted(expected.items(), key=str)) in out
    np.savetxt(tmp_path / "narrow.txt", np.linspace(20, 90, 700))
    (tmp_path / "words.txt").write_text("ten\neleven\n")
    for axis, message in (("narrow.txt", "the spectra's axis runs from 20 to 90; the model reads 10"),
                          ("words.txt", "cannot read"),
                          ("missing.txt", "does not exist"),
                          ("calibration.h5", "has no NeXus default data with an axis; name the axis "
                                             "dataset (FILE:/DATASET)"),
                          ("calibration.h5:/detector/table", "has shape (2, 700)"),
                          ("calibration.h5:/detector", "is a group, not a dataset"),
                          ("axis.txt:/two_theta", "is not an HDF5 file")):
        assert main(base + ["--axis", str(tmp_path / axis)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_train_from_a_run_keeps_its_axis(tmp_path, capsys):
    """--axis-key: the run's 2-theta (a control key, named as in Karabo)
    is kept with the model; without it, training says what is missing.
    Keys that are no axis, or a calibration changed within the labelled
    trains, are clear errors."""
    from server_ext.spectra import BinnedSpectraClassifier
    from server_ext.spectra.synthetic import DEMO_AXIS_SOURCE, DEMO_TEMPERATURE_SOURCE

    info = write_demo_run(tmp_path / "data", n_trains=40, pulses_per_train=3, n_points=600)
    (lo0, lo1), (hi0, hi1) = info["labels"]["low"], info["labels"]["high"]
    base = ["spectra", "train", info["path"], "--source", info["source"], "--key", info["key"],
            "--labels", f"low={lo0}:{lo1}", f"high={hi0}:{hi1}", "--n-bins", "4"]
    assert main(base + ["-o", str(tmp_path / "m"), "--axis-source", DEMO_AXIS_SOURCE,
                        "--axis-key", "twoTheta"]) == 0
    assert "no axis" not in capsys.readouterr().out
    model = BinnedSpectraClassifier.load(tmp_path / "m")
    np.testing.assert_array_equal(model.axis_, np.linspace(10.0, 90.0, 600))
    assert main(base + ["-o", str(tmp_path / "n")]) == 0
    assert "no axis: peak positions are point indices, so strain is modelled about point 0 -- " \
           "right only for an axis that starts near 0; to train with the spectra's axis, " \
           "--axis-dataset (a file) or --axis-key (a run)" in capsys.readouterr().out
    assert BinnedSpectraClassifier.load(tmp_path / "n").axis_ is None
    run_file = next((tmp_path / "data" / "r0001").glob("*.h5"))
    with h5py.File(run_file, "a") as f:  # recalibrated at the last high train
        f[f"CONTROL/{DEMO_AXIS_SOURCE}/twoTheta/value"][hi1 - info["first_train"] - 1] += 0.01
    for extra, message in (
            (["--axis-key", "data.intensity"], f"the axis {info['source']} data.intensity holds 3 "
                                               "arrays in a train (one per pulse?)"),
            (["--axis-source", DEMO_TEMPERATURE_SOURCE, "--axis-key", "temperature"],
             "holds one number per train; it needs one number per point"),
            (["--axis-source", DEMO_AXIS_SOURCE, "--axis-key", "nothing"], "key 'nothing' is not in"),
            (["--axis-source", DEMO_AXIS_SOURCE, "--axis-key", "twoTheta"],
             f"changes within the trains labelled (train {hi1 - 1} differs from train {lo0}): "
             "label trains of one calibration"),
            (["--axis-dataset", "/two_theta"], "a run keeps its axis in a key, not a dataset")):
        assert main(base + ["-o", str(tmp_path / "x")] + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()


def test_classify_reads_each_train_through_the_axis_sent_with_it(fitted, tmp_path, capsys):
    """--axis-key: a run replayed whose 2-theta is kept per train, on
    another grid than the model's; a train recalibrated out of the model's
    range is rejected whole and named at the end."""
    from server_ext.spectra.synthetic import DEMO_AXIS_SOURCE

    clf, _ = fitted
    model = clf.save(tmp_path / "model")
    info = write_demo_run(tmp_path / "data", n_trains=5, pulses_per_train=3, n_points=800)
    (run_file,) = (tmp_path / "data" / "r0001").glob("*.h5")
    with h5py.File(run_file, "a") as f:
        f[f"CONTROL/{DEMO_AXIS_SOURCE}/twoTheta/value"][3] = np.linspace(30, 90, 800)
        X = f[f"INSTRUMENT/{info['source']}/data/intensity"][()]
    axis = np.linspace(10.0, 90.0, 800)
    read = np.delete(np.arange(15), np.arange(9, 12))  # train 3's pulses
    expected = dict(zip(*np.unique(clf.predict(X[read], axis=axis), return_counts=True)))
    base = ["spectra", "classify", "--model", str(model), "--run", info["path"],
            "--source-name", info["source"], "--key", info["key"], "--interval", "1000"]
    assert main(base + ["--axis-key", "twoTheta", "--axis-source", DEMO_AXIS_SOURCE]) == 0
    out = capsys.readouterr().out
    assert "trains 5 spectra 12 malformed 3" in out
    assert (f"rejected 1 trains whole (their spectra counted malformed): their axis could not be "
            f"read through; the last, train {info['first_train'] + 3}: the spectra's axis runs "
            "from 30 to 90; the model reads 10 to 90") in out
    assert "NaN or inf at points the model reads" not in out
    assert "labels: " + ", ".join(f"{k}={v}" for k, v in sorted(expected.items(), key=str)) in out
    for extra, message in (
            (["--axis-key", "twoTheta", "--axis", str(tmp_path / "a.txt")],
             "from a file (--axis) or with each train (--axis-key), not both"),
            (["--axis-source", DEMO_AXIS_SOURCE], "--axis-source names where --axis-key is"),
            (["--axis-key", "twoTheta"], f"key 'twoTheta' is not in '{info['source']}'")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_classify_keeps_every_pulses_result_in_a_file(fitted, tmp_path, capsys):
    """-o: a replayed run's labels, confidence and ambiguity pulse by pulse
    and each train's counts, as predict gives them; an existing file is
    kept and refused, a directory that cannot be written said so."""
    import json

    clf, _ = fitted
    model = clf.save(tmp_path / "model")
    info = write_demo_run(tmp_path / "data", n_trains=6, pulses_per_train=5, n_points=2010)
    (run_file,) = (tmp_path / "data" / "r0001").glob("*.h5")
    with h5py.File(run_file, "a") as f:
        spectra = f[f"INSTRUMENT/{info['source']}/data/intensity"]
        spectra[7] = np.nan  # train 1, pulse 2
        X = spectra[()]
    out_file = tmp_path / "labels.h5"
    base = ["spectra", "classify", "--model", str(model), "--run", info["path"],
            "--source-name", info["source"], "--key", info["key"], "--interval", "1000"]
    assert main(base + ["-o", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert f"results of 29 pulses in 6 trains: {out_file} (finished)" in out
    classify_phases = out.split("phases by train: ")[1].splitlines()[0]
    assert "malformed 1 spectra: NaN or inf at points the model reads (or at every point: a pulse " \
           "without data)" in out and "--mask-points 0-" not in out
    ok = np.delete(np.arange(30), 7)
    labels, confidence, ambiguous = clf.predict_with_confidence(X[ok])
    with h5py.File(out_file, "r") as f:
        assert f.attrs["state"] == "finished" and f.attrs["model"] == str(model)
        assert f.attrs["source"] == info["path"] and f.attrs["key"] == info["key"]
        assert json.loads(f.attrs["stats"])["malformed"] == 1
        classes = f["classes"].asstr()[()]
        np.testing.assert_array_equal(classes[f["pulses/label"][()]].astype(clf.classes_.dtype), labels)
        # to float32 rounding: the stream's batches are trains of 5, whose products BLAS may sum
        # otherwise than one batch of 29 (OpenBLAS's Haswell kernel on an AMD EPYC: 1 ulp apart)
        np.testing.assert_allclose(f["pulses/confidence"][()], confidence, rtol=1e-6)
        np.testing.assert_array_equal(f["pulses/ambiguous"][()], ambiguous)
        np.testing.assert_allclose(f["pulses/probability"][()], clf.predict_proba(X[ok]), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(f["pulses/pulse"][()], ok % 5)
        np.testing.assert_array_equal(f["pulses/train_id"][()], info["first_train"] + ok // 5)
        np.testing.assert_array_equal(f["trains/train_id"][()], info["first_train"] + np.arange(6))
        np.testing.assert_array_equal(f["trains/classified"][()], [5, 4, 5, 5, 5, 5])
        np.testing.assert_array_equal(f["trains/malformed"][()], [0, 1, 0, 0, 0, 0])
    before = out_file.read_bytes()
    for path, message in ((out_file, "labels.h5 exists; give another file for the results"),
                          (tmp_path / "nowhere" / "x.h5", "x.h5 for the results: No such file or "
                                                          "directory\n"),
                          (out_file / "x.h5", "x.h5 for the results: Not a directory\n")):
        assert main(base + ["-o", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert out_file.read_bytes() == before
    # --purity: the phases printed and kept as trains come; two classes at 0.5 are never mixed
    from server_ext.spectra import read_results
    from server_ext.spectra.results import phases_line

    half = tmp_path / "half.h5"
    assert main(base + ["--purity", "0.5", "-o", str(half)]) == 0
    printed = capsys.readouterr().out.split("phases by train: ")[1].splitlines()[0]
    assert printed == phases_line({"phases": [list(p) for p in read_results(half).phases(0.5)]})
    assert "mixed" not in printed and len(clf.classes_) == 2
    # read back at the stream's purity, kept in the file, unless told another
    for extra, share in (([], "50"), (["--purity", "0.9"], "90")):
        assert main(["spectra", "results", str(half), *extra]) == 0
        shown = capsys.readouterr().out
        assert f"phases by train (a class holding >= {share} % of a train's pulses)" in shown, shown
    assert _phases(shown) == {t: p for first, last, p, _ in read_results(half).phases(0.9)
                              for t in range(first, last + 1)}
    assert main(base + ["--purity", "1.5", "-o", str(tmp_path / "x.h5")]) == 2
    captured = capsys.readouterr()
    assert "--purity must be in (0, 1], not 1.5" in captured.err and not captured.out, captured
    assert not (tmp_path / "x.h5").exists()

    # read back: the counts, the phases by train, the pulses selected
    label = str(labels[-1])
    ids = tmp_path / "ids.csv"
    least = float(np.median(confidence[labels == labels[-1]]))  # selects about half of them
    assert main(["spectra", "results", str(out_file), "--label", label, "--min-confidence",
                 repr(least), "--ids", str(ids)]) == 0
    out = capsys.readouterr().out
    assert f"{out_file}: finished\n29 pulses classified in 6 trains ({info['first_train']} to " \
           f"{info['first_train'] + 5}), 1 spectra malformed; model {model}" in out
    for name in clf.classes_:
        assert f" {(labels == name).sum()} pulses (" in out
    phases = _phases(out)
    runs = read_results(out_file).phases()
    assert classify_phases == ", ".join(f"{a}-{b} {p}" if n > 1 else f"{a} {p}" for a, b, p, n in runs)
    per_train = np.split(labels, np.cumsum([5, 4, 5, 5, 5]))
    for i, of_train in enumerate(per_train):
        values, counts = np.unique(of_train, return_counts=True)
        phase = values[counts.argmax()] if counts.max() >= 0.9 * len(of_train) else "mixed"
        assert phases[info["first_train"] + i] == str(phase), out
    chosen = (labels == labels[-1]) & (confidence >= least)
    assert 0 < chosen.sum() < (labels == labels[-1]).sum()
    assert f"selected (label {label}, confidence >= {least:g}): {chosen.sum()} pulses" in out
    assert ids.stat().st_mode & 0o777 == 0o666 & ~_umask()  # as a plain open() makes it
    rows = np.loadtxt(ids, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    np.testing.assert_array_equal(rows[:, 0], info["first_train"] + ok[chosen] // 5)
    np.testing.assert_array_equal(rows[:, 1], ok[chosen] % 5)
    written = ids.read_bytes()
    # read a train at a time: the same summary and list
    assert main(["spectra", "results", str(out_file), "--label", label, "--min-confidence",
                 repr(least), "--ids", str(tmp_path / "by-train.csv"), "--trains-per-block", "1"]) == 0
    assert capsys.readouterr().out.replace("by-train.csv", "ids.csv") == out
    assert (tmp_path / "by-train.csv").read_bytes() == written
    for extra, message in (([ "--label", "nothing"], "no class 'nothing' in"),
                           (["--label", label, "--ids", str(ids)], "ids.csv exists"),
                           (["--ids", str(tmp_path / "other.csv")], "--ids writes the selected"),
                           (["--purity", "0"], "--purity must be in (0, 1]")):  # --trains-per-block 0: argparse's
        assert main(["spectra", "results", str(out_file), *extra]) == 2
        captured = capsys.readouterr()
        assert message in captured.err and not captured.out, captured
    assert ids.read_bytes() == written and not (tmp_path / "other.csv").exists()
    assert not list(tmp_path.glob(".*.part"))  # the lists written aside are gone


def _phases(out):
    """{train_id: phase} from the 'phases by train' lines of 'results'."""
    lines = out.split("phases by train")[1].splitlines()[1:]
    phases = {}
    for line in lines:
        if not line.startswith("  train"):
            break
        where, phase = line.split(": ", 1)
        first, _, last = where.split()[1].partition("-")
        phases.update((t, phase) for t in range(int(first), int(last or first) + 1))
    return phases


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
