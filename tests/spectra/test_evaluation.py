"""``evaluate`` and ``daas spectra evaluate``: a model scored on labelled
spectra it was not trained on, counted as ``predict`` labels them."""

import csv
import json

import numpy as np
import pytest

from hub_ext.cli import main
from server_ext.spectra import SpectraError, evaluate
from server_ext.spectra.datafiles import labelled_from
from server_ext.spectra.evaluation import trained_here
from server_ext.spectra.findings import axis_span
from server_ext.spectra.synthetic import write_demo_run


def _held_out(fitted, intensity_series):
    clf, train = fitted
    s = intensity_series
    rest = np.setdiff1d(np.arange(len(s.X)), train)
    X = s.X[rest].astype(np.float64)
    X[5] = np.nan  # unreadable
    X[6, 100] = np.inf
    X[len(X) - 3] = 7.0  # flat: no signal
    return clf, X, s.y[rest], s.axis


def test_the_counts_are_what_predict_says(fitted, intensity_series):
    clf, X, y, axis = _held_out(fitted, intensity_series)
    bad = [5, 6, len(X) - 3]
    good = np.setdiff1d(np.arange(len(X)), bad)
    labels, _, flagged = clf.predict_with_confidence(X[good])
    k = len(clf.classes_)
    want = np.zeros((k, k), int)
    want_ambiguous = np.zeros((k, k), int)
    for t, p, a in zip(y[good], labels, flagged):
        want[t, p] += 1
        want_ambiguous[t, p] += a
    votes = clf.bin_proba(X[good]).argmax(2)
    for chunk in (7, 100, 10_000):  # the same counts whatever the chunks
        e = evaluate(clf, X, y, chunk=chunk)
        np.testing.assert_array_equal(e.confusion, want)
        np.testing.assert_array_equal(e.ambiguous, want_ambiguous)
        np.testing.assert_array_equal(e.unread, np.bincount(y[bad], minlength=k))
        np.testing.assert_allclose(e.bin_accuracy, (votes == y[good]).mean(1))
        assert e.scored == len(good) and e.correct == int((labels == y[good]).sum())
        assert e.accuracy == pytest.approx((labels == y[good]).mean())
        sure = ~flagged
        assert e.unambiguous_accuracy == pytest.approx((labels[sure] == y[good][sure]).mean())
    np.testing.assert_array_equal(e.bin_accuracy_at_training, clf.separability_)
    r = e.report()
    assert r["spectra"] == len(X) and r["unread"] == 3 and r["scored"] == len(good)
    assert r["ambiguous"] == int(flagged.sum())
    assert r["ambiguous_errors"] == int((flagged & (labels != y[good])).sum())
    for i, name in enumerate(r["classes"]):
        c = r["per_class"][name]
        assert c["labelled"] == int((y[good] == i).sum())
        assert c["predicted"] == int((labels == i).sum())
        assert c["recall"] == pytest.approx(((labels == i) & (y[good] == i)).sum() / c["labelled"])
    json.dumps(r)  # JSON types only


def test_spectra_on_another_axis_are_read_through_it(fitted, intensity_series):
    """On a finer grid than the model's: counted as ``predict(X, axis=)``
    labels them, each bin's vote read through the axis too."""
    clf, X, y, axis = _held_out(fitted, intensity_series)
    X, y = X[10:60], y[10:60]
    fine = np.linspace(axis[0], axis[-1], 2 * len(axis) - 1)
    X2 = np.stack([np.interp(fine, axis, row) for row in X])
    e = evaluate(clf, X2, y, axis=fine)
    labels = clf.predict(X2, axis=fine)
    assert e.correct == int((labels == y).sum()) and e.scored == len(y)
    votes = clf.bin_proba(X2, axis=fine).argmax(2)
    np.testing.assert_allclose(e.bin_accuracy, (votes == y).mean(1))
    np.testing.assert_allclose(clf.bin_proba(X2, axis=fine),
                               clf.bin_proba(np.stack([np.interp(axis, fine, r) for r in X2])),
                               atol=1e-5)


def test_bad_labels_are_refused(fitted, intensity_series):
    clf, X, y, _ = _held_out(fitted, intensity_series)
    with pytest.raises(SpectraError, match="labels not among the model's classes: 7 .its classes: 0, 1"):
        evaluate(clf, X[:3], np.array([0, 7, 1]))
    with pytest.raises(SpectraError, match="3 spectra need as many labels"):
        evaluate(clf, X[:3], y[:2])
    with pytest.raises(SpectraError, match="no labelled spectra"):
        evaluate(clf, X[:0], y[:0])


