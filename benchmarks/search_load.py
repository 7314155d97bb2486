"""The dataset search API under load: one catalogue, three federated, one of them dead.

Three real hubs, one after the other (JupyterHub + configurable-http-proxy +
the ``daas-datasets`` search service, demo configuration), each with 200
users whose groups grant a few proposals:

* ``single``      one YAML catalogue (3,000 datasets)
* ``federated``   three YAML catalogues of 3,000 datasets each, one federated picker
* ``one dead``    two of them plus a SciCat backend whose socket never answers
                  (timeout 0.5 s; left out for ``down_retry`` seconds after it fails)

Load model, and why. People use a dataset picker: they type, read the
results, type again. So each of the 200 users is a *user with think time*
(what Locust calls ``wait_time`` and k6 a per-VU ``sleep``): it sends a
search (a random word of the titles, a random page), waits for the answer,
then thinks for a random, exponentially distributed time (mean
``--think`` = 3 s, seeded per user) before the next one; users start at
random moments of the first think time. 200 such users offer about
200 / (3 s + latency) = ~65 searches per second, and the latency measured
is what one of them sees. The run is bounded in time (``--seconds``) and in
searches per user (``--max-per-user``). Before it, every user searches
once, at a random moment of 10 s: the service then knows each token, as in
steady state, and asks the hub again about a token 10 s after it last did,
at different moments for different users, as for users who arrived at
different times (one burst of 200 token checks every 10 s would measure
the warm-up, not the service). The previous model (every user
firing its next search the instant the previous one answered, on the 2
cores the hub also runs on) measured how long the queue was, not latency.

Capacity is still reported honestly, separately: a *closed-loop*
saturation run (``--capacity-users`` = 32 users, no think time) gives the
throughput the service sustains when it is the bottleneck (and the
latency at that point).

The load generator is a separate process with a minimal HTTP/1.1
keep-alive client on asyncio streams (one connection per user), so it
takes little of the CPU it shares with the hub. Goals, on the think-time
run, as ratios in the same run: federated p99 <= 2x single p99; with a dead
backend, p99 <= its timeout + 50 ms. Loopback only.

    .venv/bin/python benchmarks/search_load.py            # 30 s per case
    .venv/bin/python benchmarks/search_load.py --quick    # 10 s per case
"""

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import requests

from hub_ext.demo.command import DEMO_ENVIRONMENTS, write_hub_files
from hub_ext.demo.hubprocess import HubProcess, free_port

sys.path.insert(0, str(Path(__file__).parent))
from hub_form import SAMPLES, make_catalog, write_yaml  # noqa: E402  (a sibling benchmark script)

USERS = int(os.environ.get("DAAS_LOAD_USERS", "200"))
PER_BACKEND = 3000
DEAD_TIMEOUT = 0.5
IDENTITY_CACHE_S = 10.0  # how long the search service reuses a token's identity (hub_ext/api/service.py)
ADMIN_TOKEN = "search-load-admin-token-0123456789"
SEED = 20261201

CONFIG = f'''
c.JupyterHub.services.append({{"name": "loader", "api_token": "{ADMIN_TOKEN}"}})
c.JupyterHub.load_roles.append({{
    "name": "loader", "scopes": ["admin:users", "admin:groups", "tokens"], "services": ["loader"],
}})
c.JupyterHub.log_level = "WARN"
'''


def catalog_files(workdir):
    files = []
    for i in range(3):
        path = Path(workdir) / f"catalog{i}.yaml"
        write_yaml(make_catalog(PER_BACKEND, seed=SEED + i), path)
        files.append(path)
    return files


def proposals(path):
    import yaml

    with open(path) as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return sorted({d["proposal"] for d in doc["datasets"]})


