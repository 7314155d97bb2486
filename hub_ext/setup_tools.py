"""Install the non-Python pieces the hub needs, into the project's own prefix.

configurable-http-proxy comes from the npm registry and is installed into the
active virtual environment (``npm install -g --prefix sys.prefix``), so it
lands in ``.venv/bin`` next to ``jupyterhub`` and nothing global is touched.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHP_PACKAGE = "configurable-http-proxy@^4.6"


class SetupError(RuntimeError):
    """A missing prerequisite; the message says what to install."""

    user_error = True
CHROMIUM = "/usr/bin/chromium"


def proxy_path():
    """Path of configurable-http-proxy in this environment's prefix, or None."""
    exe = Path(sys.prefix) / "bin" / "configurable-http-proxy"
    return exe if exe.exists() else None


def ensure_proxy(quiet=False):
    """Install configurable-http-proxy into ``sys.prefix`` unless present."""
    exe = proxy_path()
    if exe:
        return exe
    npm = shutil.which("npm")
    if not npm:
        raise SetupError(
            "npm is required to install configurable-http-proxy: "
            "install Node.js and npm (apt-get install nodejs npm)"
        )
    if not quiet:
        print(f"Installing {CHP_PACKAGE} into {sys.prefix} ...", flush=True)
    r = subprocess.run(
        [npm, "install", "-g", "--no-fund", "--no-audit", "--prefix", sys.prefix, CHP_PACKAGE],
        stdout=subprocess.DEVNULL if quiet else None,
    )
    exe = proxy_path()
    if r.returncode or not exe:
        raise SetupError(
            f"npm could not install {CHP_PACKAGE} into {sys.prefix} (exit code {r.returncode}); "
            "check that the npm registry is reachable, then run `daas setup` again"
        )
    return exe


def ensure_chromium():
    """Debian's Chromium drives the browser tests; install it when we may."""
    if os.path.exists(CHROMIUM):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, env=env)
        return os.path.exists(CHROMIUM)
    print(
        f"{CHROMIUM} is missing; the browser tests need it: sudo apt-get install chromium",
        file=sys.stderr,
    )
    return False


def _setup(args):
    ensure_proxy()
    if args.test:
        if not ensure_chromium():
            return 1
    print(f"configurable-http-proxy: {proxy_path()}")
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "setup", help="install configurable-http-proxy (and Chromium for --test) into this prefix"
    )
    p.add_argument("--test", action="store_true", help="also install what the test suite needs")
    p.set_defaults(func=_setup)
