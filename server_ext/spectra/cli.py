"""``daas spectra train|info|evaluate|predict|classify|results``.

::

    daas spectra train spectra.nxs --labels low=0:20 high=300:349 -o model.spectra
    daas spectra train RUN_DIR --source SRC:output --key data.intensity \\
        --labels low=1200000000:1200000040 high=1200000160:1200000200 -o model.spectra
    daas spectra info model.spectra
    daas spectra evaluate --model model.spectra later.nxs --labels low=0:500 high=900:1400
    daas spectra predict --model model.spectra later.nxs -o labels.csv
    daas spectra classify --model model.spectra --source tcp://127.0.0.1:4545
    daas spectra classify --model model.spectra --run RUN_DIR --source-name SRC:output \\
        -o labels.h5
    daas spectra results labels.h5 --label high --min-confidence 0.9 --ids high.csv
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time


PURITY_HELP = ("a train is in a phase when its class holds at least this fraction of the "
               "train's pulses, else 'mixed'")


def register(subparsers):
    p = subparsers.add_parser("spectra", help="train and run the streaming spectra classifier",
                              description="Train the spectra classifier on labelled spectra, look "
                                          "into a model, score it\non other labelled spectra, "
                                          "classify a Karabo bridge or a replayed run, and\nread "
                                          "the results file (a start from the demo run: "
                                          "server_ext/spectra/README.md).",
                              epilog="examples:" + __doc__.split("::")[1].rstrip(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="spectra_command", metavar="ACTION", required=True)

    t = sub.add_parser("train", help="train a classifier from labelled spectra",
                       description="Fit a classifier to labelled spectra of a file or a run and "
                                   "save it as a model directory; print its bins, each one's "
                                   "held-out accuracy and weight, and what training found.")
    _labelled_data_arguments(t)
    t.add_argument("-o", "--output", required=True, help="model directory to write")
    t.add_argument("--n-bins", type=int, default=15,
                   help="bins the spectrum is cut into, of equal width; the most networks kept "
                        "(default %(default)s)")
    t.add_argument("--placement", choices=["adaptive", "fixed"], default="adaptive",
                   help="adaptive (default): bins may start every quarter bin, following where the "
                        "classes differ; fixed: the equal bins only")
    t.add_argument("--seed", type=int, default=0,
                   help="of the training copies, folds and networks: the same labelled spectra and "
                        "seed train the same model (default %(default)s)")
    t.add_argument("--max-per-class", type=int, default=256, metavar="N",
                   help="read and use at most N labelled spectra per class, drawn at random from a "
                        "file's rows or evenly from a run's trains (default %(default)s; 0: all)")
    t.add_argument("--position-nuisance", action="store_true",
                   help="the classes do not differ by cell: never learn a difference of peak "
                        "position between them (learn_position=False); for labelled curves "
                        "whose thermal drift passes for one, see the line 'classes told apart "
                        "by peak position' after training")
    t.add_argument("--fixed-range", nargs="+", default=[], metavar="LOW:HIGH",
                   help="axis ranges (point indices without an axis; ends included) holding "
                        "features that do not move with the sample: a peak of the sample "
                        "environment (fixed_ranges; hot and dead pixels are found without it)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model")
    t.set_defaults(func=train)

    i = sub.add_parser("info", help="what a saved model is: its classes, bins, what training found",
                       description="Print what a model directory holds (from 'daas spectra train', or "
                                   "the server's): its classes and spectra, where its labelled spectra "
                                   "came from, each bin's held-out accuracy and weight, and what "
                                   "training found besides.")
    i.add_argument("model", help="model directory")
    i.add_argument("--json", action="store_true",
                   help="the same as JSON (the server's model summary, with the axis and where the "
                        "labelled spectra came from)")
    i.set_defaults(func=info)

    e = sub.add_parser("evaluate", help="score a model on labelled spectra it was not trained on",
                       description="Classify labelled spectra -- another run, a later ramp -- and "
                                   "print the accuracy, the confusion matrix, what the ambiguous "
                                   "flag caught, and each bin's accuracy beside its accuracy at "
                                   "training.")
    e.add_argument("--model", required=True, help="model directory from 'daas spectra train'")
    _labelled_data_arguments(e)
    e.add_argument("--max-per-class", type=int, default=0, metavar="N",
                   help="read at most N labelled spectra per class, drawn at random from a file's "
                        "rows or evenly from a run's trains (default %(default)s: all)")
    e.add_argument("--seed", type=int, default=0, help="of that drawing (default %(default)s)")
    e.add_argument("--mask-points", metavar="POINTS",
                   help="point indices the detector masks (NaN) or reads wrongly since the model was "
                        "trained, e.g. 700,1000-1039: bridged over, as classify bridges them")
    e.add_argument("--errors", metavar="OUT.csv",
                   help="write the spectra predicted otherwise than labelled, or not classified, to a "
                        "new CSV file: row (a file) or train_id,pulse (a run), labelled, predicted, "
                        "confidence, ambiguous -- the ones to look at")
    e.add_argument("--json", action="store_true", help="print the counts as JSON, for a script")
    e.set_defaults(func=evaluate)

    p = sub.add_parser("predict", help="classify every spectrum of a file",
                       description="Classify every spectrum of an HDF5/NeXus file (the files train and "
                                   "evaluate read) a block of rows at a time, print the spectra per "
                                   "class, and write each one's label to a CSV file with -o.")
    p.add_argument("--model", required=True, help="model directory from 'daas spectra train'")
    p.add_argument("data", help="HDF5/NeXus file with a spectra array")
    p.add_argument("--dataset", help="spectra dataset in the file (default: the NeXus default signal, or "
                                     "the only 2-D dataset)")
    p.add_argument("--axis-dataset", help="axis (e.g. 2-theta) dataset in the file, where its grid is not "
                                          "the model's (default: the NeXus axis, where the model has one)")
    p.add_argument("--mask-points", metavar="POINTS",
                   help="point indices the detector masks (NaN) or reads wrongly since the model was "
                        "trained, e.g. 700,1000-1039: bridged over, as classify bridges them")
    p.add_argument("-o", "--output", metavar="OUT.csv",
                   help="write every spectrum's row, label, confidence, ambiguous flag and each class's "
                        "probability to a new CSV file (not classified: empty fields), named once whole")
    p.add_argument("--json", action="store_true", help="print the counts as JSON, for a script")
    p.set_defaults(func=predict)

    c = sub.add_parser("classify", help="classify a stream and print rolling counters",
                       description="Classify every pulse of a Karabo bridge or a replayed run as "
                                   "trains come, print rolling counters and the phases (runs of "
                                   "trains of one class) until the source ends or Ctrl-C, and keep "
                                   "every pulse's label with -o.")
    c.add_argument("--model", required=True, help="model directory from 'daas spectra train'")
    where = c.add_mutually_exclusive_group(required=True)
    where.add_argument("--source", metavar="tcp://HOST:PORT", help="Karabo bridge endpoint")
    where.add_argument("--run", metavar="RUN_DIR", help="EuXFEL run to replay")
    c.add_argument("--source-name", help="data source (run: required; bridge: default the "
                                         "first carrying --key)")
    c.add_argument("--key", default="data.intensity", help="spectra key (default %(default)s)")
    c.add_argument("--train-rate", type=_above_zero(float),
                   help="run: replay at this many trains/s (default as fast as possible)")
    c.add_argument("--train-ids", type=_train_span, metavar="FIRST-LAST",
                   help="run: replay only the trains with an id from FIRST to LAST, both included "
                        "(FIRST- or -LAST: open; one id: that train)")
    c.add_argument("--timeout", type=_above_zero(float), default=5.0,
                   help="bridge: reconnect after this many seconds without data "
                        "(default %(default)s)")
    c.add_argument("--max-reconnects", type=_reconnects, default=5, metavar="N|forever",
                   help="bridge: give up (exit 2) after N reconnections in a row without "
                        "data (default %(default)s); 'forever' waits until Ctrl-C")
    c.add_argument("--overflow", choices=["drop-oldest", "block"],
                   help="when classifying falls behind: drop the oldest waiting train "
                        "(counted as dropped; default for a bridge or a paced replay) or "
                        "read the source more slowly, losing nothing (default otherwise)")
    c.add_argument("--max-trains", type=_above_zero(int),
                   help="stop after this many trains received (classified + dropped)")
    c.add_argument("--interval", type=float, default=1.0,
                   help="seconds between counter lines (default %(default)s)")
    c.add_argument("--mask-points", metavar="POINTS",
                   help="point indices the detector masks (NaN) or reads wrongly since the "
                        "model was trained, e.g. 700,1000-1039: bridged over in every "
                        "spectrum, as fit bridges points masked in the labelled spectra "
                        "(the model on disk is not changed)")
    c.add_argument("--axis", metavar="FILE[:/DATASET]",
                   help="the positions of the detector's points, where its grid, range or "
                        "wavelength is not the model's: numbers in a text or .npy file, or an "
                        "HDF5/NeXus dataset (without :/DATASET, the axis of the file's NeXus "
                        "default data); the spectra are interpolated at the model's positions")
    c.add_argument("--axis-key", metavar="KEY",
                   help="the key holding the positions of the points, sent with each train's "
                        "spectra (e.g. an azimuthal integration's 2-theta): each train read "
                        "through its own; a train without it, or with one that cannot be read "
                        "through, is rejected whole and counted")
    c.add_argument("--axis-source", metavar="SOURCE",
                   help="the data source of --axis-key (default: the spectra's)")
    c.add_argument("--purity", type=float, default=0.9, metavar="F",
                   help=PURITY_HELP + " (default %(default)s): the phases printed")
    c.add_argument("-o", "--output", metavar="FILE.h5",
                   help="keep every pulse's label, confidence and ambiguity, and each train's "
                        "counts, in a new HDF5 file, written as they come (readable meanwhile, "
                        "SWMR) and kept however the stream ends (its 'state' attribute says how)")
    c.set_defaults(func=classify)

    r = sub.add_parser("results", help="summarise a results file and select pulses from it",
                       description="Print how a stream ended, its pulses per class and the phases "
                                   "of its trains, from the file 'classify -o' wrote; select pulses "
                                   "by class, confidence and ambiguity and write their ids.")
    r.add_argument("file", help="results file from 'daas spectra classify -o' (or the app's "
                                "results file); one still being written is read up to its last "
                                "flush")
    r.add_argument("--label", help="select the pulses of this class")
    r.add_argument("--min-confidence", type=_confidence, default=0.0, metavar="C",
                   help="select pulses with at least this confidence, from 0 to 1 (default "
                        "%(default)s)")
    r.add_argument("--unambiguous", action="store_true",
                   help="select pulses not flagged ambiguous")
    r.add_argument("--purity", type=float, metavar="F",
                   help=PURITY_HELP + " (default: the stream's, as kept in the file; 0.9 in "
                                      "one without)")
    r.add_argument("--ids", metavar="OUT.csv",
                   help="write the selected pulses' train_id,pulse to a new CSV file (a train without "
                        "an id: an empty field)")
    r.add_argument("--phases", metavar="OUT.csv",
                   help="write every run of trains' first_train,last_train,phase,n_trains to a "
                        "new CSV file (a train without an id: an empty field)")
    r.add_argument("--train-ids", type=_train_span, metavar="FIRST-LAST",
                   help="only the trains with an id from FIRST to LAST, both included, as the "
                        "phases print them (FIRST- or -LAST: open; one id: that train): a "
                        "temperature plateau, the part of a run after the sample moved")
    r.add_argument("--json", action="store_true",
                   help="print the summary as JSON (every run of trains, the selection, the lists "
                        "written), for a script")
    r.add_argument("--trains-per-block", type=_above_zero(int), default=1000, metavar="N",
                   help="read the file N trains at a time (default %(default)s: ~50 MB of "
                        "memory at 2,700 pulses a train)")
    r.set_defaults(func=results)


def _labelled_data_arguments(p):
    """Where labelled spectra are, for ``train`` and ``evaluate``."""
    p.add_argument("data", help="HDF5/NeXus file with a spectra array, or an EuXFEL run directory")
    p.add_argument("--labels", nargs="+", required=True, metavar="NAME=START:STOP",
                   help="labelled ranges (stop exclusive): rows of the spectra array for a "
                        "file, train IDs for a run; or @DATASET, a dataset of per-spectrum "
                        "labels in the file")
    p.add_argument("--dataset", help="spectra dataset in the file (default: the NeXus "
                                     "default signal, or the only 2-D dataset)")
    p.add_argument("--axis-dataset", help="axis (e.g. 2-theta) dataset in the file")
    p.add_argument("--source", help="run: data source holding the spectra")
    p.add_argument("--key", default="data.intensity", help="run: key of the spectra "
                                                           "(default %(default)s)")
    p.add_argument("--axis-key", help="run: key holding the spectra's axis, one array per "
                                      "train (e.g. twoTheta)")
    p.add_argument("--axis-source", help="run: data source of --axis-key (default --source)")


def _above_zero(kind):
    """An argparse type: a number of ``kind`` above 0 (NaN is not)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'} above 0, not {text!r}")
        return value
    return parse


