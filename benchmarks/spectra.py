"""Spectra classification benchmark: this classifier against its peers, one run.

Same data, side by side:

1. the published method (Sun & Brockhauser 2022), re-implemented in
   ``benchmarks/published_method.py``: ALS baseline, 15 bins, point-wise
   (angle, intensity) MLP with 150 hidden units per bin, Adam, 700
   full-batch epochs, training-set accuracy weights, weighted vote;
2. scikit-learn ``LogisticRegression`` and ``RandomForestClassifier`` on
   whole spectra;
3. ``BinnedSpectraClassifier``.

Protocols on one 349-spectrum, 4,020-point transition series:
A -- train on the 4 extreme curves (2 per class) plus noisy copies, test on
all others; B -- label every 5th curve, test on the rest. Reported: held-out
accuracy, accuracy under +-1 % peak-position strain and +-30 % intensity
scaling, training time, inference spectra/s, the fraction flagged ambiguous
and where, and end-to-end streaming (Karabo bridge over loopback, server in
a separate process, trains of 2,700 pulses): spectra/s and latency p50/p99.
Headlines are ratios against peers measured in this run.

    .venv/bin/python benchmarks/spectra.py            # full (~10 min on 2 cores)
    .venv/bin/python benchmarks/spectra.py --quick    # shrunk epochs and stream
    .venv/bin/python benchmarks/spectra.py --data my_series.npz   # X, y[, axis]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SRC, KEY = "BENCH/PROC/SPECTRA:output", "data.intensity"
EUXFEL_MAX = 27_000  # pulses per second


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def rate(fn, X, min_time=1.0):
    """Spectra per second of ``fn(X)``, repeated for at least ``min_time``."""
    fn(X[: min(len(X), 64)])  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        fn(X)
        n += len(X)
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return n / dt


def noisy_copies(X, y, copies, rng):
    Xc = rng.poisson(np.maximum(np.repeat(X, copies, 0), 0)).astype(np.float32)
    return np.concatenate([X, Xc]), np.concatenate([y, np.repeat(y, copies)])


# ------------------------------------------------------------------ server
def serve(n_trains, pulses, n_points, seed, push):
    """Child process: a Karabo bridge server sending ``n_trains`` trains
    (REP: on request, the bridge's default; PUSH: pipelined)."""
    from karabo_bridge import ServerInThread

    from server_ext.spectra.synthetic import make_transition_series

    s = make_transition_series(n_spectra=349, n_points=n_points, kind="both",
                               random_state=seed)
    rng = np.random.default_rng(seed)
    pool = [np.ascontiguousarray(s.X[rng.integers(0, len(s.X), pulses)]) for _ in range(4)]
    server = ServerInThread("tcp://127.0.0.1:*", maxlen=2, sock="PUSH" if push else "REP")
    server.start()
    print(server.endpoint, flush=True)
    for i in range(n_trains):
        tid = 10_000 + i
        server.feed({SRC: {KEY: pool[i % len(pool)]}},
                    {SRC: {"source": SRC, "timestamp.tid": tid}})
    sys.stdin.readline()  # the client says when it has everything
    server.stop()


@contextlib.contextmanager
def bridge_server(n_trains, pulses, n_points, seed, push):
    """A Karabo bridge serving synthetic trains in another process; yields its endpoint."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(n_trains), str(pulses),
                             str(n_points), str(seed), str(int(push))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
        proc.stdin.write("done\n")
        proc.stdin.flush()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def raw_receive(n_trains, pulses, n_points, seed, push):
    """Peer: the bare Karabo bridge client receiving the same trains and doing
    nothing with them -- the transport ceiling of this machine."""
    from karabo_bridge import Client

    with bridge_server(n_trains, pulses, n_points, seed, push) as endpoint:
        client = Client(endpoint, sock="PULL" if push else "REQ", timeout=30)
        client.next()
        t0 = time.perf_counter()
        for _ in range(n_trains - 1):
            client.next()
        dt = time.perf_counter() - t0
    return (n_trains - 1) * pulses / dt


def stream_benchmark(clf, n_trains, pulses, seed, push):
    from server_ext.spectra import KaraboBridgeSource, SpectraStream

    with bridge_server(n_trains, pulses, clf.n_features_in_, seed, push) as endpoint:
        source = KaraboBridgeSource(endpoint, key=KEY, timeout=30.0,
                                    sock="PULL" if push else "REQ")
        stream = SpectraStream(clf, source, max_trains=n_trains, queue_size=2)
        t_first = None
        n_after_first = 0
        for r in stream:
            if t_first is None:  # steady state: from the first result on
                t_first = time.perf_counter()
            else:
                n_after_first += len(r)
        elapsed = time.perf_counter() - t_first
        st = stream.stats
    return {"spectra_per_s": n_after_first / elapsed, "trains": st.trains,
            "spectra": st.spectra, "dropped": st.dropped, "gaps": st.gaps,
            "p50_ms": 1e3 * st.latency(50), "p99_ms": 1e3 * st.latency(99)}


# ------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs for the published "
                    "method (100) and a shorter stream")
    ap.add_argument("--kind", default="both", choices=["intensity", "shift", "both"],
                    help="what changes at the synthetic transition")
    ap.add_argument("--data", help=".npz with X (n, points), y (n,) ordered along the "
                    "series, optional axis: benchmark on external data instead")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--serve", nargs=5, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(*args.serve)

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from server_ext.spectra import BinnedSpectraClassifier
    from server_ext.spectra.networks import keras_module
    from published_method import PublishedBinnedMLP  # next to this script
    from server_ext.spectra.synthetic import make_transition_series, perturb

    keras_module()  # TensorFlow import time is not training time
    if args.data:
        with np.load(args.data, allow_pickle=False) as z:
            X, y = z["X"].astype(np.float32), z["y"]
            axis = z["axis"] if "axis" in z.files else None
        title = args.data
    else:
        s = make_transition_series(n_spectra=349, n_points=4020, kind=args.kind,
                                   random_state=args.seed)
        X, y, axis = s.X, s.y, s.axis
        title = f"synthetic '{args.kind}' transition"
    n = len(X)
    switch = int(np.flatnonzero(y != y[0])[0]) if (y != y[0]).any() else n // 2
    Xp = perturb(X, axis, strain=0.01, intensity=0.3, random_state=args.seed + 7)
    epochs = 100 if args.quick else 700
    print(f"data: {title}: {n} spectra x {X.shape[1]} points, classes "
          f"{np.unique(y).tolist()}, first change at spectrum {switch}")
    print(f"published method: {epochs} epochs{' (--quick)' if args.quick else ''}\n")

    # the published method's ALS baseline is per spectrum: do it once per set
    pub_prep = PublishedBinnedMLP()._prep
    (Xals, Xpals), t_als = timed(lambda: (pub_prep(X), pub_prep(Xp)))
    als_rate = 2 * n / t_als

    protocols = {
        "A": np.r_[0, 1, n - 2, n - 1],
        "B": np.arange(0, n, 5),
    }
    rows, extra = [], {}
    batch = np.ascontiguousarray(X[np.random.default_rng(1).integers(0, n, 2700)])
    for name, train in protocols.items():
        test = np.setdiff1d(np.arange(n), train)
        rng = np.random.default_rng(args.seed)
        copies = 5 if name == "A" else 0
        Xn, yn = noisy_copies(X[train], y[train], copies, rng) if copies else (X[train], y[train])

        def record(method, model, t_fit, predict, Xtest, Xpert, inf_rate):
            acc = float((predict(Xtest) == y[test]).mean())
            acc_p = float((predict(Xpert) == y[test]).mean())
            rows.append((name, method, acc, acc_p, t_fit, inf_rate))
            return model

        # 1. published
        pub = PublishedBinnedMLP(epochs=epochs, noisy_copies=copies, random_state=args.seed)
        _, t = timed(pub.fit, X[train], y[train], axis=axis)
        pub_pred = lambda Z: pub.predict(Z, baseline_done=True)  # noqa: E731
        inf = 1.0 / (1.0 / als_rate + 1.0 / rate(pub_pred, Xals[:300], 0.5))
        record("published (re-impl.)", pub, t, pub_pred, Xals[test], Xpals[test], inf)

        # 2. scikit-learn on whole spectra (same labelled data and copies)
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        _, t = timed(lr.fit, Xn, yn)
        record("LogisticRegression", lr, t, lr.predict, X[test], Xp[test],
               rate(lr.predict, batch, 0.5))
        rf = RandomForestClassifier(n_estimators=200, random_state=args.seed, n_jobs=1)
        _, t = timed(rf.fit, Xn, yn)
        record("RandomForest", rf, t, rf.predict, X[test], Xp[test],
               rate(rf.predict, batch, 0.5))

        # 3. this classifier (does its own augmentation from the labelled curves)
        clf = BinnedSpectraClassifier(random_state=args.seed)
        _, t = timed(clf.fit, X[train], y[train], axis=axis)
        record("BinnedSpectraClassifier", clf, t, clf.predict, X[test], Xp[test],
               rate(clf.predict_with_confidence, batch, 1.0))
        _, _, amb = clf.predict_with_confidence(X[test])
        where = test[amb]
        extra[name] = (clf, amb.mean(), where)

    print(f"{'protocol':8s} {'method':26s} {'accuracy':>9s} {'strained':>9s} {'loss':>6s} "
          f"{'train s':>8s} {'spectra/s':>11s}")
    for name, method, acc, acc_p, t_fit, inf in rows:
        print(f"{name:8s} {method:26s} {100 * acc:8.2f}% {100 * acc_p:8.2f}% "
              f"{100 * (acc - acc_p):5.2f}p {t_fit:8.2f} {inf:11.0f}")
    print("('strained': test spectra with +-1 % peak-position strain and +-30 % intensity "
          "scaling; 'loss' in accuracy points)\n")

    for name in protocols:
        clf, frac, where = extra[name]
        d = np.abs(where - switch)
        print(f"protocol {name}: {len(clf.bins_)} bins kept, ambiguous {100 * frac:.2f}% of "
              f"test spectra" + (f", at spectra {where.tolist()} (max {d.max()} from the "
                                 f"change at {switch})" if len(where) else ""))
    by = {(p, m): (a, ap, tf, inf) for p, m, a, ap, tf, inf in rows}
    print("\nratios (this classifier vs peer, same run):")
    for peer in ("published (re-impl.)", "LogisticRegression", "RandomForest"):
        for p in protocols:
            a, _, tf, inf = by[(p, "BinnedSpectraClassifier")]
            pa, _, ptf, pinf = by[(p, peer)]
            print(f"  {p} vs {peer:22s}: accuracy {100 * (a - pa):+6.2f} points, "
                  f"inference x{inf / pinf:8.1f}, training time x{tf / ptf:6.2f}")

    n_trains = 40 if args.quick else 200
    clf = extra["B"][0]
    pub_rate = by[("B", "published (re-impl.)")][3]
    print(f"\nstreaming (Karabo bridge over loopback, server in another process, "
          f"{n_trains} trains x 2,700 pulses x {X.shape[1]} points, protocol-B model):")
    for push, label in ((False, "REQ/REP (bridge default)"), (True, "PUSH/PULL (pipelined)")):
        st = stream_benchmark(clf, n_trains, 2700, args.seed, push)
        bare = raw_receive(n_trains, 2700, X.shape[1], args.seed, push)
        print(f"  {label}: bare client receive {bare:.0f} spectra/s (transport ceiling)")
        print(f"    classified end to end {st['spectra_per_s']:.0f} spectra/s = "
              f"x{st['spectra_per_s'] / bare:.2f} the bare receive, "
              f"x{st['spectra_per_s'] / EUXFEL_MAX:.2f} the EuXFEL maximum ({EUXFEL_MAX}/s), "
              f"x{st['spectra_per_s'] / pub_rate:.0f} the published method's inference rate")
        print(f"    latency per train (arrival to result, queueing included): p50 "
              f"{st['p50_ms']:.1f} ms, p99 {st['p99_ms']:.1f} ms; trains {st['trains']}, "
              f"dropped {st['dropped']}, gaps {st['gaps']}")


if __name__ == "__main__":
    sys.exit(main())
