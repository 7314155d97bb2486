"""``SpectraClassifierApp``: label spectra, train, evaluate, classify a file, classify a live stream.

Training and streaming are jobs of the server extension (they outlive the
kernel); the app follows them from background threads and draws with
matplotlib on ipympl canvases: the separability/weight-per-bin figure over
the training curves, the confidences of a classified file, and the class
fractions and confidence per train of a stream, with its counters.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path

import ipywidgets as W
import numpy as np

from .canvas import figure_widget
from .client import default_client, local_path, relative_to_root
from .figures import prediction_figure, separability_figure, stream_figure
from .jobs_table import JobsTable, when
from .messages import FormError, StatusLine, error_text, table, waiting
from .polling import Follower, in_background, join_within

ACTIVE = ("queued", "running")
STREAM_ACTIVE = ("starting", "running")
REDRAW_S = 0.5  # the live plot is redrawn at most this often
MAX_POINTS = 5000  # trains kept in the live plot
#: seconds without a message from a stream (a train's summary, or its counters, sent each
#: second while no train comes) before the live plot takes its connection for broken
SILENT_S = 60.0
RECONNECT_S = 2.0  # pause before the live plot opens a broken connection again
MISTAKEN_SHOWN = 20  # of the spectra an evaluation got wrong, those listed


def _source_key(text: str, field: str, expected: str) -> dict:
    """``KEY`` or ``SOURCE KEY`` (names hold no spaces) as ``axis_key``/``axis_source``."""
    parts = text.split()
    if len(parts) > 2:
        raise FormError(f"{field} {text!r}: give {expected}")
    return {"axis_source": parts[0], "axis_key": parts[1]} if len(parts) == 2 else {"axis_key": parts[0]}


def _axis_name(job: dict) -> str | None:
    """What a training job's axis is called: its key in the run (``twoTheta``), or the last
    name of its dataset in the file (``q`` of ``/entry/data/q``); None where not named."""
    opts = job.get("options") or {}
    name = opts.get("axis_key") or (opts.get("axis_dataset") or "").rstrip("/").rsplit("/", 1)[-1]
    return name or None


class LabelRow(W.HBox):
    """One class: a name and a range of trains (a run) or of rows (a file), stop exclusive,
    dragged on the slider or typed in full beside it (a slider's readout cuts a range of
    10-digit train IDs short)."""

    def __init__(self, name: str, lo: int, hi: int, value: tuple[int, int]):
        self.name = W.Text(value=name, layout=W.Layout(width="140px"))
        self.range = W.IntRangeSlider(min=lo, max=hi, value=value, readout=False, layout=W.Layout(width="340px"),
                                      continuous_update=False)
        bounded = {"min": lo, "max": hi, "layout": W.Layout(width="125px")}
        self.start = W.BoundedIntText(value=value[0], tooltip="start: the first labelled", **bounded)
        self.stop = W.BoundedIntText(value=value[1], tooltip="stop: the first not labelled", **bounded)
        self._from_slider = False  # the slider sets both fields: neither moves it meanwhile
        self.range.observe(self._slider_moved, "value")
        self.start.observe(self._typed, "value")
        self.stop.observe(self._typed, "value")
        super().__init__([self.name, self.range, self.start, W.Label("to"), self.stop])

    def _slider_moved(self, change) -> None:
        self._from_slider = True
        try:
            self.start.value, self.stop.value = change["new"]
        finally:
            self._from_slider = False

    def _typed(self, change) -> None:
        if not self._from_slider:
            self.range.value = tuple(sorted((self.start.value, self.stop.value)))

    def spec(self) -> str:
        start, stop = self.range.value
        return f"{self.name.value.strip()}={start}:{stop}"


def model_label(job: dict) -> str:
    """A model in the dropdown: its id and classes, and -- to tell a beamtime's models
    apart -- the spectra it was trained on and when (UTC)."""
    data = Path(str((job.get("options") or {}).get("data") or "?")).name
    return f"{job['id'][:8]} ({', '.join(job['result']['classes'])}) {data}, {when(job.get('created'))[:16]}"


def _prediction_line(result: dict) -> str:
    """A file classified, in a line: the spectra per class, the ambiguous,
    those not classified and, where they share NaN points, the remedy."""
    from server_ext.spectra.inputs import point_runs

    per = result["per_class"]
    line = (", ".join(f"{c}: {v['spectra']}" for c, v in per.items())
            + f"; ambiguous: {sum(v['ambiguous'] for v in per.values())} of {result['spectra']}")
    if result["unread"]:
        more = ", ..." if result["unread"] > len(result["unread_rows"]) else ""
        line += (f"; not classified (NaN or inf, or flat): {result['unread']}, spectra "
                 f"{', '.join(map(str, result['unread_rows']))}{more}")
    if result["unread_points"]:
        line += (f"; NaN in every one at points {point_runs(result['unread_points'], spec=True)}: if the "
                 "detector masks them since training, type them in \"masked points\" and classify again")
    return line


def _empty_series() -> dict:
    """The live plot's data; ``phases``: per run of trains, by its first
    train, ``[last train seen, phase]``."""
    return {"trains": [], "fractions": {}, "confidence": [], "ambiguous": [], "phases": {}}


class SpectraClassifierApp(W.VBox):
    """Train and run the streaming spectra classifier from a notebook.

    ``data``: a run directory or an HDF5/NeXus file of spectra (default: the
    session's dataset); ``source``/``key``: where a run holds its spectra;
    ``dataset``: the spectra dataset in a file (default: found); ``axis``:
    the spectra's axis, a run's ``"SOURCE KEY"`` (or ``KEY`` of ``source``;
    default: the one control key of a run that fits, found on Load) or a
    file's dataset (default: its NeXus axis); ``max_per_label``: spectra
    read per class from a file or a run; ``params``: ``BinnedSpectraClassifier``
    parameters; ``client``: a ``DaasClient``.
    """

    def __init__(self, data: str | Path | None = None, *, source: str | None = None, key: str | None = None,
                 dataset: str | None = None, axis: str | None = None, max_per_label: int | None = 200,
                 params: dict | None = None, client=None, poll_interval: float = 0.5, **kw):
        self.client = client or default_client()
        self.poll_interval = poll_interval
        self.silent_s = SILENT_S
        self.params = dict(params or {})
        self.max_per_label = max_per_label
        self.session = self.client.session()
        self.root_dir = self.session.get("root_dir")
        default = data or self.session.get("dataset_path") or ""
        self.model: dict | None = None
        self.prediction: dict | None = None
        self.evaluation: dict | None = None
        self.stream: dict | None = None
        self.stream_trains: list[int] = []
        self._series = _empty_series()  # the live plot's, per train
        self.follower: Follower | None = None
        self.stream_follower: Follower | None = None
        self._ws_stop = threading.Event()
        self._ws_thread: threading.Thread | None = None
        self._reader_note = ""  # why the live plot is not following its stream just now
        # The WebSocket reader and the stream's follower both redraw (the last
        # train, the final state): one at a time, or the figure mixes two drawings.
        self._stream_lock = threading.Lock()
        self._training_data = None
        self._ids: np.ndarray | None = None
        self._found_axis = ""  # what Load put in "axis": found again for another run

        style = {"description_width": "110px"}  # "masked points" in full
        wide = W.Layout(width="95%")
        # -- data and labels
        self.data = W.Text(value=relative_to_root(default, self.root_dir) if default else "", description="spectra",
                           style=style, layout=wide, placeholder="run directory or HDF5 file")
        self.source = W.Text(value=source or "", description="source", style=style, layout=wide,
                             placeholder="run source holding the spectra (runs only)")
        self.key = W.Text(value=key or "", description="key", style=style, placeholder="e.g. data.intensity")
        self.dataset = W.Text(value=dataset or "", description="dataset", style=style,
                              placeholder="files only; empty: found")
        self.load_button = W.Button(description="Load", icon="folder-open")
        # strain is modelled about the axis' 0: without it, about point 0
        self.axis = W.Text(value=axis or "", description="axis", style=style, layout=wide,
                           placeholder="the spectra's axis: a run's SOURCE KEY (found on Load where one "
                                       "fits), a file's dataset (empty: its NeXus axis)")
        self.data_info = W.HTML()
        self.labels = W.VBox()
        self.add_label = W.Button(description="add class", icon="plus")
        # -- training
        # from few curves per class thermal drift can pass for a cell change:
        # the scientist who knows the classes share their cell says so
        self.same_cell = W.Checkbox(value=self.params.get("learn_position") is False, indent=False,
                                    description="the classes share their cell: peak position is no difference "
                                                "(learn_position=False)", layout=W.Layout(width="auto"))
        self.train_button = W.Button(description="Train", button_style="primary", icon="graduation-cap")
        self.train_button.add_class("daas-train")
        self.train_progress = W.FloatProgress(value=0, min=0, max=1, layout=W.Layout(width="50%"))
        self.train_progress.add_class("daas-train-progress")
        self.train_status = StatusLine()
        self.models = W.Dropdown(description="model", options=[], style=style, layout=W.Layout(width="60%"))
        # a model's held-out accuracy says how its bins told the labelled spectra apart; the
        # scientist needs how it does on spectra labelled since: load them, label, Evaluate
        self.evaluate_button = W.Button(description="Evaluate", icon="check-square",
                                        tooltip="score the chosen model on the spectra and classes above "
                                                "(spectra it was not trained on)")
        self.evaluate_button.add_class("daas-evaluate")
        # models pile up over a beamtime: one no longer wanted goes, its files too, on a second click
        self.remove_button = W.Button(description="Remove", icon="trash",
                                      tooltip="remove the chosen model from this server, its saved files too")
        self.remove_button.add_class("daas-remove-model")
        self._removing: str | None = None  # the model the first click asked about
        self.evaluate_status = StatusLine()
        self.evaluation_box = W.VBox()
        self.evaluation_box.add_class("daas-evaluation")
        self.sep_fig, self.sep_canvas = figure_widget(9, 5.5)
        self.sep_box = W.VBox()
        self.sep_box.add_class("daas-separability")
        # -- classify a file
        self.predict_path = W.Text(description="file", style=style, layout=wide,
                                   placeholder="HDF5 file of spectra (n_spectra, n_points)")
        self.predict_axis = W.Text(description="axis", style=style, layout=wide,
                                   placeholder="the file's axis dataset, where its grid is not the model's "
                                               "(e.g. /entry/data/q)")
        self.predict_button = W.Button(description="Classify", icon="tags")
        # one field for tabs 2 and 3: what the detector masks holds for both
        self.mask_points = W.Text(description="masked points", style=style, layout=wide,
                                  placeholder="points the detector masks since training, e.g. 700,1000-1039")
        self.predict_status = StatusLine()
        self.pred_fig, self.pred_canvas = figure_widget(8, 3)
        self.pred_box = W.VBox()
        # -- stream
        self.endpoint = W.Text(description="bridge", style=style, layout=wide,
                               placeholder="tcp://host:port of a Karabo bridge; empty: replay the run above")
        # between runs a bridge may fall silent for minutes: stopping is then the user's call
        self.keep_waiting = W.Checkbox(value=False, description="keep waiting while the bridge is silent",
                                       indent=False)
        self.stream_axis = W.Text(description="axis file", style=style, layout=wide,
                                  placeholder="the detector's positions, where its grid is not the model's: "
                                              "a text or .npy file, or HDF5 FILE:/dataset")
        self.stream_axis_key = W.Text(description="axis key", style=style, layout=wide,
                                      placeholder="or the key sent with each train's spectra: KEY, or SOURCE KEY "
                                                  "of another source")
        self.stream_output = W.Text(description="results file", style=style, layout=wide,
                                    placeholder="optional: a new HDF5 file keeping every pulse's label "
                                                "(e.g. processed/labels-r0001.h5)")
        self.train_rate = W.FloatText(value=10.0, description="replay Hz", style=style)
        # two 10-digit train IDs and the placeholder in full
        self.replay_trains = W.Text(description="replay trains", style=style, layout=W.Layout(width="430px"),
                                    placeholder="FIRST-LAST train ids; empty: the whole run")
        # what "phase now" and the phases by train call a class's phase: a series whose
        # transitions hold long mixtures may call a train by its majority instead
        self.phase_purity = W.BoundedFloatText(
            value=0.9, min=0.05, max=1.0, step=0.05, description="phase purity", style=style,
            tooltip="a train is in a class's phase when the class holds at least this fraction of its "
                    "pulses, else mixed")
        self.start_button = W.Button(description="Start", button_style="success", icon="play")
        self.start_button.add_class("daas-stream-start")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.counters = W.HTML()
        self.counters.add_class("daas-stream-counters")
        self.stream_status = StatusLine()
        self.stream_fig, self.stream_canvas = figure_widget(9, 4.5)
        self.stream_box = W.VBox()
        self.stream_box.add_class("daas-stream-plot")
        self.jobs = JobsTable("training jobs of this server")

        self.load_button.on_click(lambda _: self.load())
        self.add_label.on_click(lambda _: self._add_label())
        self.train_button.on_click(lambda _: self.train())
        self.evaluate_button.on_click(lambda _: self.evaluate())
        self.remove_button.on_click(lambda _: self.remove_model())
        self.predict_button.on_click(lambda _: self.classify())
        self.start_button.on_click(lambda _: self.start_stream())
        self.stop_button.on_click(lambda _: self.stop_stream())
        self.models.observe(lambda ch: self._model_chosen(ch["new"]), names="value")

        tabs = W.Tab([
            W.VBox([self.data, W.HBox([self.source]), W.HBox([self.key, self.dataset, self.load_button]),
                    self.axis, self.data_info, W.HTML("<b>classes</b> (ranges of trains or rows, stop exclusive)"),
                    self.labels, self.add_label, self.same_cell,
                    W.HBox([self.train_button, self.train_progress]), self.train_status,
                    W.HBox([self.models, self.evaluate_button, self.remove_button]), self.evaluate_status,
                    self.evaluation_box,
                    self.sep_box, self.jobs]),
            W.VBox([W.HBox([self.predict_path, self.predict_button]), self.predict_axis, self.mask_points,
                    self.predict_status,
                    self.pred_box]),
            W.VBox([self.endpoint, self.keep_waiting, self.mask_points, self.stream_axis, self.stream_axis_key,
                    self.stream_output,
                    W.HBox([self.train_rate, self.replay_trains]),
                    W.HBox([self.phase_purity, self.start_button, self.stop_button]),
                    self.counters, self.stream_status, self.stream_box]),
        ])
        for i, title in enumerate(["1. label and train", "2. classify a file", "3. stream"]):
            tabs.set_title(i, title)
        self.tabs = tabs
        super().__init__([W.HTML("<h3>Spectra classifier</h3>"), tabs], **kw)
        self.add_class("daas-spectra-app")
        self._refresh_models()
        self._resume()
        if self.data.value:
            self.load()

    # ----------------------------------------------------------------- data
    def _is_run(self) -> bool:
        return local_path(self.data.value, self.root_dir).is_dir()

    def load(self) -> None:
        """Read the train IDs (run) or row count (file) and offer a first and a last fifth as classes."""
        try:
            path = local_path(self.data.value, self.root_dir)
            if not path.exists():
                raise FormError(f"{self.data.value} does not exist (a run directory or an HDF5 file)")
            if path.is_dir():
                from server_ext.spectra.sources import RunSource

                if not self.source.value or not self.key.value:
                    raise FormError("give the source and key that hold the spectra in this run")
                kd = RunSource(path, self.source.value, self.key.value).keydata  # names what the run has
                ids = np.asarray(kd.train_ids)
                what = f"{len(ids)} trains ({ids[0]} - {ids[-1]}), spectra of {kd.entry_shape[-1]} points"
                what += self._find_axis(path, kd.entry_shape[-1])
                lo, hi = int(ids[0]), int(ids[-1]) + 1
            else:
                from server_ext.spectra.datafiles import open_spectra

                with open_spectra(path, self.dataset.value or None) as (_, dset, axis):
                    ids = np.arange(dset.shape[0])
                    what = f"{dset.shape[0]} spectra of {dset.shape[-1]} points in {dset.name}"
                what += self._file_axis(axis)
                lo, hi = 0, len(ids)
        except Exception as e:  # noqa: BLE001
            self.data_info.value = ""
            self.train_status.error(e)
            return
        self._ids = ids
        self.data_info.value = html.escape(what)
        fifth = max(len(ids) // 5, 1)
        self.labels.children = [
            LabelRow("before", lo, hi, (lo, int(ids[fifth]) if len(ids) > fifth else hi)),
            LabelRow("after", lo, hi, (int(ids[-fifth]), hi)),
        ]
        self.train_status.show("label the classes, then Train")

    def _find_axis(self, path, n_points: int) -> str:
        """Fill "axis" with the run's one control key that fits the spectra (unless
        the user typed one); what was found, said."""
        from server_ext.spectra.datafiles import find_run_axis

        if self.axis.value.strip() and self.axis.value != self._found_axis:
            return ""
        found = [" ".join(c) for c in find_run_axis(path, n_points)]
        self.axis.value = self._found_axis = found[0] if len(found) == 1 else ""
        if len(found) == 1:
            return f"; axis {found[0]}"
        if found:
            return f"; axis: one of {', '.join(found)}?"
        return "; no axis in the run: peak positions are point indices"

    def _file_axis(self, axis) -> str:
        """What a file's axis will be (``axis``: its NeXus one, or None), unless the user typed one."""
        if self.axis.value == self._found_axis:  # a run's, found on an earlier Load
            self.axis.value = self._found_axis = ""
        if self.axis.value.strip():
            return ""
        if axis is not None:
            return f"; axis: the NeXus one, {axis[0]:g} to {axis[-1]:g}"
        return '; no axis found (name its dataset in "axis"): peak positions are point indices'

    def _axis_options(self) -> dict:
        """The "axis" field as training options: a run's source and key, a file's dataset."""
        text = self.axis.value.strip()
        if not text:
            return {}
        if not self._is_run():
            return {"axis_dataset": text}
        return _source_key(text, "axis", "a run's SOURCE KEY, or KEY of the spectra's source")

    def _add_label(self) -> None:
        if self._ids is None:
            self.train_status.error("load spectra first")
            return
        first = self.labels.children[0].range
        self.labels.children = [*self.labels.children,
                                LabelRow(f"class{len(self.labels.children) + 1}", first.min, first.max,
                                         (first.min, first.min + 1))]

    def label_specs(self) -> list[str]:
        return [row.spec() for row in self.labels.children]

    # ------------------------------------------------------------- training
    def train(self) -> dict | None:
        """Start a training job with the labelled ranges; the app follows it."""
        options = {}
        params = {**self.params, "learn_position": not self.same_cell.value}
        if params != {"learn_position": True}:  # else the defaults
            options["params"] = params
        try:
            options.update(self._data_options())
            job = self.client.train_model(self.data.value, self.label_specs(), **options)
        except Exception as e:  # noqa: BLE001
            self.train_status.error(e)
            return None
        self._training_data = None
        self._follow_training(job)
        return job

    def _data_options(self) -> dict:
        """Where the labelled spectra above are, as training and evaluation name them."""
        options = {"max_per_label": self.max_per_label}
        if self._is_run():
            options.update(source=self.source.value, key=self.key.value)
        elif self.dataset.value:
            options["dataset"] = self.dataset.value
        options.update(self._axis_options())
        return options

    def evaluate(self) -> dict | None:
        """Score the chosen model on the spectra and classes above -- another run, a later ramp --:
        the accuracy, the confusion matrix, each bin here beside its accuracy at training."""
        try:
            options = self._data_options()
            masked = self.masked_points()
            if masked:
                options["mask_points"] = masked
            model = self.chosen_model()
            with waiting(self.evaluate_button, self.evaluate_status,
                         f"evaluating model {model[:8]} on {self.data.value} ..."):
                result = self.client.evaluate(model, self.data.value, self.label_specs(), **options)
        except Exception as e:  # noqa: BLE001
            self._failed(self.evaluate_status, e)
            self.evaluation_box.children = []
            return None
        from server_ext.spectra.evaluation import bin_header, bin_rows, confusion_rows, headline

        self.evaluation = result
        note = f"; note: {result['trained_here']}" if result.get("trained_here") else ""
        self.evaluate_status.show(f"model {result['model'][:8]} on {result['data']}: "
                                  + "; ".join(headline(result)) + note, "warning" if note else "success")
        shown = result["mistaken"][:MISTAKEN_SHOWN]
        look = [[f"train {m['train_id']} pulse {m['pulse']}" if "train_id" in m else f"row {m['row']}",
                 m["labelled"], m["predicted"] or "not classified",
                 "-" if m["confidence"] is None else f"{m['confidence']:.2f}"] for m in shown]
        self.evaluation_box.children = [
            W.HTML("<b>rows: labelled, columns: predicted</b>"
                   + table(confusion_rows(result), ["", *result["classes"], "recall"])),
            W.HTML("<b>each bin's own vote</b>" + table(bin_rows(result), bin_header(result)))] + (
            [W.HTML(f"<b>to look at: {len(shown)} of the {result['mistaken_count']} spectra predicted "
                    "otherwise than labelled</b>" + table(look, ["spectrum", "labelled", "predicted",
                                                                  "confidence"]))] if shown else [])
        return result

    def _follow_training(self, job: dict) -> None:
        if self.follower:
            self.follower.stop()
        self.train_button.disabled = True
        self.train_progress.bar_style = ""
        self.follower = Follower(lambda: self.client.get_model(job["id"]), self._training_update,
                                 self._training_lost, interval=self.poll_interval, name="daas-train").start()

    def _training_update(self, job: dict) -> None:
        self.train_progress.value = float(job.get("progress") or 0)
        state = job["state"]
        if state in ACTIVE:
            detail = job.get("detail") or {}
            where = ""
            if "done" in detail and "total" in detail:
                where = f" bin {detail['done']} of {detail['total']}"
            stage = detail.get("stage", "")
            self.train_status.show(f"training {job['id'][:8]}: {state} {stage}{where}"
                                   f" ({100 * self.train_progress.value:.0f} %)")
            return
        self.train_button.disabled = False
        self._refresh_models()
        if state == "done":
            self.train_progress.value, self.train_progress.bar_style = 1.0, "success"
            self.train_status.show(f"model {job['id'][:8]}: {len(job['result']['bins'])} informative bins, "
                                   f"classes {', '.join(job['result']['classes'])}", "success")
            self.model = job  # before the dropdown changes, so that its observer does not draw it again
            self.models.value = job["id"]
            self.show_model(job)
        else:
            self.train_progress.bar_style = "danger"
            self.train_status.show(f"training {state}: {job.get('error') or ''}", "error")

    def _training_lost(self, error: BaseException) -> None:
        self.train_button.disabled = False
        self.train_status.error(error)

    def _labelled_spectra(self, job: dict):
        """The training job's labelled spectra, read in the kernel for the figure (None if unreadable)."""
        from server_ext.extension.tasks import axis_options
        from server_ext.spectra.datafiles import load_labelled

        opts = job.get("options") or {}
        try:
            return load_labelled(str(local_path(opts["data"], self.root_dir)), opts["labels"],
                                 dataset=opts.get("dataset"), source=opts.get("source"), key=opts.get("key"),
                                 max_per_label=opts.get("max_per_label"), **axis_options(opts))
        except Exception:  # noqa: BLE001 -- the figure then shows the bins without the curves
            return None, None, None

    def show_model(self, job: dict) -> None:
        """Draw the separability figure of a finished training job."""
        if self._training_data is None:
            self._training_data = self._labelled_spectra(job)
        X, y, axis = self._training_data
        self.model = job
        try:
            separability_figure(job["result"], X, y, axis, fig=self.sep_fig, axis_label=_axis_name(job))
        except Exception as e:  # noqa: BLE001
            self.train_status.error(f"the figure cannot be drawn: {error_text(e)}")
            return
        self.sep_canvas.draw_idle()
        found = job["result"].get("findings") or []  # absent from models trained before it
        self.sep_box.children = [self.sep_canvas] + (
            [W.HTML("<b>what training found</b><br>" + "<br>".join(html.escape(line) for line in found))]
            if found else [])

    def remove_model(self) -> str | None:
        """Remove the chosen model from the server, its saved files too: the first call asks,
        the second (the same model still chosen) removes. Returns the id removed."""
        try:
            model = self.chosen_model()
        except ValueError as e:
            self.evaluate_status.error(e)
            return None
        if self._removing != model:
            self._removing = model
            self.remove_button.description, self.remove_button.button_style = "Remove: sure?", "danger"
            self.evaluate_status.show(f"click Remove again to remove model {model[:8]} from this server, its "
                                      "saved files too; choose another model to keep it", "warning")
            return None
        self._keep_model()
        try:
            with waiting(self.remove_button, self.evaluate_status, f"removing model {model[:8]} ..."):
                self.client.remove_model(model)
        except Exception as e:  # noqa: BLE001
            self._failed(self.evaluate_status, e)
            return None
        if self.model and self.model["id"] == model:
            self.model, self._training_data, self.sep_box.children = None, None, []
        if self.evaluation and self.evaluation["model"] == model:
            self.evaluation, self.evaluation_box.children = None, []
        others = [m for _, m in self.models.options if m != model]
        self.models.value = others[-1] if others else None  # the latest, as a new app shows
        self._refresh_models()
        self.evaluate_status.show(f"model {model[:8]} removed", "success")
        return model

    def _keep_model(self) -> None:
        """Forget a first click on Remove."""
        self._removing = None
        self.remove_button.description, self.remove_button.button_style = "Remove", ""

    def _model_chosen(self, model_id: str | None) -> None:
        if self._removing and self._removing != model_id:
            self._keep_model()
            self.evaluate_status.show("")
        if not model_id or (self.model and self.model["id"] == model_id):
            return
        try:
            job = self.client.get_model(model_id)
        except Exception as e:  # noqa: BLE001
            self._failed(self.train_status, e)
            return
        if job["state"] == "done":
            self._training_data = None
            self.show_model(job)

    def _refresh_models(self) -> None:
        try:
            models = self.client.list_models()
        except Exception as e:  # noqa: BLE001
            self.train_status.error(e)
            return
        self.jobs.refresh(models)
        done = sorted((m for m in models if m["state"] == "done"), key=lambda m: m.get("created") or "")
        current, ids = self.models.value, [m["id"] for m in done]
        if current not in ids:
            self.models.value = None  # else the dropdown picks its first option: a model nobody chose, drawn
        self.models.options = [(model_label(m), m["id"]) for m in done]
        if current in ids:
            self.models.value = current

    def _resume(self) -> None:
        """After a kernel restart: follow a training or a stream that is still going, else show the last model."""
        try:
            models = self.client.list_models()
            streams = self.client.list_streams()
        except Exception as e:  # noqa: BLE001
            self.train_status.error(e)
            return
        active = [m for m in models if m["state"] in ACTIVE]
        if active:
            self._follow_training(max(active, key=lambda m: m.get("created") or ""))
        elif self.models.options:
            self.models.value = self.models.options[-1][1]  # chosen, not only drawn: its observer draws it
        running = [s for s in streams if s["state"] in STREAM_ACTIVE]
        if running:
            self._follow_stream(max(running, key=lambda s: s.get("created") or ""))

    def _failed(self, status: StatusLine, error: BaseException) -> None:
        """Show *error*; where the chosen model has gone from the server meanwhile (removed from
        another notebook, or through the API), say so and offer only the models still there."""
        from server_ext.extension.client import DaasApiError

        gone = self.models.value
        if isinstance(error, DaasApiError) and error.status == 404 and gone:
            self._refresh_models()
            if gone not in [m for _, m in self.models.options]:  # and none chosen in its place
                if self.model and self.model["id"] == gone:
                    self.model, self._training_data, self.sep_box.children = None, None, []
                status.error(f"model {gone[:8]} is no longer on this server (removed from another notebook "
                             "or through the API); choose another")
                return
        status.error(error)

    def chosen_model(self) -> str:
        if not self.models.value:
            raise FormError("train a model first (or pick one)")
        return self.models.value

    def masked_points(self) -> list[int] | None:
        """The points typed in "masked points", bridged over by the server; None if empty."""
        from server_ext.spectra.inputs import parse_points

        text = self.mask_points.value.strip()
        return parse_points(text, "masked points") if text else None

    # ------------------------------------------------------------ classify
    def classify(self) -> dict | None:
        """Classify the spectra of a file with the chosen model; ambiguous ones marked."""
        try:
            model, path = self.chosen_model(), self.predict_path.value.strip()
            options = {"dataset": self.dataset.value or None, "mask_points": self.masked_points(),
                       "axis_dataset": self.predict_axis.value.strip() or None}
            with waiting(self.predict_button, self.predict_status, f"classifying {path} with model {model[:8]} ..."):
                result = self.client.predict(model, path, **options)
        except Exception as e:  # noqa: BLE001
            self._failed(self.predict_status, e)
            return None
        self.prediction = result
        labels, amb = result["labels"], np.array([bool(a) for a in result["ambiguous"]])  # None: not classified
        self.predict_status.show(_prediction_line(result), "warning" if result["unread"] else "success")
        prediction_figure(self.pred_fig, result["confidence"], amb, labels)
        self.pred_canvas.draw_idle()
        rows = [[i, labels[i], f"{result['confidence'][i]:.2f}" if result["confidence"][i] is not None else "-"]
                for i in np.flatnonzero(amb)[:20]]
        self.pred_box.children = [self.pred_canvas] + ([W.HTML("<b>ambiguous spectra</b>" + table(
            rows, ["spectrum", "label", "confidence"]))] if rows else [])
        return result

    # --------------------------------------------------------------- stream
    def start_stream(self) -> dict | None:
        """Classify a Karabo bridge (endpoint given) or a replay of the run, live."""
        try:
            common = {"mask_points": self.masked_points(), "output": self.stream_output.value.strip() or None,
                      "purity": self.phase_purity.value, **self._stream_axis()}
            span = self.replay_trains.value.strip()
            if self.endpoint.value.strip():
                if span:
                    raise FormError('"replay trains" picks trains of the run replayed; a bridge sends the '
                                    'trains it has: empty it, or the bridge field')
                # None: reconnect for ever; left out, the server gives up after 5 silent timeouts
                wait = {"max_reconnects": None} if self.keep_waiting.value else {}
                stream = self.client.start_stream(self.chosen_model(), endpoint=self.endpoint.value.strip(),
                                                  **common, **wait)
            else:
                if not self._is_run():
                    raise FormError("give a Karabo bridge endpoint, or a run directory above to replay")
                from server_ext.spectra.train_span import parse_span

                try:
                    train_ids = list(parse_span(span)) if span else None
                except ValueError as e:
                    raise FormError(f'"replay trains": {e}') from None
                stream = self.client.start_stream(self.chosen_model(), run=self.data.value, source=self.source.value,
                                                  key=self.key.value, train_rate=self.train_rate.value or None,
                                                  train_ids=train_ids, **common)
        except Exception as e:  # noqa: BLE001
            self._failed(self.stream_status, e)
            return None
        self._follow_stream(stream)
        return stream

    def _stream_axis(self) -> dict:
        """The stream's axis for :meth:`DaasClient.start_stream`: ``axis_file``/``axis_dataset`` from
        the "axis file" field, or ``axis_key``/``axis_source`` from the "axis key" field."""
        from server_ext.spectra.datafiles import axis_source

        file, key = self.stream_axis.value.strip(), self.stream_axis_key.value.strip()
        if file and key:
            raise FormError('give the detector\'s axis as a file ("axis file") or as the key sent with each '
                            'train ("axis key"), not both')
        if key:
            return _source_key(key, "axis key", "KEY, or SOURCE KEY of another source than the spectra's")
        if not file:
            return {}
        path, dataset = axis_source(file)
        return {"axis_file": path, "axis_dataset": dataset}

    def stop_stream(self) -> None:
        if not self.stream:
            return
        self.stream_status.show("stopping ...", "warning")
        try:
            # the server answers once the stream has ended: its state is final, and shown
            # whether or not the poller saw the end first
            self._stream_update(self.client.stop_stream(self.stream["id"]))
        except Exception as e:  # noqa: BLE001
            self.stream_status.error(e)

    def _follow_stream(self, stream: dict) -> None:
        """Counters by polling the stream; per-train points from its WebSocket, in another thread."""
        self._stop_stream_threads()
        self.stream = stream
        self.stream_trains = []
        with self._stream_lock:
            self._series = _empty_series()
        self.start_button.disabled, self.stop_button.disabled = True, False
        self.stream_box.children = [self.stream_canvas]
        self._ws_stop = threading.Event()
        self._reader_note = ""
        self._ws_thread = in_background(self._read_messages, self.stream_status.error, name="daas-stream-ws")
        self.stream_follower = Follower(lambda: self.client.get_stream(stream["id"]), self._stream_update,
                                        self.stream_status.error, interval=max(self.poll_interval, 0.5),
                                        timeout=24 * 3600, name="daas-stream").start()

    def _stop_stream_threads(self) -> None:
        self._ws_stop.set()
        if self.stream_follower:
            self.stream_follower.stop()

    def _read_messages(self) -> None:
        """Feed the live plot from the stream's WebSocket. A connection that breaks
        (a proxy restarted, a network hiccup, silence past ``silent_s``) is opened
        again while the server says the stream is active; the trains in between
        are a gap in the plot, and the stream's line says why."""
        stream_id = self.stream["id"]
        while not self._ws_stop.is_set():
            try:
                self._read_connection(stream_id)
                break  # the stream's end came
            except Exception as e:  # noqa: BLE001
                if self._ws_stop.is_set():
                    return
                # a server that is gone raises here: shown, and the reader stops
                if self.client.get_stream(stream_id)["state"] not in STREAM_ACTIVE:
                    break
                self._reader_note = f"live plot reconnecting after: {error_text(e)}"
                self._ws_stop.wait(RECONNECT_S)
        if not self._ws_stop.is_set():  # set: another stream is followed now
            self._draw_stream()

    def _read_connection(self, stream_id: str) -> None:
        last_draw = 0.0
        for msg in self.client.stream_messages(stream_id, timeout=self.silent_s):
            if self._ws_stop.is_set():
                return
            self._reader_note = ""
            train = msg.get("train")
            if train and (msg.get("type") == "train" or self._is_new(train)):
                self._add_train(train)  # a hello's: the last train before this connection
                if time.monotonic() - last_draw > REDRAW_S:
                    self._draw_stream()
                    last_draw = time.monotonic()
            if msg.get("stats"):
                self._show_counters(msg["stats"])

    def _is_new(self, train: dict) -> bool:
        with self._stream_lock:
            trains = self._series["trains"]
            return train.get("train_id") is not None and (not trains or int(train["train_id"]) > trains[-1])

    def _add_train(self, train: dict) -> None:
        with self._stream_lock:
            self._add_train_locked(train)

    def _add_train_locked(self, train: dict) -> None:
        s = self._series
        tid = train.get("train_id")
        if tid is None:
            return
        s["trains"].append(int(tid))
        n = len(s["trains"])
        for name, value in (train.get("class_fractions") or {}).items():
            s["fractions"].setdefault(name, [np.nan] * (n - 1)).append(float(value))
        for values in s["fractions"].values():
            if len(values) < n:
                values.append(np.nan)
        first, _, phase, _ = train.get("phase") or (None, None, None, None)
        if first is not None:  # a run's last train may fall between two messages: the last seen
            s["phases"][int(first)] = [int(tid), phase]
        s["confidence"].append(np.nan if train.get("mean_confidence") is None else train["mean_confidence"])
        s["ambiguous"].append(np.nan if train.get("ambiguous_fraction") is None else train["ambiguous_fraction"])
        if n > MAX_POINTS:
            for key in ("trains", "confidence", "ambiguous"):
                del s[key][0]
            for values in s["fractions"].values():
                del values[0]
            for first in [f for f, (last, _) in s["phases"].items() if last < s["trains"][0]]:
                del s["phases"][first]
        self.stream_trains = s["trains"]

    def _draw_stream(self) -> None:
        with self._stream_lock:
            s = self._series
            if not s["trains"]:
                return
            stream_figure(self.stream_fig, list(s["trains"]), {k: list(v) for k, v in s["fractions"].items()},
                          list(s["confidence"]), list(s["ambiguous"]),
                          [(max(first, s["trains"][0]), last, phase)
                           for first, (last, phase) in s["phases"].items()])
            self.stream_canvas.draw_idle()

    def _show_counters(self, st: dict) -> None:
        def num(v, fmt):
            return "-" if v is None else format(v, fmt)

        self.counters.value = (
            f"<span class='daas-trains'>trains: <b>{st.get('trains', 0)}</b></span> | "
            f"spectra/s: <b>{num(st.get('spectra_per_s'), '.0f')}</b> | "
            f"latency p50/p99: <b>{num(st.get('latency_p50_ms'), '.1f')} / {num(st.get('latency_p99_ms'), '.1f')} ms</b>"
            f" | gaps: <b>{st.get('gaps', 0)}</b> | dropped: <b>{st.get('dropped', 0)}</b>"
            f" | malformed: <b>{st.get('malformed', 0)}</b> | reconnects: <b>{st.get('reconnects', 0)}</b>"
            + self._unread_hint(st.get("unread_points"))
            + (f"<br>trains rejected for their axis: <b>{st['unreadable_axis']}</b>; the last, "
               f"{html.escape(st.get('axis_error') or '')}" if st.get("unreadable_axis") else ""))

    @staticmethod
    def _unread_hint(points) -> str:
        """Where malformed spectra are NaN at the same points: which, and the remedy."""
        if not points:
            return ""
        from server_ext.spectra.inputs import point_runs

        return (f"<br>NaN in every malformed spectrum at points <b>{point_runs(points, spec=True)}</b>: if the "
                "detector masks them since training, type them in \"masked points\" and start again")

    def _stream_update(self, stream: dict) -> None:
        self.stream = stream
        self._show_counters(stream.get("stats") or {})
        state = stream["state"]
        if state in STREAM_ACTIVE:
            note = self._reader_note
            self.stream_status.show(f"stream {stream['id'][:8]}: {state}" + self._phase_now(stream.get("last_train"))
                                    + (f"; {note}" if note else ""), "warning" if note else "info")
            return
        self.start_button.disabled, self.stop_button.disabled = False, True
        self._draw_stream()
        level = "error" if state == "failed" else "success"
        output = (stream.get("options") or {}).get("output")
        self.stream_status.show(f"stream {state}" + (f": {stream['error']}" if stream.get("error") else "")
                                + (f"; every pulse's result in {output}" if output else "")
                                + self._phases_note(stream.get("results")), level)

    @staticmethod
    def _phase_now(train: dict | None) -> str:
        """The phase of the run of trains the stream is in, and since when."""
        from server_ext.spectra.results import phase_now

        return f"; {phase_now(train['phase'], train['phase_runs'])}" if (train or {}).get("phase") else ""

    @staticmethod
    def _phases_note(results: dict | None) -> str:
        """The phase of each run of trains of a stream, with or without a results file."""
        from server_ext.spectra.results import phases_line

        line = phases_line(results)
        return f"; phases by train: {line}" if line else ""

    def wait_stream(self, timeout: float = 600) -> dict | None:
        """Block until the followed stream has ended and its last trains are
        drawn (scripts and tests): its poller and its WebSocket reader, which
        redraws once more when the stream's messages end. Raises
        ``TimeoutError`` if that takes more than ``timeout`` seconds."""
        join_within((self.stream_follower and self.stream_follower.thread, self._ws_thread),
                    timeout, "the stream")
        return self.stream

    def wait_training(self, timeout: float = 600) -> dict | None:
        """Block until the followed training ends (scripts and tests); raises
        ``TimeoutError`` if it takes more than ``timeout`` seconds."""
        join_within((self.follower and self.follower.thread,), timeout, "the training")
        return self.model

