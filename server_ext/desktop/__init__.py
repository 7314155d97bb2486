"""The remote desktop beside JupyterLab: our session script and its clean shutdown.

``jupyter-remote-desktop-proxy`` serves a TigerVNC desktop at ``/desktop/``
through ``jupyter-server-proxy`` (VNC on a unix socket only; every
connection authenticated by the Jupyter server). This server extension:

- points the proxy's documented ``JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP`` at
  our ``xstartup`` (dataset, viewers, terminal: :mod:`.session`), before the
  proxy reads it (extensions are all *linked* before any is *loaded*);
- marks the server's environment so that every desktop process, including
  those that leave the server's process group (vncserver, Xtigervnc, the
  session's D-Bus daemons), can be found and stopped when the server stops;
  the server's own children (kernels, Dask workers) carry the mark too and
  are left to the server's shutdown.

Enabled by ``jupyter-config/jupyter_server_config.d/panosc_daas.json``
(installed with the package).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .processes import MARK_VARIABLE, new_mark

XSTARTUP = Path(__file__).with_name("xstartup")
XSTARTUP_VARIABLE = "JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP"


def configure_environment(environ: dict | None = None) -> dict:
    """Set the variables the desktop needs, keeping any the deployment set."""
    environ = os.environ if environ is None else environ
    environ.setdefault(XSTARTUP_VARIABLE, str(XSTARTUP))
    environ.setdefault("DAAS_DESKTOP_PYTHON", sys.executable)
    # one mark per server, whatever the spawner passed down, so that stopping
    # this server never touches another server's desktop
    environ[MARK_VARIABLE] = new_mark()
    return environ


def _jupyter_server_extension_points():
    return [{"module": "server_ext.desktop", "app": _app_class()}]


def _app_class():
    from .app import DesktopExtension

    return DesktopExtension
