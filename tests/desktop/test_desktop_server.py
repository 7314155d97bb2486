"""The desktop through a real Jupyter server: no browser, the RFB protocol over its websocket.

Each check speaks RFB 3.8 to TigerVNC through ``/desktop-websockify/`` the way
noVNC does, and polls full frames until the window manager has drawn.
"""

import asyncio
import contextlib
import os
import re
import signal
import stat
import subprocess
import time

import psutil
import pytest
import requests
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from server_ext.desktop.processes import server_mark, stop_marked, wait_until_gone
from server_ext.desktop.rfb import RFBClient

from .servertools import TOKEN, DesktopServer, make_dataset, missing_tools

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"desktop system packages absent ({missing_tools()}); `daas setup` installs them"
)

DRAWN_S = 90  # first frames are black until openbox and the terminal have drawn
AUTH = {"Authorization": f"token {TOKEN}"}


def _start(tmp_path_factory, name):
    root = tmp_path_factory.mktemp(name)
    return DesktopServer(root, make_dataset(root / "dataset")).start()


def _stop_all(server):
    mark = server_mark(server.proc.pid) if server.proc else None
    server.stop()
    if mark:
        stop_marked(mark)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = _start(tmp_path_factory, "desktop")
    try:
        yield s
    finally:
        _stop_all(s)


async def _drawn(server):
    client = await RFBClient.connect(server.ws_url(), headers=AUTH, timeout=60)
    try:
        return client, await client.wait_drawn(DRAWN_S)
    finally:
        client.close()


def _session(mark):
    """{process name: Process} of the desktop with ``mark``."""
    from server_ext.desktop.processes import marked_processes

    return {p.name(): p for p in marked_processes(mark)}


async def test_desktop_draws_through_the_server_with_the_token(server):
    client, frame = await _drawn(server)
    assert (frame.width, frame.height) == (client.width, client.height) == (1680, 1050)
    assert frame.distinct_colours() > 1


def test_jupyterlab_launcher_has_a_desktop_tile(server):
    import json
    import urllib.request

    with urllib.request.urlopen(f"{server.url}server-proxy/servers-info?token={TOKEN}", timeout=30) as r:
        entries = [s["launcher_entry"] for s in json.load(r)["server_processes"]]
    assert {"enabled": True, "title": "Desktop", "path_info": "desktop"}.items() <= entries[0].items(), entries


@pytest.mark.parametrize("headers", [{}, {"Authorization": "token wrong-token"}], ids=["no-token", "bad-token"])
async def test_websocket_without_a_valid_token_is_refused(server, headers):
    with pytest.raises(HTTPClientError) as e:
        await asyncio.wait_for(websocket_connect(HTTPRequest(server.ws_url(), headers=headers)), 30)
    assert e.value.code in (401, 403)


async def test_vnc_listens_on_a_private_unix_socket_only(server):
    await _drawn(server)
    mark = server_mark(server.proc.pid)
    procs = _session(mark)
    xvnc = procs["Xtigervnc"]
    listening = [c for p in procs.values() for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening == []
    args = xvnc.cmdline()
    sock = args[args.index("-rfbunixpath") + 1]
    assert stat.S_IMODE(os.stat(sock).st_mode) & 0o077 == 0
    assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700
    # another account cannot connect, whatever the modes say
    probe = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({sock!r})"
    r = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", probe],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "PermissionError" in r.stderr, r.stderr


async def test_logging_out_gives_a_fresh_desktop(server):
    await _drawn(server)
    before = _session(server_mark(server.proc.pid))
    # as the menu's "Log out" does, with the session's own display and X authority
    session_env = before["openbox"].environ()
    x_env = {k: session_env[k] for k in ("DISPLAY", "XAUTHORITY", "HOME") if k in session_env}
    subprocess.run(["openbox", "--exit"], env=dict(os.environ, **x_env), timeout=30, check=True)
    # the whole old session goes (vncserver last: until then the proxy sees it running)
    _, alive = psutil.wait_procs(list(before.values()), timeout=30)
    assert alive == []
    _, frame = await _drawn(server)  # jupyter-server-proxy starts a new desktop
    after = _session(server_mark(server.proc.pid))
    assert after["Xtigervnc"].pid != before["Xtigervnc"].pid
    assert not frame.is_blank()


def _kernel_pid(server, kernel_id, timeout=60):
    """The pid of the server's kernel ``kernel_id`` (its connection file names it)."""
    deadline = time.monotonic() + timeout
    while True:
        for p in psutil.Process(server.proc.pid).children():
            with contextlib.suppress(psutil.Error):
                if any(f"kernel-{kernel_id}.json" in a for a in p.cmdline()):
                    return p.pid
        assert time.monotonic() < deadline, f"no process for kernel {kernel_id}"
        time.sleep(0.3)


async def test_stopping_the_server_stops_the_whole_desktop(tmp_path_factory):
    s = _start(tmp_path_factory, "desktop-stop")
    mark = None
    try:
        await _drawn(s)
        mark = server_mark(s.proc.pid)
        names = set(_session(mark))
        assert {"Xtigervnc", "openbox", "dbus-daemon"} <= names, names
        assert names & {"xterm", "thunar"}, names  # the dataset view: a file manager where installed
        # a kernel carries the mark too, but it is the server's to stop, not the desktop's
        r = requests.post(f"{s.url}api/kernels", headers=AUTH, json={"name": "python3"}, timeout=60)
        assert r.status_code == 201, r.text
        kernel = _kernel_pid(s, r.json()["id"])
        # as JupyterHub's local spawner stops a server; simpervisor, which runs the
        # desktop, holds SIGINT and SIGTERM alike
        s.proc.send_signal(signal.SIGINT)
        assert s.proc.wait(60) == 0
        left = wait_until_gone(mark, timeout=30)
        assert left == [], [(p.pid, p.name()) for p in left]
        log = s.log_path.read_text()
        # the server's own shutdown ran (simpervisor's sys.exit() skipped it)
        assert "Shutting down" in log and f"Kernel shutdown: {r.json()['id']}" in log, log[-3000:]
        stopped = {int(pid) for line in re.findall(r"Stopped \d+ desktop process\(es\): \[([\d, ]*)\]", log)
                   for pid in line.replace(",", " ").split()}
        assert kernel not in stopped, (kernel, stopped)
        assert "restarting kernel" not in log
    finally:
        s.stop()
        if mark:
            stop_marked(mark)


async def test_a_killed_servers_desktop_is_stopped_by_the_next_start(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("desktop-killed")
    dataset = make_dataset(root / "dataset")
    first = DesktopServer(root, dataset).start()
    mark = second = None
    try:
        await _drawn(first)
        mark = server_mark(first.proc.pid)
        first.proc.kill()  # SIGKILL: no atexit, no extension stop
        first.proc.wait(30)
        assert "Xtigervnc" in _session(mark), "the killed server's desktop outlives it"
        await _drawn(server)
        running = server_mark(server.proc.pid)
        second = DesktopServer(root, dataset).start()  # the same user's next server
        left = wait_until_gone(mark, timeout=30)
        assert left == [], [(p.pid, p.name()) for p in left]
        assert "Xtigervnc" in _session(running), "a running server's desktop is left alone"
    finally:
        first.stop()
        if second is not None:
            second.stop()
        if mark:
            stop_marked(mark)
