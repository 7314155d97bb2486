"""``NXmxConverter``: a European XFEL run -> NXmx, as a job of the server extension.

Steps on one panel: the run (default: the session's dataset) and its summary;
detector, geometry, frame selection, mode, output; Convert / Cancel with the
job's progress; the validation report; the frames of the written file.
The conversion runs in the Jupyter server, not in the kernel: restart the
kernel, create the widget again and it follows the job that is still running.
"""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as W

from .client import default_client, local_path, relative_to_root
from .jobs_table import JobsTable
from .messages import StatusLine, error_text, table
from .polling import Follower, in_background, join_within

ACTIVE = ("queued", "running")


class NXmxConverter(W.VBox):
    """Convert a run to NXmx from a notebook.

    ``run``: run directory (default: the session's dataset); ``output``: the
    file to write, relative to the server's root (default
    ``processed/<dataset slug>.nxs``); ``client``: a ``DaasClient`` (default:
    this kernel's server); ``poll_interval``: seconds between job updates.
    """

    def __init__(self, run: str | Path | None = None, *, output: str | None = None, client=None,
                 poll_interval: float = 0.5, **kw):
        self.client = client or default_client()
        self.poll_interval = poll_interval
        self.job: dict | None = None
        self.report: dict | None = None
        self.viewer = None
        self.follower: Follower | None = None
        self.summary_data: dict | None = None

        self.session = self.client.session()
        self.root_dir = self.session.get("root_dir")
        dataset = self.session.get("dataset") or {}
        default_run = run or self.session.get("dataset_path") or ""
        slug = dataset.get("slug") or (Path(str(default_run)).name if default_run else "run")

        style = {"description_width": "130px"}
        wide = W.Layout(width="95%")
        self.status = StatusLine()
        self.run_path = W.Text(value=relative_to_root(default_run, self.root_dir) if default_run else "",
                               description="run", style=style, layout=wide,
                               placeholder="run directory (root-relative or absolute)")
        self.load_button = W.Button(description="Load run", icon="folder-open")
        self.summary = W.HTML()
        self.summary.add_class("daas-run-summary")
        self.detector = W.Dropdown(description="detector", options=[], style=style)
        self.geometry = W.Text(description="geometry (.geom)", style=style, layout=wide,
                               placeholder="CrystFEL .geom file; empty: the detector's default layout")
        self.trains = W.IntRangeSlider(description="trains", min=0, max=1, value=(0, 1), style=style,
                                       layout=wide, continuous_update=False)
        self.min_energy = W.FloatText(description="min pulse (µJ)", value=0.0, style=style)
        self.distance = W.FloatText(description="distance (mm)", value=0.0, style=style)
        self.mode = W.ToggleButtons(options=[("virtual (seconds)", "virtual"), ("compressed copy", "copy")],
                                    description="mode", style=style)
        self.output = W.Text(value=output or f"processed/{slug}.nxs", description="output", style=style,
                             layout=wide)
        self.overwrite = W.Checkbox(description="overwrite", value=True)
        self.convert_button = W.Button(description="Convert", button_style="primary", icon="play")
        self.convert_button.add_class("daas-convert")
        self.cancel_button = W.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = W.FloatProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="60%"))
        self.progress.add_class("daas-progress")
        self.validation = W.HTML()
        self.viewer_box = W.VBox()
        self.jobs = JobsTable("conversions of this server")

        self.load_button.on_click(lambda _: self.load_run())
        self.convert_button.on_click(lambda _: self.convert())
        self.cancel_button.on_click(lambda _: self.cancel())

        options = W.VBox([self.detector, self.geometry, self.trains, W.HBox([self.min_energy, self.distance]),
                          self.mode, W.HBox([self.output, self.overwrite])])
        super().__init__([
            W.HTML(f"<h3>NXmx conversion</h3><div>{html.escape(dataset.get('title') or '')}</div>"),
            W.HBox([self.run_path, self.load_button]), self.summary, options,
            W.HBox([self.convert_button, self.cancel_button, self.progress]), self.status,
            self.validation, self.viewer_box, self.jobs,
        ], **kw)
        self.add_class("daas-nxmx-converter")
        self._refresh_jobs()
        self._resume()
        if self.run_path.value:
            self.load_run(wait=True)

    # ------------------------------------------------------------ run summary
    def load_run(self, wait: bool = False) -> None:
        """Ask the server for the run's summary; fill the detector and train choices."""
        self.status.show(f"reading {self.run_path.value} ...")

        def work():
            summary = self.client.run_summary(self.run_path.value)
            self._show_summary(summary)

        thread = in_background(work, self.status.error, name="daas-run-summary")
        if wait:  # the constructor's: a slow server fills the widget in later
            thread.join(120)

    def _show_summary(self, s: dict) -> None:
        self.summary_data = s
        rows = [[d["name"], d["kind"], len(d["modules"]), d.get("frames", ""), d.get("frames_per_train_max", "")]
                for d in s["detectors"]]
        unsupported = ", ".join(s.get("unsupported_detectors") or []) or "none"
        self.summary.value = (
            f"<b>{s['trains']} trains</b> ({s.get('first_train')} - {s.get('last_train')}); "
            f"XGM: {html.escape(', '.join(s.get('xgm') or []) or 'none')}; other detectors: {html.escape(unsupported)}"
            + table(rows, ["detector", "kind", "modules", "frames", "frames/train"]))
        self.detector.options = [d["name"] for d in s["detectors"]]
        self.detector.value = self.detector.options[0] if self.detector.options else None
        n = int(s["trains"])
        self.trains.max = max(n, 1)
        self.trains.value = (0, max(n, 1))
        if not s["detectors"]:
            self.status.error("this run has no detector the converter supports")
        else:
            self.status.show(f"run loaded: {len(s['detectors'])} detector(s), {n} trains")

    # ------------------------------------------------------------- conversion
    def options(self) -> dict:
        """The job's options as the REST API takes them."""
        opts = {"mode": self.mode.value, "overwrite": bool(self.overwrite.value)}
        if self.detector.value:
            opts["detector"] = self.detector.value
        if self.geometry.value.strip():
            opts["geometry"] = relative_to_root(self.geometry.value.strip(), self.root_dir)
        if self.summary_data and tuple(self.trains.value) != (0, self.trains.max):
            opts["trains"] = {"start": int(self.trains.value[0]), "stop": int(self.trains.value[1])}
        if self.min_energy.value > 0:
            opts["min_pulse_energy"] = float(self.min_energy.value)
        if self.distance.value > 0:
            opts["distance"] = float(self.distance.value)
        return opts

    def convert(self) -> dict | None:
        """Submit the conversion; the widget then follows the job."""
        try:
            self._make_output_folder()
            job = self.client.submit_conversion(self.run_path.value, self.output.value.strip(), **self.options())
        except Exception as e:  # noqa: BLE001 -- a readable message in the widget
            self.status.error(e)
            return None
        self.validation.value = ""
        self.viewer_box.children = []
        self._follow(job)
        return job

    def _make_output_folder(self) -> None:
        """Create the output's folder when it lies inside the server's root (anything else: the server says no)."""
        if not self.root_dir:
            return
        root = Path(self.root_dir).resolve()
        folder = local_path(self.output.value.strip(), self.root_dir).parent.resolve()
        if folder != root and root in folder.parents:
            folder.mkdir(parents=True, exist_ok=True)

    def cancel(self) -> None:
        if not self.job:
            return
        try:
            self.client.cancel_conversion(self.job["id"])
            self.status.show("cancelling ...", "warning")
        except Exception as e:  # noqa: BLE001
            self.status.error(e)

    def _resume(self) -> None:
        """Follow this server's most recent conversion that is still going (e.g. after a kernel restart)."""
        try:
            active = [j for j in self.client.list_conversions() if j["state"] in ACTIVE]
        except Exception as e:  # noqa: BLE001
            self.status.error(e)
            return
        if active:
            job = max(active, key=lambda j: j.get("created") or "")
            self.output.value = job["options"].get("output", self.output.value)
            self.status.show(f"following conversion {job['id'][:8]}, started before this widget")
            self._follow(job)

    def _follow(self, job: dict) -> None:
        if self.follower:
            self.follower.stop()
        self.job = job
        self.convert_button.disabled, self.cancel_button.disabled = True, False
        self.progress.bar_style = ""
        self.follower = Follower(lambda: self.client.get_conversion(job["id"]), self._update, self._lost,
                                 interval=self.poll_interval, name="daas-nxmx-job").start()

    def _update(self, job: dict) -> None:
        self.job = job
        self.progress.value = float(job.get("progress") or 0)
        state = job["state"]
        if state in ACTIVE:
            self.status.show(f"{state}: {100 * self.progress.value:.0f} %")
            return
        self.convert_button.disabled, self.cancel_button.disabled = False, True
        self._refresh_jobs()
        if state == "done":
            self.progress.value, self.progress.bar_style = 1.0, "success"
            warnings = (job.get("result") or {}).get("warnings") or []
            self.status.show(f"written {job['result']['output']}"
                             + (f" ({len(warnings)} warnings: {'; '.join(warnings)})" if warnings else ""), "success")
            self._validate(job["result"]["output"])
        else:
            self.progress.bar_style = "danger" if state in ("failed", "interrupted") else "warning"
            self.status.show(f"{state}: {job.get('error') or 'nothing was written'}",
                             "error" if state != "cancelled" else "warning")

    def _lost(self, error: BaseException) -> None:
        self.convert_button.disabled, self.cancel_button.disabled = False, True
        self.status.error(error)

    # ---------------------------------------------------------- after a job
    def _validate(self, path: str) -> None:
        try:
            report = self.client.validate(path)
        except Exception as e:  # noqa: BLE001
            self.validation.value = f"<b>validation could not run:</b> {html.escape(error_text(e))}"
            return
        self.report = report
        self.validation.remove_class("daas-validation-ok")
        self.validation.remove_class("daas-validation-failed")
        self.validation.add_class("daas-validation-ok" if report["ok"] else "daas-validation-failed")
        errors = [f for f in report["findings"] if f["severity"] == "error"]
        warnings = [f for f in report["findings"] if f["severity"] != "error"]
        colour = "#2e7d32" if report["ok"] else "#c62828"
        verdict = "valid NXmx" if report["ok"] else "NOT valid NXmx"
        checkers = ", ".join(report.get("checkers") or [])
        rows = [[f["severity"], f["checker"], f["message"]] for f in errors + warnings][:30]
        self.validation.value = (
            f"<b style='color:{colour}'>{verdict}</b>: {len(errors)} errors, {len(warnings)} warnings"
            f" ({html.escape(checkers)})" + (table(rows, ["severity", "checker", "finding"]) if rows else ""))
        self._show_frames(path)

    def _show_frames(self, path: str) -> None:
        from .frame_viewer import FrameViewer

        try:
            self.viewer = FrameViewer(local_path(path, self.root_dir))
        except Exception as e:  # noqa: BLE001
            self.viewer_box.children = [W.HTML(f"frames cannot be shown: {html.escape(error_text(e))}")]
            return
        self.viewer_box.children = [self.viewer]

    def _refresh_jobs(self) -> None:
        try:
            self.jobs.refresh(self.client.list_conversions())
        except Exception as e:  # noqa: BLE001
            self.jobs.value = f"jobs cannot be listed: {html.escape(error_text(e))}"

    def wait(self, timeout: float = 600) -> dict | None:
        """Block until the followed job ends (for scripts and tests); returns
        the job. Raises ``TimeoutError`` if it takes more than ``timeout``
        seconds."""
        join_within((self.follower and self.follower.thread,), timeout, "the conversion")
        return self.job