def test_only_one_class_labelled_and_nothing_readable(fitted, intensity_series):
    clf, X, y, _ = _held_out(fitted, intensity_series)
    one = y == 1
    e = evaluate(clf, X[one][:20], y[one][:20])
    r = e.report()
    assert r["per_class"]["0"]["labelled"] == 0 and r["per_class"]["0"]["recall"] is None
    assert r["per_class"]["1"]["labelled"] + r["per_class"]["1"]["unread"] == 20
    e = evaluate(clf, np.full((4, X.shape[1]), np.nan), y[:4])
    r = e.report()
    assert r["scored"] == 0 and r["unread"] == 4 and r["accuracy"] is None
    assert all(b["accuracy"] is None for b in r["bins"])
    assert "accuracy - (0 of 0 spectra)" in e.lines()[0]


def test_a_bins_span_on_the_axis_reads_to_the_digits_its_width_needs():
    assert axis_span([27.2, 32.91]) == "27.20-32.91"  # 2-theta, degrees
    assert axis_span([1.2345, 1.3349]) == "1.234-1.335"  # q, 1/Angstrom
    assert axis_span([2.5, 2.45]) == "2.5000-2.4500"  # d-spacing, decreasing
    assert axis_span([7112.3, 7162.3]) == "7112.3-7162.3"  # energy, eV
    assert axis_span([-3.0, 4.0]) == "-3.00 to 4.00"  # not "-3.00-4.00"