def _confidence(text):
    """``--min-confidence``: :func:`.results_reader.checked_confidence`, an argparse error
    where it fails."""
    from .errors import SpectraError
    from .results_reader import checked_confidence

    try:
        return checked_confidence(float(text))
    except SpectraError as e:  # a ValueError too: caught first
        raise argparse.ArgumentTypeError(str(e)) from None
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, not {text!r}") from None


def _reconnects(text):
    if text == "forever":
        return None
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 or 'forever', not {text!r}")
    return n


def _train_span(text):
    """``--train-ids``: :func:`.train_span.parse_span`, an argparse error where it fails."""
    from .errors import SpectraError
    from .train_span import parse_span

    try:
        return parse_span(text)
    except SpectraError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def train(args):
    import numpy as np

    from .classifier import BinnedSpectraClassifier
    from .datafiles import labelled_from, load_labelled, located
    from .errors import SpectraError
    from .findings import model_summary

    if os.path.exists(args.output) and not args.overwrite:  # said before minutes of training, not after
        raise SpectraError(f"{args.output} exists; choose another path, or --overwrite to replace it")
    cap = args.max_per_class or None
    fixed = [_range(r) for r in args.fixed_range] or None
    X, y, axis, origins = load_labelled(args.data, args.labels, args.dataset, args.axis_dataset,
                                        args.source, args.key, max_per_label=cap,
                                        random_state=args.seed, return_origins=True,
                                        axis_source=args.axis_source, axis_key=args.axis_key)
    t0 = time.perf_counter()
    clf = BinnedSpectraClassifier(n_bins=args.n_bins, bin_placement=args.placement,
                                  random_state=args.seed, max_train_per_class=cap,
                                  learn_position=not args.position_nuisance,
                                  fixed_ranges=fixed)
    try:
        clf.fit(X, y, axis=axis)
    except SpectraError as e:
        raise located(e, origins) from None
    dt = time.perf_counter() - t0
    path = clf.save(args.output, overwrite=args.overwrite,
                    trained_on=labelled_from(args.data, args.labels, args.dataset, args.source, args.key))
    labels, counts = np.unique(np.asarray(y), return_counts=True)
    print(f"trained on {len(X)} spectra of {X.shape[1]} points{_on_axis(axis, ' ')}, classes "
          f"{', '.join(f'{c} ({n})' for c, n in zip(labels, counts))}, in {dt:.1f} s")
    _print_model(model_summary(clf, **_IN_OUR_WORDS))
    print(f"saved {path}")
    return 0


