"""SpectraClassifierApp against a real server: label, train, figure, classify, stream, resume."""

import html
import re
import threading
import time

import h5py
import pytest

from server_ext.extension.client import DaasApiError
from server_ext.extension.serverprocess import free_port
from server_ext.nxmx import dials
from server_ext.spectra.synthetic import DEMO_AXIS_SOURCE, DEMO_KEY, DEMO_SOURCE, make_transition_series
from widgets import SpectraClassifierApp
from widgets.spectra_app import LabelRow

from .conftest import SLUG, WAIT

SMALL = {"n_bins": 3, "epochs": 5, "random_state": 0, "cv_folds": 2}


def until(predicate, timeout=WAIT, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.2)


def text(widget):
    return html.unescape(widget.value)


@pytest.fixture(scope="module")
def trained(client):
    app = SpectraClassifierApp("spectra-run", source=DEMO_SOURCE, key=DEMO_KEY, max_per_label=64, params=SMALL,
                               client=client, poll_interval=0.3)
    specs = app.label_specs()
    assert [s.split("=")[0] for s in specs] == ["before", "after"]
    # the run's 2-theta, found on Load: the model keeps it
    assert app.axis.value == f"{DEMO_AXIS_SOURCE} twoTheta" and "; axis " in app.data_info.value
    job = app.train()
    assert job is not None, app.train_status.value
    app.wait_training(WAIT)
    assert app.model and app.model["state"] == "done", app.train_status.value
    return app


def test_training_draws_separability_over_the_training_curves(trained):
    app = trained
    assert app.train_progress.value == 1.0 and app.train_progress.bar_style == "success"
    assert app.models.value == app.model["id"]
    canvas, found = app.sep_box.children
    assert canvas is app.sep_canvas
    assert "classes told apart by peak position: " in text(found) and "strain alignment: " in text(found)
    assert app.model["result"]["findings"][0].startswith("classes told apart by peak position")
    top, bottom = app.sep_fig.axes[:2]  # then the weight axis, twin of the top one
    n_bins = len(app.model["result"]["bins"])
    assert len(top.collections) == n_bins  # one separability band per kept bin
    assert len(bottom.lines) >= 4  # the training curves and each class's mean
    assert {t.get_text().split(" ")[0] for t in bottom.get_legend().get_texts()} == {"before", "after"}
    assert bottom.get_xlabel() == "twoTheta"  # the run's axis key, found on Load
    assert app.model["id"][:8] in app.jobs.value
    # the dropdown tells a beamtime's models apart: classes, the spectra, when (UTC, to the minute)
    created = app.model["created"]
    assert app.models.label == (f"{app.model['id'][:8]} (after, before) spectra-run, "
                                f"{created[:10]} {created[11:16]}"), app.models.label


def test_classes_said_to_share_their_cell_train_without_a_position_difference(client):
    app = SpectraClassifierApp("spectra-run", source=DEMO_SOURCE, key=DEMO_KEY, max_per_label=64, params=SMALL,
                               client=client, poll_interval=0.3)
    assert not app.same_cell.value
    app.same_cell.value = True
    job = app.train()
    assert job is not None, app.train_status.value
    assert job["options"]["params"] == {**SMALL, "learn_position": False}
    app.wait_training(WAIT)
    assert app.model and app.model["state"] == "done", app.train_status.value
    assert app.model["result"]["findings"][0] == "classes told apart by peak position: none"


def while_called(monkeypatch, client, method, button, status):
    """What ``button`` and ``status`` showed while the app waited for each
    call of ``client.method`` (the real one, called through)."""
    seen, real = [], getattr(client, method)

    def spy(*args, **kwargs):
        seen.append((button.disabled, text(status)))
        return real(*args, **kwargs)

    monkeypatch.setattr(client, method, spy)
    return seen


