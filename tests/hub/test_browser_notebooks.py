"""The example notebooks in a real browser: log in, spawn, run the notebooks, use the widgets.

Headless Debian Chromium through Playwright against the demo hub. In an MX
session: getting_started and explore_dataset run clean, every cell; in
nxmx_conversion the cells down to the widget run (the rest, the same steps
as code and DIALS, run headless in tests/notebooks), the widget renders, Convert ends in a full green progress bar, a passing
validation report and a detector image; a second conversion survives a
kernel restart. In a spectra session (again down to the widget): the app trains (separability figure)
and streams the replayed run while its train counter advances.

Every wait is bounded and polls for a state; timeouts are generous because a
busy two-core machine runs the hub, the server, Dask, TensorFlow and Chromium.
Screenshots go to the test's tmp_path.
"""

import contextlib
import re
import time

import pytest

from hub_ext.demo.command import DEMO_USERS

from playwright import sync_api as playwright_sync

from .browsertools import chromium, evidence_on_failure, log_in

STEP_MS = 30_000
LAB_MS = 180_000  # server start + JupyterLab's first load
RUN_ALL_MS = 420_000  # the cells of a notebook (explore_dataset reads and plots a run)
JOB_MS = 300_000  # a conversion or a training job in the server
expect = playwright_sync.expect


def _user_with(demo_hub, pid):
    """A demo user allowed to see *pid* (from the hub's own catalogue)."""
    import yaml

    entry = next(e for e in yaml.safe_load(demo_hub.catalog_path.read_text())["datasets"] if e["pid"] == pid)
    for user, (_, groups, _admin) in DEMO_USERS.items():
        if entry.get("public") or set(groups) & set(entry.get("access_groups") or []):
            return user
    raise AssertionError(f"no demo user may open {pid}")


def _login_and_spawn(page, demo_hub, user, pid, env):
    log_in(page, demo_hub, user)
    page.goto(f"{demo_hub.url}/hub/spawn?dataset={pid}&environment={env}")
    page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=LAB_MS)
    expect(page.locator(".jp-NotebookPanel:visible")).to_have_count(1, timeout=LAB_MS)


def _menu(page, menu, item):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}")).first.click()


