import os
import subprocess
import sys

import pytest

from hub_ext.demo.command import ensure_demo_data

# A busy core until the parent (pytest) is gone or an hour has passed, so that a
# killed test run cannot leave burners behind on a shared machine.
_BURNER = """
import os, sys, time
parent, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while os.getppid() == parent and time.monotonic() < end:
    for _ in range(200_000):
        pass
"""
_BURNERS = pytest.StashKey[list]()


def pytest_addoption(parser):
    parser.addoption(
        "--cpu-burners", type=int, default=0, metavar="N",
        help="keep N CPU cores busy with burner processes for the whole session (stopped "
             "at its end): run the tests as on a busy CI machine, where they must pass too")


def pytest_configure(config):
    n = config.getoption("cpu_burners", 0) or 0
    config.stash[_BURNERS] = [
        subprocess.Popen([sys.executable, "-c", _BURNER, str(os.getpid()), "3600"],
                         stdin=subprocess.DEVNULL)
        for _ in range(max(0, n))
    ]


def pytest_report_header(config):
    procs = config.stash.get(_BURNERS, [])
    if procs:
        return f"cpu burners: {len(procs)} (pids {' '.join(str(p.pid) for p in procs)})"


def pytest_unconfigure(config):
    procs = config.stash.get(_BURNERS, [])
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory):
    """The demo datasets (``daas demo``'s own), generated once per test session."""
    return ensure_demo_data(tmp_path_factory.mktemp("demo-data"), log=lambda *a: None)