def test_classify_a_file_marks_the_ambiguous(trained, widget_root, monkeypatch):
    series = make_transition_series(n_spectra=40, n_points=trained.model["result"]["n_points"], random_state=3)
    with h5py.File(widget_root["root"] / "to-classify.h5", "w") as f:
        f["spectra"] = series.X
    trained.predict_path.value = "to-classify.h5"
    seen = while_called(monkeypatch, trained.client, "predict", trained.predict_button, trained.predict_status)
    result = trained.classify()
    assert result is not None, trained.predict_status.value
    # the button disabled while the kernel waited (a click would queue another), a line saying what runs
    [(disabled, status)] = seen
    assert disabled and f">classifying to-classify.h5 with model {trained.models.value[:8]} ...<" in status
    assert not trained.predict_button.disabled
    assert len(result["labels"]) == 40 and set(result["labels"]) <= {"before", "after"}
    assert f"ambiguous: {sum(result['ambiguous'])} of 40" in text(trained.predict_status)
    ax = trained.pred_fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 40  # every spectrum drawn once


def test_classify_a_file_with_points_masked_since_training(trained, widget_root):
    """NaN at two points the model reads: no spectrum classified, the
    status line names the points and the remedy; the points typed in
    "masked points" are bridged; a typo is a message."""
    import numpy as np

    series = make_transition_series(n_spectra=12, n_points=trained.model["result"]["n_points"], random_state=5)
    X = series.X.astype(np.float64)
    X[:, 100:102] = np.nan
    with h5py.File(widget_root["root"] / "masked.h5", "w") as f:
        f["spectra"] = X
        f["axis"] = np.linspace(20.0, 90.0, X.shape[1])  # the model reads 2-theta 10-90
    trained.predict_path.value = "masked.h5"
    try:
        unread = trained.classify()
        assert unread is not None and unread["labels"] == [None] * 12, trained.predict_status.value
        assert (
            "after: 0, before: 0; ambiguous: 0 of 12; not classified (NaN or inf, or flat): 12, spectra 0, 1, 2, "
            "3, 4, 5, 6, 7, 8, 9, ...; NaN in every one at points 100-101: if the detector masks them since "
            "training, type them in \"masked points\" and classify again") in text(trained.predict_status)
        assert "daas-status-warning" in trained.predict_status._dom_classes
        trained.mask_points.value = "100-101"
        assert trained.masked_points() == [100, 101]
        result = trained.classify()
        assert result is not None, trained.predict_status.value
        assert len(result["labels"]) == 12 and result["classified"] == 12
        assert "daas-status-success" in trained.predict_status._dom_classes
        trained.mask_points.value = "100-x"
        assert trained.classify() is None
        assert "masked points '100-x': give point indices and ranges" in text(trained.predict_status)
        trained.mask_points.value, trained.predict_axis.value = "100-101", "/axis"
        assert trained.classify() is None  # an axis that does not cover the model's
        assert "the model reads 10" in text(trained.predict_status)
    finally:
        trained.mask_points.value = trained.predict_axis.value = ""


