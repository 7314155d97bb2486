"""The dataset search API under concurrent load: one catalogue, three federated, one of them dead.

Three real hubs, one after the other (JupyterHub + configurable-http-proxy +
the ``daas-datasets`` search service, demo configuration), each with 200
users whose groups grant a few proposals:

* ``single``      one YAML catalogue (3,000 datasets)
* ``federated``   three YAML catalogues of 3,000 datasets each, one federated picker
* ``one dead``    two of them plus a SciCat backend whose socket never answers
                  (timeout 0.5 s; left out for ``down_retry`` seconds after it fails)

200 simulated users (each with their own picker token) search concurrently
through the proxy, closed loop, for a fixed time: random words of the titles,
random pages. Throughput and p50/p99 latency per case; the headline ratios
are against ``single`` in the same run (goals: federated p99 <= 2x single
p99; with a dead backend, p99 <= its timeout + 50 ms). Loopback only;
bounded in users, requests and time.

    .venv/bin/python benchmarks/search_load.py            # 15 s per case
    .venv/bin/python benchmarks/search_load.py --quick    # 5 s per case
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from hub_ext.demo.command import DEMO_ENVIRONMENTS, write_hub_files
from hub_ext.demo.hubprocess import HubProcess, free_port

sys.path.insert(0, str(Path(__file__).parent))
from hub_form import SAMPLES, make_catalog, write_yaml  # noqa: E402  (a sibling benchmark script)

USERS = int(os.environ.get("DAAS_LOAD_USERS", "200"))
PER_BACKEND = 3000
DEAD_TIMEOUT = 0.5
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


async def load(case, seconds, rng):
    """Closed-loop load: every user sends its next search when the previous one answered."""
    client = AsyncHTTPClient(max_clients=USERS, force_instance=True)
    url = f"{case.url}/services/daas-datasets/datasets"
    words = [w.split()[0].lower() for w in SAMPLES] + [""] * 4
    latencies, errors, unavailable = [], {}, 0
    deadline = time.monotonic() + seconds

    async def user(name, token):
        nonlocal unavailable
        while time.monotonic() < deadline:
            q = rng.choice(words)
            params = f"q={q}&offset={rng.choice((0, 0, 20, 40))}&limit=20"
            t0 = time.perf_counter()
            r = await client.fetch(HTTPRequest(f"{url}?{params}", headers={"Authorization": f"token {token}"},
                                               request_timeout=30, connect_timeout=30), raise_error=False)
            latencies.append(time.perf_counter() - t0)
            if r.code != 200:
                key = f"{r.code} {(r.body or b'')[:120].decode(errors='replace') or r.error}"
                errors[key] = errors.get(key, 0) + 1
            elif json.loads(r.body)["unavailable"]:
                unavailable += 1

    t0 = time.monotonic()
    await asyncio.gather(*(user(n, t) for n, t in case.tokens.items()))
    elapsed = time.monotonic() - t0
    client.close()
    return latencies, errors, unavailable, elapsed


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s of load per case instead of 15")
    parser.add_argument("--seconds", type=float, help="seconds of load per case (overrides --quick)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (5.0 if args.quick else 15.0)
    rng = random.Random(SEED)

    with tempfile.TemporaryDirectory(prefix="daas-search-load-") as workdir:
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
        results = {}
        try:
            for name, cls, extra in cases:
                case = Case(name, workdir, cls, extra)
                try:
                    t0 = time.monotonic()
                    case.hub.start(timeout=180)
                    case.add_users(groups)
                    case.wait_loaded(expect_unavailable=["Dead"] if name == "one dead" else [])
                    asyncio.run(load(case, min(2.0, seconds), random.Random(SEED)))  # warm-up
                    print(f"{name}: hub up, {USERS} users, warm in {time.monotonic() - t0:.0f} s",
                          file=sys.stderr, flush=True)
                    results[name] = asyncio.run(load(case, seconds, random.Random(SEED + 1)))
                finally:
                    case.hub.stop()
        finally:
            hole.close()

    print(f"\nDataset search API under load: {USERS} concurrent users, {seconds:.0f} s per case, "
          f"{os.cpu_count()} CPUs, through proxy + search service")
    head = f"{'case':<10} {'requests':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'partial':>8}"
    print(head)
    print("-" * len(head))
    p99 = {}
    for name, (lat, errors, partial, elapsed) in results.items():
        p99[name] = quantile(lat, 0.99)
        print(f"{name:<10} {len(lat):>9} {len(lat) / elapsed:>7.1f} {statistics.median(lat) * 1e3:>8.1f} "
              f"{p99[name] * 1e3:>8.1f} {sum(errors.values()):>7} {partial:>8}")
        for what, count in sorted(errors.items(), key=lambda kv: -kv[1])[:3]:
            print(f"{'':<10} {count} x {what}")
    ratio = p99["federated"] / p99["single"]
    print(f"\nfederated p99 / single p99: {ratio:.2f}x (goal <= 2: {'met' if ratio <= 2 else 'MISSED'})")
    bound = DEAD_TIMEOUT + 0.050
    print(f"one dead p99: {p99['one dead'] * 1e3:.0f} ms (goal <= timeout + 50 ms = {bound * 1e3:.0f} ms: "
          f"{'met' if p99['one dead'] <= bound else 'MISSED'})")
    added = p99["one dead"] - p99["single"]
    print(f"one dead p99 - single p99: {added * 1e3:.0f} ms (what the dead backend itself adds under this load; "
          f"<= {bound * 1e3:.0f} ms: {'met' if added <= bound else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
