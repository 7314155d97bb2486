"""Desktop marks name their server, so a desktop left by a killed server is found (real processes)."""

import contextlib
import os
import subprocess
import sys
import time

import psutil

from server_ext.desktop.processes import (MARK_VARIABLE, new_mark, orphaned_marks, servers_own, stop_marked,
                                          sweep_orphans)


def _sleeper(mark):
    env = dict(os.environ, **{MARK_VARIABLE: mark})
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env)


def test_only_marks_of_dead_servers_are_orphans():
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    procs = []
    try:
        alive_mark, dead_mark = new_mark(), new_mark(server.pid)
        pid, started, _ = dead_mark.split("-", 2)
        reused_mark = f"{os.getpid()}-{float(started) - 100:.3f}-0123"  # a live pid, another start time
        procs = [_sleeper(m) for m in (alive_mark, dead_mark, reused_mark, "0123456789abcdef")]
        assert dead_mark not in orphaned_marks()  # its server still runs
        server.kill()
        server.wait(30)
        orphans = orphaned_marks()
        assert dead_mark in orphans and reused_mark in orphans
        assert alive_mark not in orphans and "0123456789abcdef" not in orphans  # an old mark names no server
        swept = sweep_orphans(timeout=10)
        assert {procs[1].pid, procs[2].pid} <= set(swept)
        assert procs[1].wait(30) is not None and procs[2].wait(30) is not None
        assert procs[0].poll() is None and procs[3].poll() is None
    finally:
        server.kill()
        for p in procs:
            p.kill()
            p.wait(30)


def test_a_running_server_stops_its_desktop_and_leaves_its_own_processes():
    """This test process plays the server: a child like a kernel stays, the
    desktop's launcher (its command runs vncserver) with its children and a
    process that left the tree (as the desktop's daemons do) are stopped."""
    mark = new_mark()
    env = dict(os.environ, **{MARK_VARIABLE: mark})
    kernel = _sleeper(mark)
    launcher = subprocess.Popen(["/bin/sh", "-c", "sleep 120; : vncserver -fg"], env=env)
    escape = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; "
              "time.sleep(120)'], start_new_session=True, "
              "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")
    daemon = int(subprocess.run([sys.executable, "-c", escape], env=env, capture_output=True, text=True,
                                timeout=60, check=True).stdout)
    try:
        deadline = time.monotonic() + 30
        while not (below := psutil.Process(launcher.pid).children()):
            assert time.monotonic() < deadline, "the launcher started nothing"
            time.sleep(0.1)
        assert servers_own(os.getpid()) >= {kernel.pid} and launcher.pid not in servers_own(os.getpid())
        stopped = stop_marked(mark, timeout=10, server_pid=os.getpid())
        assert set(stopped) == {launcher.pid, daemon} | {p.pid for p in below}, stopped
        assert launcher.wait(30) is not None and not psutil.pid_exists(daemon)
        assert kernel.poll() is None
        # a dead server's mark takes everything, as the sweep does
        assert stop_marked(mark, timeout=10) == [kernel.pid]
    finally:
        for p in (kernel, launcher):
            p.kill()
            p.wait(30)
        with contextlib.suppress(psutil.Error):
            psutil.Process(daemon).kill()


BABYSITTER = """
import ctypes, pathlib, signal, sys, time
ctypes.CDLL(None).prctl(15, b"dbus-launch", 0, 0, 0)  # PR_SET_NAME: what psutil's name() reads
def babysit(signum, frame):  # as dbus-launch does: TERM the bus, sleep(3), KILL it, exit
    pathlib.Path(sys.argv[1]).write_text("terminated")
    time.sleep(3)
    sys.exit(3)
signal.signal(signal.SIGTERM, babysit)
print("ready", flush=True)
time.sleep(120)
"""


def test_dbus_launch_is_killed_rather_than_waited_for(tmp_path):
    """dbus-launch's SIGTERM path sleeps 3 s before it exits; its bus is marked
    and stopped with the desktop anyway, so it is SIGKILLed at once."""
    mark = new_mark()
    env = dict(os.environ, **{MARK_VARIABLE: mark})
    trace = tmp_path / "sigterm"
    sitter = subprocess.Popen([sys.executable, "-c", BABYSITTER, str(trace)], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert sitter.stdout.readline().strip() == "ready"
        assert psutil.Process(sitter.pid).name() == "dbus-launch"
        assert sitter.pid in stop_marked(mark, timeout=30)
        assert not psutil.pid_exists(sitter.pid) or psutil.Process(sitter.pid).status() == psutil.STATUS_ZOMBIE
        assert not trace.exists()  # its SIGTERM handler (the 3 s wait) never ran
    finally:
        sitter.kill()
        sitter.wait(30)