def test_stream_plots_trains_and_counts_until_stopped(trained, widget_root):
    app = trained
    app.train_rate.value = 20
    app.stream_output.value = "app-stream.h5"  # every pulse's result kept
    app.phase_purity.value = 0.6
    try:
        stream = app.start_stream()
    finally:
        app.stream_output.value = ""
        app.phase_purity.value = 0.9
    assert stream is not None, app.stream_status.value
    until(lambda: len(app.stream_trains) >= 5, WAIT, "five streamed trains")
    until(lambda: "trains: <b>" in app.counters.value and "spectra/s" in app.counters.value, 60, "counters")
    assert app.stream_trains == sorted(app.stream_trains)
    app.stop_stream()
    until(lambda: not app.start_button.disabled, 120, "the stream to end")
    # the WebSocket reader redraws once more when the messages end: a figure
    # read before that may be half redrawn
    app.wait_stream(120)
    assert app.stream["state"] in ("stopped", "finished"), app.stream
    assert "every pulse's result in app-stream.h5" in text(app.stream_status)
    first, last, phase, _ = app.stream["results"]["phases"][0]
    assert f"; phases by train: {first}-{last} {phase}" in text(app.stream_status) or \
        f"; phases by train: {first} {phase}" in text(app.stream_status)
    with h5py.File(widget_root["root"] / "app-stream.h5", "r") as f:
        assert f.attrs["state"] == app.stream["state"]
        assert f.attrs["purity"] == 0.6 == app.stream["options"]["purity"]  # "phase purity"
        assert len(f["pulses/label"]) == app.stream["stats"]["spectra"] > 0
    frac_ax = app.stream_fig.axes[0]
    assert {line.get_label() for line in frac_ax.lines} == {"before", "after"}
    # behind the fractions, a band per run of trains: where the run starts, up to its last
    # train seen (throttled messages may skip a run's last ones), in its class's colour
    from matplotlib.colors import to_rgb

    runs = app.stream["results"]["phases"]
    colours = {line.get_label(): to_rgb(line.get_color()) for line in frac_ax.lines}
    colours["mixed"] = to_rgb("0.6")
    assert frac_ax.patches and app.stream["results"]["more_runs"] == 0
    for band in frac_ax.patches:
        first, last = band.get_x() + 0.5, band.get_x() + band.get_width() - 0.5
        assert first == round(first) and last == round(last), (first, last)
        (run_first, run_last, phase, _), = [r for r in runs if r[0] <= first <= r[1]]
        # a run begun before the first train plotted starts the band there
        assert first in (run_first, app.stream_trains[0]) and first <= last <= run_last, (band, runs)
        assert to_rgb(band.get_facecolor()) == colours[phase], band
    assert round(frac_ax.patches[-1].get_x() + frac_ax.patches[-1].get_width() - 0.5) == app.stream_trains[-1] \
        or app.stream["results"]["phases"][-1][2] == "none classified"
    assert "NaN in every malformed spectrum" not in app.counters.value
    # while it runs, the line names the run of trains it is in (here: as it ended)
    first, last, phase, n = app.stream["results"]["phases"][-1]
    assert app.stream["last_train"]["phase"] == [first, last, phase, n]
    ended = app.stream
    app._stream_update({**ended, "state": "running"})
    runs = len(ended["results"]["phases"])
    assert f"; phase now: {phase} since train {first} ({n} train{'s' if n > 1 else ''}, run {runs})" in \
        text(app.stream_status), text(app.stream_status)
    app._stream_update(ended)
    # a stream whose spectra are NaN at points the model reads: which, and the remedy
    app._show_counters({**app.stream["stats"], "unread_points": [200, 201, 700]})
    assert "NaN in every malformed spectrum at points <b>200-201,700</b>" in app.counters.value


def test_a_class_range_is_dragged_or_typed_in_full():
    """Train IDs have ten digits: the range is typed or read in two fields beside
    the slider, which the slider's own readout cut short ("1200000000 - 120000")."""
    row = LabelRow("before", 1_200_000_000, 1_200_000_200, (1_200_000_000, 1_200_000_040))
    assert not row.range.readout and (row.start.value, row.stop.value) == (1_200_000_000, 1_200_000_040)
    row.range.value = (1_200_000_010, 1_200_000_050)  # dragged
    assert (row.start.value, row.stop.value) == (1_200_000_010, 1_200_000_050)
    row.stop.value = 1_200_000_100  # typed
    assert row.spec() == "before=1200000010:1200000100"
    row.start.value = 1_200_000_150  # typed past the stop: the two swap, the range stays a range
    assert row.range.value == (1_200_000_100, 1_200_000_150)
    assert (row.start.value, row.stop.value) == (1_200_000_100, 1_200_000_150)
    row.stop.value = 1_300_000_000  # beyond the run: its end
    assert row.spec() == "before=1200000100:1200000200"


