"""Training, model summary, prediction and streams (with several WebSocket viewers)."""

import json
import threading
import time

import h5py
import numpy as np
import pytest

from server_ext.extension.client import DaasClient

from .conftest import DEMO_KEY, DEMO_SOURCE, TOKEN, _train_ids, silent_bridge
from .openapi_check import check_message, check_response


def call(api, method, path, **kw):
    return check_response(api(method, path, **kw), path)


def test_trained_model_has_bins_separability_weights(api, trained_model):
    model = call(api, "GET", f"spectra/models/{trained_model['id']}").json()
    result = model["result"]
    assert sorted(result["classes"]) == ["after", "before"]
    assert len(result["bins"]) == len(result["separability"]) == len(result["weights"]) >= 1
    assert all(a < b for a, b in result["bins"])
    assert result["findings"][0].startswith("classes told apart by peak position: ")
    assert result["findings"][-1].startswith("strain alignment: ")
    assert model["progress"] == 1.0
    listed = call(api, "GET", "spectra/models").json()["models"]
    assert trained_model["id"] in [m["id"] for m in listed]


def test_the_same_labels_train_the_same_model(api, trained_model):
    """A request without a seed trains with random_state 0, as 'daas spectra train'
    does: trained again on the same labelled spectra, the model is the same."""
    params = {k: v for k, v in trained_model["options"]["params"].items() if k != "random_state"}
    r = call(api, "POST", "spectra/models", json={
        "data": "spectra-run", "labels": trained_model["options"]["labels"], "source": DEMO_SOURCE,
        "key": DEMO_KEY, "max_per_label": 64, "params": params})
    assert r.status_code == 202, r.text
    assert r.json()["options"]["params"] == {**params, "random_state": 0}  # the record says the seed
    again = api.wait(f"spectra/models/{r.json()['id']}")
    try:
        assert again["state"] == "done", again["error"]
        first, second = trained_model["result"], again["result"]
        assert second["bins"] == first["bins"]
        for key in ("separability", "weights"):
            np.testing.assert_allclose(second[key], first[key], rtol=1e-6, err_msg=key)
    finally:
        call(api, "DELETE", f"spectra/models/{again['id']}?remove=true")


def test_a_model_trained_on_a_run_keeps_the_runs_axis(api, trained_model, server_root):
    """axis_source/axis_key: the run's 2-theta kept with the model (a file on
    another grid is then classified through its axis); without them the
    summary says what is missing; a key that is no axis fails the job."""
    from server_ext.spectra.synthetic import DEMO_AXIS_SOURCE

    assert any(line.startswith("no axis: peak positions are point indices") and
               line.endswith("axis_dataset (a file) or axis_key (a run)")
               for line in trained_model["result"]["findings"])
    tids = _train_ids(server_root["root"] / "spectra-run")
    body = {"data": "spectra-run", "labels": [f"before={tids[0]}:{tids[30]}", f"after={tids[-30]}:{tids[-1] + 1}"],
            "source": DEMO_SOURCE, "key": DEMO_KEY, "axis_source": DEMO_AXIS_SOURCE, "axis_key": "twoTheta",
            "max_per_label": 64, "params": {"n_bins": 3, "epochs": 5, "random_state": 0, "cv_folds": 2}}
    r = call(api, "POST", "spectra/models", json=body)
    assert r.status_code == 202, r.text
    job, _ = api.long_poll(f"spectra/models/{r.json()['id']}")
    assert job["state"] == "done", job["error"]
    assert not any(line.startswith("no axis") for line in job["result"]["findings"])
    assert trained_model["result"]["bins_on_axis"] is None
    spans = job["result"]["bins_on_axis"]  # where each bin lies in 2-theta (10-90 degrees)
    assert len(spans) == len(job["result"]["bins"]) and all(10.0 <= lo < hi <= 90.0 for lo, hi in spans)
    X = _spectra(server_root)
    n = X.shape[1]
    coarse = np.linspace(10.0, 90.0, 700)
    with h5py.File(server_root["root"] / "processed" / "run-coarse.h5", "w") as f:
        f["spectra"] = np.stack([np.interp(coarse, np.linspace(10.0, 90.0, n), row) for row in X])
        f["two_theta"] = coarse
        f["native"] = X
    path = f"spectra/models/{job['id']}/predict"
    native = call(api, "POST", path, json={"data": "processed/run-coarse.h5", "dataset": "/native"})
    r = call(api, "POST", path, json={"data": "processed/run-coarse.h5", "dataset": "/spectra",
                                      "axis_dataset": "/two_theta"})
    assert r.status_code == 200, r.text
    assert np.mean(np.array(r.json()["labels"]) == native.json()["labels"]) >= 0.9
    r = call(api, "POST", "spectra/models", json={**body, "axis_key": "nothing"})
    job, _ = api.long_poll(f"spectra/models/{r.json()['id']}")
    assert job["state"] == "failed" and "key 'nothing' is not in" in job["error"]


def _spectra(server_root, n_trains=2):
    from extra_data import RunDirectory

    run = RunDirectory(str(server_root["root"] / "spectra-run"))
    arr = run[DEMO_SOURCE, DEMO_KEY].select_trains(np.s_[:n_trains]).ndarray()
    return arr.reshape(-1, arr.shape[-1]).astype(np.float64)


def test_predict_a_file(api, trained_model, server_root):
    X = _spectra(server_root)
    with h5py.File(server_root["root"] / "processed" / "spectra.h5", "w") as f:
        f["spectra"] = X
    r = call(api, "POST", f"spectra/models/{trained_model['id']}/predict", json={"data": "processed/spectra.h5"})
    assert r.status_code == 200, r.text
    p = r.json()
    assert len(p["labels"]) == len(p["confidence"]) == len(p["ambiguous"]) == len(X)
    assert set(p["labels"]) <= {"before", "after"}
    # the first trains are before the transition
    assert p["labels"].count("before") > len(X) // 2
    # the counts, as 'daas spectra predict' prints them
    assert (p["spectra"], p["classified"], p["unread"], p["unread_rows"], p["unread_points"]) == (
        len(X), len(X), 0, [], None)
    for c in ("before", "after"):
        mine = [conf for label, conf in zip(p["labels"], p["confidence"]) if label == c]
        assert p["per_class"][c]["spectra"] == len(mine)
        assert p["per_class"][c]["mean_confidence"] == pytest.approx(np.mean(mine) if mine else None)
        assert p["per_class"][c]["ambiguous"] == sum(a for label, a in zip(p["labels"], p["ambiguous"])
                                                     if label == c)


