"""How the spawn form scales with the catalogue: 10 vs 10,000 vs 100,000 datasets.

For each size a generated YAML catalogue (realistic pids, titles, proposals,
per-proposal access groups, some public datasets) is served by its own real
JupyterHub + configurable-http-proxy, started with the demo configuration
(``hub_ext.demo.command.write_hub_files`` + ``hub_ext.demo.hubprocess.HubProcess``). Logged
in as the demo user alice, we time

* ``GET /hub/spawn``                        (the options form, first page of datasets)
* ``GET /services/daas-datasets/datasets?q=lysozyme`` (a word in ~1 title in 13)
* ``GET /services/daas-datasets/datasets?q=<pid>``    (one dataset by its pid)

through the proxy, as a browser would. All hubs run at once and the requests
are interleaved round-robin, so load from elsewhere on the machine hits every
size alike. The headline is the ratio of each median to the 10-dataset
median (goal: 100,000 within 1.5x). The in-process columns time the
catalogue's own search (``YamlCatalog.search``) on the same files, to show how
much of a request the catalogue accounts for.

    .venv/bin/python benchmarks/hub_form.py            # 60 requests per case and URL
    .venv/bin/python benchmarks/hub_form.py --quick    # 15
"""

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

from hub_ext.catalogs.yaml_catalog import YamlCatalog
from hub_ext.demo.command import DEMO_ENVIRONMENTS, DEMO_USERS, write_hub_files
from hub_ext.demo.hubprocess import HubProcess, free_port

SIZES = (10, 10_000, 100_000)
USER = "alice"
SEED = 20261124

SAMPLES = [
    "Lysozyme", "Thaumatin", "Photosystem II", "Insulin", "Proteinase K", "Ferritin", "Myoglobin",
    "Cytochrome c", "Glucose isomerase", "LaB6 standard", "CeO2 powder", "Iron oxide nanoparticles",
    "Liquid water jet",
]
FACILITIES = {
    "EuXFEL": (["SPB/SFX", "FXE", "MID", "HED", "SCS", "SQS"], ["AGIPD-1M", "JUNGFRAU 4M", "LPD-1M", "ePix100", "DSSC"]),
    "PETRA III": (["P11", "P02.1", "P07", "P21.2"], ["EIGER2 X 16M", "PILATUS 6M", "Varex 4343"]),
    "ESRF": (["ID23-1", "ID11", "BM29", "ID31"], ["EIGER2 X 9M", "PILATUS3 2M", "Frelon"]),
}
TECHNIQUES = ["serial crystallography", "rotation series", "powder diffraction", "SAXS", "x-ray emission spectroscopy"]