def blackhole():
    """A socket that listens and never answers: a facility whose server hangs."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    return s


class Case:
    def __init__(self, name, workdir, catalog_class, extra):
        self.name = name
        self.dir = Path(workdir) / name.replace(" ", "-")
        self.url = f"http://127.0.0.1:{free_port()}"
        config = write_hub_files(
            self.dir, None, DEMO_ENVIRONMENTS, port=int(self.url.rsplit(":", 1)[1]), hub_port=free_port(),
            proxy_api_port=free_port(), api_port=free_port(), catalog_class=catalog_class,
            extra_config=CONFIG + extra,
        )
        self.hub = HubProcess(config, self.url, log_path=self.dir / "jupyterhub.log")
        self.tokens = {}

    def api(self, method, path, ok=(), **kw):
        r = requests.request(method, f"{self.url}/hub/api{path}", timeout=120,
                             headers={"Authorization": f"token {ADMIN_TOKEN}"}, **kw)
        if r.status_code >= 400 and r.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r

    def add_users(self, groups_per_user):
        names = sorted(groups_per_user)
        self.api("POST", "/users", json={"usernames": names})
        members = {}
        for name, groups in groups_per_user.items():
            for g in groups:
                members.setdefault(g, []).append(name)
        for g, users in members.items():
            self.api("POST", f"/groups/{g}", json={}, ok=(409,))  # the demo's own groups exist
            self.api("POST", f"/groups/{g}/users", json={"users": users})
        def token(name):  # each user's own picker token, as the spawn form issues it
            scopes = [f"custom:daas:datasets!user={name}", f"read:users:groups!user={name}"]
            return self.api("POST", f"/users/{name}/tokens", json={"scopes": scopes, "expires_in": 3600})

        with ThreadPoolExecutor(8) as pool:
            for name, r in zip(names, pool.map(token, names)):
                self.tokens[name] = r.json()["token"]

    def wait_loaded(self, expect_unavailable, timeout=180):
        """Until every live backend has loaded its catalogue (first YAML parse), bounded."""
        name, token = next(iter(self.tokens.items()))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = requests.get(f"{self.url}/services/daas-datasets/datasets", timeout=60,
                             headers={"Authorization": f"token {token}"})
            if r.status_code == 200 and r.json()["unavailable"] == expect_unavailable:
                return
            time.sleep(1)
        raise RuntimeError(f"{self.name}: the catalogues did not load within {timeout} s")


class Connection:
    """A minimal HTTP/1.1 keep-alive client (GET only): the cheapest way to load a server from Python."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def get(self, target, headers):
        reused = self.writer is not None
        try:
            return await self._get(target, headers)
        except (IndexError, ConnectionError):
            if not reused:
                raise
            # the server closed the idle keep-alive connection (the proxy does after 5 s): reconnect once
            return await self._get(target, headers)

    async def _get(self, target, headers):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(head.encode())
        try:
            status = int((await self.reader.readline()).split()[1])
            length, chunked, close = 0, False, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                key, _, value = line.decode("latin-1").partition(":")
                key, value = key.strip().lower(), value.strip().lower()
                if key == "content-length":
                    length = int(value)
                elif key == "transfer-encoding":
                    chunked = "chunked" in value
                elif key == "connection":
                    close = value == "close"
            if chunked:
                body = b""
                while size := int((await self.reader.readline()).split(b";")[0], 16):
                    body += await self.reader.readexactly(size + 2)
                    body = body[:-2]
                await self.reader.readline()
            else:
                body = await self.reader.readexactly(length)
        except (IndexError, ValueError, ConnectionError, asyncio.IncompleteReadError):
            self.close()
            raise
        if close:
            self.close()
        return status, body

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _load(url, tokens, seconds, seed, think, max_per_user):
    """Each user searches, waits for the answer, thinks ``expovariate(1/think)`` s (0: closed loop)."""
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    words = [w.split()[0].lower() for w in SAMPLES] + [""] * 4
    latencies, sent, errors, partial = [], [], {}, 0
    t_start = time.monotonic()
    deadline = t_start + seconds

    async def user(i, token):
        nonlocal partial
        rng = random.Random(seed * 1000 + i)
        conn = Connection(host, int(port))
        headers = {"Authorization": f"token {token}"}
        if think:
            await asyncio.sleep(rng.uniform(0, think))  # users arrive spread over the first think time
        for n in range(max_per_user):
            if time.monotonic() >= deadline:
                break
            target = f"{path}?q={rng.choice(words)}&offset={rng.choice((0, 0, 20, 40))}&limit=20"
            t0 = time.perf_counter()
            sent.append(time.monotonic() - t_start)
            try:
                code, body = await asyncio.wait_for(conn.get(target, headers), 30)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                code, body = 0, repr(e).encode()
                conn.close()
            latencies.append(time.perf_counter() - t0)
            if code != 200:
                key = f"{code} {body[:120].decode(errors='replace')}"
                errors[key] = errors.get(key, 0) + 1
            elif b'"unavailable": []' not in body and json.loads(body)["unavailable"]:
                partial += 1
            if think and n + 1 < max_per_user:
                await asyncio.sleep(min(rng.expovariate(1 / think), max(0.0, deadline - time.monotonic())))
        conn.close()

    await asyncio.gather(*(user(i, t) for i, t in enumerate(tokens)))
    slow = sorted((lat, at) for lat, at in zip(latencies, sent))[-5:]
    return latencies, errors, partial, time.monotonic() - t_start, slow