def test_evaluate_a_model_from_the_command_line(tmp_path, capsys, write_nexus):
    """Trained on one series, scored on another measured alike: the text
    and ``--json`` carry the counts ``evaluate`` makes of the same spectra;
    a label the model does not know, a missing model: exit 2, said why."""
    from server_ext.spectra import BinnedSpectraClassifier
    from server_ext.spectra.synthetic import make_transition_series

    names = ["low", "high"]
    first = make_transition_series(n_spectra=120, n_points=1200, kind="both", random_state=4)
    later = make_transition_series(n_spectra=120, n_points=1200, kind="both", random_state=5)
    write_nexus(tmp_path / "first.nxs", first.X, first.axis, np.array(names)[first.y])
    write_nexus(tmp_path / "later.nxs", later.X, later.axis, np.array(names)[later.y])
    model = tmp_path / "model"
    assert main(["spectra", "train", str(tmp_path / "first.nxs"), "--labels", "@/entry/phase",
                 "-o", str(model)]) == 0
    capsys.readouterr()
    argv = ["spectra", "evaluate", "--model", str(model), str(tmp_path / "later.nxs"),
            "--labels", "@/entry/phase"]
    assert main(argv + ["--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    clf = BinnedSpectraClassifier.load(model)
    want = evaluate(clf, later.X, np.array(names)[later.y], axis=later.axis)
    assert r["confusion"] == want.confusion.tolist() and r["classes"] == ["high", "low"]
    assert r["spectra"] == 120 and r["accuracy"] == pytest.approx(want.accuracy)
    assert r["model"] == str(model) and r["data"] == str(tmp_path / "later.nxs")
    assert r["trained_here"] is None  # another file
    assert clf.trained_on_ == {"data": str(tmp_path / "first.nxs"), "labels": ["@/entry/phase"]}
    assert [b["points"] for b in r["bins"]] == clf.bins_.tolist()
    # where each bin lies on the model's axis (2-theta here): its first and last point
    assert [b["on_axis"] for b in r["bins"]] == [[later.axis[a], later.axis[b - 1]] for a, b in clf.bins_]
    assert main(argv + ["--max-per-class", "7", "--json"]) == 0  # a file's rows capped, as a run's
    capped = json.loads(capsys.readouterr().out)
    assert {c: v["labelled"] + v["unread"] for c, v in capped["per_class"].items()} == {"high": 7, "low": 7}

    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{model} on {tmp_path / 'later.nxs'}: 120 labelled spectra of 2 of its 2 classes"
    assert not any(line.startswith("note:") for line in out)
    assert out[1] == f"accuracy {100 * want.accuracy:.1f} % ({want.correct} of 120 spectra)"
    at = out.index("rows: labelled, columns: predicted")
    assert out[at + 1].split() == ["high", "low", "recall"]
    for i, name in enumerate(["high", "low"]):
        row = out[at + 2 + i].split()
        assert row[0] == name and [int(v) for v in row[1:3]] == want.confusion[i].tolist()
    at = next(i for i, line in enumerate(out) if line.startswith("bin (points)"))
    assert out[at].split() == ["bin", "(points)", "on", "the", "axis", "accuracy", "at", "training", "here",
                               "weight"]
    bins = out[at + 1:]
    assert [line.split()[0] for line in bins] == [f"{a}-{b}" for a, b in clf.bins_]
    assert [line.split()[1] for line in bins] == [axis_span(b["on_axis"]) for b in r["bins"]]
    assert [float(line.split()[2]) for line in bins] == pytest.approx(clf.separability_, abs=1e-3)

    # one class is enough to evaluate on; the file it was trained with is said to be so
    assert main(["spectra", "evaluate", "--model", str(model), str(tmp_path / "first.nxs"),
                 "--labels", "low=0:10"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(": 10 labelled spectra of 1 of its 2 classes")
    assert out[1] == ("note: the model was trained with labelled spectra of this same data (@/entry/phase): "
                      "those among these score as if held out, and are not")
    assert main(["spectra", "evaluate", "--model", str(model), str(tmp_path / "later.nxs"),
                 "--labels", "low=0:10", "hot=100:120"]) == 2
    assert "labels not among the model's classes: hot (its classes: high, low)" in capsys.readouterr().err
    assert main(["spectra", "evaluate", "--model", str(tmp_path / "none"),
                 str(tmp_path / "later.nxs"), "--labels", "low=0:10"]) == 2
    assert "not a saved spectra classifier" in capsys.readouterr().err


def test_points_masked_since_training_and_the_mistaken_spectra(tmp_path, capsys, write_nexus):
    """Two points NaN in every spectrum: none classified, the points named
    with the remedy; with ``--mask-points`` bridged, as ``mask_points``
    bridges them; ``--errors`` lists the spectra to look at, by row, and
    refuses a file that exists."""
    from server_ext.spectra import BinnedSpectraClassifier
    from server_ext.spectra.synthetic import make_transition_series

    names = ["low", "high"]
    first = make_transition_series(n_spectra=120, n_points=1200, kind="both", random_state=4)
    later = make_transition_series(n_spectra=120, n_points=1200, kind="both", random_state=6)
    X = later.X.astype(np.float64)
    X[:, [50, 51]] = np.nan
    X[7] = 0.0  # flat: never classified
    write_nexus(tmp_path / "first.nxs", first.X, first.axis, np.array(names)[first.y])
    write_nexus(tmp_path / "damaged.nxs", X, later.axis, np.array(names)[later.y])
    model = tmp_path / "model"
    assert main(["spectra", "train", str(tmp_path / "first.nxs"), "--labels", "@/entry/phase",
                 "-o", str(model)]) == 0
    argv = ["spectra", "evaluate", "--model", str(model), str(tmp_path / "damaged.nxs"),
            "--labels", "@/entry/phase"]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "accuracy - (0 of 0 spectra)" in out and "not counted above): 120" in out
    assert ("points 50-51 NaN or inf in every spectrum not classified; if the detector masks them since "
            "training: --mask-points 50-51") in out
    errors = tmp_path / "errors.csv"
    assert main(argv + ["--mask-points", "50-51", "--errors", str(errors), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    clf = BinnedSpectraClassifier.load(model).mask_points([50, 51])
    want = evaluate(clf, X, np.array(names)[later.y], axis=later.axis)
    assert r["confusion"] == want.confusion.tolist() and r["unread"] == 1
    with open(errors) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["row", "labelled", "predicted", "confidence", "ambiguous"]
    assert [int(row[0]) for row in rows[1:]] == want.mistaken.tolist() and 7 in want.mistaken
    for row in rows[1:]:
        i = int(row[0])
        assert row[1] == names[later.y[i]]
        assert row[2:] == (["", "", ""] if i == 7 else
                           [str(want.classes[want.predicted[i]]), f"{want.confidence[i]:.4f}",
                            str(int(want.flagged[i]))])
    assert main(argv + ["--errors", str(errors)]) == 2
    assert "errors.csv exists" in capsys.readouterr().err


def test_spectra_trained_with_are_named(tmp_path):
    """The same data and overlapping label ranges: how many rows (a file) or
    train ids (a run) were labelled for training too; else nothing."""
    f = tmp_path / "a.nxs"
    trained = labelled_from(f, ["low=0:20", "high=100:120"])
    assert trained == {"data": str(f), "labels": ["low=0:20", "high=100:120"]}
    assert trained_here(trained, labelled_from(f, ["low=10:30", "high=110:115"])) == (
        "15 of these labelled rows were labelled for training this model too (low=0:20 high=100:120): "
        "its accuracy on their spectra is not held-out")
    assert trained_here(trained, labelled_from(f, ["high=20:100"])) is None  # between them
    assert trained_here(trained, labelled_from(tmp_path / "b.nxs", ["low=0:20"])) is None
    assert trained_here(trained, labelled_from(f, ["low=0:20"], dataset="/other")) is None
    assert trained_here(None, labelled_from(f, ["low=0:20"])) is None  # a model saved before it
    assert trained_here(trained, labelled_from(f, ["@/phase"])).startswith(
        "the model was trained with labelled spectra of this same data (low=0:20 high=100:120)")
    run = labelled_from(tmp_path, ["a=5:9", "b=12:15"], source="SRC", key="data.x")
    assert run == {"data": str(tmp_path), "labels": ["a=5:9", "b=12:15"], "source": "SRC", "key": "data.x"}
    assert trained_here(run, labelled_from(tmp_path, ["a=0:100"], source="SRC", key="data.x")).startswith(
        "7 of these labelled train ids were labelled for training this model too")
    assert trained_here(run, labelled_from(tmp_path, ["a=0:100"], source="SRC", key="data.y")) is None


def test_evaluate_on_a_run(tmp_path, capsys):
    """A run's labelled trains, capped per class as training caps them."""
    info = write_demo_run(tmp_path, n_trains=40, pulses_per_train=3, n_points=1200)
    (lo0, lo1), (hi0, hi1) = info["labels"]["low"], info["labels"]["high"]
    labels = [f"low={lo0}:{lo1}", f"high={hi0}:{hi1}"]
    run = ["--source", info["source"], "--key", info["key"], "--labels", *labels]
    assert main(["spectra", "train", info["path"], *run, "-o", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert main(["spectra", "evaluate", "--model", str(tmp_path / "m"), info["path"], *run,
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["spectra"] == 3 * (lo1 - lo0 + hi1 - hi0)
    assert r["trained_here"].startswith(f"{lo1 - lo0 + hi1 - hi0} of these labelled train ids were labelled")
    assert main(["spectra", "evaluate", "--model", str(tmp_path / "m"), info["path"], *run,
                 "--max-per-class", "5", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["spectra"] == 10
    assert {c: v["labelled"] + v["unread"] for c, v in r["per_class"].items()} == {"high": 5, "low": 5}
    # the classes swapped: every spectrum mistaken, each placed by its train and pulse
    swapped = ["--labels", f"high={lo0}:{lo1}", f"low={hi0}:{hi1}"]
    errors = tmp_path / "errors.csv"
    assert main(["spectra", "evaluate", "--model", str(tmp_path / "m"), info["path"], "--source", info["source"],
                 "--key", info["key"], *swapped, "--errors", str(errors)]) == 0
    n = 3 * (lo1 - lo0 + hi1 - hi0)
    assert f"wrote the {n} spectra predicted otherwise than labelled" in capsys.readouterr().out
    with open(errors) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["train_id", "pulse", "labelled", "predicted", "confidence", "ambiguous"]
    places = {(int(t), int(p)) for t, p, *_ in rows[1:]}
    assert places == {(t, p) for t in [*range(lo0, lo1), *range(hi0, hi1)] for p in range(3)}
    assert all(row[2] != row[3] for row in rows[1:])


def test_the_errors_file_is_said_as_it_is():
    """``--errors`` with none mistaken leaves a header; one spectrum is one."""
    from server_ext.spectra.cli import _mistaken_written

    assert _mistaken_written(0, "e.csv") == "every spectrum was classified as labelled: e.csv holds the header only"
    assert _mistaken_written(1, "e.csv").startswith("wrote the 1 spectrum predicted otherwise than labelled")
    assert _mistaken_written(7, "e.csv").startswith("wrote the 7 spectra predicted otherwise than labelled")
