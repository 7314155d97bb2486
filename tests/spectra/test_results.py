"""A stream's results file: readable while written (SWMR), complete for
what was classified however the stream ends, saying how."""

import json
import re

import h5py
import numpy as np
import pytest

from server_ext.spectra import ResultsFile, SpectraError
from server_ext.spectra.results import NO_TRAIN_ID, phases_line
from server_ext.spectra.stream import TrainResult

CLASSES = np.array(["cubic", "tetragonal"])


def train(tid, labels, malformed=0):
    labels = np.asarray(labels, CLASSES.dtype)
    n = len(labels)
    return TrainResult(tid, np.arange(n), labels, np.linspace(0.5, 1, n).astype(np.float32),
                       np.arange(n) % 2 == 0, malformed, 0.001)


def test_a_reader_follows_the_results_as_they_are_flushed(tmp_path):
    path = tmp_path / "r.h5"
    writer = ResultsFile(path, CLASSES, about={"model": "m.spectra", "key": None}, flush_s=3600)
    writer.add(train(10, ["tetragonal", "cubic", "cubic"]))
    with h5py.File(path, "r", swmr=True) as reader:
        assert reader.attrs["state"] == "running" and reader.attrs["model"] == "m.spectra"
        assert "key" not in reader.attrs  # what is unknown is left out
        labels = reader["pulses/label"]
        assert labels.shape == (0,)  # not flushed yet
        assert reader["trains_written"][0] == 0
        writer.flush()
        labels.refresh()
        reader["trains_written"].refresh()
        assert labels[()].tolist() == [1, 0, 0] and reader["trains_written"][0] == 1
        writer.add(train(None, [], malformed=4))  # a train without an id, all rejected
        writer.flush()
        trains = reader["trains/train_id"]
        trains.refresh()
        assert trains[()].tolist() == [10, trains.attrs["missing"]]
    writer.close("stopped", stats={"trains": 2})
    with h5py.File(path, "r") as f:
        assert f.attrs["state"] == "stopped" and json.loads(f.attrs["stats"]) == {"trains": 2}
        assert f["trains/malformed"][()].tolist() == [0, 4]
        assert f["pulses/ambiguous"][()].tolist() == [True, False, True]
        # results made without probabilities: NaN, one column per class
        assert f["pulses/probability"].shape == (3, 2) and np.isnan(f["pulses/probability"][()]).all()


def test_a_reader_reads_the_trains_written_whole_only(tmp_path):
    """A SWMR reader may see a flush's new rows before their values (zeros):
    read_results stops at /trains_written, which the writer moves only once
    the rows are on disk."""
    from server_ext.spectra import read_results

    path = tmp_path / "r.h5"
    with ResultsFile(path, CLASSES) as writer:
        for tid in (5, 6, 7):
            writer.add(train(tid, ["cubic", "tetragonal"]))
    with h5py.File(path, "r+") as f:
        assert f["trains_written"][0] == 3
        f["trains_written"][0] = 2  # a live file as a reader may catch it: train 7's rows not yet whole
        f["trains/train_id"][2] = 0
    r = read_results(path)
    assert r.trains["train_id"].tolist() == [5, 6] and r.train_id.tolist() == [5, 5, 6, 6]
    assert r.phases() == [(5, 6, "mixed", 2)]


@pytest.mark.parametrize("exc, state, error", [(RuntimeError("bridge gone"), "failed", "bridge gone"),
                                               (KeyboardInterrupt(), "interrupted", None)])
def test_the_results_are_kept_however_the_stream_ends(tmp_path, exc, state, error):
    path = tmp_path / "r.h5"
    with pytest.raises(type(exc)):
        with ResultsFile(path, CLASSES) as writer:
            writer.add(train(1, ["cubic"] * 5))
            raise exc
    with h5py.File(path, "r") as f:
        assert f.attrs["state"] == state and f.attrs.get("error") == error
        assert f["pulses/train_id"][()].tolist() == [1] * 5
    with pytest.raises(SpectraError, match="exists; give another file"):
        ResultsFile(path, CLASSES)
    with pytest.raises(ValueError, match="state must be one of"):
        ResultsFile(tmp_path / "other.h5", CLASSES).close("done")