def run_load(url, tokens, seconds, seed, think, max_per_user):
    """One load run in this (separate) process: latencies [s], errors, partial answers, elapsed."""
    return asyncio.run(_load(url, tokens, seconds, seed, think, max_per_user))


def load(pool, case, seconds, seed, think, users=None, max_per_user=10**6):
    tokens = list(case.tokens.values())[:users]
    url = f"{case.url}/services/daas-datasets/datasets"
    return pool.submit(run_load, url, tokens, seconds, seed, think, max_per_user).result(timeout=seconds + 120)


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s of load per case instead of 30")
    parser.add_argument("--seconds", type=float, help="seconds of think-time load per case (overrides --quick)")
    parser.add_argument("--think", type=float, default=3.0, help="mean think time between a user's searches [s]")
    parser.add_argument("--max-per-user", type=int, default=50, help="most searches of one user in a run")
    parser.add_argument("--capacity-users", type=int, default=32,
                        help="users of the closed-loop saturation run (no think time)")
    parser.add_argument("--capacity-seconds", type=float, default=8.0, help="seconds of the saturation run")
    parser.add_argument("--profile", metavar="DIR",
                        help="record the search service under the think-time load with py-spy (on PATH) into DIR")
    args = parser.parse_args(argv)
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    rng = random.Random(SEED)

    with tempfile.TemporaryDirectory(prefix="daas-search-load-") as workdir, ProcessPoolExecutor(1) as pool:
        pool.submit(int).result(timeout=120)  # the load process starts before any hub
        files = catalog_files(workdir)
        props = [p for f in files for p in proposals(f)]
        groups = {f"u{i:03d}": sorted({"p2120"} | {f"p{rng.choice(props)}" for _ in range(3)})
                  for i in range(USERS)}
        hole = blackhole()
        dead = f"http://127.0.0.1:{hole.getsockname()[1]}/api/v3"
        yaml_backend = lambda i: {"name": f"f{i}", "facility": f"Facility {i}", "class": "yaml",  # noqa: E731
                                  "config": {"path": str(files[i])}}
        cases = [
            ("single", "yaml", f"\nc.YamlCatalog.path = {str(files[0])!r}\n"),
            ("federated", "federated", f"\nc.FederatedCatalog.backends = {[yaml_backend(i) for i in range(3)]!r}\n"),
            ("one dead", "federated", "\nc.FederatedCatalog.backends = " + repr(
                [yaml_backend(0), yaml_backend(1),
                 {"name": "dead", "facility": "Dead", "class": "scicat", "timeout": DEAD_TIMEOUT,
                  "config": {"url": dead, "token": "t"}}]) + "\n"),
        ]
        results, capacity = {}, {}
        try:
            for name, cls, extra in cases:
                case = Case(name, workdir, cls, extra)
                try:
                    t0 = time.monotonic()
                    case.hub.start(timeout=180)
                    case.add_users(groups)
                    case.wait_loaded(expect_unavailable=["Dead"] if name == "one dead" else [])
                    # warm-up: every user's token known to the service (steady state), each at a random
                    # moment of its 10 s identity cache, as users who arrived at different times
                    load(pool, case, 60.0, SEED, IDENTITY_CACHE_S, max_per_user=1)
                    load(pool, case, 3.0, SEED, 0.0, users=args.capacity_users)
                    print(f"{name}: hub up, {USERS} users, warm in {time.monotonic() - t0:.0f} s",
                          file=sys.stderr, flush=True)
                    spy = profile(case, name, args.profile, seconds) if args.profile else None
                    results[name] = load(pool, case, seconds, SEED + 1, args.think, max_per_user=args.max_per_user)
                    if spy:
                        spy.wait(timeout=60)
                    capacity[name] = load(pool, case, args.capacity_seconds, SEED + 2, 0.0, users=args.capacity_users)
                finally:
                    case.hub.stop()
        finally:
            hole.close()

    print(f"\nDataset search API under load, through proxy + search service, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"Users with think time: {USERS} users, exponential think time of mean {args.think:g} s, "
          f"{seconds:g} s per case, at most {args.max_per_user} searches per user")
    head = f"{'case':<10} {'requests':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} {'partial':>8}"
    print(head)
    print("-" * len(head))
    p99 = {}
    for name, (lat, errors, partial, elapsed, slow) in results.items():
        p99[name] = quantile(lat, 0.99)
        print(f"{name:<10} {len(lat):>9} {len(lat) / elapsed:>7.1f} {statistics.median(lat) * 1e3:>8.1f} "
              f"{p99[name] * 1e3:>8.1f} {max(lat) * 1e3:>8.1f} {sum(errors.values()):>7} {partial:>8}")
        for what, count in sorted(errors.items(), key=lambda kv: -kv[1])[:3]:
            print(f"{'':<10} {count} x {what}")
        print(f"{'':<10} slowest: " + ", ".join(f"{lat * 1e3:.0f} ms at {at:.1f} s" for lat, at in reversed(slow)))
    print(f"\nSaturation (closed loop, {args.capacity_users} users, no think time, {args.capacity_seconds:g} s): capacity")
    print(f"{'case':<10} {'requests':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, (lat, errors, partial, elapsed, _) in capacity.items():
        print(f"{name:<10} {len(lat):>9} {len(lat) / elapsed:>7.1f} {statistics.median(lat) * 1e3:>8.1f} "
              f"{quantile(lat, 0.99) * 1e3:>8.1f} {sum(errors.values()):>7}")
    ratio = p99["federated"] / p99["single"]
    print(f"\nfederated p99 / single p99: {ratio:.2f}x (goal <= 2: {'met' if ratio <= 2 else 'MISSED'})")
    bound = DEAD_TIMEOUT + 0.050
    print(f"one dead p99: {p99['one dead'] * 1e3:.0f} ms (goal <= timeout + 50 ms = {bound * 1e3:.0f} ms: "
          f"{'met' if p99['one dead'] <= bound else 'MISSED'})")
    return 0


def profile(case, name, outdir, seconds):
    """py-spy recording the search service process for the think-time run (a flame graph per case)."""
    import subprocess

    import psutil

    hub = psutil.Process(case.hub.proc.pid)
    (service,) = [p for p in hub.children(recursive=True) if "hub_ext.api.service" in " ".join(p.cmdline())]
    Path(outdir).mkdir(parents=True, exist_ok=True)
    out = Path(outdir) / f"{name.replace(' ', '-')}.txt"
    return subprocess.Popen(["py-spy", "record", "--pid", str(service.pid), "--duration", str(int(seconds)),
                             "--format", "raw", "--rate", "200", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
