"""Spectra classification benchmark: this classifier against its peers, one run.

Same data, side by side:

1. the published method (Sun & Brockhauser 2022), re-implemented in
   ``benchmarks/published_method.py``: ALS baseline, 15 bins, point-wise
   (angle, intensity) MLP with 150 hidden units per bin, Adam, 700
   full-batch epochs, training-set accuracy weights, weighted vote;
2. scikit-learn ``LogisticRegression`` and ``RandomForestClassifier`` on
   whole spectra;
3. ``BinnedSpectraClassifier``.

Series (each 4,020 points): the original two-phase transition (349
spectra, reflections vanish/appear and move), and physics-based powder
series (360 spectra; peaks at the d-spacings of a lattice, structure-factor
intensities, thermal expansion inside each class): ``shift`` (A -> B -> A',
A' differs from A only by a 1 % larger cell), ``shift-net`` (A' in a 1 %
smaller cell, against the thermal expansion: a net change of a few tenths of
a percent between the labelled curves), ``shift4`` (A -> A' -> C ->
C'), ``weak`` (A -> A + superlattice peaks of 3 % -> distorted A -> C),
``pattern`` (three structures), on a 2-theta and a q axis, for several seeds.
``--variants`` adds series that vary what those do not (``VARIANTS``: the
axis, the number of points, counting noise, drift, angular range and
wavelength, the weak peaks' height, three classes of one structure).
``--physics`` adds series from ``benchmarks/powder_physics.py``, a generator
written without reading this project's: structure factors from atom
positions, Debye-Waller, Caglioti and Scherrer widths, Birch-Murnaghan
compression (``PHYSICS``). ``--extra`` adds configurations measured after
the fact, not tuned on (``EXTRA``: five classes, 1,000 and 8,000 points,
two classes a cell apart, a 0.5 % cell step; the independent physics at
2,000 points or a tenth of its counts; a hot or noisy pixel, or a pair,
in every spectrum; cosmic-ray spikes).

Protocols: A -- train on the 2 most extreme curves of each class (farthest
from any other class) plus noisy copies, test on all others; B -- label
every 5th curve, test on the rest; with ``--imbalanced`` also C -- protocol B
with one class labelled six times more sparsely (each class in turn), as
when a phase is seen only briefly: the accuracy and that class's recall.
Reported per series: held-out accuracy, accuracy under +-1 % peak-position
strain and +-30 % intensity scaling (the loss is also given on the classes
that no other class differs from by position only: there strain is
nuisance), training time, the errors on
pure spectra and on mixtures at a transition (the larger phase below 90 %:
the label names the larger phase, so a 55/45 mixture's label turns on a
tenth of its pattern), the confusion matrix of this classifier, and the
goals of issue 13 checked in the same run.
Then inference speed on a 27,000-spectrum batch (the BLAS kernel shown by
threadpoolctl): ``predict`` of the first series' model and of models that
keep as many bins as the estimator allows (15 equal bins; 32 segments per
bin, up to 30 bins), and the inference core with every candidate bin kept
(random weights, up to 30 bins), in rounds beside a bare pass over the
data, with the CPU time each costs (little affected by other load, unlike
the rates). Then end-to-end streaming (Karabo bridge over loopback, one
server in a separate process for all runs, trains of 2,700 pulses): in
rounds, the bare bridge client, the stream without classification (its
receiving, hand-off and results alone), the stream that only reads each
train, the classified stream, and the classified stream keeping every
pulse's result in a file (``ResultsFile``, against the classified stream);
the ratio to the bare client's receive rate is the median of the rounds'
ratios, printed beside the CPU each side and the server spend (what CPU
alone would allow); then a few rounds with the server paced to a network
link (``--link-gbps``). Headlines are ratios against peers measured in
this run.

    .venv/bin/python benchmarks/spectra.py            # full (~30 min on 2 cores)
    .venv/bin/python benchmarks/spectra.py --quick    # one seed, shrunk stream
    .venv/bin/python benchmarks/spectra.py --data my_series.npz   # X, y[, axis]

On machines where OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set (see the
environment notes), unset both in the benchmark's command only:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/spectra.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from typing import NamedTuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SRC, KEY = "BENCH/PROC/SPECTRA:output", "data.intensity"
EUXFEL_MAX = 27_000  # pulses per second
#: a test spectrum whose larger phase is below this is a mixture at a transition
PURE = 0.9


class Series(NamedTuple):
    title: str
    X: np.ndarray
    y: np.ndarray
    axis: np.ndarray | None
    by_position: list  # classes that differ from another by position only
    purity: np.ndarray | None  # per spectrum, its larger phase's fraction (None: unknown)
    # the spectra classified where they differ from X (None: X): with points
    # the detector masks only after the models were fitted
    classified: np.ndarray | None = None


def generated(title, s, by_position):
    """A generated series (``synthetic.SpectraSeries``) as a :class:`Series`."""
    return Series(title, s.X, s.y, s.axis, by_position, s.weights.max(1))


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def rate(fn, X, min_time=1.0, cpu=None):
    """Spectra per second of ``fn(X)``, repeated for at least ``min_time``;
    with a list ``cpu``, also appends spectra per second of this process's
    CPU time (all its threads): what the work costs, whatever else the
    machine's cores are busy with."""
    fn(X[: min(len(X), 64)])  # warm-up
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn(X)
        n += len(X)
        dt = time.perf_counter() - t0
        if dt >= min_time:
            if cpu is not None:
                cpu.append(n / (time.process_time() - c0))
            return n / dt


def noisy_copies(X, y, copies, rng):
    Xc = rng.poisson(np.maximum(np.repeat(X, copies, 0), 0)).astype(np.float32)
    return np.concatenate([X, Xc]), np.concatenate([y, np.repeat(y, copies)])


