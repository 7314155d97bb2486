"""The desktop's Jupyter Server extension app (see the package docstring)."""

from __future__ import annotations

import asyncio
import atexit
import os
import signal

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Unicode

from . import configure_environment
from .processes import MARK_VARIABLE, stop_marked, sweep_orphans


class DesktopExtension(ExtensionApp):
    name = "server_ext.desktop"

    desktop = Unicode(
        "",
        help="""Which desktop the session runs: ``openbox`` (light; CI and the demo)
        or ``xfce`` (the full desktop of the image). Empty: ``$DAAS_DESKTOP``, else openbox.
        """,
    ).tag(config=True)

    stop_timeout = Float(
        5.0,
        help="Seconds the desktop's processes get to exit after SIGTERM before SIGKILL, when the server stops"
        " (and for a killed server's desktop, when the next server starts).",
    ).tag(config=True)

    def _link_jupyter_server_extension(self, serverapp):
        super()._link_jupyter_server_extension(serverapp)
        # a desktop whose server was killed (SIGKILL, OOM) still runs: stop it
        # before this server starts its own
        swept = sweep_orphans(self.stop_timeout)
        if swept:
            self.log.info("Stopped %d process(es) of desktops left by a killed server: %s", len(swept), swept)
        # before jupyter-server-proxy (loaded later) reads the xstartup setting
        configure_environment()
        if self.desktop:
            os.environ["DAAS_DESKTOP"] = self.desktop
        route_supervisor_signals(serverapp, self.log)
        # the last resort for an exit that skips the extensions' stop
        atexit.register(self._stop_desktop)

    def _stop_desktop(self):
        mark = os.environ.get(MARK_VARIABLE)
        stopped = stop_marked(mark, self.stop_timeout, server_pid=os.getpid()) if mark else []
        if stopped:
            self.log.info("Stopped %d desktop process(es): %s", len(stopped), stopped)
        return stopped

    async def stop_extension(self):
        await asyncio.get_running_loop().run_in_executor(None, self._stop_desktop)


def route_supervisor_signals(serverapp, log) -> None:
    """Keep the server's clean shutdown once the desktop runs.

    simpervisor (jupyter-server-proxy's supervisor) takes SIGTERM and SIGINT
    when it starts its first process, forwards the signal to it and calls
    ``sys.exit()``: the loop ends there, with no extension stop (the cluster,
    jobs) and no kernel shutdown. Its handler is looked up by name when
    installed, so this one takes its place: forward as simpervisor does
    (it marks its processes killed, not to be restarted), then stop the
    server as Jupyter does on SIGTERM.
    """
    try:
        from simpervisor import atexitasync
    except ImportError:  # no jupyter-server-proxy: no desktop either
        return
    if not callable(getattr(atexitasync, "_handle_signal", None)) or not hasattr(atexitasync, "_handlers"):
        log.warning("simpervisor.atexitasync has changed (no _handle_signal/_handlers): once the desktop runs, "
                    "SIGTERM may end this server without its clean-up")
        return

    def forward_and_stop(signum, frame=None):
        for handler in list(atexitasync._handlers):
            handler(signum)
        log.info("%s: stopping the server with its clean-up (the desktop included)", signal.Signals(signum).name)
        serverapp.stop(from_signal=True)

    atexitasync._handle_signal = forward_and_stop
