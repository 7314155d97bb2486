"""``server_ext.nxmx.dials`` without DIALS, and its bounded subprocesses
(these run everywhere; DIALS itself is exercised in test_nxmx_dials_*.py)."""

import sys
import time

import psutil
import pytest

from server_ext.nxmx import DialsError, DialsTimeoutError, DialsUnavailableError, dials


def test_without_dials_every_call_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv(dials.PYTHON_ENV, str(tmp_path / "no-such-python"))
    assert dials.dials_python() == str(tmp_path / "no-such-python")
    assert not dials.dials_available()
    assert "apt-get install dials python3-dials hdf5-filter-plugin bitshuffle" in dials.install_hint()
    for call in (lambda: dials.read_with_dxtbx(tmp_path / "x.nxs"),
                 lambda: dials.find_and_index(tmp_path / "x.nxs", tmp_path / "work")):
        with pytest.raises(DialsUnavailableError, match="DIALS is not installed") as e:
            call()
        assert e.value.user_error  # shown to the user without a traceback
    assert not (tmp_path / "work").exists()


def test_a_program_past_its_time_limit_is_stopped_with_its_children(tmp_path):
    # A DIALS program with nproc > 1 has worker processes: all of them stop.
    script = ("import pathlib, subprocess, sys, time;"
              " p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
              " pathlib.Path('child.pid').write_text(str(p.pid)); time.sleep(120)")
    t0 = time.monotonic()
    with pytest.raises(DialsTimeoutError, match="did not finish within 10 s"):
        dials.run_dials([sys.executable, "-c", script], tmp_path, 10, "a slow step")
    assert time.monotonic() - t0 < 60
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 20
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the program's child process outlived the timeout"
        time.sleep(0.2)


def test_a_failing_program_is_quoted(tmp_path):
    with pytest.raises(DialsError, match=r"a step failed \(exit code 3\).*something went wrong"):
        dials.run_dials([sys.executable, "-c", "import sys; print('something went wrong'); sys.exit(3)"],
                        tmp_path, 60, "a step")
    with pytest.raises(DialsError, match="apt-get install bitshuffle"):
        dials.run_dials([sys.executable, "-c", "import sys; sys.exit(\"required filter 'bitshuffle' is not"
                         " registered\")"], tmp_path, 60, "a read")