def test_predict_classifies_what_it_can_and_counts_the_rest(api, trained_model, server_root):
    """A spectrum NaN at points the model reads and a flat one (a detector
    dropout) are not classified -- null, counted, named by row -- and the
    others are, as in a file without them."""
    X = _spectra(server_root)
    broken = X.copy()
    broken[3, 200:210] = np.nan
    broken[7] = 5.0
    for name, spectra in (("whole", X), ("broken", broken)):
        with h5py.File(server_root["root"] / "processed" / f"{name}.h5", "w") as f:
            f["spectra"] = spectra
    path = f"spectra/models/{trained_model['id']}/predict"
    whole = call(api, "POST", path, json={"data": "processed/whole.h5"}).json()
    r = call(api, "POST", path, json={"data": "processed/broken.h5"})
    assert r.status_code == 200, r.text
    p = r.json()
    assert (p["spectra"], p["classified"], p["unread"], p["unread_rows"]) == (len(X), len(X) - 2, 2, [3, 7])
    assert p["unread_points"] == list(range(200, 210))  # the only spectrum NaN: its points
    for i in (3, 7):
        assert p["labels"][i] is p["confidence"][i] is p["ambiguous"][i] is None
    keep = [i for i in range(len(X)) if i not in (3, 7)]
    assert [p["labels"][i] for i in keep] == [whole["labels"][i] for i in keep]
    assert [p["confidence"][i] for i in keep] == pytest.approx([whole["confidence"][i] for i in keep])


def test_predict_with_points_masked_since_training(api, trained_model, server_root):
    """Spectra NaN at points the model reads: none classified, the points
    named for mask_points; with them, bridged (what the points read is never
    used); points beyond the model's, or not indices, are refused."""
    X = _spectra(server_root)
    points = [100, 101, 500]
    for name, value in (("masked", np.nan), ("zeroed", 0.0)):
        Xm = X.copy()
        Xm[:, points] = value
        with h5py.File(server_root["root"] / "processed" / f"{name}.h5", "w") as f:
            f["spectra"] = Xm
    path = f"spectra/models/{trained_model['id']}/predict"
    r = call(api, "POST", path, json={"data": "processed/masked.h5"})
    assert r.status_code == 200, r.text
    assert (r.json()["classified"], r.json()["unread"], r.json()["unread_points"]) == (0, len(X), points)
    assert set(r.json()["labels"]) == {None}
    masked = call(api, "POST", path, json={"data": "processed/masked.h5", "mask_points": points})
    assert masked.status_code == 200, masked.text
    assert (masked.json()["classified"], masked.json()["unread_points"]) == (len(X), None)
    zeroed = call(api, "POST", path, json={"data": "processed/zeroed.h5", "mask_points": points})
    assert masked.json()["labels"] == zeroed.json()["labels"]
    assert masked.json()["confidence"] == zeroed.json()["confidence"]
    n_points = X.shape[1]
    for wrong, message in (([5, n_points], f"mask_points: points [{n_points}] lie outside the "
                                           f"model's spectra of {n_points} points"),
                           ([-1], "mask_points"), ("100", "mask_points"), ([1.5], "mask_points")):
        r = call(api, "POST", path, json={"data": "processed/masked.h5", "mask_points": wrong})
        assert r.status_code == 400 and message in r.json()["message"], r.text


@pytest.fixture(scope="module")
def axis_model(api, server_root):
    """A model trained on a NeXus file, which keeps its axis; the same
    spectra on a coarser grid in processed/coarse.h5, with that grid."""
    from server_ext.spectra.synthetic import make_transition_series

    s = make_transition_series(n_spectra=60, n_points=1200, kind="both", random_state=4)
    coarse = np.linspace(s.axis[0], s.axis[-1], 900)
    processed = server_root["root"] / "processed"
    with h5py.File(processed / "labelled.nxs", "w") as f:
        f.attrs["default"] = "entry"
        data = f.create_group("entry").create_group("data")
        f["entry"].attrs.update(NX_class="NXentry", default="data")
        data.attrs.update(NX_class="NXdata", signal="intensity", axes=[".", "two_theta"])
        data["intensity"], data["two_theta"] = s.X, s.axis
    with h5py.File(processed / "coarse.h5", "w") as f:
        f["spectra"] = np.stack([np.interp(coarse, s.axis, row) for row in s.X])
        f["two_theta"] = coarse
    r = call(api, "POST", "spectra/models", json={
        "data": "processed/labelled.nxs", "labels": ["low=0:15", "high=45:60"],
        "params": {"n_bins": 3, "epochs": 5, "random_state": 0, "cv_folds": 2}})
    assert r.status_code == 202, r.text
    job, _ = api.long_poll(f"spectra/models/{r.json()['id']}")
    assert job["state"] == "done", job["error"]
    return job


def test_predict_spectra_on_another_axis(api, trained_model, axis_model):
    """A file of the model's spectra on a coarser grid is classified through
    its axis dataset; not without it, nor by a model fitted without an axis."""
    path = f"spectra/models/{axis_model['id']}/predict"
    own = call(api, "POST", path, json={"data": "processed/labelled.nxs"}).json()["labels"]
    through = call(api, "POST", path, json={"data": "processed/coarse.h5", "dataset": "/spectra",
                                            "axis_dataset": "/two_theta"})
    assert through.status_code == 200, through.text
    assert np.mean(np.array(through.json()["labels"]) == own) >= 0.9
    r = call(api, "POST", path, json={"data": "processed/coarse.h5", "dataset": "/spectra"})
    assert r.status_code == 400 and "has 900 points per spectrum" in r.json()["message"]
    r = call(api, "POST", f"spectra/models/{trained_model['id']}/predict",
             json={"data": "processed/coarse.h5", "dataset": "/spectra", "axis_dataset": "/two_theta"})
    assert r.status_code == 400 and "fitted without an axis" in r.json()["message"]
    r = call(api, "POST", path, json={"data": "processed/coarse.h5", "dataset": "/spectra",
                                      "axis_dataset": "/nothing"})
    assert r.status_code == 400 and "no axis dataset '/nothing'" in r.json()["message"]


_LIBRARY_FIT = """
import json, sys
from server_ext.spectra import BinnedSpectraClassifier
from server_ext.spectra.datafiles import load_labelled
from server_ext.spectra.findings import model_summary
path, labels = sys.argv[1], sys.argv[2:]
for draw in (3, 0):
    X, y, axis = load_labelled(path, labels, max_per_label=5, random_state=draw)
    clf = BinnedSpectraClassifier(n_bins=3, epochs=5, cv_folds=2, random_state=3).fit(X, y, axis=axis)
    s = model_summary(clf)
    print(json.dumps({k: s[k] for k in ("separability", "weights")}))
"""