def _on_axis(axis, before: str) -> str:
    """``before`` + "on an axis from 10 to 90", or nothing for a model without an axis."""
    return "" if axis is None else f"{before}on an axis from {axis[0]:g} to {axis[-1]:g}"


# how findings tell a scientist to train otherwise: this command's options
_IN_OUR_WORDS = {"retrain": "train again with --position-nuisance",
                 "give_axis": "--axis-dataset (a file) or --axis-key (a run)"}


def _print_model(summary: dict) -> None:
    from .evaluation import columns
    from .findings import axis_span

    spans = summary.get("bins_on_axis")
    rows = [["bin (points)", *(["on the axis"] if spans else []), "held-out accuracy", "weight"]]
    for i, ((a, b), s, w) in enumerate(zip(summary["bins"], summary["separability"], summary["weights"])):
        rows.append([f"{a:.0f}-{b:.0f}", *([axis_span(spans[i])] if spans else []), f"{s:.3f}", f"{w:.3f}"])
    for line in columns(rows) + summary["findings"]:
        print(line)


def info(args):
    import json

    from .classifier import BinnedSpectraClassifier
    from .findings import model_summary

    clf = BinnedSpectraClassifier.load(args.model)
    axis, trained = clf.axis_, clf.trained_on_
    report = {"model": os.path.abspath(args.model), **model_summary(clf, **_IN_OUR_WORDS),
              "axis": None if axis is None else {"first": float(axis[0]), "last": float(axis[-1])},
              "trained_on": trained}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{report['model']}: classes {', '.join(report['classes'])}; spectra of {report['n_points']} "
          f"points{_on_axis(axis, ', ')}")
    if trained:
        where = (f", source {trained['source']} key {trained['key']}" if trained.get("source") else
                 f", dataset {trained['dataset']}" if trained.get("dataset") else "")
        print(f"trained on {trained['data']}{where}, labels {' '.join(trained['labels'])}")
    else:
        print("trained on: not recorded (saved before models kept it, or from Python without trained_on=)")
    _print_model(report)
    return 0


