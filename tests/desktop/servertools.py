"""A real single-user Jupyter server with the desktop, started like a spawner would."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from server_ext.extension.serverprocess import JupyterServerProcess

TOKEN = "desktop-test-token-0123456789abcdef"
SYSTEM_TOOLS = ("/usr/bin/vncserver", "/usr/bin/Xtigervnc", "/usr/bin/openbox", "/usr/bin/xterm", "/usr/bin/dbus-launch")


def missing_tools():
    return [t for t in SYSTEM_TOOLS if not os.path.exists(t)]


def make_dataset(folder):
    """A small NeXus-like HDF5 file (seeded), what silx view opens."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with h5py.File(folder / "scan.nxs", "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("data/image", data=rng.integers(0, 1000, (4, 64, 64), dtype="u2"))
    return folder


class DesktopServer(JupyterServerProcess):
    """``jupyter server`` with a token in a fresh HOME, the dataset in ``DAAS_DATASET_PATH``."""

    def __init__(self, root, dataset):
        self.home = Path(root) / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        super().__init__(self.home, token=TOKEN, log_path=Path(root) / "server.log", env={
            "HOME": str(self.home), "DAAS_DATASET_PATH": str(dataset), "DAAS_DESKTOP": "openbox",
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
            # a desktop of the test runner's own session must not leak in
            "JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP": None, "DAAS_DESKTOP_MARK": None, "DISPLAY": None,
        })

    def ws_url(self, path="desktop-websockify/"):
        return f"ws://127.0.0.1:{self.port}/{path}"

    def stop(self, timeout=60):
        """Stop as a spawner does: SIGTERM to the server alone (its own clean-up is under test);
        only a server that does not go is killed, with its process group."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        super().stop()