def make_catalog(n, seed=SEED):
    """``n`` dataset records; the first proposals are alice's (p2120, p2121), ~5 % are public."""
    rng = random.Random(seed)
    n_proposals = max(4, n // 40)
    proposals = ["2120", "2121"] + [str(rng.randrange(1000, 999_999)) for _ in range(n_proposals - 2)]
    runs = {p: 0 for p in proposals}
    datasets = []
    for i in range(n):
        proposal = proposals[i % len(proposals)]
        runs[proposal] += 1
        run = runs[proposal]
        facility = "EuXFEL" if proposal in ("2120", "2121") else rng.choice(list(FACILITIES))
        instruments, detectors = FACILITIES[facility]
        instrument = rng.choice(instruments)
        prefix = {"EuXFEL": "xfel", "PETRA III": "petra", "ESRF": "esrf"}[facility]
        pid = f"{prefix}:p{int(proposal):06d}:r{run:04d}"
        sample = rng.choice(SAMPLES)
        datasets.append({
            "pid": pid,
            "title": f"{sample}, {rng.choice(detectors)}, run {run}",
            "facility": facility,
            "instrument": instrument,
            "proposal": proposal,
            "path": f"/data/{prefix}/{instrument.lower().replace('/', '_')}/p{int(proposal):06d}/r{run:04d}",
            "access_groups": [f"p{proposal}"],
            "public": rng.random() < 0.05,
            "techniques": [rng.choice(TECHNIQUES)],
            "size_bytes": rng.randrange(10**6, 10**13),
        })
    return {"datasets": datasets}


def write_yaml(doc, path):
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        yaml.dump(doc, f, Dumper=dumper, sort_keys=False)
    tmp.replace(path)


class Case:
    """One catalogue size: its file, its hub, a logged-in session and the timings."""

    def __init__(self, n, workdir):
        self.n = n
        self.dir = Path(workdir) / f"n{n}"
        self.dir.mkdir(parents=True)
        doc = make_catalog(n)
        groups = set(DEMO_USERS[USER][1])
        mine = [d for d in doc["datasets"] if d["public"] or groups & set(d["access_groups"])]
        self.visible = len(mine)
        self.pid = mine[len(mine) // 2]["pid"]
        self.catalog_path = self.dir / "catalog.yaml"
        write_yaml(doc, self.catalog_path)
        self.url = f"http://127.0.0.1:{free_port()}"
        config = write_hub_files(
            self.dir / "hub", self.catalog_path, DEMO_ENVIRONMENTS, port=int(self.url.rsplit(":", 1)[1]),
            hub_port=free_port(), proxy_api_port=free_port(), api_port=free_port(),
        )
        self.hub = HubProcess(config, self.url, log_path=self.dir / "jupyterhub.log")
        self.session = None
        self.times = {}

    def login(self):
        s = requests.Session()
        page = s.get(f"{self.url}/hub/login", timeout=60).text
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
        r = s.post(
            f"{self.url}/hub/login", allow_redirects=False, timeout=60,
            data={"username": USER, "password": DEMO_USERS[USER][0], "_xsrf": xsrf},
        )
        if r.status_code != 302:
            raise RuntimeError(f"login failed on the {self.n}-dataset hub: {r.status_code}")
        self.session = s
        # the picker's own search token, as the form hands it to the browser's script
        form = s.get(f"{self.url}/hub/spawn", timeout=600).text
        self.token = re.search(r'data-token="([^"]+)"', form).group(1)

    def requests(self):
        """label -> (path, params, check) for the timed requests."""
        return {
            "spawn page": ("/hub/spawn", None, lambda r: 'id="daas-form"' in r.text),
            "search 'lysozyme'": (
                "/services/daas-datasets/datasets", {"q": "lysozyme"},
                lambda r: all("lysozyme" in d["title"].lower() for d in r.json()["items"]),
            ),
            "search pid": (
                "/services/daas-datasets/datasets", {"q": self.pid},
                lambda r: [d["pid"] for d in r.json()["items"]] == [self.pid],
            ),
        }

    def timed_get(self, label, timeout=60):
        path, params, check = self.requests()[label]
        t0 = time.perf_counter()
        headers = {"Authorization": f"token {self.token}"} if path.startswith("/services/") else {}
        r = self.session.get(self.url + path, params=params, timeout=timeout, headers=headers)
        elapsed = time.perf_counter() - t0
        if r.status_code != 200 or not check(r):
            raise RuntimeError(f"{label} on the {self.n}-dataset hub: HTTP {r.status_code}, unexpected answer")
        return elapsed


def catalog_search_times(case, reps):
    """Median seconds of the catalogue's own search, in this process, on the case's file."""
    catalog = YamlCatalog(path=str(case.catalog_path), check_interval=3600)
    groups = DEMO_USERS[USER][1]

    async def run():
        await catalog.search(groups)  # loads the file
        out = {}
        for label, query in (("spawn page", ""), ("search 'lysozyme'", "lysozyme"), ("search pid", case.pid)):
            samples = []
            for _ in range(reps):
                t0 = time.perf_counter()
                await catalog.search(groups, query=query)
                samples.append(time.perf_counter() - t0)
            out[label] = statistics.median(samples)
        return out

    return asyncio.run(run())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (15 instead of 60)")
    parser.add_argument("--reps", type=int, help="requests per case and URL (overrides --quick)")
    args = parser.parse_args(argv)
    reps = args.reps or (15 if args.quick else 60)

    with tempfile.TemporaryDirectory(prefix="daas-hub-form-") as workdir:
        cases = []
        try:
            for n in SIZES:
                t0 = time.perf_counter()
                case = Case(n, workdir)
                cases.append(case)
                case.hub.start(timeout=180)
                case.login()
                # warm-up: the first request parses the catalogue; later ones use the index
                for label in case.requests():
                    case.timed_get(label, timeout=600)
                    case.timed_get(label)
                print(f"{n:>7} datasets ({case.visible} visible to {USER}): hub up and warm "
                      f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            labels = list(cases[0].requests())
            samples = {(c.n, lb): [] for c in cases for lb in labels}
            for _ in range(reps):
                for label in labels:
                    for case in cases:
                        samples[case.n, label].append(case.timed_get(label))
        finally:
            for case in cases:
                case.hub.stop()
        inproc = {c.n: catalog_search_times(c, reps) for c in cases}

    base = cases[0].n
    print(f"\nSpawn form and dataset search through a real JupyterHub; median of {reps} requests, "
          f"user {USER}, {os.cpu_count()} CPUs")
    print(f"ratio = median / median with {base} datasets (goal: <= 1.5 with {SIZES[-1]:,})\n")
    head = f"{'request':<18} {'datasets':>9} {'visible':>8} {'median ms':>10} {'ratio':>6} {'catalogue ms':>13}"
    print(head)
    print("-" * len(head))
    worst = 0.0
    for label in labels:
        ref = statistics.median(samples[base, label])
        for case in cases:
            med = statistics.median(samples[case.n, label])
            ratio = med / ref
            if case.n == SIZES[-1]:
                worst = max(worst, ratio)
            print(f"{label:<18} {case.n:>9,} {case.visible:>8,} {med * 1e3:>10.2f} {ratio:>6.2f} "
                  f"{inproc[case.n][label] * 1e3:>13.3f}")
    verdict = "met" if worst <= 1.5 else "MISSED"
    print(f"\nworst ratio at {SIZES[-1]:,} datasets: {worst:.2f}x (goal 1.5x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