def evaluate(args):
    import json

    from .classifier import BinnedSpectraClassifier
    from .errors import SpectraError
    from .evaluation import evaluate_labelled
    from .inputs import parse_points, point_runs, unread_points

    if args.errors and os.path.exists(args.errors):
        raise SpectraError(f"{args.errors} exists; give another file, or remove it")
    clf = BinnedSpectraClassifier.load(args.model)
    if args.mask_points:
        clf.mask_points(parse_points(args.mask_points, "--mask-points"))
    result, X, origins, note = evaluate_labelled(
        clf, args.data, args.labels, args.dataset, args.source, args.key, axis_dataset=args.axis_dataset,
        max_per_label=args.max_per_class or None, random_state=args.seed, axis_source=args.axis_source,
        axis_key=args.axis_key)
    if args.errors:
        _write_mistaken(args.errors, result, origins)
    if args.json:
        print(json.dumps({"model": str(args.model), "data": str(args.data), "trained_here": note,
                          **result.report()}, indent=2))
        return 0
    print(f"{args.model} on {args.data}: {len(result.truth)} labelled spectra of "
          f"{len(set(result.truth.tolist()))} of its {len(clf.classes_)} classes")
    if note:
        print(f"note: {note}")
    for line in result.lines():
        print(line)
    unread = result.predicted < 0
    if unread.any() and X.shape[1] == clf.n_features_in_:  # on the model's points: nameable
        points = unread_points(X[unread], clf.bridged_points_)
        if points is not None and points.size:
            print(f"{point_runs(points)} NaN or inf in every spectrum not classified; if the detector "
                  f"masks them since training: --mask-points {point_runs(points, spec=True)}")
    if args.errors:
        print(_mistaken_written(len(result.mistaken), args.errors))
    return 0


