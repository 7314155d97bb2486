"""The ``daas`` command: plugin subcommands, user errors without tracebacks."""

import argparse
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


def _commands(parser, words=("daas",)):
    """Every command and subcommand of ``parser``, as (words, parser)."""
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*words, name))


def test_every_command_and_option_says_what_it_is():
    said = []
    for words, parser in _commands(cli.build_parser()):
        if not parser.description:
            said.append(f"{' '.join(words)}: no description")
        for action in parser._actions:
            if not action.help and not isinstance(action, argparse._SubParsersAction):
                said.append(f"{' '.join(words)} {'/'.join(action.option_strings) or action.dest}: no help")
        if "``" in parser.format_help():  # reStructuredText markup of a docstring, printed as is
            said.append(f"{' '.join(words)}: `` in its help")
    assert not said, "\n".join(said)