def _open(page, demo_hub, user, name):
    page.goto(f"{demo_hub.url}/user/{user}/lab/tree/notebooks/{name}")
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook).to_have_count(1, timeout=LAB_MS)
    expect(page.locator(".lm-TabBar-tab.lm-mod-current", has_text=name).first).to_be_visible(timeout=LAB_MS)
    page.wait_for_timeout(2000)  # let JupyterLab decide whether it asks for a kernel
    _accept_kernel_dialog(page)
    # this notebook's kernel is up (the indicator in its own toolbar)
    expect(notebook.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_attached(timeout=LAB_MS)
    return notebook


def _screenshot(page, path, element=None):
    (element or page).screenshot(path=str(path))


def _accept_kernel_dialog(page):
    """JupyterLab asks which kernel to use for a notebook restored from an earlier session: the default."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    if dialog.count():
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        expect(dialog).to_have_count(0)


def _prompts(notebook):
    return [t.strip() for t in notebook.locator(".jp-CodeCell .jp-InputPrompt").all_text_contents()]


def _run_cells(page, notebook, through=None):
    """Run > Run All Cells, or, with *through*, Shift+Enter from the top down to the first
    code cell containing that text (as a user steps to a widget); then wait until each of
    those code cells has an execution count."""
    _accept_kernel_dialog(page)
    cells = notebook.locator(".jp-Cell")
    n_code = presses = None
    if through is not None:
        # Shift+Enter steps over every cell, markdown too; the prompts to wait for are
        # those of the code cells down to the target
        code = cells.evaluate_all("cs => cs.map(c => c.classList.contains('jp-CodeCell') ? c.textContent : null)")
        target = next((i for i, text in enumerate(code) if text is not None and through in text), None)
        assert target is not None, f"no code cell contains {through!r}"
        presses, n_code = target + 1, sum(text is not None for text in code[:target + 1])

    def start():
        cells.first.click()  # focus this notebook, so that the menu or the keys act on it
        if presses:
            for _ in range(presses):
                page.keyboard.press("Shift+Enter")
        else:
            _menu(page, "Run", "Run All Cells")

    start()
    deadline = time.monotonic() + RUN_ALL_MS / 1000
    retry_at = time.monotonic() + 60
    while True:
        prompts = _prompts(notebook)[:n_code]
        if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            break
        if all(p == "[ ]:" for p in prompts) and time.monotonic() > retry_at:  # nothing queued: ask again
            start()
            retry_at = time.monotonic() + 60
        elif "[*]:" not in prompts and "[ ]:" in prompts and time.monotonic() > retry_at:
            # Run All stopped at an error: show it
            raise AssertionError("Run All stopped: " + " | ".join(
                notebook.locator(".jp-OutputArea-output").all_text_contents())[-3000:])
        assert time.monotonic() < deadline, f"cells still running after {RUN_ALL_MS / 1000} s: {prompts}"
        page.wait_for_timeout(1000)
    errors = notebook.locator(".jp-OutputArea-output", has_text=re.compile(r"Traceback|Error\b.*\n"))
    assert errors.count() == 0, errors.first.text_content()[:2000]


def _drawn(page, canvas, path, timeout=STEP_MS):
    """Wait until an ipympl canvas shows a drawn figure (it replaces its element on the first draw)."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        try:
            canvas.scroll_into_view_if_needed(timeout=5000)
            box = canvas.bounding_box(timeout=5000)
            _screenshot(page, path, canvas)
            if box and box["width"] > 300 and box["height"] > 200 and path.stat().st_size > 10_000:
                return  # a blank canvas compresses to far less
        except playwright_sync.Error:
            pass  # detached while ipympl redrew: look again
        assert time.monotonic() < deadline, f"{path.name}: no drawn figure within {timeout / 1000} s"
        page.wait_for_timeout(1000)


def _job_list(page, demo_hub, user):
    r = page.request.get(f"{demo_hub.url}/user/{user}/daas/api/nxmx/jobs")
    assert r.ok, r.status
    return r.json()["jobs"]


@contextlib.contextmanager
def _session(page, demo_hub, tmp_path, pid, env):
    """A demo user allowed to see ``pid`` logged in and working in ``env`` on it, in JupyterLab;
    evidence left on failure, the server stopped after."""
    user = _user_with(demo_hub, pid)
    try:
        with evidence_on_failure(page, demo_hub, tmp_path):
            _login_and_spawn(page, demo_hub, user, pid, env)
            yield user
    finally:
        if demo_hub.server_state(user) is not None:
            demo_hub.stop_server(user)


@pytest.fixture
def browser_page():
    with chromium(width=1400, height=1000, step_ms=STEP_MS) as page:
        yield page


def test_getting_started_and_explore_run_clean(demo_hub, browser_page, tmp_path):
    page, pid = browser_page, "xfel:p002120:r0029"
    with _session(page, demo_hub, tmp_path, pid, "python-basic") as user:
        # the set-up's lab settings: no toast asks about Jupyter news over the notebooks
        r = page.request.get(f"{demo_hub.url}/user/{user}/lab/api/settings/"
                             "@jupyterlab/apputils-extension:notification")
        assert r.ok, r.status
        defaults = {k: v["default"] for k, v in r.json()["schema"]["properties"].items()}
        assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False, defaults
        for name in ("getting_started.ipynb", "explore_dataset.ipynb"):
            notebook = _open(page, demo_hub, user, name)
            _run_cells(page, notebook)
            if name == "getting_started.ipynb":
                expect(notebook).to_contain_text("Open nxmx_conversion.ipynb")
            else:
                expect(notebook.locator(".jp-RenderedImage img").first).to_be_attached()
            _screenshot(page, tmp_path / name.replace(".ipynb", ".png"))


def test_mx_session_converter_survives_a_kernel_restart(demo_hub, browser_page, tmp_path):
    page, pid = browser_page, "xfel:p002120:r0029"
    with _session(page, demo_hub, tmp_path, pid, "euxfel-mx") as user:
        notebook = _open(page, demo_hub, user, "nxmx_conversion.ipynb")
        # the cells after the widget's (the same steps as code, DIALS) run headless in
        # tests/notebooks/test_example_notebooks.py
        _run_cells(page, notebook, through="NXmxConverter()")
        converter = notebook.locator(".daas-nxmx-converter")
        expect(converter.locator("button.daas-convert")).to_be_visible()
        expect(converter.locator(".daas-run-summary")).to_contain_text("64 trains", timeout=STEP_MS)
        converter.locator("button.daas-convert").click()
        expect(converter.locator(".daas-progress .progress-bar-success")).to_be_attached(timeout=JOB_MS)
        # validation runs the file through several readers, dxtbx among them (tens of seconds)
        expect(converter.locator(".daas-validation-ok")).to_contain_text("valid NXmx", timeout=JOB_MS)
        image = converter.locator(".daas-frame-viewer .jupyter-matplotlib-figure canvas").first
        _drawn(page, image, tmp_path / "detector-image.png")
        _screenshot(page, tmp_path / "nxmx-converted.png")

        # -- a long conversion, then the kernel restarts under it
        done_before = {j["id"] for j in _job_list(page, demo_hub, user)}
        converter.locator(".widget-toggle-button", has_text="compressed copy").click()
        converter.locator("button.daas-convert").click()
        deadline = time.monotonic() + 60
        while not (new := [j for j in _job_list(page, demo_hub, user) if j["id"] not in done_before]):
            assert time.monotonic() < deadline, "the second conversion was not submitted"
            page.wait_for_timeout(300)
        job_id = new[0]["id"]
        _menu(page, "Kernel", "Restart Kernel")
        page.locator(".jp-Dialog-button.jp-mod-accept").click()
        state_at_restart = next(j["state"] for j in _job_list(page, demo_hub, user) if j["id"] == job_id)
        print("conversion state when the kernel restarted:", state_at_restart)
        # the widget's cell again (it imports what it needs): the new widget finds the job
        notebook.locator(".jp-CodeCell", has_text="NXmxConverter()").locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        converter = notebook.locator(".daas-nxmx-converter")
        expect(converter.locator(".daas-jobs")).to_contain_text(job_id[:8], timeout=STEP_MS)
        deadline = time.monotonic() + JOB_MS / 1000
        while (job := next(j for j in _job_list(page, demo_hub, user) if j["id"] == job_id))["state"] in (
                "queued", "running"):
            assert time.monotonic() < deadline, f"conversion {job_id} still {job['state']}"
            page.wait_for_timeout(1000)
        assert job["state"] == "done", job
        if state_at_restart in ("queued", "running"):  # the new widget followed it to the end
            expect(converter.locator(".daas-progress .progress-bar-success")).to_be_attached(timeout=STEP_MS)
        expect(converter.locator(".daas-jobs")).to_contain_text("done")
        converter.locator(".daas-progress").scroll_into_view_if_needed()
        _screenshot(page, tmp_path / "nxmx-after-restart.png")


def test_spectra_session_trains_and_streams(demo_hub, browser_page, tmp_path):
    page, pid = browser_page, "xfel:p700000:r0001"
    with _session(page, demo_hub, tmp_path, pid, "spectroscopy") as user:
        notebook = _open(page, demo_hub, user, "spectra_classification.ipynb")
        _run_cells(page, notebook, through="SpectraClassifierApp(")
        app = notebook.locator(".daas-spectra-app")
        expect(app.locator("button.daas-train")).to_be_visible()
        app.locator("button.daas-train").click()
        expect(app.locator(".daas-train-progress .progress-bar-success")).to_be_attached(timeout=JOB_MS)
        figure = app.locator(".daas-separability .jupyter-matplotlib-figure canvas").first
        _drawn(page, figure, tmp_path / "separability.png")

        app.locator(".lm-TabBar-tab", has_text="3. stream").click()
        app.locator("button.daas-stream-start").click()
        counter = app.locator(".daas-stream-counters .daas-trains b")
        expect(counter).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=JOB_MS)
        first = int(counter.text_content())
        deadline = time.monotonic() + 120
        while int(counter.text_content()) <= first:
            assert time.monotonic() < deadline, f"train counter stuck at {first}"
            page.wait_for_timeout(500)
        plot = app.locator(".daas-stream-plot .jupyter-matplotlib-figure canvas").first
        expect(plot).to_be_visible()
        plot.scroll_into_view_if_needed()
        _screenshot(page, tmp_path / "stream.png")
        app.locator("button.daas-stream-start").page.locator(".daas-spectra-app button", has_text="Stop").click()
        expect(app.locator("button.daas-stream-start")).to_be_enabled(timeout=60_000)