def predict(args):
    import csv
    import json

    from .classifier import BinnedSpectraClassifier
    from .errors import SpectraError
    from .file_predictions import PredictionTally, predict_file
    from .inputs import parse_points

    if args.output and os.path.exists(args.output):  # said before the file is read, not after
        raise SpectraError(f"{args.output} exists; give another file, or remove it")
    clf = BinnedSpectraClassifier.load(args.model)
    if args.mask_points:
        clf.mask_points(parse_points(args.mask_points, "--mask-points"))
    names = [str(c) for c in clf.classes_]
    tally = PredictionTally(clf.classes_)
    with _written_whole(args.output) as f:
        out = f and csv.writer(f, lineterminator="\n")  # quotes a class name with a comma
        if out:
            out.writerow(["row", "label", "confidence", "ambiguous", *(f"p_{n}" for n in names)])
        for block in predict_file(clf, args.data, args.dataset, args.axis_dataset):
            tally.add(block)
            if out:
                out.writerows(_predicted_rows(block, names))
    report = {"model": str(args.model), "data": str(args.data), **tally.report(), "output": args.output}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.model} on {args.data}: {report['spectra']} spectra, {report['classified']} classified")
    for line in tally.lines():
        print(line)
    if args.output:
        print(f"wrote every spectrum's label, confidence, ambiguous flag and class probabilities to "
              f"{args.output}")
    return 0


def _predicted_rows(block, names):
    """``predict -o``'s CSV rows of one block: not classified, empty fields after the row."""
    for row, k, conf, amb, proba in zip(block.rows.tolist(), block.predicted.tolist(), block.confidence.tolist(),
                                        block.ambiguous.tolist(), block.probability.tolist()):
        if k < 0:
            yield [row, "", "", "", *([""] * len(names))]
        else:
            yield [row, names[k], f"{conf:.4f}", int(amb), *(f"{p:.4f}" for p in proba)]


def _mistaken_written(n, path):
    if not n:
        return f"every spectrum was classified as labelled: {path} holds the header only"
    what = "spectrum" if n == 1 else "spectra"
    return f"wrote the {n} {what} predicted otherwise than labelled, or not classified, to {path}"


def _write_mistaken(path, result, origins) -> None:
    """``evaluate --errors``: where each mistaken spectrum was read, its label, what was predicted."""
    import csv

    from .evaluation import mistaken_spectra

    rows = mistaken_spectra(result, origins)
    columns = (["train_id", "pulse"] if origins.trains is not None else ["row"]) + [
        "labelled", "predicted", "confidence", "ambiguous"]

    def cell(v):  # not classified: empty fields
        if v is None:
            return ""
        if isinstance(v, bool):
            return int(v)
        return f"{v:.4f}" if isinstance(v, float) else v

    with _written_whole(path) as f:
        out = csv.writer(f, lineterminator="\n")  # quotes a class name with a comma
        out.writerow(columns)
        out.writerows([cell(r[c]) for c in columns] for r in rows)


def _range(text):
    """``LOW:HIGH`` as a pair of numbers."""
    from .errors import SpectraError

    try:
        low, high = (float(v) for v in text.split(":"))
    except ValueError:
        raise SpectraError(f"--fixed-range {text!r}: give LOW:HIGH, two numbers on the axis")
    return low, high


