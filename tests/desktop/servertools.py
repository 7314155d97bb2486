"""A real single-user Jupyter server with the desktop, started like a spawner would."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import h5py
import numpy as np

from hub_ext.demo.hubprocess import free_port

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


class DesktopServer:
    """``jupyter server`` with a token in a fresh HOME, the dataset in ``DAAS_DATASET_PATH``."""

    def __init__(self, root, dataset):
        self.root = Path(root)
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / "server.log"
        self.env = dict(
            os.environ, HOME=str(self.home), DAAS_DATASET_PATH=str(dataset), DAAS_DESKTOP="openbox",
            PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        )
        for name in ("JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP", "DAAS_DESKTOP_MARK", "DISPLAY"):
            self.env.pop(name, None)
        self.proc = None

    def start(self, timeout=90):
        args = [sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={self.port}",
                "--ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={self.home}"]
        if os.geteuid() == 0:
            args.append("--allow-root")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(args, cwd=self.home, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={TOKEN}", timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"jupyter server did not answer within {timeout} s:\n{self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace")[-4000:]

    def ws_url(self, path="desktop-websockify/"):
        return f"ws://127.0.0.1:{self.port}/{path}"

    def stop(self, timeout=60):
        """Stop as a spawner does: SIGTERM, SIGKILL if it does not go."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
