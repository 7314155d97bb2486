"""The Share page (/hub/daas/share/<owner>/<server>) in a real browser, through the demo hub.

dana runs a notebook session on a p2120 run and follows the home page's
"Share my session" link; the page offers her colleague
alice (p2120) and not bob (PETRA proposals); she grants alice, sees the
share, is refused bob by name with the API's reason, and revokes alice.
Screenshot in the test's temporary directory.
"""

import os
import re

import pytest
from playwright import sync_api as playwright_sync

from hub_ext.demo.command import DEMO_USERS

from .hubtools import API_TOKEN

CHROMIUM = "/usr/bin/chromium"
OWNER, COLLEAGUE, OUTSIDER = "dana", "alice", "bob"
DATASET = "xfel:p002120:r0029"  # proposal p2120: dana and alice
PAGE = f"/hub/daas/share/{OWNER}/"
STEP_MS = 30_000


def _shared_with(hub):
    r = hub.api("GET", f"/daas/shares/{OWNER}/")
    assert r.status_code == 200, r.text
    return [s["user"] for s in r.json()["shares"]]


@pytest.fixture(scope="module")
def session(demo_hub):
    owner = demo_hub.login(OWNER)
    if demo_hub.server_state(OWNER) is not None:  # left by another module
        demo_hub.stop_server(OWNER)
    r = owner.post_form({"dataset": DATASET, "environment": "python-basic"})
    assert r.status_code == 302, r.text[-2000:]
    try:
        demo_hub.wait_ready(OWNER)
        yield owner
    finally:
        if demo_hub.server_state(OWNER) is not None:
            demo_hub.stop_server(OWNER)


def test_share_page_refuses_clearly_without_a_session_or_to_others(demo_hub):
    if demo_hub.server_state(OWNER) is not None:  # left by another module
        demo_hub.stop_server(OWNER)
    owner, outsider = demo_hub.login(OWNER), demo_hub.login(OUTSIDER)
    r = owner.get(f"/hub/daas/share/{OWNER}/no-such-server")
    assert r.status_code == 404 and "No such session." in r.text
    r = outsider.get(PAGE)
    assert r.status_code == 403 and "Only the session&#39;s owner can share it." in r.text
    assert 'id="share-current"' not in r.text  # nothing of dana's session shown to bob
    r = owner.get(PAGE, allow_redirects=False)
    if r.status_code == 409:  # dana has had a server before: it is not running now
        assert "Start the session before sharing it." in r.text
    else:  # never started: the hub has no default server for her yet
        assert r.status_code == 404 and "No such session." in r.text, (r.status_code, r.text[-1000:])


def test_owner_grants_a_colleague_and_revokes_from_the_page(demo_hub, session, tmp_path):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `.venv/bin/daas setup --test` as root or `sudo apt-get install chromium`")
    assert _shared_with(demo_hub) == []
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.set_default_timeout(STEP_MS)
            page.goto(f"{demo_hub.url}/hub/login")
            page.fill("#username_input", OWNER)
            page.fill("#password_input", DEMO_USERS[OWNER][0])
            page.click("#login_submit")
            page.wait_for_url(re.compile(r"/hub/|/user/"))
            page.goto(f"{demo_hub.url}/hub/home")  # the home page links to the Share page
            page.click("#daas-share-link")
            page.wait_for_url(re.compile(re.escape(PAGE) + "$"))

            members = page.locator("#share-members li[data-user]")
            playwright_sync.expect(members).to_have_count(1, timeout=STEP_MS)  # alice; not dana herself, not bob
            playwright_sync.expect(members.first).to_have_attribute("data-user", COLLEAGUE, timeout=STEP_MS)
            playwright_sync.expect(page.locator("#share-none")).to_be_visible(timeout=STEP_MS)

            page.click(f"#share-members button[data-user='{COLLEAGUE}']")
            current = page.locator(f"#share-current li[data-user='{COLLEAGUE}']")
            playwright_sync.expect(current).to_be_visible(timeout=STEP_MS)
            assert _shared_with(demo_hub) == [COLLEAGUE]
            granted = page.locator(f"#share-members li[data-user='{COLLEAGUE}']")
            playwright_sync.expect(granted).to_contain_text("has access", timeout=STEP_MS)
            page.screenshot(path=str(tmp_path / "shared.png"), full_page=True)

            # bob typed in by name: the API refuses, the page says why
            page.fill("#share-user", OUTSIDER)
            page.click("#share-by-name")
            playwright_sync.expect(page.locator("#share-error")).to_contain_text(
                f"{OUTSIDER} is not a member of the proposal", timeout=STEP_MS)
            assert _shared_with(demo_hub) == [COLLEAGUE]

            page.click(f"#share-current button[data-user='{COLLEAGUE}']")
            playwright_sync.expect(page.locator("#share-none")).to_be_visible(timeout=STEP_MS)
            playwright_sync.expect(current).to_have_count(0, timeout=STEP_MS)
            assert _shared_with(demo_hub) == []
        finally:
            page.screenshot(path=str(tmp_path / "share-page.png"), full_page=True)
            browser.close()