def test_redraws_from_two_threads_give_one_consistent_figure(client):
    # the WebSocket reader and the stream's follower both redraw as a stream ends
    app = SpectraClassifierApp("spectra-run", source=DEMO_SOURCE, key=DEMO_KEY, client=client)
    for tid in range(40):
        app._add_train({"train_id": 10000 + tid, "class_fractions": {"before": 0.25, "after": 0.75},
                        "mean_confidence": 0.9, "ambiguous_fraction": 0.1,
                        "phase": [10000, 10000 + tid, "mixed", tid + 1]})
    start = threading.Barrier(4)

    def redraw():
        start.wait(30)
        for _ in range(15):
            app._draw_stream()

    threads = [threading.Thread(target=redraw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    frac_ax, conf_ax = app.stream_fig.axes
    assert [line.get_label() for line in frac_ax.lines] == ["after", "before"]
    assert [line.get_label() for line in conf_ax.lines] == ["mean confidence", "ambiguous fraction"]
    (band,) = frac_ax.patches  # one run of mixed trains, drawn once
    assert (band.get_x(), band.get_width()) == (9999.5, 40)


@pytest.mark.skipif(not dials.dials_available(), reason=dials.install_hint())
def test_a_compressed_file_validates_on_the_worker_that_trained(trained, client):
    # training imported TensorFlow in the server's one Dask worker, which then
    # holds HDF5_PLUGIN_PATH=disable: DIALS, started from it, must still decode bitshuffle
    job = client.submit_conversion(f"data/{SLUG}", "after-training.nxs", mode="copy", overwrite=True,
                                   trains={"start": 0, "stop": 2}, distance=150)
    done = client.wait_job(job["id"], timeout=WAIT)
    assert done["state"] == "done", done.get("error")
    report = client.validate("after-training.nxs")
    assert report["ok"], [f for f in report["findings"] if f["severity"] == "error"]
    assert "dxtbx" in report["checked_by"] and report["read"]["dxtbx"]["format_class"] == "FormatNXmx"


def test_a_new_app_shows_the_models_of_the_server(trained, client):
    again = SpectraClassifierApp("spectra-run", source=DEMO_SOURCE, key=DEMO_KEY, client=client)
    assert trained.model["id"] in [v for _, v in again.models.options]
    assert again.model is not None and again.sep_box.children[0] is again.sep_canvas
    assert "what training found" in again.sep_box.children[1].value
    # the model drawn is the one chosen: what Evaluate, Classify and Start use
    assert again.models.value == again.model["id"] == again.chosen_model()


def test_a_model_removed_elsewhere_is_said_to_be_gone(trained, client, widget_root):
    """Another notebook (or the API) removes the model these apps have chosen:
    Evaluate, Classify, Start, Remove and choosing it again from a list drawn
    before say so, and each app then offers only the models still there."""
    app = SpectraClassifierApp("spectra-run", source=DEMO_SOURCE, key=DEMO_KEY, max_per_label=64, params=SMALL,
                               client=client, poll_interval=0.3)
    assert app.train() is not None, app.train_status.value
    app.wait_training(WAIT)
    gone = app.model["id"]
    viewers = [SpectraClassifierApp("spectra-run", source=DEMO_SOURCE, key=DEMO_KEY, client=client)
               for _ in range(4)]
    assert [v.models.value for v in viewers] == [gone] * 4
    viewers[1].predict_path.value = "spectra-run"
    assert viewers[3].remove_model() is None  # the first click asks
    client.remove_model(gone)

    app.models.value = trained.model["id"]
    app.models.value = gone  # chosen again from the list drawn before the removal
    said = [(app, app.train_status)] + [
        (v, status) for v, call, status in zip(
            viewers, ("evaluate", "classify", "start_stream", "remove_model"),
            (viewers[0].evaluate_status, viewers[1].predict_status, viewers[2].stream_status,
             viewers[3].evaluate_status))
        if getattr(v, call)() is None]
    assert len(said) == 5
    for owner, status in said:
        assert f"model {gone[:8]} is no longer on this server" in text(status)
        assert "daas-status-error" in status._dom_classes
        assert owner.models.value is None and gone not in [m for _, m in owner.models.options]
        assert trained.model["id"] in [m for _, m in owner.models.options]
    assert [(v.model, v.sep_box.children) for v in viewers] == [(None, ())] * 4


def test_a_bridge_stream_can_keep_waiting_through_silence(trained):
    trained.endpoint.value = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    trained.keep_waiting.value, trained.silent_s = True, 2.0
    try:
        stream = trained.start_stream()
        assert stream is not None, trained.stream_status.value
        assert stream["options"]["source"]["max_reconnects"] is None  # the server reconnects for ever
        # the live plot's reader gives up on a stream that says nothing for silent_s + 5 s; this
        # one, waiting, sends its counters each second, and the reader stays for its trains
        time.sleep(10)
        assert trained._ws_thread.is_alive(), "the live plot stopped following the stream"
        assert trained.client.get_stream(stream["id"])["state"] == "running"
        until(lambda: re.search(r"reconnects: <b>[1-9]", trained.counters.value), 60, "reconnects counted")
        trained.stop_stream()
        until(lambda: not trained.start_button.disabled, 120, "the stream to end")
        assert trained.stream["state"] == "stopped"
    finally:
        trained.endpoint.value, trained.keep_waiting.value, trained.silent_s = "", False, 60.0


def test_the_live_plot_reconnects_when_its_connection_breaks(trained, monkeypatch):
    # a proxy restarting drops the WebSocket while the stream runs on in the server
    app, real = trained, trained.client.stream_messages
    calls, note_seen = [], threading.Event()

    def dropped_after_three(stream_id, timeout=30.0):
        calls.append(stream_id)
        if len(calls) > 1:  # the app's next connection: once the test has read the app's line
            assert note_seen.wait(60)
            yield from real(stream_id, timeout=timeout)
            return
        for n, msg in enumerate(real(stream_id, timeout=timeout)):
            yield msg
            if n == 3:
                raise DaasApiError("WebSocket closed (1006)")

    monkeypatch.setattr(app.client, "stream_messages", dropped_after_three)
    app.train_rate.value = 5  # the demo run's 200 trains last 40 s: the reconnection well within them
    stream = app.start_stream()
    assert stream is not None, app.stream_status.value
    try:
        until(lambda: "live plot reconnecting after: WebSocket closed (1006)" in text(app.stream_status),
              60, "the broken connection named in the stream's line")
        assert "daas-status-warning" in app.stream_status._dom_classes
        seen = len(app.stream_trains)
        note_seen.set()
        until(lambda: len(app.stream_trains) >= seen + 5, WAIT, "trains after the reconnection")
        assert len(calls) == 2 and app._ws_thread.is_alive()
        until(lambda: "reconnecting" not in text(app.stream_status), 60, "the note gone once trains come")
        assert app.stream_trains == sorted(set(app.stream_trains))  # the hello's repeated train not drawn twice
    finally:
        note_seen.set()
        app.stop_stream()
        until(lambda: not app.start_button.disabled, 120, "the stream to end")
        app.wait_stream(120)
    assert app.stream["state"] in ("stopped", "finished"), app.stream
    # no results file: the phases by train still said at the end
    assert not (app.stream["options"] or {}).get("output")
    first, last, phase, n = app.stream["results"]["phases"][0]
    assert f"; phases by train: {first}-{last} {phase}" in text(app.stream_status) or \
        f"; phases by train: {first} {phase}" in text(app.stream_status), text(app.stream_status)


def test_evaluate_the_chosen_model_on_the_classes_labelled(trained, client, monkeypatch):
    """Evaluate scores the chosen model on the spectra and classes in the
    form, as the API scores them: the accuracy line, the confusion matrix and
    each bin; a class the model does not know is a message, nothing shown."""
    app = SpectraClassifierApp("spectra-run", source=DEMO_SOURCE, key=DEMO_KEY, max_per_label=8, client=client)
    app.models.value = trained.model["id"]
    seen = while_called(monkeypatch, client, "evaluate", app.evaluate_button, app.evaluate_status)
    result = app.evaluate()
    assert result is not None, app.evaluate_status.value
    [(disabled, status)] = seen
    assert disabled and f">evaluating model {trained.model['id'][:8]} on spectra-run ...<" in status
    assert not app.evaluate_button.disabled
    monkeypatch.undo()
    want = client.evaluate(trained.model["id"], "spectra-run", app.label_specs(), source=DEMO_SOURCE,
                           key=DEMO_KEY, max_per_label=8, axis_source=DEMO_AXIS_SOURCE, axis_key="twoTheta")
    assert result["confusion"] == want["confusion"] and result["spectra"] == 16
    status = text(app.evaluate_status)
    assert f">model {trained.model['id'][:8]} on spectra-run: accuracy " in status
    assert f"({result['correct']} of {result['scored']} spectra)" in status
    # the same classes of the same run as the model was trained with: said, in the warning's colour
    assert "; note: " in status and "were labelled for training this model too" in status
    assert "daas-status-warning" in app.evaluate_status._dom_classes
    matrix, bins = (text(w) for w in app.evaluation_box.children[:2])
    for name, counts in zip(result["classes"], result["confusion"]):
        cells = re.search(rf"<tr><td[^>]*>{name}</td>(.*?)</tr>", matrix).group(1)
        assert re.findall(r">(\d+)</td>", cells) == [str(v) for v in counts]
    assert bins.count("<tr>") == 1 + len(trained.model["result"]["bins"])  # the header, then each bin
    assert "on the axis" in bins  # each bin's span in 2-theta beside its points

    assert len(app.evaluation_box.children) == 2 + bool(result["mistaken"])  # a list only of some to look at
    # the classes named the wrong way round: every spectrum to look at, the first 20 listed by train and pulse
    first, second = app.labels.children
    first.name.value, second.name.value = second.name.value, first.name.value
    swapped = app.evaluate()
    assert swapped["mistaken_count"] == swapped["spectra"] == 16
    listed = text(app.evaluation_box.children[2])
    assert "to look at: 16 of the 16 spectra predicted otherwise than labelled" in listed
    assert listed.count("<tr>") == 1 + 16 and re.search(r">train \d+ pulse \d+<", listed)

    app.labels.children[0].name.value = "hot"
    assert app.evaluate() is None
    assert "labels not among the model's classes: hot" in text(app.evaluate_status)
    assert app.evaluation_box.children == () and not app.evaluate_button.disabled


def test_remove_a_model_on_a_second_click(trained, client, monkeypatch):
    """Remove asks first (choosing another model keeps it); the second click
    removes it from the server, and the app shows the latest other model; a
    model a stream classifies with stays, saying why."""
    app = SpectraClassifierApp("spectra-run", source=DEMO_SOURCE, key=DEMO_KEY, max_per_label=64, params=SMALL,
                               client=client, poll_interval=0.3)
    assert app.train() is not None, app.train_status.value
    app.wait_training(WAIT)
    doomed = app.model["id"]
    assert app.models.value == doomed and app.models.options[-1][1] == doomed

    assert app.remove_model() is None and app.remove_button.description == "Remove: sure?"
    assert f"click Remove again to remove model {doomed[:8]}" in text(app.evaluate_status)
    app.models.value = trained.model["id"]  # another model chosen: the first click forgotten
    assert app.remove_button.description == "Remove" and app.model["id"] == trained.model["id"]
    app.models.value = doomed
    assert app.remove_model() is None and doomed in [m["id"] for m in client.list_models()]

    # a stream classifies with it: refused, the model kept
    app.train_rate.value = 2.0
    assert app.start_stream() is not None, app.stream_status.value
    try:
        assert app.remove_model() is None
        assert "classifies stream" in text(app.evaluate_status)
        assert "daas-status-error" in app.evaluate_status._dom_classes
        assert app.models.value == doomed and not app.remove_button.disabled
    finally:
        app.stop_stream()
        app.wait_stream(WAIT)

    assert app.remove_model() is None  # asked again: a refusal forgot the first click
    seen = while_called(monkeypatch, client, "remove_model", app.remove_button, app.evaluate_status)
    assert app.remove_model() == doomed
    [(disabled, status)] = seen
    assert disabled and f">removing model {doomed[:8]} ...<" in status and not app.remove_button.disabled
    assert f"model {doomed[:8]} removed" in text(app.evaluate_status)
    assert doomed not in [m for _, m in app.models.options] and doomed not in [m["id"] for m in client.list_models()]
    assert app.models.value == app.models.options[-1][1] == app.model["id"]  # the latest other, drawn
    assert app.sep_box.children[0] is app.sep_canvas


def test_mistakes_are_messages(client, trained):
    app = SpectraClassifierApp("spectra-run", client=client)  # no source/key: cannot read the run
    assert "source and key" in text(app.train_status) and "daas-status-error" in app.train_status._dom_classes
    assert "Error" not in text(app.train_status)  # a mistake in the form, said as such: no exception's name
    for data, source, key, said in (
            ("no-such-run", DEMO_SOURCE, DEMO_KEY, "no-such-run does not exist"),
            ("spectra-run", "NO/SUCH:output", DEMO_KEY, "source 'NO/SUCH:output' is not in the run; it has: "),
            ("spectra-run", DEMO_SOURCE, "data.nope", "key 'data.nope' is not in")):
        wrong = SpectraClassifierApp(data, source=source, key=key, client=client)
        assert said in text(wrong.train_status) and "Error" not in text(wrong.train_status), text(wrong.train_status)
    assert "it has: data.intensity, " in text(wrong.train_status)  # the keys to choose from
    trained.predict_path.value = "no-such-file.h5"
    assert trained.classify() is None
    message = text(trained.predict_status)
    assert "no-such-file.h5" in message and "Traceback" not in message
    assert not trained.predict_button.disabled  # enabled again for the corrected path
    empty = SpectraClassifierApp("spectra-run", source=DEMO_SOURCE, key=DEMO_KEY, client=client)
    empty.models.options = []
    assert empty.start_stream() is None
    assert "train a model first" in text(empty.stream_status)


def test_replay_part_of_the_run(trained, widget_root):
    """"replay trains": only those trains of the run replayed (all of them),
    the stream ending on the last; a malformed span, or one beside a bridge, a message,
    and nothing starts."""
    from extra_data import RunDirectory

    app = trained
    tids = [int(t) for t in RunDirectory(str(widget_root["root"] / "spectra-run")).train_ids]
    # no rate: read as fast as it is classified, none dropped however loaded the machine
    rate, app.train_rate.value, app.replay_trains.value = app.train_rate.value, 0, f"{tids[10]}-{tids[15]}"
    try:
        stream = app.start_stream()
        assert stream is not None, app.stream_status.value
        assert stream["options"]["source"]["train_ids"] == [tids[10], tids[15]]
        app.wait_stream(120)
        assert app.stream["state"] == "finished", app.stream
        assert (app.stream["stats"]["trains"], app.stream["stats"]["dropped"]) == (6, 0), app.stream["stats"]
        assert app.stream["last_train"]["train_id"] == tids[15]
        assert set(app.stream_trains) <= set(tids[10:16]) and app.stream_trains[-1] == tids[15]
        for bridge, span, message in (("", "x", 'expected FIRST-LAST train ids'),
                                      ("", f"{tids[15]}-{tids[10]}", f"train {tids[15]} comes after"),
                                      ("tcp://127.0.0.1:1", "1-2", "a bridge sends the trains it has")):
            app.endpoint.value, app.replay_trains.value = bridge, span
            assert app.start_stream() is None
            assert message in text(app.stream_status) and "replay trains" in text(app.stream_status), \
                text(app.stream_status)
        assert app.stream["id"] == stream["id"] and not app.start_button.disabled
    finally:
        app.endpoint.value = app.replay_trains.value = ""
        app.train_rate.value = rate


def test_a_streams_axis_file_reaches_the_server(trained, widget_root):
    """The "axis file" field: sent with the stream (an axis that does not
    cover the model's: the server's reason shown); a malformed entry is a
    message, and nothing starts."""
    import numpy as np

    np.savetxt(widget_root["root"] / "detector-axis.txt", np.linspace(20, 90, 700))
    try:
        for value, message in (("detector-axis.txt", "the spectra's axis runs from 20 to 90"),
                               ("calibration.h5:/", "give FILE, or FILE:/DATASET")):
            trained.stream_axis.value = value
            assert trained.start_stream() is None
            assert message in text(trained.stream_status), text(trained.stream_status)
        assert not trained.start_button.disabled
    finally:
        trained.stream_axis.value = ""


def test_a_streams_axis_key_reads_each_train_through_its_own(trained):
    """The "axis key": a replay of the run read through the 2-theta kept
    with each train (the model's own: nothing rejected); beside an axis
    file, or not a KEY or SOURCE KEY, a message, and nothing starts. A
    train rejected for its axis is counted and said why."""
    app = trained
    app.stream_axis_key.value, app.train_rate.value = f"{DEMO_AXIS_SOURCE} twoTheta", 50
    try:
        stream = app.start_stream()
        assert stream is not None, app.stream_status.value
        assert {k: stream["options"]["source"][k] for k in ("axis_source", "axis_key")} == \
            {"axis_source": DEMO_AXIS_SOURCE, "axis_key": "twoTheta"}
        until(lambda: len(app.stream_trains) >= 3, WAIT, "three streamed trains")
        app.stop_stream()
        until(lambda: not app.start_button.disabled, 120, "the stream to end")
        app.wait_stream(120)
        stats = app.stream["stats"]
        assert stats["spectra"] > 0 and (stats["malformed"], stats["unreadable_axis"]) == (0, 0), stats
        assert "rejected for their axis" not in app.counters.value
        for file, key, message in (("axis.txt", "twoTheta", "not both"),
                                   ("", "A B C", "axis key 'A B C': give KEY, or SOURCE KEY")):
            app.stream_axis.value, app.stream_axis_key.value = file, key
            assert app.start_stream() is None
            assert message in text(app.stream_status), text(app.stream_status)
        app._show_counters({**stats, "unreadable_axis": 2, "axis_error": "train 7: the axis <x> has NaN"})
        assert "trains rejected for their axis: <b>2</b>; the last, train 7: the axis &lt;x&gt; has NaN" \
            in app.counters.value
    finally:
        app.stream_axis.value = app.stream_axis_key.value = ""


def test_the_axis_field_is_found_on_load_unless_typed(client, widget_root):
    """Load fills "axis" with the run's axis key; what the user types stays
    through another Load; an entry that is neither KEY nor SOURCE KEY is a
    message, and no training starts. A file then loaded has its NeXus axis
    said, or its absence, and not the run's key."""
    series = make_transition_series(n_spectra=10, n_points=300, random_state=3)
    with h5py.File(widget_root["root"] / "with-axis.nxs", "w") as f:
        f.attrs["default"] = "entry"
        f.create_group("entry").attrs["default"] = "data"
        data = f["entry"].create_group("data")
        data.attrs.update(NX_class="NXdata", signal="intensity", axes=[".", "two_theta"])
        data["intensity"], data["two_theta"] = series.X, series.axis
    with h5py.File(widget_root["root"] / "no-axis.h5", "w") as f:
        f["spectra"] = series.X
    app = SpectraClassifierApp("spectra-run", source=DEMO_SOURCE, key=DEMO_KEY, client=client)
    assert app.axis.value == f"{DEMO_AXIS_SOURCE} twoTheta"
    app.axis.value = "twoTheta"  # a key alone: of the spectra's source
    app.load()
    assert app.axis.value == "twoTheta" and "; axis " not in app.data_info.value
    assert app._axis_options() == {"axis_key": "twoTheta"}
    app.axis.value = "A B C"
    jobs = len(client.list_models())
    assert app.train() is None
    assert "give a run's SOURCE KEY, or KEY of the spectra's source" in text(app.train_status)
    assert len(client.list_models()) == jobs
    app.axis.value = ""
    app.load()
    assert app.axis.value == f"{DEMO_AXIS_SOURCE} twoTheta"
    app.data.value = "with-axis.nxs"
    app.load()
    assert app.axis.value == "" and "; axis: the NeXus one, 10 to 90" in text(app.data_info)
    app.data.value = "no-axis.h5"
    app.load()
    assert 'no axis found (name its dataset in "axis")' in text(app.data_info)