# ------------------------------------------------------------------ server
def serve(pulses, n_points, seed, push, link_rate=0):
    """Child process: a Karabo bridge server sending trains of ``pulses``
    spectra, train ids counting up, until the parent says stop (a line on
    stdin) -- one server for all the runs of a comparison, so that no run
    pays for its start. REQ/REP: on request, the bridge's default; PUSH:
    pipelined. ``link_rate``: bytes of spectra per second at most (a
    network link's rate; 0: as fast as the server goes)."""
    import queue
    import threading

    from karabo_bridge import ServerInThread

    from server_ext.spectra.synthetic import make_transition_series

    s = make_transition_series(n_spectra=349, n_points=n_points, kind="both",
                               random_state=seed)
    rng = np.random.default_rng(seed)
    pool = [np.ascontiguousarray(s.X[rng.integers(0, len(s.X), pulses)]) for _ in range(4)]
    server = ServerInThread("tcp://127.0.0.1:*", maxlen=2, sock="PUSH" if push else "REP")
    server.start()
    print(server.endpoint, flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
    tid = 10_000
    period = pool[0].nbytes / link_rate if link_rate else 0.0
    due = time.perf_counter()
    while not done.is_set():
        if period:  # a train leaves no sooner than the link has carried the last one
            time.sleep(max(0.0, due - time.perf_counter()))
            due = max(due + period, time.perf_counter() - 2 * period)
        try:
            server.feed({SRC: {KEY: pool[tid % len(pool)]}},
                        {SRC: {"source": SRC, "timestamp.tid": tid}}, timeout=0.2)
        except queue.Full:  # nobody reading now: check for the stop
            continue
        tid += 1
    server.stop()


@contextlib.contextmanager
def bridge_server(pulses, n_points, seed, push, link_rate=0):
    """A Karabo bridge serving synthetic trains in another process; yields
    its endpoint and a function giving the server's CPU seconds so far."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(pulses), str(n_points),
                             str(seed), str(int(push)), str(int(link_rate))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip(), lambda: _process_cpu(proc.pid)
        proc.stdin.write("done\n")
        proc.stdin.flush()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def raw_receive(endpoint, n_trains, push):
    """Peer: the bare Karabo bridge client receiving ``n_trains`` trains and
    doing nothing with them -- the transport ceiling of this machine. Timed
    from the first train on, like the stream. Returns spectra per second."""
    import zmq
    from karabo_bridge import Client

    context = zmq.Context()
    try:
        client = Client(endpoint, sock="PULL" if push else "REQ", timeout=30, context=context)
        data, _ = client.next()
        pulses = len(data[SRC][KEY])
        t0 = time.perf_counter()
        for _ in range(n_trains - 1):
            client.next()
        return (n_trains - 1) * pulses / (time.perf_counter() - t0)
    finally:
        context.destroy(linger=0)


def stream_run(clf, endpoint, n_trains, push, keep=False):
    """``n_trains`` trains through ``SpectraStream`` (receiver thread, queue,
    classification, results), timed from the first result on; ``keep``:
    every pulse's result written to a results file too (``ResultsFile``,
    in a temporary directory)."""
    import tempfile

    from server_ext.spectra import KaraboBridgeSource, ResultsFile, SpectraStream

    source = KaraboBridgeSource(endpoint, key=KEY, timeout=30.0, sock="PULL" if push else "REQ")
    stream = SpectraStream(clf, source, max_trains=n_trains, queue_size=2)
    t_first = None
    n_after_first = 0
    with tempfile.TemporaryDirectory() as tmp:
        results = ResultsFile(os.path.join(tmp, "results.h5"), clf.classes_) if keep else None
        for r in stream:
            if results is not None:
                results.add(r)
            if t_first is None:  # steady state: from the first result on
                t_first = time.perf_counter()
            else:
                n_after_first += len(r)
        elapsed = time.perf_counter() - t_first  # the last flush and the close are not streaming
        size = None
        if results is not None:
            results.close("finished")
            size = os.path.getsize(results.path)
    st = stream.stats
    return {"spectra_per_s": n_after_first / elapsed, "trains": st.trains,
            "spectra": st.spectra, "dropped": st.dropped, "gaps": st.gaps,
            "p50_ms": 1e3 * st.latency(50), "p99_ms": 1e3 * st.latency(99),
            "bytes_per_pulse": None if size is None else size / max(st.spectra, 1)}


def _cpu():
    t = os.times()
    return t.user + t.system


def _process_cpu(pid):
    """CPU seconds (user + system) of another process so far, from /proc
    (Linux); NaN elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def classify_cost(clf, X, n=20):
    """``(cpu, wall)`` seconds of ``classify_batch`` on one 2,700-pulse train."""
    train = np.ascontiguousarray(X[np.random.default_rng(2).integers(0, len(X), 2700)])
    clf.classify_batch(train)
    c0, t0 = _cpu(), time.perf_counter()
    for _ in range(n):
        clf.classify_batch(train)
    return (_cpu() - c0) / n, (time.perf_counter() - t0) / n


def without_classification(clf, read=False):
    """A copy of ``clf`` whose ``classify_batch`` answers at once (class 0):
    the stream's own receiving, hand-off and result building, without the
    inference. ``read``: it first sums the train, i.e. reads every point
    once, the least any classifier must do with it (one core, 2-3 ms of CPU per
    2,700 x 4,020 train here)."""
    import copy

    blank = copy.copy(clf)
    n_classes = len(clf.classes_)

    def classify_batch(X, axis=None, return_proba=False):  # the stream's call, as the classifier's
        if read:
            X.sum()
        n = len(X)
        out = np.zeros(n, np.intp), np.ones(n, np.float32), np.zeros(n, bool), np.ones(n, bool)
        return (*out, np.zeros((n, n_classes), np.float32)) if return_proba else out

    blank.classify_batch = classify_batch
    return blank


def stream_comparison(clf, n_trains, rounds, pulses, seed, push, link_rate=0):
    """``rounds`` times, over ``n_trains`` trains each from one bridge: the
    bare client, the stream without classification, the stream that only
    reads each train once, the classified stream, the classified stream
    keeping every pulse's result in a file (with ``link_rate``, a paced
    server: the bare client and the classified stream only).
    Ratios are taken within a round (the machine's load drifts between
    rounds, much less within one). Returns one dict per round: rates
    (spectra/s), and CPU seconds per train of this process (``*_cpu``) and
    of the server (``*_server_cpu``)."""
    from server_ext.spectra import allocator

    runs = [("bare", lambda ep: raw_receive(ep, n_trains, push))]
    if not link_rate:
        runs += [(name, lambda ep, m=without_classification(clf, read=read):
                  stream_run(m, ep, n_trains, push)["spectra_per_s"])
                 for name, read in (("machinery", False), ("read_once", True))]
    runs.append(("classified", lambda ep: stream_run(clf, ep, n_trains, push)))
    if not link_rate:
        runs.append(("kept", lambda ep: stream_run(clf, ep, n_trains, push, keep=True)))
    out = []
    with bridge_server(pulses, clf.n_features_in_, seed, push, link_rate) as (endpoint, server):
        raw_receive(endpoint, 3, push)  # warm-up: connections, page faults, caches
        if not allocator.kept_bytes():  # once per process: the setting stays
            c0 = _cpu()
            rate = raw_receive(endpoint, n_trains, push)
            print(f"  bare client with glibc's malloc defaults: {rate:6.0f}/s "
                  f"({1e3 * (_cpu() - c0) / n_trains:.0f} ms CPU/train); from here on the bare "
                  f"client and the stream alike reuse train buffers (allocator.keep_buffers)")
            allocator.keep_buffers(pulses * clf.n_features_in_ * np.float32().itemsize)
        for _ in range(rounds):
            r = {}
            for name, run in runs:
                c0, s0 = _cpu(), server()
                r[name] = run(endpoint)
                r[f"{name}_cpu"] = (_cpu() - c0) / n_trains
                r[f"{name}_server_cpu"] = (server() - s0) / n_trains
            if "kept" in r:
                r["kept_bytes_per_pulse"] = r["kept"]["bytes_per_pulse"]
                r["kept"] = r["kept"]["spectra_per_s"]
            out.append(r)
    return out