def classify(args):
    from .classifier import BinnedSpectraClassifier
    from .datafiles import axis_source, read_axis, spectra_in
    from .errors import SpectraError
    from .inputs import parse_points, point_runs
    from .results import PhaseRuns, ResultsFile, phase_now, phases_line, train_text
    from .stream import SpectraStream
    from .train_span import span_text

    _check_purity(args.purity)
    clf = BinnedSpectraClassifier.load(args.model)
    if args.mask_points:
        points = parse_points(args.mask_points, "--mask-points")
        clf.mask_points(points)
        print(f"masked since training (bridged over in every spectrum): "
              f"{point_runs(sorted(set(points)))}")
    axis = None
    if args.axis and args.axis_key:
        raise SpectraError("give the detector's axis from a file (--axis) or with each train "
                           "(--axis-key), not both")
    if args.axis_source and not args.axis_key:
        raise SpectraError("--axis-source names where --axis-key is: give --axis-key")
    if args.axis:
        axis = read_axis(*axis_source(args.axis))
        clf.axis_plan(axis)  # refused now, saying why, if it cannot be read through
        print(f"spectra of {axis.size} points on the axis of {args.axis} ({axis[0]:.6g} to "
              f"{axis[-1]:.6g}), interpolated at the model's {clf.n_features_in_} positions")
    common = dict(source_name=args.source_name, key=args.key, max_trains=args.max_trains,
                  drop_oldest=None if args.overflow is None else args.overflow == "drop-oldest",
                  axis=axis, axis_key=args.axis_key, axis_source=args.axis_source)
    if args.run:
        if not args.source_name:
            raise SpectraError(f"replaying a run needs --source-name{spectra_in(args.run)}")
        stream = SpectraStream(clf, args.run, train_rate=args.train_rate, train_ids=args.train_ids,
                               **common)
    else:
        if args.train_ids:
            raise SpectraError("--train-ids selects the trains of a replayed run (--run); a bridge "
                               "sends the trains it has")
        stream = SpectraStream(clf, args.source, timeout=args.timeout,
                               max_reconnects=args.max_reconnects, **common)
    results = None
    if args.output:
        results = ResultsFile(args.output, clf.classes_, purity=args.purity, about={
            "model": args.model, "source": args.run or args.source,
            "source_name": args.source_name, "key": args.key,
            "train_ids": args.train_ids and span_text(*args.train_ids)})
    # the phase of each run of trains, also without a file (which keeps its own)
    phases = results.phase_runs if results is not None else PhaseRuns(clf.classes_, args.purity)
    ambiguous = 0
    last = time.perf_counter()
    tty = sys.stdout.isatty()
    shown = 0  # the length of the progress line on a terminal
    state, error = "failed", None
    # the summary is printed, and the results kept, however the stream ends: at
    # its end, on Ctrl-C (exit 130, as for any interrupted daas command), or on an error
    try:
        with stream:
            for result in stream:
                if results is not None:
                    results.add(result)
                else:
                    phases.add_result(result)
                ambiguous += int(result.ambiguous.sum())
                now = time.perf_counter()
                if now - last >= args.interval:
                    last = now
                    line = (f"train {train_text(result.train_id)}: {stream.stats.summary()}; "
                            f"{phase_now(phases.current(), len(phases.runs))}")
                    if tty:  # over a longer line before: blanks, not its tail
                        line, shown = line.ljust(shown), len(line)
                    print(line, end="\r" if tty else "\n", flush=True)
        state = "finished"
    except KeyboardInterrupt:
        state = "interrupted"
        print(("\n" if tty else "") + "interrupted", flush=True)
        tty = False
        return 130
    except Exception as e:
        error = str(e)
        raise
    finally:
        if results is not None:  # closed first: kept whatever the printing does
            results.close(state, error=error, stats=stream.stats.counters())
        print(("\n" if tty else "") + f"done: {stream.stats.summary()}")
        if stream.stats.dropped:
            print(f"dropped {stream.stats.dropped} of {stream.stats.received} trains received: "
                  "classifying fell behind the source (--overflow block reads it more slowly "
                  "instead)")
        if stream.stats.unreadable_axis:
            print(f"rejected {stream.stats.unreadable_axis} trains whole (their spectra counted "
                  f"malformed): their axis could not be read through; the last, "
                  f"{stream.stats.axis_error}")
        elif args.axis_key:
            print(f"each train read through its own axis ({args.axis_key})")
        unread = stream.stats.unread_points
        if unread:
            print(f"malformed {stream.stats.malformed} spectra: {point_runs(unread)} NaN or inf "
                  "in every one with NaN or inf (of the last train with such); if the detector "
                  f"masks them since training: --mask-points {point_runs(unread, spec=True)}")
        elif stream.stats.malformed and not stream.stats.unreadable_axis:
            print(f"malformed {stream.stats.malformed} spectra: NaN or inf at points the model "
                  "reads (or at every point: a pulse without data), or flat (no signal); "
                  "points the detector masks since training can be bridged with --mask-points")
        counts = {str(c): int(n) for c, n in zip(phases.classes, phases.counts) if n}
        print("labels: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
                            + f"; ambiguous={ambiguous}" if counts else "none: no spectrum classified"),
              flush=True)
        line = phases_line(phases.summary())
        if line:
            print(f"phases by train: {line}", flush=True)
        if results is not None:
            print(f"results of {results.pulses} pulses in {results.trains} trains: {args.output} "
                  f"({state})", flush=True)
    return 0


MAX_PHASE_LINES = 20


def _check_purity(purity: float) -> None:
    """Before anything is read or written: PhaseRuns would say so only then."""
    from .errors import SpectraError

    if not 0 < purity <= 1:
        raise SpectraError(f"--purity must be in (0, 1], not {purity:g}")


def results(args):
    import csv
    import json

    from .errors import SpectraError
    from .results_reader import iter_results

    if args.purity is not None:
        _check_purity(args.purity)
    selecting = args.label is not None or bool(args.min_confidence) or args.unambiguous
    if args.ids and not selecting:
        raise SpectraError("--ids writes the selected pulses: select with --label, "
                           "--min-confidence or --unambiguous")
    for out in (args.ids, args.phases):
        if out and os.path.exists(out):
            raise SpectraError(f"{out} exists; give another file, or remove it")
    if args.ids and args.phases and os.path.abspath(args.ids) == os.path.abspath(args.phases):
        raise SpectraError("--ids and --phases name the same file; give two")
    # block by block, the columns needed only: a beamtime's file holds 10^8 pulses and more
    blocks = iter_results(args.file, columns=("label", "confidence", "ambiguous")
                          + (("train_id", "pulse") if selecting else ()),
                          trains_per_block=args.trains_per_block)
    # both lists made aside before anything is read, named only once whole
    with _written_whole(args.ids) as ids, _written_whole(args.phases) as phases:
        if ids is not None:
            ids.write("train_id,pulse\n")
        tally = _tally(blocks, args, selecting, ids)
        if args.train_ids and not tally["trains"]:
            _no_train_between(args.file, args.train_ids)
        report = _report(args, tally, selecting)
        if phases is not None:
            out = csv.writer(phases, lineterminator="\n")  # quotes a class name with a comma
            out.writerow(("first_train", "last_train", "phase", "n_trains"))
            out.writerows(("" if a is None else a, "" if b is None else b, name, n)
                          for a, b, name, n in report["phases"])
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_results(report)
    if args.ids:
        print(f"wrote {tally['chosen']} rows to {args.ids}")
    if args.phases:
        print(f"wrote the {len(report['phases'])} runs of trains to {args.phases}")
    return 0


