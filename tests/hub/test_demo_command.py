"""``daas demo`` end to end: data on first run, a hub that spawns, Ctrl-C stops everything."""

import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from hub_ext.demo.hubprocess import free_port
from .hubtools import Browser


def _kill_tree(proc):
    """After a failed assertion: take the demo and everything it started down."""
    if proc.poll() is not None:
        return
    leftovers = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    for p in leftovers:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


class _DemoHub:
    def __init__(self, url):
        self.url = url


def test_daas_demo_starts_spawns_and_stops_cleanly(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "demo.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub_ext.cli", "demo", "--data-dir", str(tmp_path / "data"), "--port", str(port),
         "--hub-port", str(free_port()), "--proxy-api-port", str(free_port()), "--api-port", str(free_port()), "--share-port", str(free_port())],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while "Ready:" not in (tmp_path / "demo.log").read_text():
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "daas demo did not become ready"
            time.sleep(0.5)
        printed = (tmp_path / "demo.log").read_text()
        assert "alice" in printed and "alice-xfel" in printed  # credentials are printed
        assert (tmp_path / "data" / "datasets" / "datasets.json").exists()

        alice = Browser(_DemoHub(url), "alice")
        page = alice.get("/hub/spawn").text
        assert "xfel:p002120:r0029" in page and "xfel:p900001:r0100" not in page
        r = alice.post_form({"dataset": "xfel:p002121:r0012", "environment": "python-basic"})
        assert r.status_code == 302
        deadline = time.monotonic() + 180
        while not alice.get("/hub/api/users/alice").json()["servers"].get("", {}).get("ready"):
            assert time.monotonic() < deadline, "the demo server did not start"
            time.sleep(1)
        family = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "jupyterhub.singleuser" in names and "configurable-http-proxy" in names

        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert proc.wait(timeout=90) == 0
        gone, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)
    finally:
        _kill_tree(proc)
        log.close()


def test_daas_demo_on_a_taken_port_says_so(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "hub_ext.cli", "demo", "--data-dir", str(tmp_path / "data"), "--port", str(port),
             "--hub-port", str(free_port()), "--proxy-api-port", str(free_port()), "--api-port", str(free_port()), "--share-port", str(free_port())],
            capture_output=True, text=True, timeout=300,
        )
    assert r.returncode == 2, r.stderr
    assert f"daas demo: error: port {port} on 127.0.0.1 is already in use" in r.stderr
    assert "--port" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists()  # refused before generating anything


def test_daas_demo_refuses_two_services_on_one_port(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub_ext.cli", "demo", "--oidc", "--data-dir", str(tmp_path / "data"),
         "--port", str(free_port()), "--hub-port", str(free_port()), "--proxy-api-port", str(free_port()),
         "--api-port", str(free_port()), "--share-port", str(port), "--oidc-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:  # a demo that does not refuse starts a hub: taken down, not left behind
        _, err = proc.communicate(timeout=300)
    finally:
        _kill_tree(proc)
    assert proc.returncode == 2, err
    assert f"daas demo: error: --share-port and --oidc-port are both {port}; choose another" in err
    assert "Traceback" not in err and not (tmp_path / "data").exists()


def test_the_demo_services_default_to_ports_of_their_own():
    from hub_ext.cli import build_parser

    args = vars(build_parser().parse_args(["demo", "--oidc"]))
    ports = {name: value for name, value in args.items() if name.endswith("port")}
    assert len(ports) == 6 and len(set(ports.values())) == 6, ports  # `daas demo --oidc` as the README says


def test_daas_demo_oidc_logs_in_through_the_local_provider(tmp_path, demo_runs):
    from .test_oidc_federation import OidcSession

    data_dir = str(next(iter(demo_runs.values()))).rsplit("/datasets/", 1)[0]  # reuse the session's demo data
    port, oidc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "demo.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub_ext.cli", "demo", "--oidc", "--data-dir", data_dir, "--port", str(port),
         "--hub-port", str(free_port()), "--proxy-api-port", str(free_port()), "--api-port", str(free_port()), "--share-port", str(free_port()),
         "--oidc-port", str(oidc_port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while "Ready:" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "daas demo --oidc did not become ready"
            time.sleep(0.5)
        assert f"http://127.0.0.1:{oidc_port}" in log_path.read_text()
        discovery = requests.get(f"http://127.0.0.1:{oidc_port}/.well-known/openid-configuration", timeout=10).json()
        assert discovery["token_endpoint"].endswith("/oauth2/token")

        alice = OidcSession(_DemoHub(url))
        assert alice.start_login().startswith(f"http://127.0.0.1:{oidc_port}/oauth2/authorize")
        assert alice.login("alice").status_code == 302 and alice.logged_in_as() == "alice"
        page = alice.get("/hub/spawn").text
        assert "xfel:p002120:r0029" in page and "xfel:p900001:r0100" not in page  # groups from entitlements
        carol = OidcSession(_DemoHub(url))
        assert carol.login("carol").status_code == 403 and carol.logged_in_as() is None

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{oidc_port}/", timeout=2)
    finally:
        _kill_tree(proc)
        log.close()
