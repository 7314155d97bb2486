"""Server extension benchmark: the REST layer against the engines called directly, one run.

1. Conversion: ``POST nxmx/jobs`` (Dask worker, polled until done, as a
   client sees it) vs ``convert_run`` in this process, same run and options.
   Goal: ratio <= 1.1.
2. Streaming: a replayed run classified through ``POST spectra/streams`` (a
   stream process of the server) vs ``SpectraStream`` in this process, same
   model and run, spectra/s from the streams' own counters. Goal: >= 0.9.
3. Responsiveness: p50/p99 of ``GET session`` while 4 conversions and
   1 stream run, vs the same on the idle server. Goal: p99 <= 100 ms.

    .venv/bin/python benchmarks/extension.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from server_ext.extension.client import DaasClient  # noqa: E402
from server_ext.extension.serverprocess import JupyterServerProcess  # noqa: E402

TOKEN = "daas-bench-token"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def wait(client, job_id, kind="nxmx", interval=0.02, timeout=900):
    job = client.wait_job(job_id, timeout=timeout, interval=interval, kind=kind)
    if job["state"] != "done":
        raise SystemExit(f"job {job_id} ended {job['state']}: {job['error']}")
    return job


def bench_conversion(client, root, run_rel, repeat):
    from server_ext.nxmx import convert_run

    options = {"distance": 150.0}
    out = root / "processed"

    def direct():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            convert_run(root / run_rel, out / "direct.nxs", overwrite=True, **options)

    on_worker = []

    def rest():
        job = client.submit_conversion(run_rel, "processed/rest.nxs", overwrite=True, **options)
        job = wait(client, job["id"])
        on_worker.append(seconds_between(job["started"], job["finished"]))

    # warm-up: starts the embedded cluster, imports the engine and opens the run on both workers
    warm = [client.submit_conversion(run_rel, f"processed/warm{i}.nxs", overwrite=True, **options) for i in (0, 1)]
    for job in warm:
        wait(client, job["id"])
    direct()
    on_worker.clear()
    t_direct, t_rest = [], []
    for _ in range(repeat):  # interleaved: both see the same load of a shared machine
        t_direct.append(timed(direct))
        t_rest.append(timed(rest))
    return min(t_direct), min(t_rest), min(on_worker)


def seconds_between(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def train_model(client, run_rel, source, key, tids):
    labels = [f"before={tids[0]}:{tids[30]}", f"after={tids[-30]}:{tids[-1] + 1}"]
    job = client.train_model(run_rel, labels, source=source, key=key, max_per_label=128,
                             params={"n_bins": 5, "epochs": 10, "random_state": 0})
    return wait(client, job["id"], kind="spectra", interval=0.5)


def bench_stream(client, root, model, data_dir, run_rel, source, key, n_trains, repeat):
    """Best spectra/s of each, interleaved (a shared machine's load changes from second to second)."""
    from server_ext.spectra import BinnedSpectraClassifier, SpectraStream

    direct, ext = [], []
    for _ in range(repeat):
        # as the stream process does: load the model, open the run, stream
        clf = BinnedSpectraClassifier.load(Path(data_dir) / "daas" / "models" / model["id"])
        st = SpectraStream(clf, str(root / run_rel), source_name=source, key=key, max_trains=n_trains).run()
        direct.append((st.spectra / st.elapsed, st.spectra))  # read now: elapsed keeps running
        s = client.start_stream(model["id"], run=run_rel, source=source, key=key, max_trains=n_trains)
        deadline = time.monotonic() + 600
        while (s := client.get_stream(s["id"]))["state"] not in ("finished", "failed", "stopped"):
            if time.monotonic() > deadline:
                raise SystemExit("the stream did not finish in 600 s")
            time.sleep(0.2)
        if s["state"] != "finished":
            raise SystemExit(f"stream ended {s['state']}: {s['error']}")
        ext.append((s["stats"]["spectra"] / s["stats"]["elapsed_s"], s["stats"]["spectra"]))
    (r_direct, n_direct), (r_ext, n_ext) = max(direct), max(ext)
    return r_direct, r_ext, n_direct, n_ext


def latencies(client, seconds, stop=None):
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        t0 = time.perf_counter()
        client.session()
        out.append(time.perf_counter() - t0)
        time.sleep(0.02)
    return np.array(out)


def bench_responsiveness(client, model, run_rel, spectra_rel, source, key, seconds):
    idle = latencies(client, seconds / 2)
    jobs = [client.submit_conversion(run_rel, f"processed/load{i}.nxs", mode="copy", overwrite=True,
                                     distance=150.0)["id"] for i in range(4)]
    stream = client.start_stream(model["id"], run=spectra_rel, source=source, key=key, train_rate=10.0)
    deadline = time.monotonic() + 300
    while not (client.get_stream(stream["id"])["state"] == "running"
               and all(client.get_conversion(j)["state"] == "running" for j in jobs)):
        if time.monotonic() > deadline:
            raise SystemExit("the load did not start within 300 s")
        time.sleep(0.2)
    busy = latencies(client, seconds)
    states = [client.get_conversion(j)["state"] for j in jobs]
    stream_state = client.get_stream(stream["id"])["stats"]
    for j in jobs:
        client.cancel_conversion(j)
    client.stop_stream(stream["id"])
    for j in jobs:
        client.wait_job(j, timeout=300)
    return idle, busy, states, stream_state


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller stream run, fewer repeats")
    ap.add_argument("--keep", help="keep the work folder here")
    args = ap.parse_args()
    repeat = 3 if args.quick else 5
    n_trains, pulses = (200, 32) if args.quick else (400, 64)

    from server_ext.nxmx.demo import write_demo_run as write_agipd_demo_run
    from server_ext.spectra.synthetic import DEMO_KEY, DEMO_SOURCE, write_demo_run

    work = Path(args.keep or tempfile.mkdtemp(prefix="daas-bench-"))
    root = work / "root"
    (root / "processed").mkdir(parents=True, exist_ok=True)
    print("preparing data ...", flush=True)
    if not (root / "r0029").exists():
        write_agipd_demo_run(root)  # the demo's AGIPD run, at root/r0029
    spectra = write_demo_run(root / "spectra", n_trains=n_trains, pulses_per_train=pulses, n_points=2010)
    spectra_rel = os.path.relpath(spectra["path"], root)
    from extra_data import RunDirectory

    tids = list(RunDirectory(spectra["path"]).train_ids)
    data_dir = work / "jupyter-data"
    # the server's environment as this process's (same BLAS threads for the stream peers)
    env = {"JUPYTER_DATA_DIR": str(data_dir), "JUPYTER_CONFIG_DIR": str(work / "jupyter-config")}
    options = {"DaasExtension.dask_workers": 2, "DaasExtension.max_running_jobs": 4,
               "DaasExtension.dask_memory_limit": "4GiB"}
    seconds = 10 if args.quick else 20
    load = {}
    # Overheads with the workers at normal priority (as convert_run runs here); then the
    # responsiveness at both priorities (the default lowers the workers' by dask_worker_nice=10).
    server = JupyterServerProcess(root, env=env, token=TOKEN, options={**options, "DaasExtension.dask_worker_nice": 0},
                                  log_path=work / "server.log")
    try:
        server.start()
        client = DaasClient(server.api_url, TOKEN, timeout=120)
        print("conversion ...", flush=True)
        t_direct, t_rest, t_job = bench_conversion(client, root, "r0029", repeat)
        print("training a model through the API ...", flush=True)
        model = train_model(client, spectra_rel, DEMO_SOURCE, DEMO_KEY, tids)
        print("streaming ...", flush=True)
        r_direct, r_ext, n_direct, n_ext = bench_stream(client, root, model, data_dir, spectra_rel,
                                                        DEMO_SOURCE, DEMO_KEY, len(tids), repeat)
        print("responsiveness under load, workers at nice 0 ...", flush=True)
        load[0] = bench_responsiveness(client, model, "r0029", spectra_rel, DEMO_SOURCE, DEMO_KEY, seconds)
        server.stop()
        server = JupyterServerProcess(root, env=env, token=TOKEN, options=options, log_path=work / "server.log")
        server.start()
        client = DaasClient(server.api_url, TOKEN, timeout=120)
        print("responsiveness under load, workers at the default nice 10 ...", flush=True)
        load[10] = bench_responsiveness(client, model, "r0029", spectra_rel, DEMO_SOURCE, DEMO_KEY, seconds)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    def ms(a, q):
        return 1e3 * float(np.percentile(a, q))

    print()
    print(f"{'measure':58s} {'value':>12s}  goal")
    print(f"{'conversion: convert_run direct (s, best of %d)' % repeat:58s} {t_direct:12.3f}")
    print(f"{'conversion: POST nxmx/jobs until done (s)':58s} {t_rest:12.3f}")
    print(f"{'  of which the job record: started -> finished (s)':58s} {t_job:12.3f}")
    print(f"{'  ratio REST / direct':58s} {t_rest / t_direct:12.2f}  <= 1.1")
    print(f"{'stream: SpectraStream direct (spectra/s, %d spectra, best of %d)' % (n_direct, repeat):58s} {r_direct:12.0f}")
    print(f"{'stream: through the extension (spectra/s, %d spectra, best of %d)' % (n_ext, repeat):58s} {r_ext:12.0f}")
    print(f"{'  ratio extension / direct':58s} {r_ext / r_direct:12.2f}  >= 0.9")
    for nice, (idle, busy, states, stream_stats) in load.items():
        print(f"{'GET session idle, p50 / p99 (ms, %d calls)' % len(idle):58s} {ms(idle, 50):6.1f} / {ms(idle, 99):.1f}")
        print(f"{'GET session, 4 conversions + 1 stream, workers nice %d' % nice:58s} "
              f"{ms(busy, 50):6.1f} / {ms(busy, 99):.1f}  p99 <= 100")
        print(f"{'  (p50 / p99 ms, %d calls; jobs %s; stream %.1f trains/s)' % (len(busy), ','.join(states), stream_stats.get('trains_per_s') or 0):58s}")


if __name__ == "__main__":
    main()
