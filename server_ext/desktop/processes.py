"""Find and stop a server's desktop processes, wherever they went.

vncserver, Xtigervnc, the session and D-Bus daemons each call ``setsid`` or
double-fork, so signalling the server's process group misses them. They all
inherit the server's environment, though: a mark variable with a value
unique to the server finds them. The server's other children (kernels, Dask
workers) carry it too; a running server leaves those to its own shutdown.

The mark also names its server (pid and start time), so a desktop whose
server died without stopping it (SIGKILL, out of memory) is recognised as
an orphan and swept when this user's next server starts.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import psutil

MARK_VARIABLE = "DAAS_DESKTOP_MARK"


def new_mark(server_pid: int | None = None) -> str:
    """A mark for the server ``server_pid`` (default: this process): ``<pid>-<start time>-<random>``."""
    server = psutil.Process(server_pid or os.getpid())
    return f"{server.pid}-{server.create_time():.3f}-{uuid.uuid4().hex}"


def _server_alive(mark: str) -> bool:
    """True when the server named in *mark* still runs, or the mark names none (keep its desktop)."""
    try:
        pid, started, _ = mark.split("-", 2)
        pid, started = int(pid), float(started)
    except ValueError:
        return True  # an older mark without its server: never ours to judge
    try:
        return abs(psutil.Process(pid).create_time() - started) < 0.01  # not a reused pid
    except psutil.NoSuchProcess:
        return False


def orphaned_marks() -> set[str]:
    """Marks carried by this user's processes whose server is gone."""
    marks = set()
    uid = os.getuid()
    for p in psutil.process_iter(["pid", "uids"]):
        try:
            if p.pid == os.getpid() or p.info["uids"] is None or p.info["uids"].real != uid:
                continue
            mark = p.environ().get(MARK_VARIABLE)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if mark and not _server_alive(mark):
            marks.add(mark)
    return marks


def sweep_orphans(timeout: float = 5.0) -> list[int]:
    """Stop the desktops left by servers that died without stopping them; their pids."""
    return [pid for mark in sorted(orphaned_marks()) for pid in stop_marked(mark, timeout)]


def marked_processes(mark: str) -> list[psutil.Process]:
    """This user's processes (not us) whose environment carries ``mark``."""
    found = []
    me, uid = os.getpid(), os.getuid()
    for p in psutil.process_iter(["pid", "uids"]):
        try:
            if p.pid == me or p.info["uids"] is None or p.info["uids"].real != uid:
                continue
            if p.environ().get(MARK_VARIABLE) == mark:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


#: answer SIGTERM by killing their D-Bus daemon, then sleep(3) before SIGKILLing it, so
#: every desktop stop waited 3 s for them; the daemon is marked and stopped here anyway
KILLED_AT_ONCE = {"dbus-launch"}


def _signal(procs: list[psutil.Process], kill: bool) -> None:
    for p in procs:
        try:
            p.kill() if kill or p.name() in KILLED_AT_ONCE else p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass


def _runs_the_desktop(proc: psutil.Process) -> bool:
    # jupyter-remote-desktop-proxy starts it as /bin/sh -c "cd ... && .../vncserver ..."
    return any("vncserver" in part for part in proc.cmdline())


def servers_own(server_pid: int) -> set[int]:
    """The processes below the server that are not its desktop: kernels, Dask
    workers and multiprocessing's resource tracker, streams, terminals.

    They inherit the mark too, but the server stops them itself: signalled
    here, a kernel is restarted by Jupyter's restarter, and the resource
    tracker ignores SIGTERM until its server has gone.
    """
    try:
        children = psutil.Process(server_pid).children()
    except psutil.NoSuchProcess:
        return set()
    own = set()
    for child in children:
        try:
            if not _runs_the_desktop(child):
                own |= {child.pid} | {p.pid for p in child.children(recursive=True)}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return own


def stop_marked(mark: str, timeout: float = 5.0, server_pid: int | None = None) -> list[int]:
    """SIGTERM the marked processes, SIGKILL what is left after ``timeout``; their pids.

    With ``server_pid`` (a running server stopping its desktop), the server's
    own processes (:func:`servers_own`) are left to it.
    """
    def found():
        procs = marked_processes(mark)
        spare = servers_own(server_pid) if server_pid else set()
        return [p for p in procs if p.pid not in spare]

    procs = found()
    _signal(procs, kill=False)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    _signal(alive, kill=True)
    psutil.wait_procs(alive, timeout=timeout)
    late = found()  # a daemon may have forked while we waited
    _signal(late, kill=True)
    psutil.wait_procs(late, timeout=timeout)
    return [p.pid for p in procs + late]


def server_mark(server_pid: int) -> str | None:
    """The mark of the desktop started by the Jupyter server ``server_pid``, or None.

    Read from one of its children (vncserver): the server sets the mark in its
    own environment after it started, so its /proc/environ does not show it.
    """
    try:
        children = psutil.Process(server_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            mark = child.environ().get(MARK_VARIABLE)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if mark:
            return mark
    return None


def wait_until_gone(mark: str, timeout: float) -> list[psutil.Process]:
    """Poll until no process carries ``mark`` (bounded); what is still there."""
    deadline = time.monotonic() + timeout
    while True:
        left = marked_processes(mark)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)