def cpu_ceiling(r, classify_cpu, pulses, cores):
    """The classified stream's best ratio to the bare client when CPU is
    what bounds it: the bare round's CPU (server + client) plus the
    classification's own, spread over ``cores`` at best, against the bare
    round's wall time per train."""
    wall = pulses / r["bare"]
    work = r["bare_cpu"] + r["bare_server_cpu"] + classify_cpu
    return min(1.0, cores * wall / work)


# ------------------------------------------------------------------- main
def extremes(y, per_class=2):
    """Protocol A: per class, the ``per_class`` curves farthest (along the
    series) from any curve of another class -- the purest of each state."""
    idx = np.arange(len(y))
    out = []
    for c in np.unique(y):
        others = idx[y != c]
        dist = np.abs(idx[:, None] - others[None, :]).min(1).astype(float)
        dist[y != c] = -1
        out.extend(np.argsort(-dist, kind="stable")[:per_class])
    return np.sort(np.array(out))


def confusion(truth, pred, classes):
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(truth, pred, labels=classes)


def position_only(phases):
    """The classes whose structure (with its weak peaks) another class
    shares: they differ from it by cell only."""
    return [k for k, ph in enumerate(phases)
            if sum(q.structure == ph.structure and q.weak == ph.weak for q in phases) > 1]


def series_list(args):
    """The :class:`Series` to run."""
    from server_ext.spectra.synthetic import layout_phases, make_powder_series, make_transition_series

    if args.data:
        with np.load(args.data, allow_pickle=False) as z:
            X, y = z["X"].astype(np.float32), z["y"]
            axis = z["axis"] if "axis" in z.files else None
        return [Series(args.data, X, y, axis, [], None)]
    out = []
    title = f"transition '{args.kind}' (original)"
    if not args.only or any(o in title for o in args.only):
        s = make_transition_series(n_spectra=349, n_points=4020, kind=args.kind,
                                   random_state=args.seed)
        out.append(generated(title, s, []))
    seeds = [args.seed] if args.quick else [args.seed, args.seed + 1]
    for name, axis_kind in (("shift", "2theta"), ("shift", "q"), ("shift-net", "2theta"),
                            ("shift4", "2theta"), ("weak", "2theta"), ("pattern", "q")):
        # shift-net: A' in a 1 % smaller cell, against thermal expansion: the
        # labelled curves of A and A' lie only ~0.2 % apart
        layout, cell_step = ("shift", -0.01) if name == "shift-net" else (name, 0.01)
        by_position = position_only(layout_phases(layout, cell_step, 0.03))
        for seed in seeds:
            title = f"powder '{name}' {axis_kind} seed {seed}"
            if args.only and not any(o in title for o in args.only):
                continue
            s = make_powder_series(layout, n_spectra=360, n_points=4020, axis_kind=axis_kind,
                                   cell_step=cell_step, random_state=seed)
            out.append(generated(title, s, by_position))
    if args.variants:
        out += variant_series(args)
    if args.physics:
        out += physics_series(args)
    if args.extra:
        out += variant_series(args, EXTRA, "extra") + extra_physics_series(args)
    return out


#: ``--physics``: series of ``powder_physics`` (a generator written without
#: reading this project's ``synthetic``), with the axis and the classes that
#: differ from another by position only (by cell or by strain at most)
PHYSICS = (
    # tetragonal -> cubic -> the cubic in a 1 % larger cell
    ("perovskite_heating", "2theta", [1, 2]),
    # rock salt compressed by up to 4 % in d -> CsCl
    ("pressure_b1_b2", "2theta", []),
    # disordered fcc -> ordered (superlattice peaks of ~5 %) -> ordered, c/a 1.005
    ("superlattice", "2theta", []),
    ("superlattice", "q", []),
    ("d_spacing", "d", []),  # the superlattice series against d: a decreasing axis
    # four cells 0.8 % apart, drift inside each a third of that
    ("isostructural_shift", "2theta", [0, 1, 2, 3]),
)


def _physics(args, title, scenario, axis_kind, by_position, fault=None, **kw):
    """One series of ``powder_physics`` (the fractions of the phases give
    the purity), or None where ``--only`` leaves it out."""
    import powder_physics  # next to this script

    if args.only and not any(o in title for o in args.only):
        return None
    d = powder_physics.SCENARIOS[scenario](random_state=args.seed, **kw)
    axis = d["q"] if axis_kind == "q" else d["axis"]
    series = Series(title, d["X"], d["y"], axis, by_position, d["fraction"].max(1))
    return with_fault(series, fault, args.seed)


def physics_series(args):
    """The :data:`PHYSICS` series (4,020 points)."""
    out = [_physics(args, f"physics '{name}' {axis_kind} seed {args.seed}", name, axis_kind,
                    by_position) for name, axis_kind, by_position in PHYSICS]
    return [s for s in out if s is not None]


#: ``--variants``: what the main series do not vary -- the axis (q, d), the number
#: of points, counting noise, drift, the angular range and wavelength, the
#: weak peaks' height, and a layout of three classes of one structure
VARIANTS = (
    ("weak on q", dict(layout="weak", axis_kind="q")),
    # the same patterns against d = 2 pi / q: a decreasing axis
    ("weak on d-spacing", dict(layout="weak", axis_kind="q", d_spacing=True)),
    ("weak, 2,000 points", dict(layout="weak", n_points=2000)),
    ("weak 5 %, 6,000 points", dict(layout="weak", weak=0.05, n_points=6000)),
    ("weak, 2-theta 5-60 at 0.7 A", dict(layout="weak", two_theta_range=(5.0, 60.0),
                                         wavelength=0.7)),
    ("shift, 200 counts", dict(layout="shift", counts=200.0)),
    ("pattern, drift x2.7", dict(layout="pattern", drift=0.8)),
    # phases as (structure, cell, weak peaks' height)
    ("A -> A + 5 % weak peaks -> A in a 1 % larger cell",
     dict(layout=((0, 1.0, 0.0), (0, 1.0, 0.05), (0, 1.01, 0.0)))),
)


