"""The remote desktop against JupyterLab and against its own VNC socket.

A real JupyterHub + configurable-http-proxy (the demo configuration, one
small HDF5 dataset) starts alice's server in the Desktop environment and, as
the peer, in a notebook environment. Measured, per desktop kind (``openbox``,
the light one of CI and the demo; ``xfce``, the image's, when installed):

* **start**: from the start request to a drawn desktop (RFB through the hub's
  proxy, polled until a frame is not blank), against the start of a
  JupyterLab server (until its API answers through the proxy);
* **memory**: resident memory (PSS where readable) of the idle desktop's
  processes (VNC server, X server, session, window manager, daemons),
  against the Jupyter server process of the same session;
* **frame rate**: full-screen (non-incremental) framebuffer updates per
  second through hub proxy -> Jupyter server -> unix socket, against the
  same updates read straight from the VNC unix socket.

    .venv/bin/python benchmarks/desktop.py            # 3 starts per case, 40 frames
    .venv/bin/python benchmarks/desktop.py --quick    # 1 start, 10 frames
"""

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import psutil
import requests

from hub_ext.demo.command import DEMO_ENVIRONMENTS, write_hub_files
from hub_ext.demo.hubprocess import HubProcess, free_port
from hub_ext.desktop import missing_desktop_packages
from server_ext.desktop.processes import marked_processes, server_mark, stop_marked
from server_ext.desktop.rfb import RFBClient

USER = "alice"
PID = "xfel:p002120:r9999"
TOKEN = "desktop-benchmark-token-0123456789"
CONFIG = f'''
c.JupyterHub.services = [{{"name": "bench", "api_token": "{TOKEN}"}}]
c.JupyterHub.load_roles = [{{"name": "bench", "scopes": ["admin:servers", "access:servers", "read:users"],
                             "services": ["bench"]}}]
'''
DRAWN_S = 180


def write_dataset(root):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with h5py.File(root / "RAW-R9999-AGIPD00-S00000.h5", "w") as f:
        f.create_dataset("INSTRUMENT/data", data=rng.integers(0, 4000, (16, 128, 128), dtype="u2"))
    return {"datasets": [{"pid": PID, "title": "benchmark run", "path": str(root), "facility": "EuXFEL",
                          "proposal": "2120", "access_groups": ["p2120"], "public": False}]}


def environments():
    envs = [dict(e) for e in DEMO_ENVIRONMENTS["environments"] if e["slug"] in ("python-basic", "desktop")]
    for e in envs:
        e.pop("image", None)
    return {"environments": envs}


