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


class HubStartError(RuntimeError):
    """JupyterHub did not come up (port taken, bad configuration); says where to look."""

    user_error = True


def check_ports_free(ip, ports):
    """Raise HubStartError naming two of ``ports`` (name -> number) given one number, or
    the first already in use."""
    seen = {}
    for name, port in ports.items():
        if port in seen:  # each bind succeeds alone; the second service fails once the hub runs
            raise HubStartError(f"--{seen[port]} and --{name} are both {port}; choose another for one of them")
        seen[port] = name
    for name, port in ports.items():
        with socket.socket() as s:
            # as the hub and proxy bind: a port in TIME_WAIT after a restart is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
            except OSError:
                raise HubStartError(
                    f"port {port} on {ip} is already in use (another hub or demo?); choose another with --{name}"
                ) from None


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
                raise HubStartError(
                    f"JupyterHub exited with code {self.proc.returncode} while starting; "
                    f"see {self.log_path or 'its output above'}"
                )
            try:
                with urllib.request.urlopen(self.url + "/hub/api", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise HubStartError(f"JupyterHub did not answer at {self.url} within {timeout} s; see {self.log_path or 'its output above'}")

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
            self.proc.wait(timeout=10)  # a process stuck in the kernel raises here, never hangs us
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