def _tally(blocks, args, selecting, ids) -> dict:
    """The summary of a results file read in blocks: per class the pulses
    (in ``runs``), the sum of their confidence and how many ambiguous; the
    phases by train; the pulses selected, written to ``ids`` as they come."""
    import numpy as np

    from .results import PhaseRuns

    t = {"runs": None, "malformed": 0, "trains": 0, "first": None, "last": None, "ids": [],
         "chosen": 0, "chosen_ids": [], "outside": 0}  # outside: trains left out by --train-ids
    for r in blocks:
        if args.train_ids:
            t["outside"] += len(r.trains["train_id"])
            r = r.between(*args.train_ids)
            t["outside"] -= len(r.trains["train_id"])
        if t["runs"] is None:
            t.update(runs=PhaseRuns(r.classes, r.purity if args.purity is None else args.purity),
                     head=r,
                     confidence=np.zeros(len(r.classes)),
                     ambiguous=np.zeros(len(r.classes), np.int64))
            label = None if args.label is None else r.classes[r.index(args.label)]  # refused early
        r.add_phases(t["runs"])
        t["confidence"] += np.bincount(r.label, r.confidence, minlength=len(r.classes))
        t["ambiguous"] += np.bincount(r.label[r.ambiguous], minlength=len(r.classes))
        tids = r.trains["train_id"]
        t["malformed"] += int(r.trains["malformed"].sum())
        t["trains"] += len(tids)
        t["ids"].append(tids)  # 8 bytes a train
        if len(tids):
            t["first"] = t["first"] if t["first"] is not None else int(tids[0])
            t["last"] = int(tids[-1])
        if selecting:
            mask = r.select(label, args.min_confidence, args.unambiguous)
            t["chosen"] += int(mask.sum())
            t["chosen_ids"].append(_trains_with(r, mask))
            if ids is not None:
                _write_ids(ids, r.train_id[mask], r.pulse[mask])
    # a train id delivered twice (a bridge serving a run again) is one train
    t["distinct"] = _distinct(t["ids"])[0]
    t["chosen_trains"], t["chosen_span"] = _distinct(t["chosen_ids"])
    return t


def _no_train_between(path, span) -> None:
    """Refuses a ``--train-ids`` span holding none of the file's trains, naming those it has."""
    from .errors import SpectraError
    from .results_reader import read_results
    from .train_span import span_text

    n, (first, last) = _distinct([read_results(path, columns=()).trains["train_id"]])
    held = (f"its {n} trains are {first} to {last}" if first is not None
            else f"its {n} trains have no id" if n else "it holds none")
    raise SpectraError(f"no train of {path} in {span_text(*span)}: {held}")


def _write_ids(f, train_ids, pulses) -> None:
    """``train_id,pulse`` rows; a train without an id an empty field, as in ``--phases``."""
    import numpy as np

    from .results import NO_TRAIN_ID

    missing = train_ids == NO_TRAIN_ID
    if not missing.any():
        np.savetxt(f, np.stack([train_ids, pulses], axis=1), fmt="%d", delimiter=",")
        return
    f.writelines(f"{'' if m else t},{p}\n" for t, p, m in zip(train_ids, pulses, missing))


def _trains_with(r, mask):
    """The train ids of the trains of block ``r`` holding a pulse of ``mask``,
    one per train delivered."""
    import numpy as np

    n = r.trains["classified"].astype(np.int64)
    starts = (np.cumsum(n) - n)[n > 0]
    if not len(starts):
        return r.trains["train_id"][:0]
    return r.trains["train_id"][n > 0][np.add.reduceat(mask.astype(np.int64), starts) > 0]


def _distinct(blocks) -> tuple[int, list]:
    """How many trains ``blocks`` of train ids hold, each id once (trains
    without one each), and the smallest and largest id (None without)."""
    import numpy as np

    from .results import NO_TRAIN_ID

    ids = np.concatenate(blocks) if blocks else np.zeros(0, np.uint64)
    known = np.unique(ids[ids != NO_TRAIN_ID])
    span = [int(known[0]), int(known[-1])] if len(known) else [None, None]
    return len(known) + int(np.count_nonzero(ids == NO_TRAIN_ID)), span


