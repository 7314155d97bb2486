"""Install the non-Python pieces the hub needs, into the project's own prefix.

configurable-http-proxy comes from the npm registry and is installed into the
active virtual environment (``npm install -g --prefix sys.prefix``), so it
lands in ``.venv/bin`` next to ``jupyterhub`` and nothing global is touched.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from ..desktop import DESKTOP_PACKAGES
from ..files import write_atomic

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


#: Debian packages the project uses at run time ("runtime": installed by
#: ``daas setup`` and ``daas demo``) and in its tests ("test": ``daas setup
#: --test`` adds them). Each maps a package to a file that shows it is there.
#: Features add their packages here, in one place.
_HDF5_PLUGINS = f"/usr/lib/{sysconfig.get_config_var('MULTIARCH') or 'x86_64-linux-gnu'}/hdf5/serial/plugins"

DEBIAN_PACKAGES = {
    "runtime": {
        **DESKTOP_PACKAGES,  # the remote desktop (hub_ext/desktop.py)
        # DIALS for the crystallography environment (server_ext.nxmx.dials runs
        # it with /usr/bin/python3); hdf5-filter-plugin (LZ4, BZip2) and
        # bitshuffle (in Debian 12 the only package with the bitshuffle filter,
        # 32008) let it read `daas nxmx convert --mode copy` files.
        "dials": "/usr/bin/dials.import",
        "python3-dials": "/usr/lib/python3/dist-packages/dials/__init__.py",
        "hdf5-filter-plugin": f"{_HDF5_PLUGINS}/libh5lz4.so",
        "bitshuffle": f"{_HDF5_PLUGINS}/libh5bshuf.so",
    },
    "test": {"chromium": CHROMIUM},
}


def missing_debian_packages(purposes=("runtime",)):
    """Packages of ``purposes`` whose marker file is absent, in a stable order."""
    missing = []
    for purpose in purposes:
        for package, marker in DEBIAN_PACKAGES[purpose].items():
            if not os.path.exists(marker) and package not in missing:
                missing.append(package)
    return missing


def ensure_debian_packages(purposes=("runtime",), quiet=False):
    """Install missing packages with apt-get when we may; return what is still missing.

    As root with apt-get, missing packages are installed (waiting for another
    apt-get's lock rather than failing). Otherwise nothing is changed and the
    caller is told what a person has to install.
    """
    missing = missing_debian_packages(purposes)
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        out = subprocess.DEVNULL if quiet else None
        lock = ["-o", "DPkg::Lock::Timeout=600"]
        if not quiet:
            print(f"Installing Debian packages: {' '.join(missing)} ...", flush=True)
        for cmd in (["update", "-q"], ["install", "-y", "-q", *missing]):
            r = subprocess.run(["apt-get", *lock, *cmd], env=env, stdout=out)
            if r.returncode:
                raise SetupError(
                    f"apt-get {cmd[0]} failed (exit code {r.returncode}) while installing "
                    f"{' '.join(missing)}; check the Debian mirror, then run `daas setup` again"
                )
        missing = missing_debian_packages(purposes)
    return missing


#: The file that enables this package's Jupyter Server extensions
#: (server_ext.extension, server_ext.desktop) in every server of a prefix.
SERVER_CONFIG = Path("jupyter_server_config.d") / "panosc_daas.json"
#: JupyterLab's defaults for every user of a prefix: a facility's servers do
#: not ask each scientist about Jupyter news nor look for updates on the web.
LAB_OVERRIDES = Path("lab") / "settings" / "overrides.json"
CHECKOUT_CONFIG = Path(__file__).resolve().parents[2] / "jupyter-config"


def ensure_jupyter_config(prefix=None):
    """Install this package's Jupyter configuration into ``prefix`` (default:
    this environment), as a wheel install does; returns the two paths.

    A wheel ships ``etc/jupyter/jupyter_server_config.d/panosc_daas.json``
    and ``share/jupyter/lab/settings/overrides.json`` (setup.cfg
    data_files); an editable install (``pip install -e``) does not install
    data files, so set-up copies the checkout's. JupyterLab reads a single
    overrides file per prefix: ours is merged into one already there,
    plugin by plugin, rather than replacing it.
    """
    prefix = Path(prefix or sys.prefix)
    server = prefix / "etc" / "jupyter" / SERVER_CONFIG
    source = CHECKOUT_CONFIG / SERVER_CONFIG
    if source.is_file():
        _write_if_changed(server, source.read_bytes())
    lab = prefix / "share" / "jupyter" / LAB_OVERRIDES
    source = CHECKOUT_CONFIG / "lab" / LAB_OVERRIDES.name
    if source.is_file():
        merged = _merged(lab, json.loads(source.read_text()))
        _write_if_changed(lab, (json.dumps(merged, indent=2) + "\n").encode())
    return server, lab


def _write_if_changed(path, data: bytes):
    if not path.is_file() or path.read_bytes() != data:
        write_atomic(path, data)


def _merged(path, ours):
    """The plugin settings in ``path`` (if any) updated with ``ours``, plugin by plugin."""
    fix = "JupyterLab cannot use it either; fix or remove it, then run `daas setup` again"
    try:
        theirs = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError as e:
        raise SetupError(f"{path} is not JSON ({e}): {fix}") from None
    if not isinstance(theirs, dict) or not all(isinstance(v, dict) for v in theirs.values()):
        raise SetupError(f"{path} is not an object of plugin settings: {fix}")
    return {**theirs, **{plugin: {**theirs.get(plugin, {}), **settings} for plugin, settings in ours.items()}}


def _setup(args):
    ensure_proxy()
    ensure_jupyter_config()
    purposes = ("runtime", "test") if args.test else ("runtime",)
    missing = ensure_debian_packages(purposes)
    if missing:
        print(
            f"missing Debian packages: sudo apt-get install {' '.join(missing)}",
            file=sys.stderr,
        )
        if args.test:
            return 1
    print(f"configurable-http-proxy: {proxy_path()}")
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "setup",
        help="install configurable-http-proxy into this prefix and the Debian packages "
        "the features need (--test: also those of the test suite)",
        description="Install what `pip install` cannot: configurable-http-proxy (npm, into this "
        "prefix), the Jupyter server and JupyterLab settings of an editable install, and, as root "
        "with apt-get, the Debian packages the features need (DIALS, the remote desktop's); "
        "otherwise print the apt-get command to run. `daas demo` runs it first.",
    )
    p.add_argument("--test", action="store_true", help="also install what the test suite needs")
    p.set_defaults(func=_setup)
