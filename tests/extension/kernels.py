"""Run code in a kernel that a Jupyter server starts (it inherits the server's environment)."""

import json
import time
from pathlib import Path

import requests


def run_in_kernel(server_url: str, headers: dict, runtime_dir, code: str, timeout: float = 120) -> str:
    """Start a python3 kernel through the server's REST API, run *code*, return its stdout."""
    from jupyter_client import BlockingKernelClient

    kernel = requests.post(server_url.rstrip("/") + "/api/kernels", json={"name": "python3"}, headers=headers,
                           timeout=60).json()
    try:
        path = Path(runtime_dir) / f"kernel-{kernel['id']}.json"
        deadline = time.monotonic() + 60
        while True:
            try:
                info = json.loads(path.read_text())
                break
            except (OSError, ValueError):
                assert time.monotonic() < deadline, f"no kernel connection file {path}"
                time.sleep(0.2)
        kc = BlockingKernelClient()
        kc.load_connection_info(info)
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=timeout)
            out = []
            reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: out.append(
                m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
        finally:
            kc.stop_channels()
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)
    finally:
        requests.delete(server_url.rstrip("/") + f"/api/kernels/{kernel['id']}", headers=headers, timeout=60)
