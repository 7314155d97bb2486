"""The ``daas`` command: plugin subcommands, user errors without tracebacks."""

import subprocess
import sys

import pytest

from hub_ext import cli


def daas(*args):
    return subprocess.run([sys.executable, "-m", "hub_ext.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_subcommands():
    r = daas("--help")
    assert r.returncode == 0
    for name in ("demo", "setup", "nxmx", "spectra"):
        assert name in r.stdout
    assert "unavailable" not in r.stderr


def test_user_errors_exit_2_without_traceback(monkeypatch, capsys):
    class Refused(Exception):
        user_error = True

    def register(sub):
        p = sub.add_parser("boom")
        p.set_defaults(func=lambda args: (_ for _ in ()).throw(Refused("the run directory does not exist")))

    real = cli.entry_points
    monkeypatch.setattr(cli, "entry_points", lambda group: [*real(group=group), _EP("boom", register)])
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert "daas boom: error: the run directory does not exist" in err and "Traceback" not in err


def test_bugs_are_not_hidden(monkeypatch):
    def register(sub):
        sub.add_parser("bug").set_defaults(func=lambda args: 1 / 0)

    monkeypatch.setattr(cli, "entry_points", lambda group: [_EP("bug", register)])
    with pytest.raises(ZeroDivisionError):
        cli.main(["bug"])


class _EP:
    def __init__(self, name, func):
        self.name, self._func = name, func

    def load(self):
        return self._func
