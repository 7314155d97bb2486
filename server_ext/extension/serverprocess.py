"""A Jupyter server with the daas extension as a child process (for tests and benchmarks).

Started in its own process group on a free loopback port with a token,
waited for until its API answers (bounded), stopped with SIGTERM and killed
if it does not go, with everything it started (Dask workers, streams).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServerProcess:
    """``jupyter server`` in *root_dir* with ``--Name.trait=value`` *options* and extra *env*
    (a variable set to None is removed from the inherited environment)."""

    def __init__(self, root_dir, *, options: dict | None = None, env: dict | None = None,
                 log_path=None, token: str = "daas-test-token"):
        self.root_dir = Path(root_dir)
        self.options = dict(options or {})
        self.env = dict(env or {})
        self.token = token
        self.log_path = Path(log_path) if log_path else self.root_dir.parent / f"{self.root_dir.name}-server.log"
        self.port = None
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def api_url(self) -> str:
        return self.url + "daas/api/"

    def start(self, timeout: float = 120) -> "JupyterServerProcess":
        self.port = free_port()
        args = [sys.executable, "-m", "jupyter_server", "--no-browser", f"--ServerApp.port={self.port}",
                "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={self.root_dir}", f"--IdentityProvider.token={self.token}"]
        if os.geteuid() == 0:
            args.append("--allow-root")
        args += [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in self.options.items()]
        env = {k: v for k, v in {**os.environ, **self.env}.items() if v is not None}
        with open(self.log_path, "ab") as log:
            # no terminal, as under a spawner
            self.proc = subprocess.Popen(args, cwd=self.root_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited ({self.proc.returncode}); see {self.log_path}")
            try:
                req = urllib.request.Request(self.url + "api/status",
                                             headers={"Authorization": f"token {self.token}"})
                with urllib.request.urlopen(req, timeout=5):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"jupyter server did not answer within {timeout} s; see {self.log_path}")

    def stop(self, timeout: float = 30) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass
        # whatever the server started in its group and left behind (workers, streams)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """Die as a crashed server would: no clean-up (jobs stay recorded as running)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
