"""The ``daas`` command.

Subcommands are plugged in through the ``daas.commands`` entry-point group so
that this module imports none of them: ``daas demo`` does not load
TensorFlow, ``daas nxmx`` does not load JupyterHub. Each entry point is a
``register(subparsers)`` function that adds its parser and sets ``func``.
"""

import argparse
import sys
from importlib.metadata import entry_points


class CommandError(Exception):
    """A user error in a ``daas`` subcommand: printed without traceback, exit 2."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="daas",
        description="panosc-daas: facility JupyterHub, NXmx conversion, spectra classifier",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for ep in sorted(entry_points(group="daas.commands"), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as e:  # a half-installed plugin must not break the others
            print(f"daas: subcommand {ep.name!r} unavailable: {e}", file=sys.stderr)
            continue
        register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("daas: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # Each area's own error type carries a message meant for the user.
        if getattr(e, "user_error", False) or isinstance(e, CommandError):
            print(f"daas {args.command}: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
