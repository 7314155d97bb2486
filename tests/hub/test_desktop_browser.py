"""The desktop in a real browser: Playwright driving Debian's Chromium through the demo hub.

dana picks her proposal's run and the Desktop environment in the spawn form,
lands on /user/dana/desktop/, noVNC reports Connected and draws the desktop;
she opens the first dataset file in silx view from the desktop's menu
(right click, keyboard), and the viewer appears in the frame. Screenshots go
to the test's temporary directory.
"""

import io
import re
import time

import psutil
import pytest
from playwright import sync_api as playwright_sync

from server_ext.desktop.processes import marked_processes, server_mark, stop_marked

from ..desktop.servertools import missing_tools
from .browsertools import chromium, evidence_on_failure, log_in
from .test_desktop_hub import DATASET, OWNER, server_pid

STEP_MS = 30_000
START_MS = 180_000  # server start + first desktop on a busy two-core machine
VIEWER_S = 90  # silx (Qt) starting and drawing

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"desktop system packages absent ({missing_tools()}); `daas setup` installs them"
)


def _silx_running(mark):
    for p in marked_processes(mark):
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if "silx" in cmd and "view" in cmd:
            return cmd
    return None


def _differing_fraction(a, b):
    """Fraction of pixels that differ between two PNG screenshots of the same size."""
    from PIL import Image, ImageChops

    first, second = (Image.open(io.BytesIO(x)).convert("RGB") for x in (a, b))
    if first.size != second.size:
        return 1.0
    mask = ImageChops.difference(first, second).convert("L").point(lambda v: 255 if v else 0)
    return mask.histogram()[255] / (first.size[0] * first.size[1])


def _drawn_fraction(png):
    """Fraction of pixels that differ from the screenshot's most common colour: 0 for
    a canvas nothing was drawn on (black frames, or transparent over the page)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    total = image.size[0] * image.size[1]
    return 1.0 - max(count for count, _ in image.getcolors(maxcolors=total)) / total


def _screenshot_until(canvas, path, timeout, done):
    """Screenshot ``canvas`` until ``done(png_bytes)``, bounded by ``timeout``; the
    last PNG bytes."""
    deadline = time.monotonic() + timeout
    while True:
        shot = canvas.screenshot(path=str(path))
        if done(shot) or time.monotonic() > deadline:
            return shot
        time.sleep(1)


def _changed_screenshot(canvas, before, path, timeout, fraction=0.02):
    """Screenshot ``canvas`` until ``fraction`` of it differs from ``before`` (a window
    appeared, not a blinking cursor), bounded by ``timeout``; the last PNG bytes."""
    return _screenshot_until(canvas, path, timeout,
                             lambda shot: _differing_fraction(shot, before) >= fraction)


def test_spawn_desktop_from_the_form_and_open_silx_view(demo_hub, tmp_path):
    desktop_png, viewer_png = tmp_path / "desktop.png", tmp_path / "silx-view.png"
    mark = None
    try:
        with chromium(step_ms=STEP_MS) as page, evidence_on_failure(page, demo_hub, tmp_path):
            log_in(page, demo_hub, OWNER)

            # -- the form: the dataset preselected, the Desktop beside the notebook environments
            page.goto(f"{demo_hub.url}/hub/spawn?dataset={DATASET}")
            playwright_sync.expect(page.locator("#daas-dataset")).to_have_value(DATASET)
            radio = page.locator(".daas-env input[value='desktop']")
            playwright_sync.expect(radio).to_be_enabled()
            radio.check()
            page.click("#spawn_form [type=submit]")

            # -- the environment's default_url is the desktop; noVNC connects
            page.wait_for_url(re.compile(rf"/user/{OWNER}/desktop/"), timeout=START_MS)
            playwright_sync.expect(page.locator("#status")).to_have_text("Connected", timeout=START_MS)
            canvas = page.locator("#screen canvas")
            playwright_sync.expect(canvas).to_be_visible()
            mark = server_mark(server_pid(OWNER))
            assert mark

            # the first frames are one colour until openbox and the dataset terminal
            # draw -- or the desktop has drawn already: no "before" shot to compare with
            desktop_shot = _screenshot_until(canvas, desktop_png, VIEWER_S,
                                             lambda shot: _drawn_fraction(shot) >= 0.02)
            assert _drawn_fraction(desktop_shot) >= 0.02, "the desktop never drew"

            # -- the desktop menu (right click on the background): 4th entry is silx view on the first file
            box = canvas.bounding_box()
            desktop_shot = canvas.screenshot()  # as it is now (a file manager may have drawn more)
            page.mouse.click(box["x"] + box["width"] - 40, box["y"] + box["height"] - 40, button="right")
            # keys only once the menu is on screen, or they go to the window below
            menu_shot = _changed_screenshot(canvas, desktop_shot, tmp_path / "menu.png", STEP_MS / 1000, fraction=0.01)
            assert _differing_fraction(menu_shot, desktop_shot) >= 0.01, "no menu on right click"
            for _ in range(4):
                page.keyboard.press("ArrowDown")
            page.keyboard.press("Enter")
            deadline = time.monotonic() + VIEWER_S
            while not (cmd := _silx_running(mark)):
                assert time.monotonic() < deadline, "silx view did not start from the desktop menu"
                time.sleep(1)
            assert cmd[:4] == ["/usr/bin/python3", "-m", "silx", "view"] and cmd[4].endswith(".h5"), cmd
            viewer_shot = _changed_screenshot(canvas, desktop_shot, viewer_png, VIEWER_S)
            assert _differing_fraction(viewer_shot, desktop_shot) >= 0.02, "silx view started but never showed up in the frame"
    finally:
        if demo_hub.server_state(OWNER) is not None:
            demo_hub.stop_server(OWNER)
        if mark:
            stop_marked(mark)
    for png in (desktop_png, viewer_png):
        # the screenshots kept as evidence show a drawn frame; their compressed
        # size says little (a plain desktop came to 8,279 bytes once)
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and _drawn_fraction(data) >= 0.02