#: ``--extra``: what neither the series above nor the variants vary, measured
#: after the fact (not tuned on): the number of classes (five, two), points
#: (1,000, 8,000), a smaller cell step, a bad pixel, spikes, masked points (also
#: masked only after fitting) or a subtracted background (``fault``: see
#: :func:`with_fault`); then
#: (``EXTRA_PHYSICS``) the independent generator's scenarios with fewer points
#: or counts or such a fault: (title, scenario, classes that differ by position
#: only, its keywords)
EXTRA = (
    ("five classes: A, A + 5 % weak peaks, B, C, C in a 0.8 % larger cell",
     dict(layout=((0, 1.0, 0.0), (0, 1.0, 0.05), (1, 1.0, 0.0), (2, 1.0, 0.0), (2, 1.008, 0.0)),
          n_spectra=450)),
    ("shift, 1,000 points", dict(layout="shift", n_points=1000)),
    ("pattern, 8,000 points", dict(layout="pattern", n_points=8000)),
    ("two classes: A and A in a 1 % larger cell", dict(layout=((0, 1.0, 0.0), (0, 1.01, 0.0)))),
    ("shift, cell step 0.5 %", dict(layout="shift", cell_step=0.005)),
    ("shift-net, a hot pixel pair", dict(layout="shift", cell_step=-0.01, fault="pair")),
    ("shift-net, cosmic-ray spikes", dict(layout="shift", cell_step=-0.01, fault="spikes")),
    ("shift-net, masked points (NaN)", dict(layout="shift", cell_step=-0.01, fault="masked")),
    ("shift-net, points masked after fitting", dict(layout="shift", cell_step=-0.01,
                                                    fault="masked later")),
    ("shift-net, background subtracted", dict(layout="shift", cell_step=-0.01,
                                              fault="subtracted")),
    ("weak, background subtracted", dict(layout="weak", fault="subtracted")),
)
EXTRA_PHYSICS = (
    ("perovskite_heating, 2,000 points", "perovskite_heating", [1, 2], dict(n_points=2000)),
    ("isostructural_shift, 2,000 points", "isostructural_shift", [0, 1, 2, 3],
     dict(n_points=2000)),
    ("superlattice, a tenth of the counts", "superlattice", [], dict(peak_counts=2e3)),
    ("isostructural_shift, a hot pixel", "isostructural_shift", [0, 1, 2, 3],
     dict(fault="hot")),
    ("superlattice, a noisy hot pixel", "superlattice", [], dict(fault="noisy")),
    ("perovskite_heating, cosmic-ray spikes", "perovskite_heating", [1, 2],
     dict(fault="spikes")),
    ("isostructural_shift, cosmic-ray spikes", "isostructural_shift", [0, 1, 2, 3],
     dict(fault="spikes")),
    ("superlattice, masked points (NaN)", "superlattice", [], dict(fault="masked")),
    ("superlattice, points masked after fitting", "superlattice", [],
     dict(fault="masked later")),
    ("superlattice, background subtracted", "superlattice", [], dict(fault="subtracted")),
    ("perovskite_heating, background subtracted", "perovskite_heating", [1, 2],
     dict(fault="subtracted")),
)