def test_a_stream_stopped_before_its_first_train_reads_as_such(tmp_path, capsys):
    from hub_ext.cli import main

    path = tmp_path / "r.h5"
    ResultsFile(path, CLASSES).close("stopped")
    assert main(["spectra", "results", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: stopped\n0 pulses classified in 0 trains, 0 spectra malformed\n"), out
    assert out.endswith("% of a train's pulses):\n  none: no train was classified\n"), out


def test_writing_stops_before_the_disk_is_full(tmp_path, monkeypatch):
    """HDF5 cannot finish a file once a write failed (unreadable after, the
    process may crash): writing stops while the disk still has room, with a
    clear error; the file stays readable with what came before, and says so."""
    import os

    from server_ext.spectra import results

    free = {"bytes": 1 << 30}
    real = os.statvfs

    def statvfs(path):
        disk = real(path)
        return os.statvfs_result((disk.f_bsize, 1, disk.f_blocks, free["bytes"], free["bytes"],
                                  *tuple(disk)[5:]))

    monkeypatch.setattr(results.os, "statvfs", statvfs)
    path = tmp_path / "r.h5"
    writer = ResultsFile(path, CLASSES, flush_s=0)
    writer.add(train(1, ["cubic"] * 3))
    writer.add(train(2, ["tetragonal"] * 2))
    free["bytes"] = results.RESERVE_BYTES  # less than the next flush would need above the reserve
    with pytest.raises(SpectraError, match=r"stopped writing the results to .*r\.h5: 64 MiB left on "
                                           r"its disk; it holds those of the 2 trains written before"):
        writer.add(train(3, ["cubic"] * 4))
    with pytest.raises(SpectraError, match="64 MiB left"):
        writer.add(train(4, ["cubic"]))  # nothing more is written
    writer.close("finished")  # the caller was told already
    with h5py.File(path, "r") as f:
        assert f.attrs["state"] == "failed" and "64 MiB left" in f.attrs["error"]
        assert f["trains/train_id"][()].tolist() == [1, 2]
        assert f["pulses/label"][()].tolist() == [0, 0, 0, 1, 1]


def test_hdf5_itself_failing_a_write_is_said_in_one_line(tmp_path):
    """Not a stand-in: a file-size limit makes HDF5's own write fail (EFBIG).
    The error names the reason, not HDF5's report of the time, descriptor and
    buffer address. In a child: the process may crash on exit after such a
    write, which is why writing stops while the disk still has room."""
    import subprocess
    import sys

    child = f"""
import os, resource, numpy as np
resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))
from server_ext.spectra import ResultsFile, SpectraError
from server_ext.spectra.stream import TrainResult
w = ResultsFile({str(tmp_path / "big.h5")!r}, np.array(["a", "b"]), flush_s=3600, compress=False)
rng = np.random.default_rng(0)
try:
    for tid in range(200):
        n = 2000
        w.add(TrainResult(tid, np.arange(n), rng.choice(["a", "b"], n), rng.random(n, np.float32),
                          np.zeros(n, bool), 0, 0.001))
        w.flush()
    print("no error")
except SpectraError as e:
    print("ERROR", e)
os._exit(0)
"""
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (f"ERROR writing the results to {tmp_path / 'big.h5'} failed (File too "
                                "large); HDF5 may have left it unreadable"), r.stdout


def test_what_came_before_a_silence_is_flushed_within_flush_s(tmp_path):
    """A source that falls silent (a bridge between runs): the trains that
    came before reach readers without waiting for the next one."""
    import time

    path = tmp_path / "r.h5"
    writer = ResultsFile(path, CLASSES, flush_s=0.2)
    try:
        writer.add(train(7, ["cubic", "tetragonal"]))  # then nothing more
        with h5py.File(path, "r", swmr=True) as reader:
            # followed as a reader must: the rows up to the count are whole, and those only
            # (a new row may show before its value, as 0: this test failed so once)
            written, trains = reader["trains_written"], reader["trains/train_id"]
            deadline = time.monotonic() + 30
            while written[0] == 0:
                assert time.monotonic() < deadline, "not flushed within 30 s"
                time.sleep(0.05)
                written.refresh()
            trains.refresh()
            assert written[0] == 1 and trains[()].tolist() == [7]
    finally:
        writer.close("stopped")
    assert not writer._flusher.is_alive()


def test_closing_waits_a_bounded_time_for_a_stalled_write(tmp_path, monkeypatch):
    """A write that does not return (a stalled file system): close() fails
    after JOIN_S, saying so, instead of hanging."""
    import threading
    import time

    from server_ext.spectra import results

    monkeypatch.setattr(results, "JOIN_S", 0.5)
    writer = ResultsFile(tmp_path / "r.h5", CLASSES, flush_s=0.05)
    entered, release = threading.Event(), threading.Event()

    def stalled_flush():
        entered.set()
        release.wait(60)

    writer._flush = stalled_flush  # only the flusher thread calls it here
    writer._last_flush = time.monotonic() + 0.2  # add() leaves the flush to the flusher
    writer.add(train(1, ["cubic"]))
    try:
        assert entered.wait(30), "the flusher did not start its write"
        with pytest.raises(SpectraError, match=r"did not finish a write within 0\.5 s"):
            writer.close("finished")
    finally:
        release.set()
    writer._flusher.join(30)
    assert not writer._flusher.is_alive()


def test_the_columns_are_compressed_and_read_back_unchanged(tmp_path):
    """A beamtime at 27,000 pulses/s keeps ~1 MB/s uncompressed: the
    columns are gzipped, any HDF5 reader reads them back as written."""
    rng = np.random.default_rng(0)
    trains = []
    for tid in range(40):  # a phase transition halfway, as a stream sees one
        labels = CLASSES[(rng.random(2700) < (0.02 if tid < 20 else 0.98)).astype(int)]
        t = train(1_000_000 + tid, labels)
        t.probabilities = np.stack([t.confidence, 1 - t.confidence], axis=1)
        trains.append(t)
    sizes = {}
    for compress in (True, False):
        path = tmp_path / f"compress-{compress}.h5"
        with ResultsFile(path, CLASSES, flush_s=3600, compress=compress) as writer:
            for t in trains:
                writer.add(t)
        sizes[compress] = path.stat().st_size
        with h5py.File(path, "r") as f:
            assert f["pulses/label"].compression == ("gzip" if compress else None)
            assert f["pulses/label"][()].tolist() == [
                int(i) for t in trains for i in np.searchsorted(CLASSES, t.labels)]
            assert np.array_equal(f["pulses/probability"][()],
                                  np.concatenate([t.probabilities for t in trains]))
            assert f["pulses/train_id"][-1] == 1_000_039 and f["trains/classified"][0] == 2700
    assert sizes[True] < sizes[False] / 3, sizes


def _written(path, trains, about=None):
    with ResultsFile(path, CLASSES, about=about, flush_s=3600) as writer:
        for t in trains:
            writer.add(t)
    return path


def test_read_results_gives_back_the_pulses_and_the_phases_by_train(tmp_path):
    from server_ext.spectra import read_results

    trains = [train(100 + t, ["cubic"] * 10 if t < 3 else ["tetragonal"] * 9 + ["cubic"])
              for t in range(5)] + [train(105, ["tetragonal"] * 5 + ["cubic"] * 5),
                                    train(106, [], malformed=3)]
    r = read_results(_written(tmp_path / "r.h5", trains, about={"model": "m.spectra"}))
    assert r.state == "finished" and r.error is None and r.about["model"] == "m.spectra"
    assert r.classes[r.label].tolist() == [str(x) for t in trains for x in t.labels]
    assert r.train_id.tolist() == [t.train_id for t in trains for _ in t.pulses]
    assert r.trains["malformed"].tolist() == [0] * 6 + [3]
    assert r.phases() == [(100, 102, "cubic", 3), (103, 104, "tetragonal", 2),
                          (105, 105, "mixed", 1), (106, 106, "none classified", 1)]
    assert r.phases(purity=0.5)[2] == (105, 105, "cubic", 1)  # a tie: the first class
    sure = r.select("tetragonal", min_confidence=0.9, unambiguous=True)
    assert sure.tolist() == [t.labels[i] == "tetragonal" and t.confidence[i] >= 0.9
                             and not t.ambiguous[i] for t in trains for i in range(len(t.pulses))]
    with pytest.raises(SpectraError, match="no class 'hexagonal' in .*; its classes: cubic, "
                                           "tetragonal"):
        r.select("hexagonal")
    for percent in (90, -0.1, float("nan")):  # 90 for 90 % would select nothing, silently
        with pytest.raises(SpectraError, match=r"a confidence is from 0 to 1 \(0.9, not 90\), not "):
            r.select("tetragonal", min_confidence=percent)


def test_the_streams_purity_is_kept_and_read_back(tmp_path):
    """The phases a stream reported (its purity) are those read back by
    default; any other purity reads back too; a damaged purity is said so."""
    from server_ext.spectra import read_results

    path = tmp_path / "r.h5"
    with ResultsFile(path, CLASSES, flush_s=3600, purity=0.5) as writer:
        for tid, labels in enumerate((["cubic"] * 3, ["cubic", "cubic", "tetragonal"],
                                      ["tetragonal"] * 3)):
            writer.add(train(tid, labels))
        summary = writer.summary()
    r = read_results(path)
    assert r.purity == 0.5 and "purity" not in r.about
    assert [tuple(p) for p in summary["phases"]] == r.phases() == [(0, 1, "cubic", 2),
                                                                   (2, 2, "tetragonal", 1)]
    assert r.phases(0.9) == [(0, 0, "cubic", 1), (1, 1, "mixed", 1), (2, 2, "tetragonal", 1)]
    with pytest.raises(SpectraError, match="purity must be in"):
        ResultsFile(tmp_path / "never.h5", CLASSES, purity=0)
    assert not (tmp_path / "never.h5").exists()
    with h5py.File(path, "r+") as f:
        f.attrs["purity"] = "most"
    with pytest.raises(SpectraError, match="damaged: its purity attribute is 'most'"):
        read_results(path)


def test_read_results_of_numeric_classes(tmp_path):
    """Class names that do not sort as text (2 before 10) keep their phases."""
    from server_ext.spectra import read_results

    classes = np.array([2, 10])
    path = tmp_path / "r.h5"
    with ResultsFile(path, classes, flush_s=3600) as writer:
        writer.add(TrainResult(1, np.arange(3), np.array([10, 10, 10]), np.ones(3, np.float32),
                               np.zeros(3, bool), 0, 0.0))
        writer.add(TrainResult(2, np.arange(3), np.array([2, 2, 2]), np.ones(3, np.float32),
                               np.zeros(3, bool), 0, 0.0))
    r = read_results(path)
    assert r.phases() == [(1, 1, "10", 1), (2, 2, "2", 1)] and r.select(10).sum() == 3


def test_a_file_being_written_is_read_up_to_its_last_flush(tmp_path):
    from server_ext.spectra import read_results

    path = tmp_path / "r.h5"
    writer = ResultsFile(path, CLASSES, flush_s=3600)
    try:
        writer.add(train(1, ["cubic"] * 3))
        writer.flush()
        writer.add(train(2, ["tetragonal"] * 2))  # not flushed yet
        r = read_results(path)
        assert r.state == "running" and r.stats is None
        assert r.trains["train_id"].tolist() == [1] and r.label.tolist() == [0] * 3
    finally:
        writer.close("stopped", stats={"trains": 2})
    r = read_results(path)
    assert r.state == "stopped" and r.stats == {"trains": 2} and len(r.label) == 5


def test_pulses_written_before_their_train_are_left_out(tmp_path):
    """A flush extends the pulse columns, then the train columns: a reader
    in between sees pulses no train counts yet, and leaves them out."""
    from server_ext.spectra import read_results

    path = _written(tmp_path / "r.h5", [train(1, ["cubic"] * 3)])
    with h5py.File(path, "r+") as f:
        for name in f["pulses"]:
            d = f[f"pulses/{name}"]
            d.resize(d.shape[0] + 2, axis=0)
    r = read_results(path)
    assert len(r.label) == 3 and len(r.probability) == 3 and r.pulse.tolist() == [0, 1, 2]


def test_read_results_refuses_what_is_not_a_whole_results_file(tmp_path):
    from server_ext.spectra import read_results

    good = _written(tmp_path / "good.h5", [train(t, ["cubic"] * 100) for t in range(50)])
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "text.h5").write_text("not HDF5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    damaged = _written(tmp_path / "damaged.h5", [train(1, ["cubic"] * 3)])
    with h5py.File(damaged, "r+") as f:
        f["pulses/label"][0] = 7
    negative = _written(tmp_path / "negative.h5", [train(1, ["cubic"] * 3)])
    with h5py.File(negative, "r+") as f:
        f["pulses/label"][1] = -1
    with h5py.File(tmp_path / "numeric-classes.h5", "w") as f:  # every dataset, classes not text
        f["classes"] = np.arange(2)
        for g, cols in (("pulses", ("train_id", "pulse", "label", "confidence", "ambiguous",
                                    "probability")), ("trains", ("train_id", "classified",
                                                                 "malformed"))):
            for c in cols:
                f[f"{g}/{c}"] = np.zeros(0)
    short = _written(tmp_path / "short.h5", [train(1, ["cubic"] * 3)])
    with h5py.File(short, "r+") as f:
        f["pulses/confidence"].resize(2, axis=0)
    writer = ResultsFile(tmp_path / "live.h5", CLASSES, flush_s=3600)
    try:  # a copy cut short while its writer runs: marked open for writing
        writer.add(train(1, ["cubic"] * 5000))
        writer.flush()
        live = (tmp_path / "live.h5").read_bytes()
        (tmp_path / "live-cut.h5").write_bytes(live[: len(live) // 2])
    finally:
        writer.close("finished")
    for path, message in ((tmp_path / "missing.h5", "no results file .*missing.h5"),
                          (tmp_path / "live-cut.h5", r"it ends \d+ bytes before the end HDF5 "
                                                     "recorded"),
                          (truncated, "cannot read .*truncated.h5 as a results file"),
                          (tmp_path / "text.h5", "cannot read .*text.h5 as a results file"),
                          (tmp_path / "other.h5", "other.h5 is not a spectra results file "
                                                  r"\(no /classes\)"),
                          (damaged, "labels beyond its 2 classes: damaged"),
                          (negative, "labels beyond its 2 classes: damaged"),
                          (tmp_path / "numeric-classes.h5", "cannot read .*numeric-classes.h5 as "
                                                             "a results file"),
                          (short, r"fewer pulses than its trains count \(3\): damaged")):
        with pytest.raises(SpectraError, match=message):
            read_results(path)


def test_a_long_series_shows_where_it_began_and_where_it_is_now():
    """A stream's summary, sent with every train, names at most max_runs
    runs: the first and the latest, those between counted; a line made
    from it reads as one made from every run."""
    from server_ext.spectra.results import PhaseRuns

    runs = PhaseRuns(CLASSES)
    for tid in range(101):  # 101 runs of one train, each of the other class
        runs.add(tid, np.full(3, tid % 2))
    every = {"phases": [list(p) for p in runs.named()]}
    for max_runs in (1, 2, 3, 10, 50, 101, 200):
        summary = runs.summary(max_runs)
        head = min(101, (max_runs + 1) // 2 if max_runs < 101 else max_runs)
        assert summary["phases"][:head] == every["phases"][:head], max_runs
        assert summary["phases"][head:] == every["phases"][101 - (len(summary["phases"]) - head):]
        assert (len(summary["phases"]), summary["more_runs"]) == (min(max_runs, 101), max(0, 101 - max_runs))
        assert summary["more_runs_after"] == head and summary["trains"] == 101
        if max_runs > 1:
            assert summary["phases"][-1] == [100, 100, "cubic", 1]  # the run it is in now
        for shown in range(1, min(max_runs, 9) + 1):
            assert phases_line(summary, shown) == phases_line(every, shown), (max_runs, shown)
    assert phases_line(runs.summary(), 4) == "0 cubic, 1 tetragonal, (97 more runs), 99 tetragonal, 100 cubic"


def test_the_writer_keeps_the_phases_the_reader_finds(tmp_path):
    """The summary a stream reports at its end (ResultsFile.summary, built
    as trains are added) and the file read back agree."""
    from server_ext.spectra import read_results

    rng = np.random.default_rng(3)
    path = tmp_path / "r.h5"
    with ResultsFile(path, CLASSES, flush_s=3600) as writer:
        current = set()  # the run each train was in just after it was added (the live view)
        for tid in range(60):  # a noisy transition: runs of mixed trains between the phases
            share = min(1.0, max(0.0, (tid - 20) / 20))
            writer.add(train(tid, CLASSES[(rng.random(40) < share).astype(int)]))
            current.add(writer.phase_runs.current())
        writer.add(train(60, [], malformed=40))
        assert writer.phase_runs.current() == (60, 60, "none classified", 1)
        summary = writer.summary(max_runs=3)
    r = read_results(path)
    phases = r.phases()
    # where the series began and where it is now, those between counted
    assert [tuple(p) for p in summary["phases"]] == phases[:2] + phases[-1:] and len(phases) > 3
    assert (summary["more_runs"], summary["more_runs_after"]) == (len(phases) - 3, 2)
    assert len(phases) == 4 and phases_line(writer.summary(2), 6) == \
        f"0-{phases[0][1]} cubic, (2 more runs), 60 none classified"
    # the counts are every train's, not only those of the runs shown
    assert (summary["trains"], summary["pulses"]) == (61, 60 * 40)
    assert summary["trains"] == sum(p[3] for p in phases) and len(r.trains["train_id"]) == 61
    assert phases[0][0] == 0 and phases[0][2] == "cubic" and 20 <= phases[0][1] < 26
    assert phases[-2][2] == "tetragonal" and phases[-2][1] == 59
    assert phases[-1] == (60, 60, "none classified", 1)
    # each run's last state as the stream went is the run read back
    finals = {run for run in current if (run[0], run[1] + 1) not in {(r[0], r[1]) for r in current}}
    assert sorted(finals) == phases[:-1]
    assert summary["classes"] == {"cubic": int((r.label == 0).sum()),
                                  "tetragonal": int((r.label == 1).sum())}
    assert (summary["pulses"], summary["trains"]) == (len(r.label), 61)
    # read in blocks of 7 trains: the same pulses, the same phases across the blocks
    from server_ext.spectra.results import PhaseRuns
    from server_ext.spectra.results_reader import iter_results

    blocks = list(iter_results(path, trains_per_block=7))
    assert [len(b.trains["train_id"]) for b in blocks] == [7] * 8 + [5]
    for name in ("train_id", "pulse", "label", "confidence", "probability"):
        assert np.array_equal(np.concatenate([getattr(b, name) for b in blocks]), getattr(r, name),
                              equal_nan=name == "probability")
    runs = PhaseRuns(r.classes)
    for b in blocks:
        b.add_phases(runs)
    assert runs.named() == phases
    (empty,) = iter_results(_written(tmp_path / "empty.h5", []))
    assert len(empty.label) == 0 and empty.phases() == [] and empty.state == "finished"
    only = read_results(path, columns=("label",))
    assert only.confidence is None and only.train_id is None
    assert np.array_equal(only.label, r.label) and only.phases() == phases
    with pytest.raises(SpectraError, match=r"the pulses' 'confidence' were not read \(read_results"):
        only.select("cubic")
    with pytest.raises(SpectraError, match="no pulse column 'labels'; there are: train_id"):
        read_results(path, columns=("labels",))
    with pytest.raises(SpectraError, match=r"purity must be in \(0, 1\], not 1.5"):
        r.phases(1.5)


@pytest.mark.parametrize("per_block", ["1", "2", "1000"])
def test_a_train_id_delivered_again_counts_once_among_the_selected(tmp_path, capsys, per_block):
    """A bridge serving the same run twice: its train ids come again; the
    trains selected count each once whatever the blocks, and the repeat is
    said."""
    from hub_ext.cli import main

    path = tmp_path / "again.h5"
    with ResultsFile(path, CLASSES) as writer:
        for tid, labels in ((10, ["cubic", "cubic"]), (11, ["tetragonal", "tetragonal"]),
                            (12, ["cubic", "tetragonal"]), (10, ["cubic"]), (11, ["tetragonal"]),
                            (13, []), (None, ["cubic"]), (None, ["cubic"])):
            writer.add(train(tid, labels))
    assert main(["spectra", "results", str(path), "--label", "cubic",
                 "--trains-per-block", per_block]) == 0
    out = capsys.readouterr().out
    assert "10 pulses classified in 8 trains (10 to (no id)) (2 of them again: train ids " \
           "delivered before), 0 spectra malformed" in out, out
    # 10, 12 and the two trains without an id hold a cubic pulse; 10 came twice
    assert "selected (label cubic): 6 pulses in 4 trains, 10 to 12\n" in out, out


def test_every_run_of_trains_written_to_a_csv_file(tmp_path, capsys):
    """``--phases``: every run, not only those printed, as the reader finds
    them; a class name with a comma quoted, a train without an id an empty
    field; an existing file kept and refused."""
    import csv

    from hub_ext.cli import main
    from server_ext.spectra import read_results

    classes = np.array(["cubic", "tetragonal, distorted"])
    path = tmp_path / "runs.h5"
    with ResultsFile(path, classes) as writer:
        for tid in range(30):  # a run of each class every other train: 30 runs, more than printed
            writer.add(TrainResult(tid, np.arange(2), classes[[tid % 2] * 2], np.ones(2, np.float32),
                                   np.zeros(2, bool), 0, 0.001))
        writer.add(TrainResult(None, np.arange(1), classes[:1], np.ones(1, np.float32),
                               np.zeros(1, bool), 0, 0.001))
    out_csv = tmp_path / "phases.csv"
    assert main(["spectra", "results", str(path), "--phases", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert f"wrote the 31 runs of trains to {out_csv}" in out
    # the first and the latest 10 runs printed, those between counted
    listed = out.split("% of a train's pulses):\n")[1].splitlines()
    assert listed[:2] == ["  train 0: cubic", "  train 1: tetragonal, distorted"]
    assert listed[10] == "  ... 11 more runs of trains" and listed[11] == "  train 21: tetragonal, distorted"
    assert listed[20] == "  train (no id): cubic" and len(listed) == 22, listed
    assert main(["spectra", "results", str(path)]) == 0
    assert "  ... 11 more runs of trains (all: --phases OUT.csv)\n" in capsys.readouterr().out
    with open(out_csv, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["first_train", "last_train", "phase", "n_trains"]
    expected = [["" if a is None else str(a), "" if b is None else str(b), p, str(n)]
                for a, b, p, n in read_results(path).phases()]
    assert rows[1:] == expected and len(expected) == 31
    assert rows[2] == ["1", "1", "tetragonal, distorted", "1"] and rows[-1] == ["", "", "cubic", "1"]
    written = out_csv.read_bytes()
    for extra, message in ((["--phases", str(out_csv)], "phases.csv exists"),
                           (["--phases", str(tmp_path / "x.csv"), "--ids", str(tmp_path / "x.csv"),
                             "--label", "cubic"], "name the same file"),
                           (["--phases", str(tmp_path / "no" / "x.csv")], "cannot write")):
        assert main(["spectra", "results", str(path), *extra]) == 2
        captured = capsys.readouterr()
        assert message in captured.err and "Traceback" not in captured.err, captured.err
        assert not captured.out  # refused before anything is read
    assert out_csv.read_bytes() == written and not (tmp_path / "x.csv").exists()
    assert not list(tmp_path.glob(".*.part"))


def test_the_results_of_a_span_of_trains(tmp_path, capsys):
    """``--train-ids FIRST-LAST`` (``Results.between``): the counts, phases and
    selections of those trains only, however the file is read in blocks;
    a span holding none of the file's trains refused, naming those it has,
    with no list written."""
    import csv

    from hub_ext.cli import main
    from server_ext.spectra import read_results

    path = tmp_path / "r.h5"
    with ResultsFile(path, CLASSES) as writer:
        for tid in range(100, 160):  # cubic then tetragonal; then a train without an id
            writer.add(train(tid, CLASSES[[int(tid >= 130)] * (1 + tid % 3)]))
        writer.add(train(None, CLASSES[[0, 0]]))
    whole = read_results(path)
    part = whole.between(120, 139)
    assert list(part.trains["train_id"]) == list(range(120, 140))
    assert len(part.label) == sum(1 + t % 3 for t in range(120, 140)) == part.trains["classified"].sum()
    in_span = np.isin(whole.train_id, np.arange(120, 140))
    for column in ("train_id", "pulse", "label", "confidence", "ambiguous", "probability"):
        assert np.array_equal(getattr(part, column), getattr(whole, column)[in_span],
                              equal_nan=column == "probability"), column
    assert part.phases() == [(120, 129, "cubic", 10), (130, 139, "tetragonal", 10)]
    assert len(whole.between(135).trains["train_id"]) == 25 and len(whole.between(None, 105).label) == 12
    assert NO_TRAIN_ID not in whole.between().trains["train_id"]  # an open span: trains with an id

    for block in ("1", "7", "1000"):
        ids, phases = tmp_path / f"ids{block}.csv", tmp_path / f"phases{block}.csv"
        assert main(["spectra", "results", str(path), "--train-ids", "120-139", "--label", "tetragonal",
                     "--trains-per-block", block, "--ids", str(ids), "--phases", str(phases)]) == 0
        out = capsys.readouterr().out
        assert "trains 120-139 only: 41 trains of the file left out\n" in out, out
        pulses = len(part.label)
        assert f"{pulses} pulses classified in 20 trains (120 to 139)" in out, out
        assert "  trains 120-129 (10): cubic\n  trains 130-139 (10): tetragonal\n" in out
        chosen = part.select("tetragonal")
        assert f"selected (label tetragonal): {chosen.sum()} pulses in 10 trains, 130 to 139" in out
        with open(ids, newline="") as f:
            assert list(csv.reader(f))[1:] == [[str(t), str(p)] for t, p in
                                               zip(part.train_id[chosen], part.pulse[chosen])]
        with open(phases, newline="") as f:
            assert list(csv.reader(f))[1:] == [["120", "129", "cubic", "10"], ["130", "139", "tetragonal", "10"]]
    assert main(["spectra", "results", str(path), "--train-ids", "150"]) == 0
    assert "train 150 only: 60 trains of the file left out\n" in capsys.readouterr().out

    for span, message in (("200-300", "no train of .*r.h5 in trains 200-300: its 61 trains are 100 to 159"),
                          ("-99", "no train of .*r.h5 in trains up to 99: its 61 trains")):
        assert main(["spectra", "results", str(path), "--train-ids", span, "--phases", str(tmp_path / "x.csv")]) == 2
        captured = capsys.readouterr()
        assert re.search(message, captured.err) and "Traceback" not in captured.err, captured.err
        assert not captured.out and not (tmp_path / "x.csv").exists()
    assert not list(tmp_path.glob(".*.part"))
    for span in ("139-120", "x", "-", "1-2-3"):
        with pytest.raises(SystemExit):
            main(["spectra", "results", str(path), "--train-ids", span])
        assert "--train-ids" in capsys.readouterr().err


def test_the_summary_as_json(tmp_path, capsys):
    """``--json``: what the text says, for a script -- every run of trains,
    per class the pulses, mean confidence and ambiguous, the selection,
    the lists written; a train without an id null; nothing else printed."""
    from hub_ext.cli import main
    from server_ext.spectra import read_results

    path = tmp_path / "r.h5"
    with ResultsFile(path, CLASSES, about={"model": "m.spectra", "source": "tcp://bridge:4545"}) as writer:
        for tid in range(100, 130):
            writer.add(train(tid, CLASSES[[int(tid >= 112)] * (2 + tid % 3)]))
        writer.add(train(None, CLASSES[[0]]))
    whole = read_results(path)
    out_csv = tmp_path / "runs.csv"
    assert main(["spectra", "results", str(path), "--json", "--label", "tetragonal", "--min-confidence", "0.6",
                 "--phases", str(out_csv), "--trains-per-block", "7"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["phases"] == [list(p) for p in whole.phases()] == [[100, 111, "cubic", 12],
                                                                     [112, 129, "tetragonal", 18],
                                                                     [None, None, "cubic", 1]]
    for i, name in enumerate(CLASSES):
        mine = whole.label == i
        c = report["classes"][name]
        assert (c["pulses"], c["ambiguous"]) == (int(mine.sum()), int(whole.ambiguous[mine].sum()))
        assert c["mean_confidence"] == pytest.approx(float(whole.confidence[mine].mean()))
    assert (report["pulses"], report["trains"], report["distinct_trains"]) == (len(whole.label), 31, 31)
    assert (report["first_train"], report["last_train"], report["malformed"]) == (100, None, 0)
    assert report["state"] == "finished" and report["about"]["model"] == "m.spectra"
    chosen = whole.select("tetragonal", 0.6)
    assert report["selected"] == {"label": "tetragonal", "min_confidence": 0.6, "unambiguous": False,
                                  "pulses": int(chosen.sum()), "trains": 18, "first_train": 112, "last_train": 129}
    assert report["written"] == {"ids": None, "phases": str(out_csv)} and out_csv.exists()
    assert (report["train_ids"], report["left_out_trains"], report["purity"]) == (None, 0, 0.9)
    assert main(["spectra", "results", str(path), "--json", "--train-ids", "110-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["train_ids"], report["left_out_trains"], report["trains"]) == ([110, None], 11, 20)
    assert report["phases"] == [[110, 111, "cubic", 2], [112, 129, "tetragonal", 18]] and report["selected"] is None
