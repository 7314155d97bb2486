"""The desktop environment through the real demo hub and its proxy, and sharing it.

dana (proposal p2120) starts the desktop on a p2120 run through the spawn
form. The RFB checks go through configurable-http-proxy to her server; alice
(also p2120) is her colleague, bob (PETRA proposals) is not. The browser
scenario is in test_desktop_browser.py.
"""

import asyncio
import time

import psutil
import pytest
from tornado.httpclient import HTTPClientError

from server_ext.desktop.processes import server_mark, stop_marked, wait_until_gone
from server_ext.desktop.rfb import RFBClient

from ..desktop.servertools import missing_tools
from .hubtools import API_TOKEN

OWNER, COLLEAGUE, OUTSIDER = "dana", "alice", "bob"
DATASET = "xfel:p002120:r0029"  # proposal p2120: dana and alice
DESKTOP_PAGE = f"/user/{OWNER}/desktop/"
DRAWN_S = 120
REVOKE_S = 90  # the server trusts the hub's answer for auth_cache_max_age (30 s in the demo)

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"desktop system packages absent ({missing_tools()}); `daas setup` installs them"
)


def server_pid(user):
    """The pid of ``user``'s single-user server process (the local spawner runs it here)."""
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "jupyterhub.singleuser" in " ".join(p.info["cmdline"] or ()) and p.environ().get("JUPYTERHUB_USER") == user:
                return p.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return None


def ws_url(hub, owner=OWNER):
    return hub.url.replace("http://", "ws://") + f"/user/{owner}/desktop-websockify/"


async def drawn(hub, headers):
    client = await RFBClient.connect(ws_url(hub), headers=headers, timeout=60)
    try:
        return await client.wait_drawn(DRAWN_S)
    finally:
        client.close()


async def refused(hub, headers):
    try:
        client = await RFBClient.connect(ws_url(hub), headers=headers, timeout=30)
    except HTTPClientError as e:
        return e.code
    client.close()
    return None


@pytest.fixture(scope="module")
def desktop(demo_hub):
    owner = demo_hub.login(OWNER)
    r = owner.post_form({"dataset": DATASET, "environment": "desktop"})
    assert r.status_code == 302, r.text[-2000:]
    demo_hub.wait_ready(OWNER)
    pid = server_pid(OWNER)
    try:
        yield owner
    finally:
        mark = server_mark(pid) if pid else None
        if demo_hub.server_state(OWNER) is not None:
            demo_hub.stop_server(OWNER)
        if mark:
            stop_marked(mark)


async def test_desktop_opens_at_slash_desktop_and_draws_through_the_hub_proxy(demo_hub, desktop):
    r = desktop.get(f"/user/{OWNER}/")  # the environment's default_url
    assert r.status_code == 200 and r.url.endswith(f"/user/{OWNER}/desktop/"), r.url
    assert "desktop-websockify" in r.text or "Remote Desktop" in r.text
    frame = await drawn(demo_hub, {"Authorization": f"token {API_TOKEN}"})
    assert not frame.is_blank()


async def test_desktop_websocket_without_a_token_is_refused(demo_hub, desktop):
    assert await refused(demo_hub, {}) in (302, 401, 403)


def _share(owner, method, **kw):
    """The sharing service's API on dana's default server, with ``owner``'s own token."""
    return owner.share(method, OWNER, **kw)


async def test_share_with_the_proposal_team_and_revoke(demo_hub, desktop):
    colleague = demo_hub.login(COLLEAGUE)
    # before sharing, alice cannot reach dana's desktop (the hub refuses her the server's login)
    assert colleague.get(DESKTOP_PAGE).status_code == 403

    r = _share(desktop, "POST", json={"user": OUTSIDER})
    assert r.status_code == 403 and "not a member of the proposal" in r.json()["message"], r.text
    r = _share(desktop, "POST", json={"user": COLLEAGUE})
    assert r.status_code == 200, r.text
    assert [s["user"] for s in _share(desktop, "GET").json()["shares"]] == [COLLEAGUE]
    # bob cannot share dana's session himself, nor use the hub's own sharing API
    bob = demo_hub.login(OUTSIDER)
    xsrf = {"X-XSRFToken": bob.s.cookies.get("_xsrf", path="/hub/") or ""}
    r = bob.share("POST", OWNER, json={"user": OUTSIDER})
    assert r.status_code == 403 and r.json()["message"] == "Only the session's owner can share it.", r.text
    assert bob.share("GET", OWNER).status_code == 403  # nor see who has it
    assert bob.s.post(f"{demo_hub.url}/hub/api/shares/{OWNER}/", json={"user": OUTSIDER},
                      headers=xsrf, timeout=30).status_code == 403

    # alice now reaches dana's server and desktop with her own login
    assert colleague.get(DESKTOP_PAGE).status_code == 200
    alice_token = {"Authorization": f"token {colleague.token('desktop test')}"}
    frame = await drawn(demo_hub, alice_token)
    assert not frame.is_blank()

    r = _share(desktop, "DELETE", params={"user": COLLEAGUE})
    assert r.status_code == 204, r.text
    assert _share(desktop, "GET").json()["shares"] == []
    deadline = time.monotonic() + REVOKE_S
    while colleague.get(DESKTOP_PAGE).status_code == 200:
        assert time.monotonic() < deadline, f"alice still reaches dana's server {REVOKE_S} s after the revoke"
        await asyncio.sleep(2)
    deadline = time.monotonic() + REVOKE_S
    while (code := await refused(demo_hub, alice_token)) is None:
        assert time.monotonic() < deadline, f"alice's token still opens dana's desktop {REVOKE_S} s after the revoke"
        await asyncio.sleep(2)
    assert code == 403


@pytest.mark.parametrize("body, status, message", [
    ({}, 400, "Say whom to share with"),
    ({"user": ["alice"]}, 400, "Say whom to share with"),
    ({"user": "nobody-zzz"}, 404, "No such user"),
    ({"user": OWNER}, 400, "already own"),
])
def test_share_requests_that_make_no_sense_are_refused_clearly(demo_hub, desktop, body, status, message):
    r = _share(desktop, "POST", json=body)
    assert r.status_code == status and message in r.text, r.text
    assert _share(desktop, "GET").json()["shares"] == []


def test_sharing_a_server_that_does_not_exist_is_404(demo_hub, desktop):
    r = desktop.share("POST", OWNER, "no-such-server", json={"user": COLLEAGUE})
    assert r.status_code == 404 and r.json()["message"] == "No such session.", r.text


async def test_stopping_the_server_leaves_no_desktop_process(demo_hub, desktop):
    await drawn(demo_hub, {"Authorization": f"token {API_TOKEN}"})
    mark = server_mark(server_pid(OWNER))
    assert mark
    demo_hub.stop_server(OWNER)
    left = wait_until_gone(mark, timeout=30)
    assert left == [], [(p.pid, p.name()) for p in left]