def with_detector_fault(X, kind, seed, at=None):
    """A copy of ``X`` with a detector fault in every spectrum: at point
    ``at`` (default: three quarters of the axis) ``"hot"`` one pixel at 20
    times the median count, ``"noisy"`` the same with its counting noise,
    ``"pair"`` two neighbouring pixels 5 times the median above what they
    read, ``"dead"`` one pixel reading 0, ``"masked"`` that pixel and a
    gap of 1 % of the points from the middle of the axis NaN, as a
    detector marks what it masks; ``"subtracted"``: each spectrum less its
    5 % quantile (a background subtracted), with Gaussian readout noise
    of 0.1 times the square root of the median count; ``"spikes"``: three
    cosmic rays at random points of each spectrum, 10-50 times the median
    count above what it reads, one in three on two neighbouring points."""
    X = np.array(X)
    level = np.median(X)
    at = X.shape[1] * 3 // 4 if at is None else at
    if kind == "spikes":
        rng = np.random.default_rng(seed)
        rows = np.repeat(np.arange(len(X)), 3)
        points = rng.integers(0, X.shape[1] - 1, len(rows))
        height = level * rng.uniform(10.0, 50.0, len(rows))
        X[rows, points] += height
        pair = rng.random(len(rows)) < 1 / 3
        X[rows[pair], points[pair] + 1] += height[pair]
    elif kind == "hot":
        X[:, at] = 20 * level
    elif kind == "noisy":
        X[:, at] = np.random.default_rng(seed).poisson(20 * level, len(X))
    elif kind == "pair":
        X[:, at:at + 2] += 5 * level
    elif kind == "dead":
        X[:, at] = 0
    elif kind == "subtracted":
        X = X.astype(np.float64) - np.quantile(X, 0.05, axis=1, keepdims=True)
        X += np.random.default_rng(seed).normal(0.0, 0.1 * np.sqrt(level), X.shape)
    elif kind == "masked":
        X = X.astype(np.float64)
        middle = X.shape[1] // 2
        X[:, [at, *range(middle, middle + X.shape[1] // 100)]] = np.nan
    else:
        raise ValueError("fault must be 'hot', 'noisy', 'pair', 'dead', 'masked', 'subtracted' "
                         f"or 'spikes', not {kind!r}")
    return X


def with_fault(series, fault, seed):
    """``series`` with :func:`with_detector_fault` in every spectrum, or,
    for ``"masked later"``, the ``"masked"`` points NaN only in the spectra
    classified: the detector masks them after the models were fitted, and
    this classifier is told to (``mask_points``)."""
    if not fault:
        return series
    if fault == "masked later":
        return series._replace(classified=with_detector_fault(series.X, "masked", seed))
    return series._replace(X=with_detector_fault(series.X, fault, seed))


def variant_series(args, table=VARIANTS, kind="variant"):
    """The series of ``table`` (:data:`VARIANTS` or :data:`EXTRA`; 360
    spectra of 4,020 points on 2-theta unless said)."""
    from server_ext.spectra.synthetic import Phase, layout_phases, make_powder_series

    out = []
    for name, kw in table:
        title = f"{kind} '{name}' seed {args.seed}"
        if args.only and not any(o in title for o in args.only):
            continue
        kw = {"n_spectra": 360, **kw}
        layout = kw.pop("layout")
        # the series' phases, as make_powder_series would take them from a name
        phases = (layout_phases(layout, kw.get("cell_step", 0.01), kw.get("weak", 0.03))
                  if isinstance(layout, str) else tuple(Phase(*phase) for phase in layout))
        by_position = position_only(phases)
        d_spacing = kw.pop("d_spacing", False)
        fault = kw.pop("fault", None)
        s = make_powder_series(phases, random_state=args.seed, **kw)
        series = with_fault(generated(title, s, by_position), fault, args.seed)
        out.append(series._replace(axis=2 * np.pi / s.axis) if d_spacing else series)
    return out


def extra_physics_series(args):
    """The :data:`EXTRA_PHYSICS` series (2-theta)."""
    out = [_physics(args, f"extra '{name}' seed {args.seed}", scenario, "2theta", by_position,
                    **kw) for name, scenario, by_position, kw in EXTRA_PHYSICS]
    return [s for s in out if s is not None]


def contenders(args):
    """Fresh estimators of every protocol: ``[(name, estimator)]``, the peers
    on whole spectra, then this classifier (the one fitted with ``axis=``)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from server_ext.spectra import BinnedSpectraClassifier

    # the peers need a value at every point: a detector's masked points (NaN) read 0,
    # those masked only after fitting the labelled spectra's mean there (SimpleImputer
    # leaves spectra without NaN as they are)
    return [("LogisticRegression", make_pipeline(SimpleImputer(keep_empty_features=True), StandardScaler(),
                                                 LogisticRegression(max_iter=5000))),
            ("RandomForest", make_pipeline(SimpleImputer(keep_empty_features=True), RandomForestClassifier(
                n_estimators=200, random_state=args.seed, n_jobs=1))),
            ("BinnedSpectraClassifier", BinnedSpectraClassifier(random_state=args.seed,
                                                                align_strain=args.align_strain))]


def run_series(series, args, with_published):
    from published_method import PublishedBinnedMLP  # next to this script
    from server_ext.spectra.preprocess import bridge_points
    from server_ext.spectra.synthetic import perturb

    title, X, y, axis, by_position, purity, Xc = series
    Xc = X if Xc is None else Xc
    n = len(X)
    classes = np.unique(y)
    # a detector's masked points (NaN) stay where they are while the sample's peaks move
    masked = ~np.isfinite(X).any(0)
    unread = ~np.isfinite(Xc).any(0)  # with those masked after fitting
    later = np.flatnonzero(unread & ~masked)
    read = bridge_points(X, np.flatnonzero(masked))
    Xp = perturb(bridge_points(Xc, np.flatnonzero(unread)), axis, strain=0.01, intensity=0.3,
                 random_state=args.seed + 7)
    Xp[:, unread] = np.nan
    robust = ~np.isin(y, by_position)  # where strain is nuisance
    epochs = 100 if args.quick else 700
    print(f"\n=== {title}: {n} spectra x {X.shape[1]} points, classes {classes.tolist()}"
          + (f", classes {by_position} differ from another by position only" if by_position
             else ""))
    rows, models, sizes, missed = [], {}, [], {}
    for name, train in (("A", extremes(y)), ("B", np.arange(0, n, 5))):
        test = np.setdiff1d(np.arange(n), train)
        mixed = purity[test] < PURE if purity is not None else np.zeros(len(test), bool)
        sizes.append(f"{name} {(~mixed).sum()} / {mixed.sum()}")
        rng = np.random.default_rng(args.seed)
        copies = 5 if name == "A" else 0
        Xn, yn = noisy_copies(read[train], y[train], copies, rng) if copies else (X[train], y[train])
        Xn[:, masked] = np.nan
        methods = []
        if with_published:
            pub = PublishedBinnedMLP(epochs=epochs, noisy_copies=copies, random_state=args.seed)
            methods.append(("published (re-impl.)", pub,
                            lambda m: m.fit(X[train], y[train], axis=axis)))
        methods += [(method, model, (lambda m: m.fit(X[train], y[train], axis=axis)
                                     .mask_points(later))
                     if method == "BinnedSpectraClassifier" else (lambda m: m.fit(Xn, yn)))
                    for method, model in contenders(args)]
        for method, model, fit in methods:
            _, t_fit = timed(fit, model)
            pred, pred_p = model.predict(Xc[test]), model.predict(Xp[test])
            ok, ok_p = pred == y[test], pred_p == y[test]
            r = robust[test]
            rows.append((name, method, ok.mean(), ok_p.mean(),
                         ok[r].mean() - ok_p[r].mean() if r.any() else np.nan, t_fit,
                         f"{(~ok[~mixed]).sum()}/{(~ok[mixed]).sum()}"))
            models[(name, method)] = (model, confusion(y[test], pred, classes), test)
            if purity is not None:  # how mixed the mixtures each method misses are
                missed[(name, method)] = np.sort(purity[test][~ok & mixed])
    print(f"{'protocol':8s} {'method':26s} {'accuracy':>9s} {'strained':>9s} {'loss':>6s} "
          f"{'loss*':>6s} {'train s':>8s} {'errors':>7s}")
    for name, method, acc, acc_p, loss_r, t_fit, errors in rows:
        print(f"{name:8s} {method:26s} {100 * acc:8.2f}% {100 * acc_p:8.2f}% "
              f"{100 * (acc - acc_p):5.2f}p {100 * loss_r:5.2f}p {t_fit:8.2f} {errors:>7s}")
    print("('strained': +-1 % peak-position strain and +-30 % intensity; 'loss*': the loss "
          "on classes where strain is nuisance; 'errors': unstrained, on pure spectra / on "
          f"mixtures whose larger phase is below {100 * PURE:.0f} %"
          + (f", of {', '.join(sizes)} test spectra)" if purity is not None
             else ": unknown here)"))
    goals = []
    by = {(p, m): (a, ap, lr) for p, m, a, ap, lr, _, _ in rows}
    for p, floor in (("A", 0.95), ("B", 0.99)):
        clf, cm, test = models[(p, "BinnedSpectraClassifier")]
        a, _, loss_r = by[(p, "BinnedSpectraClassifier")]
        peers = max(by[(p, "LogisticRegression")][0], by[(p, "RandomForest")][0])
        met = a >= peers and a >= floor and not loss_r > 0.02
        goals.append(met)
        _, _, amb = clf.predict_with_confidence(Xc[test])
        pairs = [q["classes"] for q in clf.position_pairs_ if q["separated_by"] == "position"]
        print(f"protocol {p}: BinnedSpectraClassifier confusion (rows true {classes.tolist()}, "
              f"columns predicted):\n" + "\n".join("    " + " ".join(f"{v:4d}" for v in row)
                                                   for row in cm))
        print(f"    {len(clf.bins_)} bins, ambiguous {100 * amb.mean():.1f}% of test spectra, "
              f"position-separated pairs learnt {pairs}, copy strain scale "
              f"{np.round(clf.position_scale_, 2).tolist()}, strain aligned "
              f"{clf.strain_aligned_}{evidence(clf)}")
        if missed:
            print("    mixtures missed, their larger phase's fraction: " + " | ".join(
                f"{m.replace('SpectraClassifier', '')} "
                + (" ".join(f"{v:.2f}" for v in missed[(p, m)]) or "-")
                for m in ("BinnedSpectraClassifier", "LogisticRegression", "RandomForest")))
        print(f"    goal: >= peers ({100 * peers:.2f}%) and >= {100 * floor:.0f}% and loss* <= 2p: "
              f"{'MET' if met else 'NOT MET'}")
    return rows, models, goals


def protocol_c_split(y, sparse):
    """Protocol C: protocol B (every 5th curve labelled) with class
    ``sparse`` keeping one in six of its labels; ``(train, test)`` indices,
    the test being every curve B does not label."""
    labelled = np.arange(0, len(y), 5)
    kept = labelled[y[labelled] == sparse][::6]
    train = np.sort(np.concatenate([labelled[y[labelled] != sparse], kept]))
    return train, np.setdiff1d(np.arange(len(y)), labelled)


def imbalanced(series, args):
    """Protocol C (:func:`protocol_c_split`) for each class in turn. Prints
    each method's accuracy and its recall of the sparse class."""
    title, X, y, axis = series[:4]
    labelled = np.arange(0, len(X), 5)
    print(f"\n=== {title}, protocol C: accuracy / recall of the sparse class, goal >= peers")
    for sparse in np.unique(y):
        train, test = protocol_c_split(y, sparse)
        line, scores = [], {}
        for method, model in contenders(args):
            model.fit(X[train], y[train], **({"axis": axis} if method == "BinnedSpectraClassifier" else {}))
            ok = model.predict(X[test]) == y[test]
            scores[method] = ok.mean()
            line.append(f"{method.replace('SpectraClassifier', '')} {100 * ok.mean():6.2f}% / "
                        f"{100 * ok[y[test] == sparse].mean():6.2f}%")
        met = scores["BinnedSpectraClassifier"] >= max(scores["LogisticRegression"], scores["RandomForest"])
        print(f"  class {sparse} ({(y[train] == sparse).sum()} of {(y[labelled] == sparse).sum()} labels): "
              + " | ".join(line) + f"  {'MET' if met else 'NOT MET'}")


def evidence(clf):
    """What "auto" decided the alignment on: the change of the class pairs'
    held-out best-window separability when aligned (least, most)."""
    if getattr(clf, "alignment_evidence_", None) is None:
        return ""
    from server_ext.spectra.align import pair_changes

    change = pair_changes(*clf.alignment_evidence_)
    return f" (aligned, pair separability {change.min():+.3f} to {change.max():+.3f})"


def worst_case_models(n_points, seed, align_strain="auto"):
    """Models that keep as many bins as the estimator allows, trained on the
    ``pattern`` powder series (three structures: informative everywhere):
    the 15 equal bins, and 32 segments per bin with up to 30 overlapping
    bins. Few epochs: the speed does not depend on the weights' values."""
    from server_ext.spectra import BinnedSpectraClassifier
    from server_ext.spectra.synthetic import make_powder_series

    s = make_powder_series("pattern", n_spectra=360, n_points=n_points, axis_kind="q",
                           random_state=seed)
    train = np.arange(0, len(s.X), 5)
    out = []
    for label, params in (("15 fixed bins", dict(bin_placement="fixed")),
                          ("32 segments/bin, up to 30 bins",
                           dict(segments_per_bin=32, max_bins=30, max_overlap=0.9))):
        clf = BinnedSpectraClassifier(random_state=seed, epochs=5, align_strain=align_strain,
                                      **params)
        out.append((label, clf.fit(s.X[train], s.y[train], axis=s.axis)))
    return out


def stress_plans(clf, rng):
    """Inference plans on ``clf``'s geometry with every candidate bin kept
    and random weights (4 classes): more bins than any fit keeps, the cost
    ceiling; unaligned, and aligned with the strain templates of the
    ``pattern`` series. ``(label, plan)``."""
    from server_ext.spectra.align import StrainAligner
    from server_ext.spectra.fused import FusedVote
    from server_ext.spectra.inference import InferencePlan
    from server_ext.spectra.preprocess import SegmentPreprocessor
    from server_ext.spectra.synthetic import make_powder_series

    s = make_powder_series("pattern", n_spectra=90, n_points=clf.n_features_in_, axis_kind="q",
                           random_state=0)
    out = []
    for n_bins, per_bin, hidden in ((15, 16, 16), (30, 16, 16), (15, 32, 16)):
        prep = SegmentPreprocessor(clf.n_features_in_, n_bins * per_bin, per_bin)
        starts = np.arange(n_bins) * per_bin
        fused = FusedVote(starts[:, None] + np.arange(per_bin),
                          rng.normal(0, 1, (n_bins, per_bin, hidden)),
                          rng.normal(0, 1, (n_bins, hidden)),
                          rng.normal(0, 1, (n_bins, hidden, 4)), rng.normal(0, 1, (n_bins, 4)),
                          np.ones(n_bins))
        label = f"{n_bins} bins x {per_bin} segments, 4 classes (random weights)"
        out.append((label, InferencePlan(prep, fused)))
        aligner = StrainAligner.fit(prep, s.X, s.y, 3, s.axis, 0.025)
        out.append((label + ", aligned", InferencePlan(prep, fused, aligner)))
    return out


def file_predictions(clf, label, batch, files):
    """``(key, shown, fn)`` for :func:`inference_speed`: ``batch`` written to
    an HDF5 file (removed when ``files`` closes), read a block at a time as
    ``predict_file`` reads it -- bare, and classified by ``clf``."""
    import tempfile

    import h5py

    from server_ext.spectra.file_predictions import BLOCK_BYTES, predict_file

    path = os.path.join(files.enter_context(tempfile.TemporaryDirectory()), "batch.h5")
    with h5py.File(path, "w") as f:
        f["spectra"] = batch
    block = max(1, BLOCK_BYTES // batch[0].nbytes)

    def read(_):
        with h5py.File(path, "r") as f:
            for start in range(0, len(batch), block):
                f["spectra"][start:start + block].sum(1)

    def predict(_):
        for _ in predict_file(clf, path):
            pass

    return [("file read", f"the batch read from an HDF5 file, {block} rows a block (h5py, X.sum(1))", read),
            ("predict_file", f"predict_file (daas spectra predict) on that file, {label}", predict)]


def inference_speed(cases, plans, X, repeats=3):
    """Spectra per second of ``predict`` for each fitted model in ``cases``
    and of the inference core (``InferencePlan.score``) of each stress plan,
    on a 27,000-spectrum batch, in rounds (every case once per round, so the
    machine's load drifts alike for all), beside a bare pass over the data.
    Returns ``{label: median rate}``."""
    from threadpoolctl import threadpool_info

    batch = np.ascontiguousarray(X[np.random.default_rng(1).integers(0, len(X), EUXFEL_MAX)])
    blas = [f"{i['internal_api']} {i.get('version')} kernel {i.get('architecture')} "
            f"threads {i['num_threads']}" for i in threadpool_info()]
    print(f"\ninference on a {EUXFEL_MAX}-spectrum batch of {X.shape[1]} points (BLAS: "
          f"{'; '.join(blas)}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}; "
          f"{repeats} rounds, median):")
    bare = "one pass over the data (X.sum(1), 1 thread)"
    # (key, shown, fn); the keys of predict are the cases' labels
    fns = [(label, f"predict, {label}: {len(clf.bins_)} bins x {clf.segments_per_bin_} "
            f"segments, {len(clf.classes_)} classes", clf.predict) for label, clf in cases]
    fns += [("predict_with_confidence", f"predict_with_confidence, {cases[0][0]}",
             cases[0][1].predict_with_confidence)]
    from server_ext.spectra import evaluate

    first = cases[0][1]
    labels = first.predict(batch)  # as the labels: counting costs the same whatever they are
    fns += [("evaluate", f"evaluate (confusion, each bin's vote), {cases[0][0]}",
             lambda Z: evaluate(first, Z, labels[:len(Z)]))]
    # the batch as a file daas spectra predict reads: each call classifies all of it, whatever Z;
    # the file (434 MB) removed however the rounds end, Ctrl-C too
    with contextlib.ExitStack() as files:
        fns += file_predictions(first, cases[0][0], batch, files)
        fns += [(f"core {label}", f"core, {label}", plan.score) for label, plan in plans]
        fns += [(bare, bare, lambda Z: Z.sum(1))]
        rates = {key: [] for key, _, _ in fns}
        cpu_rates = {key: [] for key, _, _ in fns}
        for _ in range(repeats):
            for key, _, fn in fns:
                rates[key].append(rate(fn, batch, 1.0, cpu_rates[key]))
    out = {key: float(np.median(r)) for key, r in rates.items()}
    per_cpu = {key: float(np.median(r)) for key, r in cpu_rates.items()}
    print(f"  {'':78s} {'spectra/s':>9s}   {'EuXFEL':>6s}  {'/bare':>5s}  {'per CPU-s':>9s}  "
          f"(each round's spectra/s)")
    for key, shown, _ in fns:
        print(f"  {shown:78s} {out[key]:9.0f}  x{out[key] / EUXFEL_MAX:5.1f}  "
              f"x{out[key] / out[bare]:4.2f}  {per_cpu[key]:9.0f}  "
              f"({', '.join(f'{r:.0f}' for r in rates[key])})")
    from server_ext.spectra.classifier import BinnedSpectraClassifier, auto_segments_per_bin

    most = BinnedSpectraClassifier().n_bins
    width = auto_segments_per_bin(X.shape[1], most)
    default = [f"core {label}" for label, plan in plans
               if plan.width == width and plan.n_bins <= most]
    default += [label for label, clf in cases
                if clf.segments_per_bin_ == width and clf.max_bins is None]
    slowest = min(default, key=out.get)
    print(f"  slowest with the default geometry ({width} segments per bin, at most {most} bins), "
          f"stress plans included: {out[slowest]:.0f}/s ({slowest}; goal >= {10 * EUXFEL_MAX}: "
          f"{'MET' if out[slowest] >= 10 * EUXFEL_MAX else 'NOT MET'} in this run)")
    worst = min(out[label] for label, _ in cases)
    worst_cpu = min(per_cpu[label] for label, _ in cases)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"  slowest predict: {worst:.0f}/s (goal >= {10 * EUXFEL_MAX}: "
          f"{'MET' if worst >= 10 * EUXFEL_MAX else 'NOT MET'} in this run); it costs "
          f"{1e6 / worst_cpu:.1f} us of CPU per spectrum: {cores} idle cores would give "
          f"~{cores * worst_cpu:.0f}/s ('per CPU-s' is little affected by other load, "
          f"spectra/s much)")
    return out


def arguments():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one seed per layout, fewer epochs "
                    "for the published method (100) and a shorter stream (9 rounds of 30 "
                    "trains instead of 21 of 60)")
    ap.add_argument("--kind", default="both", choices=["intensity", "shift", "both"],
                    help="what changes at the original synthetic transition")
    ap.add_argument("--data", help=".npz with X (n, points), y (n,) ordered along the "
                    "series, optional axis: benchmark on external data instead")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", metavar="TEXT", help="only the series whose title "
                    "contains one of these, e.g. \"'weak'\" or shift-net")
    ap.add_argument("--skip-stream", action="store_true", help="no streaming measurement")
    ap.add_argument("--variants", action="store_true", help="also the series of VARIANTS: "
                    "other axes, sizes, noise, drift and a layout of three classes of one "
                    "structure (use with --only variant to run only them)")
    ap.add_argument("--physics", action="store_true", help="also the series of PHYSICS: "
                    "powder patterns from an independent generator (powder_physics.py): "
                    "tetragonal -> cubic -> cubic in a larger cell, a pressure transition, "
                    "superlattice ordering and a tetragonal distortion, four cells (use with "
                    "--only physics to run only them)")
    ap.add_argument("--extra", action="store_true", help="also the series of EXTRA and "
                    "EXTRA_PHYSICS: five and two classes, 1,000 and 8,000 points, a 0.5 %% "
                    "cell step, the independent physics at 2,000 points or a tenth of the "
                    "counts (use with --only extra to run only them)")
    ap.add_argument("--imbalanced", action="store_true", help="also protocol C: protocol B "
                    "with one class labelled at a sixth of the others' rate, each class in turn")
    ap.add_argument("--align-strain", default="auto", choices=("auto", "true", "false"),
                    help="BinnedSpectraClassifier(align_strain=...) (default auto, the "
                    "estimator's)")
    ap.add_argument("--link-gbps", type=float, default=10.0, help="after the unpaced "
                    "streaming rounds, a few with the server paced to a network link of this "
                    "many Gb/s (0: none)")
    ap.add_argument("--speed-only", action="store_true", help="only inference speed and "
                    "streaming, with a protocol-B model of the first series")
    ap.add_argument("--serve", nargs=5, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.align_strain = {"true": True, "false": False}.get(args.align_strain, args.align_strain)
    return args


def accuracy(args):
    """Every series' table and goals; the protocol-B model of the first
    series and its spectra, ``(X, model)`` (with ``--speed-only`` only
    that model, fitted)."""
    series = series_list(args)
    if not series:
        raise SystemExit(f"no series matches --only {' '.join(args.only or [])}")
    if args.speed_only:
        from server_ext.spectra import BinnedSpectraClassifier

        X, y, axis = series[0][1:4]
        train = np.arange(0, len(X), 5)
        clf = BinnedSpectraClassifier(random_state=args.seed, align_strain=args.align_strain)
        return X, clf.fit(X[train], y[train], axis=axis)
    all_goals = {}
    first = None
    for one in series:
        # the published method (700 full-batch epochs per bin) on the original series only
        _, models, goals = run_series(one, args, with_published=one.title.startswith("transition"))
        all_goals[one.title] = goals
        if first is None:
            first = (one.X, models[("B", "BinnedSpectraClassifier")][0])
    if args.imbalanced:
        for one in series:
            imbalanced(one, args)
    print("\ngoals (>= LogisticRegression and RandomForest, >= 95 % A / 99 % B, strain loss "
          "<= 2 points where strain is nuisance), protocols A, B:")
    for title, goals in all_goals.items():
        print(f"  {title:45s} {'  '.join('MET' if g else 'NOT MET' for g in goals)}")
    return first


def round_line(r):
    """One streaming round: each stream's rate against the bare client's,
    with the CPU it took per train."""
    st = r["classified"]
    return (f"bare {r['bare']:6.0f}/s ({1e3 * r['bare_cpu']:.0f} ms CPU/train, "
            f"server {1e3 * r['bare_server_cpu']:.0f} ms) | no classification "
            f"x{r['machinery'] / r['bare']:.2f} ({1e3 * r['machinery_cpu']:.0f} ms) | read once "
            f"x{r['read_once'] / r['bare']:.2f} ({1e3 * r['read_once_cpu']:.0f} ms) | classified "
            f"{st['spectra_per_s']:6.0f}/s = x{st['spectra_per_s'] / r['bare']:.2f} "
            f"({1e3 * r['classified_cpu']:.0f} ms CPU/train), p50 {st['p50_ms']:.0f} ms "
            f"p99 {st['p99_ms']:.0f} ms, trains {st['trains']}, dropped {st['dropped']}, "
            f"gaps {st['gaps']} | kept in a file x{r['kept'] / st['spectra_per_s']:.2f} of it")


def streaming(clf, X, args, rates):
    """The streaming part: bare client, stream without classification,
    reading once and classified, in rounds, for REQ/REP and PUSH/PULL;
    then a few rounds with the server paced to ``--link-gbps``."""
    # short runs, many rounds: the load of a shared machine drifts within seconds
    n_trains, pairs = (30, 9) if args.quick else (60, 21)
    print(f"\nstreaming (Karabo bridge over loopback, one server in another process, "
          f"{pairs} rounds of {n_trains} trains x 2,700 pulses x {X.shape[1]} points each: the "
          f"bare client, the stream without classification, the stream that only reads each "
          f"train once (X.sum: the least a classifier does), the classified stream, the "
          f"classified stream keeping every pulse's result in a file, in turn; "
          f"protocol-B model of the first series):")
    cost = classify_cost(clf, X)
    print(f"  classify_batch alone, one train: {1e3 * cost[0]:.1f} ms CPU, {1e3 * cost[1]:.1f} ms "
          f"wall")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    med = lambda runs, key: np.median([r[key] for r in runs])  # noqa: E731
    for push, label in ((False, "REQ/REP (bridge default)"), (True, "PUSH/PULL (pipelined)")):
        runs = stream_comparison(clf, n_trains, pairs, 2700, args.seed, push)
        for r in runs:
            print(f"  {label}: {round_line(r)}")
        ratio = np.median([r["classified"]["spectra_per_s"] / r["bare"] for r in runs])
        kept = np.median([r["kept"] / r["classified"]["spectra_per_s"] for r in runs])
        machinery = np.median([r["machinery"] / r["bare"] for r in runs])
        read_once = np.median([r["read_once"] / r["bare"] for r in runs])
        ceiling = np.median([cpu_ceiling(r, cost[0], 2700, cores) for r in runs])
        print(f"    median of {pairs} rounds: classified x{ratio:.2f} the bare receive (goal >= "
              f"0.95: {'MET' if ratio >= 0.95 else 'NOT MET'}), without classification "
              f"x{machinery:.2f}, reading each train once x{read_once:.2f}; CPU per train "
              f"(this process, all threads) {1e3 * med(runs, 'bare_cpu'):.0f} / "
              f"{1e3 * med(runs, 'machinery_cpu'):.0f} / {1e3 * med(runs, 'read_once_cpu'):.0f} / "
              f"{1e3 * med(runs, 'classified_cpu'):.0f} ms; x{ratio * med(runs, 'bare') / EUXFEL_MAX:.2f} "
              f"the EuXFEL maximum; predict alone x{rates['first series'] / EUXFEL_MAX:.1f}; "
              f"keeping every pulse's result in a file (ResultsFile) x{kept:.2f} the classified "
              f"stream ({1e3 * med(runs, 'kept_cpu'):.0f} ms CPU per train, "
              f"{med(runs, 'kept_bytes_per_pulse'):.1f} bytes a pulse on disk)")
        wall = 2700 / med(runs, "bare")  # seconds per train, bare
        transport = med(runs, "bare_cpu") + med(runs, "bare_server_cpu")
        print(f"    CPU bound: the bare rounds keep {cores} cores {100 * transport / (cores * wall):.0f} % "
              f"busy (client {1e3 * med(runs, 'bare_cpu'):.0f} + server "
              f"{1e3 * med(runs, 'bare_server_cpu'):.0f} ms CPU per train); adding the "
              f"classification's {1e3 * cost[0]:.1f} ms leaves at best x{ceiling:.2f}; x0.95 "
              f"needs a classification of at most "
              f"{1e3 * max(0.0, cores * wall / 0.95 - transport):.1f} ms CPU per train here")
    if args.link_gbps:
        link = args.link_gbps * 1e9 / 8
        runs = stream_comparison(clf, n_trains, max(3, pairs // 3), 2700, args.seed, False, link)
        ratio = np.median([r["classified"]["spectra_per_s"] / r["bare"] for r in runs])
        print(f"  a server paced to a {args.link_gbps:g} Gb/s link (REQ/REP; not the goal's "
              f"measurement, which lets the server go as fast as it can on the same cores): "
              f"bare {med(runs, 'bare'):6.0f}/s, classified x{ratio:.2f}, dropped "
              f"{sum(r['classified']['dropped'] for r in runs)} trains in {len(runs)} rounds")



def main():
    args = arguments()
    if args.serve:
        return serve(*args.serve)

    from server_ext.spectra.networks import keras_module

    from server_ext.spectra.preprocess import bridge_points

    keras_module()  # TensorFlow import time is not training time
    X, clf = accuracy(args)
    # the speed's other models know nothing of the first series' masked points (NaN)
    X = bridge_points(X, np.flatnonzero(~np.isfinite(X).any(0)))
    cases = [("first series", clf)] + worst_case_models(X.shape[1], args.seed, args.align_strain)
    rates = inference_speed(cases, stress_plans(clf, np.random.default_rng(args.seed)), X)
    if not args.skip_stream:
        streaming(clf, X, args, rates)


if __name__ == "__main__":
    sys.exit(main())
