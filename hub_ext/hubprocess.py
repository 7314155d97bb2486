"""Run JupyterHub (and, through it, configurable-http-proxy) as a child process.

Used by ``daas demo``, the integration tests and the benchmarks, so all of
them start and stop a hub the same way: in its own process group, waited
for until its API answers, stopped with SIGINT (JupyterHub then stops the
proxy and the single-user servers) and killed if it does not go.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil


def free_port():
    """An ephemeral TCP port on 127.0.0.1 (closed again, so the caller can bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubProcess:
    def __init__(self, config_path, url, log_path=None):
        self.config_path = Path(config_path)
        self.url = url.rstrip("/")
        self.log_path = log_path
        self.proc = None

    def start(self, timeout=90):
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        out = open(self.log_path, "ab") if self.log_path else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config_path)],
            cwd=self.config_path.parent, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        if out:
            out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterHub exited with {self.proc.returncode}; see {self.log_path or 'its output'}")
            try:
                with urllib.request.urlopen(self.url + "/hub/api", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"JupyterHub did not answer at {self.url} within {timeout} s")

    def wait(self):
        return self.proc.wait()

    def stop(self, timeout=60):
        if self.proc is None or self.proc.poll() is not None:
            return
        # The proxy and the servers run in sessions of their own: remember them
        # now, so none survives if the hub cannot clean up after itself.
        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        _, alive = psutil.wait_procs(family, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()
