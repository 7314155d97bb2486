"""Find and stop a server's desktop processes, wherever they went.

vncserver, Xtigervnc, the session and D-Bus daemons each call ``setsid`` or
double-fork, so signalling the server's process group misses them. They all
inherit the server's environment, though: a mark variable with a value
unique to the server finds them.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

MARK_VARIABLE = "DAAS_DESKTOP_MARK"


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


def stop_marked(mark: str, timeout: float = 5.0) -> list[int]:
    """SIGTERM the marked processes, SIGKILL what is left after ``timeout``; their pids."""
    procs = marked_processes(mark)
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    # a daemon may have forked while we waited
    late = marked_processes(mark)
    for p in late:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(late, timeout=timeout)
    return [p.pid for p in procs + late]


def wait_until_gone(mark: str, timeout: float) -> list[psutil.Process]:
    """Poll until no process carries ``mark`` (bounded); what is still there."""
    deadline = time.monotonic() + timeout
    while True:
        left = marked_processes(mark)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)