@contextlib.contextmanager
def _written_whole(path):
    """A file object for ``path`` (None without one), written aside and
    given its name only when the block ends without an error: no half a
    list, and a file that appeared meanwhile is kept."""
    import uuid

    from .errors import SpectraError

    if not path:
        yield None
        return
    # not mkstemp: its 0600 would stay with the list; open() gives what the umask allows
    part = os.path.join(os.path.dirname(os.path.abspath(path)),
                        f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.part")
    try:
        f = open(part, "x")
    except OSError as e:
        raise SpectraError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with f:
            yield f
        os.link(part, path)  # claims the name atomically
    except FileExistsError:
        raise SpectraError(f"{path} appeared meanwhile; kept, the list not written") from None
    except OSError as e:
        raise SpectraError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        os.unlink(part)


def _report(args, t, selecting) -> dict:
    """What ``results`` says of a file: ``--json`` prints it, the text is made from it."""
    from .results import train_id_or_none

    r, runs = t["head"], t["runs"]
    counts = [int(n) for n in runs.counts]
    report = {
        "file": args.file, "state": r.state, "error": r.error,
        "about": {k: str(v) for k, v in r.about.items()},
        "train_ids": None if args.train_ids is None else list(args.train_ids),
        "left_out_trains": t["outside"],
        "pulses": sum(counts), "trains": t["trains"], "distinct_trains": t["distinct"],
        "first_train": train_id_or_none(t["first"]), "last_train": train_id_or_none(t["last"]),
        "malformed": t["malformed"],
        "classes": {str(name): {"pulses": n, "ambiguous": int(t["ambiguous"][i]),
                                "mean_confidence": float(t["confidence"][i] / n) if n else None}
                    for i, (name, n) in enumerate(zip(r.classes, counts))},
        "purity": runs.purity, "phases": [list(run) for run in runs.named()],
        "selected": None, "written": {"ids": args.ids, "phases": args.phases}}
    if selecting:
        first, last = t["chosen_span"]
        report["selected"] = {"label": args.label, "min_confidence": args.min_confidence,
                              "unambiguous": args.unambiguous, "pulses": t["chosen"],
                              "trains": t["chosen_trains"], "first_train": first, "last_train": last}
    return report


def _print_results(report) -> None:
    from .results import first_and_latest, train_text
    from .train_span import span_text

    state = {"running": "running (being written, or its process died: up to the last flush)",
             "failed": f"failed: {report['error']}"}.get(report["state"], report["state"])
    total, about = report["pulses"], report["about"]
    span = (f" ({train_text(report['first_train'])} to {train_text(report['last_train'])})"
            if report["trains"] else "")
    source = " ".join(about[k] for k in ("source", "source_name", "key", "train_ids") if k in about)
    print(f"{report['file']}: {state}")
    if report["train_ids"]:
        print(f"{span_text(*report['train_ids'])} only: {report['left_out_trains']} trains of the file left out")
    again = report["trains"] - report["distinct_trains"]
    again = f" ({again} of them again: train ids delivered before)" if again else ""
    print(f"{total} pulses classified in {report['trains']} trains{span}{again}, {report['malformed']} spectra "
          "malformed" + (f"; model {about['model']}" if "model" in about else "")
          + (f", source {source}" if source else ""))
    width = max(len(c) for c in report["classes"])
    for name, c in report["classes"].items():
        n = c["pulses"]
        share = f" ({100 * n / total:.1f} %)" if total else ""
        sure = f", mean confidence {c['mean_confidence']:.3f}" if n else ""
        print(f"  {name:{width}s} {n} pulses{share}{sure}, {c['ambiguous']} ambiguous")
    print(f"phases by train (a class holding >= {100 * report['purity']:g} % of a train's pulses):")
    shown, left_out = first_and_latest(report["phases"], MAX_PHASE_LINES)
    if not shown:
        print("  none: no train was classified")
    for i, (first, last, name, n) in enumerate(shown):
        if left_out and i == (MAX_PHASE_LINES + 1) // 2:
            print(f"  ... {left_out} more runs of trains"
                  + ("" if report["written"]["phases"] else " (all: --phases OUT.csv)"))
        print(f"  trains {train_text(first)}-{train_text(last)} ({n}): {name}" if n > 1
              else f"  train {train_text(first)}: {name}")
    chosen = report["selected"]
    if chosen:
        what = ", ".join(w for w in (chosen["label"] and f"label {chosen['label']}",
                                     chosen["min_confidence"] and f"confidence >= {chosen['min_confidence']:g}",
                                     chosen["unambiguous"] and "not ambiguous") if w)
        where = f", {chosen['first_train']} to {chosen['last_train']}" if chosen["first_train"] is not None else ""
        print(f"selected ({what}): {chosen['pulses']} pulses in {chosen['trains']} trains{where}")
