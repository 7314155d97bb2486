"""Results file benchmark: the gzipped columns against raw ones, same run.

A classified stream keeps every pulse's result (``ResultsFile``); this
writes a transition series' real classifier output -- trains of 2,700
pulses walking through the transitions, three classes -- through
``ResultsFile(compress=True)`` and ``compress=False`` in turn, a flush
every 10 trains (once a second at 10 Hz), and prints the CPU per train
and the bytes a pulse on disk of each, and their ratios. No goal: it
says what keeping the results costs at the facility's rate.

Usage: .venv/bin/python benchmarks/results_file.py [--quick] [--trains 60] [--repeat 3]
       [--classes 3]
"""

import argparse
import os
import tempfile
import time

import numpy as np

from server_ext.spectra import BinnedSpectraClassifier, ResultsFile
from server_ext.spectra.stream import TrainResult
from server_ext.spectra.synthetic import make_transition_series

PULSES = 2700
EUXFEL_TRAINS_PER_S = 10


def classified_trains(n_trains, n_classes, seed):
    """The classifier's results for ``n_trains`` trains, each of spectra
    around one point of the series, from the first phase to the last."""
    s = make_transition_series(n_spectra=400, n_points=2010, n_phases=n_classes,
                               random_state=seed)
    clf = BinnedSpectraClassifier(random_state=seed).fit(s.X[::5], s.y[::5], axis=s.axis)
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n_trains):
        centre = int(len(s.X) * t / n_trains)
        idx = np.clip(centre + rng.integers(-20, 20, PULSES), 0, len(s.X) - 1)
        X = s.X[idx] * (1 + 0.02 * rng.standard_normal((PULSES, 1)))
        i, conf, amb, ok, proba = clf.classify_batch(X, return_proba=True)
        out.append(TrainResult(1_000_000_000 + t, np.flatnonzero(ok), clf.classes_[i], conf,
                               amb, int((~ok).sum()), 0.0, proba))
    return clf.classes_, out


def write(path, classes, trains, compress):
    """CPU seconds per train of ``add`` and the flushes, and bytes a pulse."""
    cpu = 0.0
    writer = ResultsFile(path, classes, flush_s=3600, compress=compress)
    for i, train in enumerate(trains, 1):
        t0 = time.process_time()
        writer.add(train)
        if i % EUXFEL_TRAINS_PER_S == 0:
            writer.flush()
        cpu += time.process_time() - t0
    writer.close("finished")
    return cpu / len(trains), os.path.getsize(path) / sum(len(t.pulses) for t in trains)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trains", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="20 trains")
    args = ap.parse_args()
    if args.quick:
        args.trains = 20
    classes, trains = classified_trains(args.trains, args.classes, args.seed)
    ambiguous = np.mean(np.concatenate([t.ambiguous for t in trains]))
    print(f"{args.trains} trains x {PULSES} pulses, {len(classes)} classes "
          f"({100 * ambiguous:.1f} % ambiguous), a flush every {EUXFEL_TRAINS_PER_S} trains; "
          f"{args.repeat} writes each, alternating, median:")
    runs = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for compress in (False, True):
                path = os.path.join(tmp, f"{compress}-{r}.h5")
                runs[compress].append(write(path, classes, trains, compress))
    med = {c: np.median(np.array(v), axis=0) for c, v in runs.items()}
    for compress, label in ((False, "raw"), (True, "gzip 1 (default)")):
        cpu, size = med[compress]
        print(f"  {label:17s} {1e3 * cpu:6.2f} ms CPU per train, {size:5.1f} bytes a pulse, "
              f"{100 * cpu * EUXFEL_TRAINS_PER_S:.2f} % of a core and "
              f"{size * PULSES * EUXFEL_TRAINS_PER_S * 3600 / 1e9:.2f} GB an hour at "
              f"{PULSES * EUXFEL_TRAINS_PER_S:,} pulses/s")
    print(f"  gzip against raw: CPU x{med[True][0] / med[False][0]:.2f}, "
          f"size x{med[True][1] / med[False][1]:.2f}")


if __name__ == "__main__":
    main()