def test_the_spectra_drawn_below_max_per_label_follow_the_seed(api, axis_model, server_root):
    """A file's labelled rows drawn below ``max_per_label`` follow
    ``params.random_state``, as ``daas spectra train --seed`` draws them:
    the server's model is the one the library fits on that draw (in a
    process with the server's threads), not on the draw of seed 0."""
    import os
    import subprocess
    import sys

    labels = ["low=0:15", "high=45:60"]
    r = call(api, "POST", "spectra/models", json={
        "data": "processed/labelled.nxs", "labels": labels, "max_per_label": 5,
        "params": {"n_bins": 3, "epochs": 5, "random_state": 3, "cv_folds": 2}})
    assert r.status_code == 202, r.text
    job, _ = api.long_poll(f"spectra/models/{r.json()['id']}")
    try:
        assert job["state"] == "done", job["error"]
        assert job["result"]["n_spectra"] == 10
        done = subprocess.run([sys.executable, "-c", _LIBRARY_FIT, str(server_root["root"] / "processed/labelled.nxs"),
                               *labels], env={**os.environ, **server_root["env"]}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        seeded, first = (json.loads(line) for line in done.stdout.splitlines()[-2:])
        for key in ("separability", "weights"):
            np.testing.assert_allclose(job["result"][key], seeded[key], rtol=1e-5, err_msg=key)
        ours, other = job["result"]["separability"], first["separability"]  # seed 0's draw: another model
        assert len(ours) != len(other) or not np.allclose(ours, other, rtol=1e-3), (ours, other)
    finally:
        call(api, "DELETE", f"spectra/models/{r.json()['id']}?remove=true")


def test_a_stream_reads_spectra_on_the_detectors_axis(api, trained_model, axis_model, server_root):
    """A run of spectra on a coarser grid than the model's: every spectrum
    malformed as they come; with the detector's axis (a file, or the run's
    own key read with each train), classified, each train as a prediction of
    its spectra through that axis; a train recalibrated beyond the model's
    range rejected and said why. Axes that cannot be read through are
    refused before the stream starts."""
    from server_ext.spectra.synthetic import write_demo_run

    root = server_root["root"]
    info = write_demo_run(root / "coarse-runs", n_trains=12, pulses_per_train=4, n_points=900,
                          random_state=4)
    run = "coarse-runs/r0001"
    np.savetxt(root / "processed" / "coarse-axis.txt", np.linspace(10.0, 90.0, 900))
    finals = {}
    per_train = {"axis_source": info["axis_source"], "axis_key": "twoTheta"}
    for name, extra, sent in (("as read", {}, {}),
                              ("through", {"axis": {"file": "processed/coarse-axis.txt"}}, {}),
                              ("each train's", {}, per_train)):
        body = {"model": axis_model["id"], "source": {"run": run, "source": info["source"],
                                                      "key": info["key"], **sent}, **extra}
        r = call(api, "POST", "spectra/streams", json=body)
        assert r.status_code == 201, r.text
        finals[name] = api.wait(f"spectra/streams/{r.json()['id']}", states=("failed", "finished"),
                                timeout=120)
        assert finals[name]["state"] == "finished", finals[name]
    assert finals["as read"]["stats"]["malformed"] == 48 and finals["as read"]["stats"]["spectra"] == 0
    through = finals["through"]
    assert through["stats"]["malformed"] == 0 and through["stats"]["spectra"] == 48
    own = finals["each train's"]
    assert (own["stats"]["spectra"], own["stats"]["unreadable_axis"], own["stats"]["axis_error"]) == \
        (48, 0, None)
    assert own["last_train"] == through["last_train"]  # the run's own 2-theta is the file's
    write_demo_run(root / "recalibrated", n_trains=12, pulses_per_train=4, n_points=900, random_state=4)
    (run_file,) = (root / "recalibrated" / "r0001").glob("*.h5")
    with h5py.File(run_file, "a") as f:  # train 5 recalibrated beyond the model's range
        f[f"CONTROL/{info['axis_source']}/twoTheta/value"][5] = np.linspace(20.0, 90.0, 900)
    source = {"run": "recalibrated/r0001", "source": info["source"], "key": info["key"], **per_train}
    r = call(api, "POST", "spectra/streams", json={"model": axis_model["id"], "source": source})
    assert r.status_code == 201, r.text
    recalibrated = api.wait(f"spectra/streams/{r.json()['id']}", states=("failed", "finished"), timeout=120)
    assert recalibrated["state"] == "finished", recalibrated
    stats = recalibrated["stats"]
    assert (stats["spectra"], stats["malformed"], stats["unreadable_axis"]) == (44, 4, 1)
    assert stats["axis_error"].startswith(f"train {info['first_train'] + 5}: the spectra's axis runs from 20")
    # the last train shown: its spectra, predicted from a file through the same axis, agree
    from extra_data import RunDirectory

    kd = RunDirectory(str(root / run))[info["source"], info["key"]]
    last = kd.select_trains(np.s_[-1:]).ndarray().reshape(-1, 900)
    with h5py.File(root / "processed" / "last-train.h5", "w") as f:
        f["spectra"], f["axis"] = last, np.linspace(10.0, 90.0, 900)
    labels = call(api, "POST", f"spectra/models/{axis_model['id']}/predict",
                  json={"data": "processed/last-train.h5", "dataset": "/spectra",
                        "axis_dataset": "/axis"}).json()["labels"]
    assert through["last_train"]["train_id"] == int(kd.train_ids[-1])
    assert through["last_train"]["class_fractions"] == {c: labels.count(c) / 4 for c in ("high", "low")}
    np.savetxt(root / "processed" / "narrow-axis.txt", np.linspace(20.0, 90.0, 900))
    body = {"model": axis_model["id"], "source": {"run": run, "source": info["source"], "key": info["key"]}}
    for model, axis, status, message in (
            (axis_model, {"file": "processed/narrow-axis.txt"}, 400,
             "the spectra's axis runs from 20 to 90; the model reads 10"),
            (trained_model, {"file": "processed/coarse-axis.txt"}, 400, "fitted without an axis"),
            (axis_model, {"file": "processed/coarse.h5"}, 400, "name the axis dataset"),
            (axis_model, {"file": "processed/coarse.h5", "dataset": "/spectra"}, 400, "has shape (60, 900)"),
            (axis_model, {"file": "processed/none.txt"}, 404, "does not exist"),
            (axis_model, {"file": "/etc/hostname"}, 403, "outside the server's root directory")):
        r = call(api, "POST", "spectra/streams", json={**body, "model": model["id"], "axis": axis})
        assert r.status_code == status and message in r.json()["message"], r.text
    for model, axis, sent, message in (
            (axis_model, {"file": "processed/coarse-axis.txt"}, per_train, "either from a file (axis) "
                                                                           "or with each train"),
            (axis_model, None, {"axis_source": info["axis_source"]}, "axis_source names where axis_key is"),
            (trained_model, None, per_train, "fitted without an axis")):
        r = call(api, "POST", "spectra/streams", json={**body, "model": model["id"], "axis": axis,
                                                       "source": {**body["source"], **sent}})
        assert r.status_code == 400 and message in r.json()["message"], r.text


def test_evaluate_a_model_on_labelled_spectra(api, trained_model, server_root):
    """Labelled spectra of a file, by a label dataset or by ranges: the
    confusion matrix is what ``predict`` says of the same spectra; a run's
    labelled trains capped per class; a label the model does not know, a path
    outside the root, a model that is not there: refused, saying why."""
    from extra_data import RunDirectory

    kd = RunDirectory(str(server_root["root"] / "spectra-run"))[DEMO_SOURCE, DEMO_KEY]
    first, last = (kd.select_trains(s).ndarray().reshape(-1, kd.entry_shape[-1]) for s in (np.s_[:3], np.s_[-3:]))
    X = np.concatenate([first, last]).astype(np.float64)
    n = len(first)
    truth = ["before"] * n + ["after"] * (len(X) - n)
    with h5py.File(server_root["root"] / "processed" / "labelled.h5", "w") as f:
        f["spectra"] = X
        f["phase"] = np.array(truth, dtype="S")
    model = trained_model["id"]
    predicted = call(api, "POST", f"spectra/models/{model}/predict",
                     json={"data": "processed/labelled.h5", "dataset": "/spectra"}).json()["labels"]
    path = f"spectra/models/{model}/evaluate"
    by_dataset = call(api, "POST", path, json={"data": "processed/labelled.h5", "dataset": "/spectra",
                                               "labels": "@/phase"})
    assert by_dataset.status_code == 200, by_dataset.text
    r = by_dataset.json()
    classes = r["classes"]
    want = [[sum(t == a and p == b for t, p in zip(truth, predicted)) for b in classes] for a in classes]
    assert r["confusion"] == want and r["spectra"] == r["scored"] == len(X) and r["unread"] == 0
    assert r["model"] == model and r["data"] == "processed/labelled.h5" and r["trained_here"] is None
    assert r["accuracy"] == pytest.approx(np.mean(np.array(truth) == predicted))
    assert len(r["bins"]) == len(trained_model["result"]["bins"])
    by_ranges = call(api, "POST", path, json={"data": "processed/labelled.h5", "dataset": "/spectra",
                                              "labels": [f"before=0:{n}", f"after={n}:{len(X)}"]})
    assert by_ranges.json()["confusion"] == want
    assert r["mistaken_count"] == r["scored"] - r["correct"] == len(r["mistaken"])
    # named the wrong way round: every spectrum mistaken, the first 100 named by row, as predict labels them
    swapped = call(api, "POST", path, json={"data": "processed/labelled.h5", "dataset": "/spectra",
                                            "labels": [f"after=0:{n}", f"before={n}:{len(X)}"]}).json()
    wrong = [i for i in range(len(X)) if predicted[i] != ("after" if i < n else "before")]
    assert swapped["mistaken_count"] == len(wrong) and [m["row"] for m in swapped["mistaken"]] == wrong[:100]
    assert all(m["predicted"] == predicted[m["row"]] and m["labelled"] != m["predicted"]
               for m in swapped["mistaken"])

    tids = _train_ids(server_root["root"] / "spectra-run")
    ends = [f"before={tids[0]}:{tids[10]}", f"after={tids[-10]}:{tids[-1] + 1}"]
    run = call(api, "POST", path, json={"data": "spectra-run", "source": DEMO_SOURCE, "key": DEMO_KEY,
                                        "labels": ends, "max_per_label": 5})
    assert run.status_code == 200, run.text
    assert run.json()["spectra"] == 10
    # the model was trained with the first 30 trains and the last 30: these 20 are among them
    assert run.json()["trained_here"].startswith("20 of these labelled train ids were labelled for training")
    assert all({"train_id", "pulse"} <= set(m) for m in run.json()["mistaken"])
    assert {c: v["labelled"] + v["unread"] for c, v in run.json()["per_class"].items()} == {"before": 5, "after": 5}

    for body, status, message in (
            ({"data": "processed/labelled.h5", "dataset": "/spectra", "labels": ["hot=0:3", "before=3:5"]}, 400,
             "labels not among the model's classes: hot (its classes: after, before)"),
            ({"data": "/etc/hostname", "labels": ["before=0:1"]}, 403, "outside the server's root directory"),
            ({"data": "processed/labelled.h5", "labels": []}, 400, ""),
            ({"data": "processed/labelled.h5", "labels": ["before=0:1"], "params": {}}, 400, "")):
        r = call(api, "POST", path, json=body)
        assert r.status_code == status and message in r.json()["message"], r.text
    r = call(api, "POST", "spectra/models/0123456789abcdef/evaluate", json={"data": "processed/labelled.h5",
                                                                           "labels": "@/phase"})
    assert r.status_code == 404


def test_evaluate_refuses_more_labelled_spectra_of_a_file_than_its_limit(server, server_root, trained_model):
    """``max_predict_spectra`` bounds the labelled spectra of a file evaluated:
    refused before they are read; a larger file whose labels name fewer, or
    whose labels are capped (``max_per_label``) below it, is evaluated."""
    from server_ext.extension import tasks
    from server_ext.spectra import SpectraError

    X = _spectra(server_root)
    with h5py.File(server_root["root"] / "processed" / "few.h5", "w") as f:
        f["spectra"] = X
        f["labels"] = np.array(["before"] * len(X), dtype="S")
    model = server.root_dir.parent / "jupyter-data" / "daas" / "models" / trained_model["id"]
    options = {"data": str(server_root["root"] / "processed" / "few.h5"), "labels": ["@/labels"]}
    assert tasks.evaluate(str(model), options, limit=len(X))["spectra"] == len(X)
    with pytest.raises(SpectraError, match=f"the labels name {len(X)} spectra of /spectra, more than "
                                           f"{len(X) - 1} at once; ask for fewer a class"):
        tasks.evaluate(str(model), options, limit=len(X) - 1)
    assert tasks.evaluate(str(model), {**options, "labels": ["before=0:5"]}, limit=5)["spectra"] == 5
    assert tasks.evaluate(str(model), {**options, "max_per_label": 5}, limit=5)["spectra"] == 5


def test_predict_refuses_a_file_larger_than_its_limit(server, server_root, trained_model):
    """``max_predict_spectra`` bounds a file predicted (its answer lists every
    spectrum): refused before it is read, naming the command that takes any size."""
    from server_ext.extension import tasks
    from server_ext.spectra import SpectraError

    X = _spectra(server_root)
    path = server_root["root"] / "processed" / "limit.h5"
    with h5py.File(path, "w") as f:
        f["spectra"] = X
    model = server.root_dir.parent / "jupyter-data" / "daas" / "models" / trained_model["id"]
    assert len(tasks.predict(str(model), str(path), limit=len(X))["labels"]) == len(X)
    with pytest.raises(SpectraError, match=f"/spectra holds {len(X)} spectra, more than {len(X) - 1} at once; "
                                           "classify it with 'daas spectra predict' or in a notebook"):
        tasks.predict(str(model), str(path), limit=len(X) - 1)


def test_predict_a_file_that_is_not_spectra(api, trained_model, server_root):
    (server_root["root"] / "processed" / "notes.h5").write_text("not HDF5")
    r = call(api, "POST", f"spectra/models/{trained_model['id']}/predict", json={"data": "processed/notes.h5"})
    assert r.status_code == 400
    assert "HDF5" in r.json()["message"] and "Traceback" not in r.text
    # a run directory is no file of spectra: said so, not h5py's "[Errno 21] ... file read failed"
    r = call(api, "POST", f"spectra/models/{trained_model['id']}/predict", json={"data": "spectra-run"})
    assert r.status_code == 400 and "Errno" not in r.json()["message"]
    assert "spectra-run is a directory, not an HDF5 file of spectra" in r.json()["message"]


def test_predict_with_an_unfinished_or_unknown_model(api):
    r = call(api, "POST", "spectra/models/0123456789abcdef/predict", json={"data": "processed/spectra.h5"})
    assert r.status_code == 404


def test_bad_labels_fail_the_job_with_the_engines_message(api, server_root, trained_model):
    r = call(api, "POST", "spectra/models", json={"data": "spectra-run", "labels": ["a=0:1", "b=2:3"],
                                                  "source": DEMO_SOURCE, "key": DEMO_KEY})
    assert r.status_code == 202
    job, _ = api.long_poll(f"spectra/models/{r.json()['id']}")
    assert job["state"] == "failed"
    assert "no train of the run" in job["error"]


def test_a_failed_training_names_the_file_rows(api, server_root):
    """The engine names the spectra it refuses by their place among those
    labelled; the job's error also says where they are in the file."""
    X = _spectra(server_root, n_trains=8)
    X[len(X) - 3] = 0.0  # a detector dropout in the "after" range
    with h5py.File(server_root["root"] / "processed" / "dropout.h5", "w") as f:
        f["spectra"] = X
    n = len(X)
    r = call(api, "POST", "spectra/models", json={
        "data": "processed/dropout.h5", "labels": ["before=0:10", f"after={n - 10}:{n}"],
        "params": {"n_bins": 3, "epochs": 5, "random_state": 0, "cv_folds": 2}})
    assert r.status_code == 202, r.text
    job, _ = api.long_poll(f"spectra/models/{r.json()['id']}")
    assert job["state"] == "failed"
    assert "1 labelled spectra are flat, with no signal (rows [17]" in job["error"]
    assert job["error"].endswith(f"-- in dropout.h5: /spectra rows [{n - 3}]")


def _replay(api, model_id, **kw):
    body = {"model": model_id, "source": {"run": "spectra-run", "source": DEMO_SOURCE, "key": DEMO_KEY, **kw}}
    return body


def test_stream_pushes_train_summaries_to_several_viewers(api, server, trained_model):
    client = DaasClient(server.api_url, TOKEN)
    body = _replay(api, trained_model["id"], train_rate=40.0)
    body["max_trains"] = 120
    r = call(api, "POST", "spectra/streams", json=body)
    assert r.status_code == 201, r.text
    stream_id = r.json()["id"]
    seen = {0: [], 1: []}

    def view(i):
        seen[i] = list(client.stream_messages(stream_id, timeout=60))

    viewers = [threading.Thread(target=view, args=(i,)) for i in (0, 1)]
    for t in viewers:
        t.start()
    for t in viewers:
        t.join(180)
        assert not t.is_alive()
    for messages in seen.values():
        for m in messages:
            check_message(m)
        trains = [m for m in messages if m["type"] == "train"]
        assert messages[-1]["type"] == "end" and messages[-1]["error"] is None
        assert len(trains) >= 3
        tids = [m["train"]["train_id"] for m in trains]
        assert tids == sorted(tids) and len(set(tids)) == len(tids)
        fractions = trains[-1]["train"]["class_fractions"]
        assert set(fractions) == {"before", "after"} and abs(sum(fractions.values()) - 1) < 1e-6
        # each train the run of trains it belongs to, without an output file too (throttled:
        # a short run may fall between two messages; dropped trains are in no run)
        runs = {}
        for m in trains:
            t = m["train"]
            first, last, phase, n = t["phase"]
            assert last == t["train_id"] and 1 <= n <= last - first + 1, t
            top = max(t["class_fractions"], key=t["class_fractions"].get)
            assert phase == (top if t["class_fractions"][top] >= 0.9 else "mixed"), t
            assert runs.setdefault(t["phase_runs"], (first, phase)) == (first, phase), t
        counts = [m["train"]["phase_runs"] for m in trains]
        assert counts == sorted(counts) and counts[0] >= 1
        # throttled: 20 messages/s at most (the server's stream_message_rate here)
        elapsed = messages[-1]["stats"]["elapsed_s"]
        assert len(trains) <= 20 * elapsed + 2
    final = call(api, "GET", f"spectra/streams/{stream_id}").json()
    assert final["state"] == "finished"
    # max_trains: classified trains (or, with drops, trains received: classified + dropped)
    assert final["stats"]["trains"] <= 120 <= final["stats"]["trains"] + final["stats"]["dropped"]
    assert final["stats"]["spectra"] > 0 and final["stats"]["latency_p99_ms"] > 0
    assert final["last_train"]["pulses"] > 0
    # the phases by train without an output file too, every train classified in one run
    results = final["results"]
    assert (results["trains"], results["pulses"]) == (final["stats"]["trains"], final["stats"]["spectra"])
    shown = sum(p[3] for p in results["phases"])  # the first 25 and the latest 25 runs of more than 50
    assert shown == results["trains"] if results["more_runs"] == 0 else shown < results["trains"]
    assert results["phases"][-1] == final["last_train"]["phase"]
    assert len(results["phases"]) == final["last_train"]["phase_runs"]
    # stopping a stream that has ended is answered, and the server goes on (a stop signal
    # the ended process had waited for used to block the event loop for good)
    r = call(api, "DELETE", f"spectra/streams/{stream_id}", timeout=30)
    assert r.status_code == 200 and r.json()["state"] == "finished"
    assert call(api, "GET", "spectra/streams", timeout=30).status_code == 200


def test_stop_a_stream(api, trained_model, server_root):
    """Stopped: listed as such, its results file complete up to the stop and saying so."""
    body = {**_replay(api, trained_model["id"], train_rate=5.0), "output": "processed/stopped.h5"}
    r = call(api, "POST", "spectra/streams", json=body)
    assert r.status_code == 201, r.text
    stream_id = r.json()["id"]
    live = api.wait(f"spectra/streams/{stream_id}", states=("running",), timeout=120)
    assert live["results"] is None or live["last_train"] is not None, live
    # while it runs, the phases by train so far: set with the train message the record shows
    deadline = time.monotonic() + 120
    while live["last_train"] is None:
        assert time.monotonic() < deadline and live["state"] == "running", live
        time.sleep(0.2)
        live = call(api, "GET", f"spectra/streams/{stream_id}").json()  # checked against the schema
    so_far = live["results"]
    assert so_far["phases"][-1] == live["last_train"]["phase"], live
    assert len(so_far["phases"]) == live["last_train"]["phase_runs"]
    assert so_far["trains"] == sum(p[3] for p in so_far["phases"]) >= 1
    assert so_far["pulses"] == sum(so_far["classes"].values()) >= live["last_train"]["pulses"]
    r = call(api, "DELETE", f"spectra/streams/{stream_id}")
    assert r.status_code == 200
    stopped = r.json()
    assert stopped["state"] == "stopped"
    assert stream_id in [s["id"] for s in call(api, "GET", "spectra/streams").json()["streams"]]
    with h5py.File(server_root["root"] / "processed" / "stopped.h5", "r") as f:
        assert f.attrs["state"] == "stopped" and len(f["trains/train_id"]) == stopped["stats"]["trains"]
    # at the end, every train classified
    assert (stopped["results"]["trains"], stopped["results"]["pulses"]) == \
        (stopped["stats"]["trains"], stopped["stats"]["spectra"])
    assert stopped["results"]["trains"] >= so_far["trains"]


def test_a_stream_bridges_points_masked_since_training(api, trained_model, server_root):
    """A run whose spectra are NaN at two points the model reads: every
    spectrum malformed; with mask_points, none."""
    import shutil

    masked = server_root["root"] / "spectra-run-masked"
    if not masked.exists():
        shutil.copytree(server_root["root"] / "spectra-run", masked)
        for path in masked.glob("*.h5"):
            with h5py.File(path, "a") as f:
                def nan_points(name, obj):
                    if name.endswith(DEMO_KEY.replace(".", "/")) and obj.ndim == 2:
                        obj[:, 200:202] = np.nan
                f.visititems(nan_points)
    finals = {}
    for name, extra in (("as trained", {}), ("masked", {"mask_points": [200, 201]})):
        body = {"model": trained_model["id"], "max_trains": 20,
                "source": {"run": "spectra-run-masked", "source": DEMO_SOURCE, "key": DEMO_KEY},
                **extra}
        r = call(api, "POST", "spectra/streams", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["options"].get("mask_points") == extra.get("mask_points")
        finals[name] = api.wait(f"spectra/streams/{r.json()['id']}",
                                states=("failed", "finished"), timeout=120)
    as_trained, bridged = finals["as trained"]["stats"], finals["masked"]["stats"]
    assert finals["masked"]["state"] == "finished"
    assert as_trained["malformed"] > 0 and as_trained["spectra"] == 0
    assert as_trained["unread_points"] == [200, 201]  # the remedy, said
    assert bridged["malformed"] == 0 and bridged["spectra"] == as_trained["malformed"]
    assert bridged["unread_points"] == []
    # the train the stream ended on, though throttling held back most before it
    from extra_data import RunDirectory

    assert finals["masked"]["last_train"]["train_id"] == int(RunDirectory(str(masked)).train_ids[19])
    body["mask_points"] = [10 ** 6]
    r = call(api, "POST", "spectra/streams", json=body)
    assert r.status_code == 400 and "lie outside the model's spectra" in r.json()["message"]


def test_a_stream_keeps_every_pulses_result_in_a_file(api, trained_model, server_root):
    """``output``: the replayed trains' pulses and counts in a new HDF5 file,
    stating how the stream ended; an existing file, one outside the root or
    in the read-only dataset, refused before the stream starts."""
    import json

    from server_ext.spectra import read_results

    body = {**_replay(api, trained_model["id"]), "max_trains": 15, "output": "processed/stream-labels.h5"}
    r = call(api, "POST", "spectra/streams", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["options"]["output"] == "processed/stream-labels.h5"
    final = api.wait(f"spectra/streams/{r.json()['id']}", states=("failed", "finished"), timeout=120)
    assert final["state"] == "finished", final
    path = server_root["root"] / "processed" / "stream-labels.h5"
    with h5py.File(path, "r") as f:
        assert f.attrs["state"] == "finished" and f.attrs["key"] == DEMO_KEY
        # the server's id and the run as asked for, not the server's paths
        assert (f.attrs["model"], f.attrs["source"]) == (trained_model["id"], "spectra-run")
        assert json.loads(f.attrs["stats"])["spectra"] == final["stats"]["spectra"]
        assert len(f["trains/train_id"]) == 15 and len(f["pulses/label"]) == final["stats"]["spectra"]
        classes = f["classes"].asstr()[()].tolist()
        last_train = int(f["trains/train_id"][-1])
        labels = [classes[i] for i in f["pulses/label"][()][f["pulses/train_id"][()] == last_train]]
    # the file's last train is the one the stream shows it ended on
    assert final["last_train"]["train_id"] == last_train
    assert final["last_train"]["class_fractions"] == {c: labels.count(c) / len(labels) for c in classes}
    # the summary at its end is what the file reads back as
    kept = read_results(path)
    assert final["results"]["phases"] == [list(p) for p in kept.phases()]
    assert final["results"]["classes"] == {c: int((kept.label == i).sum()) for i, c in enumerate(classes)}
    assert (final["results"]["pulses"], final["results"]["trains"], final["results"]["more_runs"]) == \
        (final["stats"]["spectra"], 15, 0)
    assert final["last_train"]["phase"] == final["results"]["phases"][-1]
    assert final["last_train"]["phase_runs"] == len(final["results"]["phases"])
    # purity: the phases as the stream keeps them; two classes at 0.5 are never mixed
    r = call(api, "POST", "spectra/streams", json={**body, "output": "processed/half.h5", "purity": 0.5})
    assert r.status_code == 201, r.text
    half = api.wait(f"spectra/streams/{r.json()['id']}", states=("failed", "finished"), timeout=120)
    assert half["state"] == "finished", half
    kept = read_results(server_root["root"] / "processed" / "half.h5")
    assert kept.purity == 0.5 and half["results"]["phases"] == [list(p) for p in kept.phases()]
    assert "mixed" not in {p[2] for p in half["results"]["phases"]} and len(classes) == 2
    for purity in (0, 1.5, "high"):
        r = call(api, "POST", "spectra/streams", json={**body, "output": "processed/x.h5", "purity": purity})
        assert r.status_code == 400 and "purity" in r.json()["message"], r.text
    assert not (server_root["root"] / "processed" / "x.h5").exists()
    before = path.read_bytes()
    for output, status, message in (("processed/stream-labels.h5", 409, "exists; give another file"),
                                    ("/tmp/elsewhere.h5", 403, "outside the server's root directory"),
                                    ("data/labels.h5", 403, "inside the read-only dataset")):
        r = call(api, "POST", "spectra/streams", json={**body, "output": output})
        assert r.status_code == status and message in r.json()["message"], r.text
    assert path.read_bytes() == before


def test_stream_from_a_silent_bridge_fails_with_a_message(api, trained_model):
    body = {"model": trained_model["id"], "source": {"endpoint": silent_bridge(), "timeout": 0.5,
                                                     "max_reconnects": 1}}
    r = call(api, "POST", "spectra/streams", json=body)
    assert r.status_code == 201, r.text
    final = api.wait(f"spectra/streams/{r.json()['id']}", states=("failed", "finished"), timeout=120)
    assert final["state"] == "failed"
    assert final["error"] and "Traceback" not in final["error"]


def test_a_stream_told_to_reconnect_for_ever_outlasts_one_that_gives_up(api, trained_model):
    endpoint = silent_bridge()
    ids = {}
    for name, extra in (("patient", {"max_reconnects": None}), ("default", {})):
        r = call(api, "POST", "spectra/streams",
                 json={"model": trained_model["id"], "source": {"endpoint": endpoint, "timeout": 0.2, **extra}})
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
        if name == "patient":  # silent for longer than the default one, whatever the machine's load
            api.wait(f"spectra/streams/{ids[name]}", states=("running",), timeout=120)
    gave_up = api.wait(f"spectra/streams/{ids['default']}", states=("failed", "finished"), timeout=120)
    assert gave_up["state"] == "failed" and "reconnected 5 times" in gave_up["error"]
    assert call(api, "GET", f"spectra/streams/{ids['patient']}").json()["state"] == "running"
    # no train, but its counters come each second: the reconnects are seen while it waits
    deadline = time.monotonic() + 120
    while call(api, "GET", f"spectra/streams/{ids['patient']}").json()["stats"].get("reconnects", 0) < 1:
        assert time.monotonic() < deadline, "no reconnects counted while the stream waits"
        time.sleep(0.3)
    r = call(api, "DELETE", f"spectra/streams/{ids['patient']}")
    assert r.status_code == 200
    stopped = r.json()
    assert stopped["state"] == "stopped" and stopped["error"] is None
    assert stopped["stats"]["reconnects"] >= 1


@pytest.mark.parametrize("source", [{"endpoint": "tcp://127.0.0.1:1", "run": "spectra-run"}, {"run": "spectra-run"}])
def test_stream_source_must_be_one_complete_source(api, trained_model, source):
    r = call(api, "POST", "spectra/streams", json={"model": trained_model["id"], "source": source})
    assert r.status_code == 400
    assert "source" in r.json()["message"]


@pytest.mark.parametrize("endpoint, said", [("tcp://nohost", "needs a host and a port number"),
                                             ("tcp://127.0.0.1:45x5", "needs a host and a port number")])
def test_a_bridge_endpoint_zeromq_cannot_use_is_refused_at_once(api, trained_model, endpoint, said):
    # accepted before (201), the stream's process then failed at its start
    r = call(api, "POST", "spectra/streams", json={"model": trained_model["id"], "source": {"endpoint": endpoint}})
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("source.endpoint: ") and said in r.json()["message"]
    streams = call(api, "GET", "spectra/streams").json()["streams"]
    assert endpoint not in [s["options"]["source"].get("endpoint") for s in streams]  # none started


@pytest.mark.parametrize("source, misplaced", [
    ({"run": "spectra-run", "timeout": 1.0}, "timeout"),
    ({"run": "spectra-run", "sock": "PULL", "max_reconnects": None}, "sock"),
    ({"endpoint": "tcp://127.0.0.1:1", "train_rate": 5.0}, "train_rate"),
    ({"endpoint": "tcp://127.0.0.1:1", "train_ids": [1, 2]}, "train_ids")])
def test_a_bridge_option_on_a_run_or_a_run_option_on_a_bridge_is_refused(api, trained_model, source, misplaced):
    # accepted before, the stream then failed to start with a TypeError
    source = {**source, **({"source": DEMO_SOURCE, "key": DEMO_KEY} if "run" in source else {})}
    r = call(api, "POST", "spectra/streams", json={"model": trained_model["id"], "source": source})
    assert r.status_code == 400, r.text
    assert misplaced in r.json()["message"] and "source" in r.json()["message"]


def test_replay_part_of_a_run(api, server_root, trained_model):
    """source.train_ids: only those trains replayed; a span the wrong way
    round refused (400), a forged one by the schema, one holding none of
    the run's trains fails the stream at its start, naming those it holds."""
    from server_ext.spectra import read_results

    tids = [int(t) for t in _train_ids(server_root["root"] / "spectra-run")]
    body = {**_replay(api, trained_model["id"], train_ids=[tids[3], tids[7]]), "output": "processed/part.h5"}
    r = call(api, "POST", "spectra/streams", json=body)
    assert r.status_code == 201, r.text
    final = api.wait(f"spectra/streams/{r.json()['id']}", states=("failed", "finished"), timeout=120)
    assert final["state"] == "finished", final
    assert final["stats"]["trains"] == 5 and final["results"]["trains"] == 5
    assert final["results"]["phases"][0][0] == tids[3] and final["results"]["phases"][-1][1] == tids[7]
    assert final["last_train"]["train_id"] == tids[7]
    kept = read_results(server_root["root"] / "processed" / "part.h5")  # saying it holds a part
    assert kept.trains["train_id"].tolist() == tids[3:8] and kept.about["train_ids"] == f"trains {tids[3]}-{tids[7]}"
    r = call(api, "POST", "spectra/streams", json=_replay(api, trained_model["id"], train_ids=[None, tids[0] - 1]))
    assert r.status_code == 201, r.text
    failed = api.wait(f"spectra/streams/{r.json()['id']}", states=("failed", "finished"), timeout=120)
    assert failed["state"] == "failed", failed
    assert f"in trains up to {tids[0] - 1}: its {len(tids)} trains are {tids[0]} to {tids[-1]}" in failed["error"]
    for span, message in (([tids[7], tids[3]], f"source.train_ids: train {tids[7]} comes after train {tids[3]}"),
                          (["x", 1], "train_ids"), ([1], "train_ids"), ([-1, 2], "train_ids")):
        r = call(api, "POST", "spectra/streams", json=_replay(api, trained_model["id"], train_ids=span))
        assert r.status_code == 400 and message in r.json()["message"], (span, r.text)


def test_cancel_a_training_saves_no_model(api, trained_model, server):
    r = call(api, "POST", "spectra/models", json={
        "data": "spectra-run", "labels": trained_model["options"]["labels"], "source": DEMO_SOURCE,
        "key": DEMO_KEY, "max_per_label": 64,
        "params": {"n_bins": 3, "epochs": 20, "random_state": 0, "fixed_ranges": [[10, 12]]}})
    assert r.status_code == 202, r.text
    model_id = r.json()["id"]
    api.wait(f"spectra/models/{model_id}", states=("running",))
    r = call(api, "DELETE", f"spectra/models/{model_id}")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    final = api.wait(f"spectra/models/{model_id}")
    assert final["state"] == "cancelled", final
    models_dir = server.root_dir.parent / "jupyter-data" / "daas" / "models"
    assert (models_dir / trained_model["id"]).is_dir() and not (models_dir / model_id).exists()
    r = call(api, "POST", f"spectra/models/{model_id}/predict", json={"data": "processed/spectra.h5"})
    assert r.status_code == 409 and "cancelled" in r.json()["message"]


def test_remove_a_model(api, trained_model, server, server_root):
    """A model no longer wanted leaves the list, its files with it; not while
    a stream classifies with it, nor before its training has ended; a model
    whose files were damaged too."""
    daas_dir = server.root_dir.parent / "jupyter-data" / "daas"
    body = {"data": "spectra-run", "labels": trained_model["options"]["labels"], "source": DEMO_SOURCE,
            "key": DEMO_KEY, "max_per_label": 64}
    r = call(api, "POST", "spectra/models", json={**body, "params": trained_model["options"]["params"]})
    assert r.status_code == 202, r.text
    model_id = r.json()["id"]
    assert api.wait(f"spectra/models/{model_id}")["state"] == "done"
    files = daas_dir / "models" / model_id
    assert files.is_dir() and (daas_dir / "jobs" / f"{model_id}.json").is_file()
    r = call(api, "DELETE", f"spectra/models/{model_id}?remove=yes")
    assert r.status_code == 400 and "remove='yes'" in r.json()["message"]

    stream = call(api, "POST", "spectra/streams", json=_replay(api, model_id, train_rate=5.0)).json()
    r = call(api, "DELETE", f"spectra/models/{model_id}?remove=true")
    assert r.status_code == 409 and f"classifies stream {stream['id']}" in r.json()["message"], r.text
    assert files.is_dir()
    stopped = call(api, "DELETE", f"spectra/streams/{stream['id']}").json()
    assert stopped["state"] in ("stopped", "finished"), stopped["error"]

    # a training not yet ended is cancelled first, then removed (it saved nothing)
    r = call(api, "POST", "spectra/models", json={**body, "params": {"n_bins": 3, "epochs": 20, "random_state": 0}})
    later = r.json()["id"]
    r = call(api, "DELETE", f"spectra/models/{later}?remove=true")
    assert r.status_code == 409 and "cancel it first" in r.json()["message"], r.text
    assert call(api, "DELETE", f"spectra/models/{later}").status_code == 202
    assert api.wait(f"spectra/models/{later}")["state"] == "cancelled"
    assert call(api, "DELETE", f"spectra/models/{later}?remove=true").status_code == 204

    # its files damaged behind the server's back (a disk error, a copy cut short): a
    # prediction says which; the model is still removed
    with open(files / "arrays.npz", "r+b") as f:
        f.truncate(1000)
    with h5py.File(server_root["root"] / "processed" / "to-remove.h5", "w") as f:
        f["spectra"] = _spectra(server_root)[:4]
    r = call(api, "POST", f"spectra/models/{model_id}/predict", json={"data": "processed/to-remove.h5"})
    assert r.status_code == 400 and "arrays.npz is damaged" in r.json()["message"], r.text

    r = call(api, "DELETE", f"spectra/models/{model_id}?remove=true")
    assert r.status_code == 204 and not r.content
    assert not files.exists() and not list((daas_dir / "models").glob(".removed-*"))
    assert not (daas_dir / "jobs" / f"{model_id}.json").exists()
    listed = [m["id"] for m in call(api, "GET", "spectra/models").json()["models"]]
    assert model_id not in listed and later not in listed and trained_model["id"] in listed
    for method, path, kw in (("GET", f"spectra/models/{model_id}", {}),
                             ("POST", f"spectra/models/{model_id}/predict", {"json": {"data": "processed/x.h5"}}),
                             ("DELETE", f"spectra/models/{model_id}?remove=true", {})):
        r = call(api, method, path, **kw)
        assert r.status_code == 404 and model_id in r.json()["message"], (method, path, r.text)
    assert (daas_dir / "models" / trained_model["id"]).is_dir()


def test_a_model_is_not_removed_while_a_request_classifies_with_it(tmp_path):
    """Between a prediction's start and its answer the model stays (the
    request's worker reads it meanwhile); after, it can go."""
    from collections import Counter
    from types import SimpleNamespace

    from server_ext.extension.dask_backend import DaskBackend
    from server_ext.extension.errors import DaasRequestError
    from server_ext.extension.handlers.spectra import model_in_use, remove_model
    from server_ext.extension.jobs import JobManager
    from server_ext.extension.records import JobStore
    from server_ext.extension.streams import StreamManager

    store = JobStore(tmp_path / "jobs")
    store.save({"id": "0123456789abcdef", "kind": "spectra", "state": "done", "created": "x"})
    (tmp_path / "models" / "0123456789abcdef").mkdir(parents=True)
    daas = SimpleNamespace(jobs=JobManager(store, DaskBackend()), streams=StreamManager(),
                           models_dir=str(tmp_path / "models"), models_in_use=Counter())
    with model_in_use(daas, "0123456789abcdef") as path, model_in_use(daas, "0123456789abcdef"):
        assert path == str(tmp_path / "models" / "0123456789abcdef")
        with pytest.raises(DaasRequestError, match="a prediction, an evaluation or a stream's start with model") as e:
            remove_model(daas, "0123456789abcdef")
        assert e.value.status_code == 409 and (tmp_path / "models" / "0123456789abcdef").is_dir()
    assert not daas.models_in_use
    remove_model(daas, "0123456789abcdef")
    assert not list((tmp_path / "models").iterdir()) and not list((tmp_path / "jobs").iterdir())
    with pytest.raises(DaasRequestError) as e:
        remove_model(daas, "0123456789abcdef")
    assert e.value.status_code == 404
