"""Desktop marks name their server, so a desktop left by a killed server is found (real processes)."""

import os
import subprocess
import sys

from server_ext.desktop.processes import MARK_VARIABLE, new_mark, orphaned_marks, sweep_orphans


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
