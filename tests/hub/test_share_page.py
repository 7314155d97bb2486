"""The Share page and API of the ``daas-share`` service, through the demo hub (the page in a real browser).

dana runs a notebook session on a p2120 run and follows the home page's
"Share my session" link to the service's page (logged in through the hub's
OAuth); the page offers her colleague alice (p2120) and not bob (PETRA
proposals); she grants alice, sees the share, is refused bob by name with
the API's reason, and revokes alice. The hub's own shares API is the
independent witness of what was granted. Screenshots in the test's
temporary directory.
"""

import re

import pytest
import requests
from playwright import sync_api as playwright_sync

from .browsertools import STEP_MS, chromium, evidence_on_failure, log_in

OWNER, COLLEAGUE, OUTSIDER = "dana", "alice", "bob"
DATASET = "xfel:p002120:r0029"  # proposal p2120: dana and alice
PAGE = f"/services/daas-share/{OWNER}/"


def _shared_with(hub):
    """Who holds a share of dana's default server, according to the hub itself."""
    r = hub.api("GET", f"/shares/{OWNER}/")
    assert r.status_code == 200, r.text
    items = r.json()
    items = items["items"] if isinstance(items, dict) else items
    return sorted(s["user"]["name"] for s in items if s.get("user"))


def _stop(hub, user):
    if hub.server_state(user) is not None:  # left by another module
        hub.stop_server(user)


@pytest.fixture(scope="module")
def session(demo_hub):
    owner = demo_hub.login(OWNER)
    _stop(demo_hub, OWNER)
    r = owner.post_form({"dataset": DATASET, "environment": "python-basic"})
    assert r.status_code == 302, r.text[-2000:]
    try:
        demo_hub.wait_ready(OWNER)
        yield owner
    finally:
        _stop(demo_hub, OWNER)


def test_sharing_is_registered_as_a_service_without_deprecated_extra_handlers(demo_hub):
    log = demo_hub.log_text()
    assert "Starting managed service daas-share" in log and "panosc-daas sharing service on" in log, log[-3000:]
    assert "extra_handlers" not in log, [line for line in log.splitlines() if "extra_handlers" in line]
    assert requests.get(f"{demo_hub.url}/hub/api/daas/shares/{OWNER}/", timeout=30).status_code == 404  # the old route is gone
    r = requests.get(f"{demo_hub.url}/services/daas-share/", timeout=30, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/hub/home"  # the service's root leads home


def test_share_page_refuses_clearly_without_a_session_or_to_others(demo_hub):
    _stop(demo_hub, OWNER)
    owner, outsider = demo_hub.login(OWNER), demo_hub.login(OUTSIDER)
    r = owner.get(f"/services/daas-share/{OWNER}/no-such-server")  # through the hub's OAuth log-in
    assert r.status_code == 404 and "No such session." in r.text, (r.status_code, r.url, r.text[-1000:])
    r = outsider.get(PAGE)
    assert r.status_code == 403 and "Only the session&#39;s owner can share it." in r.text
    assert 'id="share-current"' not in r.text  # nothing of dana's session shown to bob
    r = owner.get(PAGE)
    if r.status_code == 409:  # dana has had a server before: it is not running now
        assert "Start the session before sharing it." in r.text
    else:  # never started: the hub has no default server for her yet
        assert r.status_code == 404 and "No such session." in r.text, (r.status_code, r.text[-1000:])


def test_the_api_wants_the_owners_share_scope_and_no_cookie_without_xsrf(demo_hub, session):
    # nobody: no token, no cookie
    r = requests.post(f"{demo_hub.share_url}/api/shares/{OWNER}/", json={"user": COLLEAGUE}, timeout=30)
    assert r.status_code == 403 and r.json()["message"] == "Log in to share a session.", r.text
    # a token of dana's that holds only the dataset search scope (like the spawn form's picker token)
    r = demo_hub.api("POST", f"/users/{OWNER}/tokens", json={"scopes": [f"custom:daas:datasets!user={OWNER}"]})
    assert r.status_code == 201, r.text
    r = requests.post(f"{demo_hub.share_url}/api/shares/{OWNER}/", json={"user": COLLEAGUE}, timeout=30,
                      headers={"Authorization": f"token {r.json()['token']}"})
    assert r.status_code == 403 and r.json()["message"] == "Only the session's owner can share it.", r.text
    # her service login cookie (from the page) without the page's XSRF token: not identified
    assert session.get(PAGE).status_code == 200
    r = session.s.post(f"{demo_hub.share_url}/api/shares/{OWNER}/", json={"user": COLLEAGUE}, timeout=30)
    assert r.status_code == 403, r.text
    # a body that is not what the API takes
    r = session.share("POST", OWNER, data=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["message"], r.text
    assert _shared_with(demo_hub) == []


def test_owner_grants_a_colleague_and_revokes_from_the_page(demo_hub, session, tmp_path):
    assert _shared_with(demo_hub) == []
    with chromium(step_ms=STEP_MS) as page, evidence_on_failure(page, demo_hub, tmp_path):
        log_in(page, demo_hub, OWNER)
        page.goto(f"{demo_hub.url}/hub/home")  # the home page links to the Share page
        page.click("#daas-share-link")
        page.wait_for_url(re.compile(re.escape(PAGE) + "$"))

        members = page.locator("#share-members li[data-user]")
        playwright_sync.expect(members).to_have_count(1)  # alice; not dana herself, not bob
        playwright_sync.expect(members.first).to_have_attribute("data-user", COLLEAGUE)
        playwright_sync.expect(page.locator("#share-none")).to_be_visible()

        page.click(f"#share-members button[data-user='{COLLEAGUE}']")
        current = page.locator(f"#share-current li[data-user='{COLLEAGUE}']")
        playwright_sync.expect(current).to_be_visible()
        assert _shared_with(demo_hub) == [COLLEAGUE]
        granted = page.locator(f"#share-members li[data-user='{COLLEAGUE}']")
        playwright_sync.expect(granted).to_contain_text("has access")
        page.screenshot(path=str(tmp_path / "shared.png"), full_page=True)

        # bob typed in by name: the API refuses, the page says why
        page.fill("#share-user", OUTSIDER)
        page.click("#share-by-name")
        playwright_sync.expect(page.locator("#share-error")).to_contain_text(
            f"{OUTSIDER} is not a member of the proposal")
        assert _shared_with(demo_hub) == [COLLEAGUE]

        page.click(f"#share-current button[data-user='{COLLEAGUE}']")
        playwright_sync.expect(page.locator("#share-none")).to_be_visible()
        playwright_sync.expect(current).to_have_count(0)
        assert _shared_with(demo_hub) == []
        page.screenshot(path=str(tmp_path / "share-page.png"), full_page=True)
