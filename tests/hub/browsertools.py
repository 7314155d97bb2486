"""A real browser for the hub tests: Debian Chromium through Playwright, the hub's login, evidence on failure."""

import contextlib
import os
import re

import pytest
from playwright import sync_api as playwright_sync

from hub_ext.demo.command import DEMO_USERS

CHROMIUM = "/usr/bin/chromium"
STEP_MS = 30_000
# where the hub sends a user after log-in (the spawn form, the home page, or her running server)
LOGGED_IN = re.compile(r"/hub/(spawn|home)|/user/")


@contextlib.contextmanager
def chromium(width=1280, height=900, step_ms=STEP_MS):
    """A page of a headless Debian Chromium, closed on exit; every step waits at most ``step_ms``."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `.venv/bin/daas setup --test` as root or `sudo apt-get install chromium`")
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(step_ms)
            yield page
        finally:
            browser.close()


@contextlib.contextmanager
def evidence_on_failure(page, hub, tmp_path):
    """On an error inside, leave a screenshot next to the test's files, and print where the browser was and the hub's log tail."""
    try:
        yield
    except Exception:
        shot = tmp_path / "failure.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
        except playwright_sync.Error as e:  # a crashed page: say so, keep the test's own error
            shot = f"none ({e})"
        print(f"browser at {page.url}; screenshot {shot}")
        print(hub.log_text()[-4000:])
        raise


def log_in(page, hub, user):
    """Log ``user`` in through the hub's own login page, as a person does."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", DEMO_USERS[user][0])
    page.click("#login_submit")
    page.wait_for_url(LOGGED_IN)