class Bench:
    def __init__(self, state, kind):
        self.kind = kind
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = write_hub_files(state, write_dataset(state / "data" / "run"), environments(), port=port,
                                 hub_port=free_port(), proxy_api_port=free_port(), allowed_data_roots=[state / "data"],
                                 extra_config=CONFIG + f"c.Spawner.environment = {{'DAAS_DESKTOP': {kind!r}}}\n")
        self.hub = HubProcess(config, self.url, log_path=state / "jupyterhub.log")

    def api(self, method, path, **kw):
        return requests.request(method, f"{self.url}/hub/api{path}", headers={"Authorization": f"token {TOKEN}"},
                                timeout=60, **kw)

    def start(self, env):
        r = self.api("POST", f"/users/{USER}/server", json={"dataset": PID, "environment": env})
        assert r.status_code in (201, 202), r.text

    def wait_ready(self, timeout=DRAWN_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.api("GET", f"/users/{USER}").json().get("servers", {}).get("")
            if server and server.get("ready"):
                return
            time.sleep(0.1)
        raise SystemExit(f"server not ready after {timeout} s")

    def stop(self):
        self.api("DELETE", f"/users/{USER}/server")
        deadline = time.monotonic() + 60
        while self.api("GET", f"/users/{USER}").json().get("servers", {}).get("") and time.monotonic() < deadline:
            time.sleep(0.3)

    def ws(self):
        return self.url.replace("http://", "ws://") + f"/user/{USER}/desktop-websockify/"

    async def drawn(self):
        deadline = time.monotonic() + DRAWN_S
        while True:
            try:
                client = await RFBClient.connect(self.ws(), {"Authorization": f"token {TOKEN}"}, timeout=60)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        try:
            await client.wait_drawn(DRAWN_S, interval=0.1)
        finally:
            client.close()

    def lab_answers(self):
        deadline = time.monotonic() + DRAWN_S
        while time.monotonic() < deadline:
            r = requests.get(f"{self.url}/user/{USER}/api/status", headers={"Authorization": f"token {TOKEN}"}, timeout=30)
            if r.status_code == 200:
                return
            time.sleep(0.1)
        raise SystemExit("JupyterLab did not answer")


def server_process():
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "jupyterhub.singleuser" in " ".join(p.info["cmdline"] or ()) and p.environ().get("JUPYTERHUB_USER") == USER:
                return p
        except psutil.Error:
            continue
    raise SystemExit("no single-user server process found")


def memory(p):
    """PSS (shared pages split between sharers) where the kernel reports it, else RSS."""
    try:
        info = p.memory_full_info()
        return getattr(info, "pss", None) or info.rss
    except psutil.Error:
        return 0


async def frames_per_second(connect, n):
    client = await connect()
    try:
        await client.frame()  # warm-up
        t0 = time.perf_counter()
        for _ in range(n):
            await client.frame()
        elapsed = time.perf_counter() - t0
        return n / elapsed, client.width * client.height * 4 * n / elapsed / 1e6
    finally:
        client.close()


def measure(kind, starts, frames):
    state = Path(tempfile.mkdtemp(prefix=f"daas-bench-desktop-{kind}-"))
    bench = Bench(state, kind)
    bench.hub.start(timeout=120)
    out = {"desktop_start": [], "lab_start": []}
    try:
        for _ in range(starts):
            t0 = time.perf_counter()
            bench.start("python-basic")
            bench.wait_ready()
            bench.lab_answers()
            out["lab_start"].append(time.perf_counter() - t0)
            bench.stop()

            t0 = time.perf_counter()
            bench.start("desktop")
            bench.wait_ready()
            asyncio.run(bench.drawn())
            out["desktop_start"].append(time.perf_counter() - t0)
            if _ < starts - 1:
                bench.stop()

        time.sleep(5)  # idle
        server = server_process()
        mark = server_mark(server.pid)
        assert mark, "no desktop process found"
        procs = [p for p in marked_processes(mark) if p.pid != server.pid]
        out["desktop_mb"] = sum(memory(p) for p in procs) / 2**20
        out["server_mb"] = memory(server) / 2**20
        out["desktop_procs"] = sorted({p.name() for p in procs})
        xvnc = next(p for p in procs if p.name() == "Xtigervnc")
        args = xvnc.cmdline()
        sock = args[args.index("-rfbunixpath") + 1]
        ws_fps, ws_mbs = asyncio.run(frames_per_second(
            lambda: RFBClient.connect(bench.ws(), {"Authorization": f"token {TOKEN}"}, timeout=60), frames))
        raw_fps, raw_mbs = asyncio.run(frames_per_second(lambda: RFBClient.connect_unix(sock, timeout=60), frames))
        out.update(ws_fps=ws_fps, ws_mbs=ws_mbs, raw_fps=raw_fps, raw_mbs=raw_mbs, size=f"{xvnc_geometry(args)}")
        bench.stop()
        stop_marked(mark)
    finally:
        bench.hub.stop()
        shutil.rmtree(state, ignore_errors=True)
    return out


def xvnc_geometry(args):
    return args[args.index("-geometry") + 1] if "-geometry" in args else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 start per case and 10 frames")
    ap.add_argument("--kinds", default="openbox,xfce", help="desktops to measure (xfce skipped when not installed)")
    args = ap.parse_args()
    missing = missing_desktop_packages()
    if missing:
        raise SystemExit(f"the desktop is not installed: sudo apt-get install {' '.join(missing)}")
    starts, frames = (1, 10) if args.quick else (3, 40)
    print(f"desktop benchmark: {starts} start(s) per case, {frames} full-screen frames; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for kind in args.kinds.split(","):
        if kind == "xfce" and not shutil.which("xfce4-session"):
            print("xfce: not installed (apt-get install xfce4-session xfwm4 xfdesktop4 xfce4-panel thunar), skipped")
            continue
        r = measure(kind, starts, frames)
        d, lab = statistics.median(r["desktop_start"]), statistics.median(r["lab_start"])
        print(f"\n[{kind}] ({', '.join(r['desktop_procs'])})")
        print(f"  start to drawn desktop  {d:6.1f} s   JupyterLab start {lab:5.1f} s   ratio {d / lab:4.2f}x")
        print(f"  idle desktop memory     {r['desktop_mb']:6.0f} MB  Jupyter server   {r['server_mb']:5.0f} MB  "
              f"ratio {r['desktop_mb'] / r['server_mb']:4.2f}x")
        print(f"  full-screen frames ({r['size']})  through the hub {r['ws_fps']:5.1f}/s ({r['ws_mbs']:.0f} MB/s)   "
              f"unix socket {r['raw_fps']:5.1f}/s ({r['raw_mbs']:.0f} MB/s)   ratio {r['ws_fps'] / r['raw_fps']:4.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
