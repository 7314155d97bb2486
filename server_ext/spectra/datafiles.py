"""Labelled spectra from an HDF5/NeXus file or an EuXFEL run (for ``daas spectra train``).

Labels are given as ``NAME=START:STOP`` ranges (stop exclusive): row indices
of the spectra array for a file, train IDs for a run (every pulse of those
trains gets the label). For a file, ``@/path/to/dataset`` instead names a
dataset with one label per spectrum.
"""

from __future__ import annotations

import contextlib
import os
import re

import numpy as np

from .augment import increasing_axis
from .errors import SpectraError
from .inputs import as_labels, at_most_per_class

__all__ = ["parse_ranges", "labelled_from", "find_run_spectra", "open_spectra", "load_labelled_file",
           "load_labelled_run", "load_labelled", "Origins", "located", "axis_of", "axis_source", "read_axis",
           "run_axis", "find_run_axis", "labelled_rows", "read_rows", "file_axis"]

_RANGE = re.compile(r"^(?P<name>[^=]+)=(?P<start>-?\d+):(?P<stop>-?\d+)$")


class Origins:
    """Where each labelled spectrum was read: ``rows`` of the dataset
    ``where`` of a file, or the ``trains`` and ``pulses`` (index in its
    train) of a run ``where``."""

    def __init__(self, where: str, rows=None, trains=None, pulses=None):
        self.where, self.rows, self.trains, self.pulses = where, rows, trains, pulses

    def describe(self, indices) -> str:
        """The first ten of ``indices`` (rows of the spectra loaded) as
        places in the file or run."""
        idx = np.asarray(indices, np.intp)[:10]
        if self.trains is None:
            return f"{self.where} rows {np.asarray(self.rows)[idx].tolist()}"
        places = ", ".join(f"train {t} pulse {p}" for t, p in
                           zip(np.asarray(self.trains)[idx], np.asarray(self.pulses)[idx]))
        return f"{self.where}: {places}"


def located(error, origins: Origins):
    """``error`` (a :class:`SpectraError`) with the rows it names placed in
    the file or run they were read from; as it is where it names none."""
    if error.rows is None:
        return error
    return SpectraError(f"{error} -- in {origins.describe(error.rows)}", rows=error.rows)


def parse_ranges(specs, min_labels: int = 2):
    """``["low=0:20", "high=300:349"]`` -> ``[("low", 0, 20), ("high", 300, 349)]``;
    at least ``min_labels`` labels (two to train; one to evaluate a model on)."""
    out = []
    for spec in specs:
        m = _RANGE.match(spec.strip())
        if not m:
            raise SpectraError(f"label {spec!r} is not NAME=START:STOP (stop exclusive), "
                               "e.g. low=0:20")
        start, stop = int(m["start"]), int(m["stop"])
        if stop <= start:
            raise SpectraError(f"label range {spec!r} is empty")
        out.append((m["name"], start, stop))
    if not out or len({name for name, _, _ in out}) < min_labels:
        raise SpectraError(f"give ranges for at least {'two labels' if min_labels > 1 else 'one label'}, "
                           "e.g. --labels low=0:20 high=300:349")
    ordered = sorted(out, key=lambda r: r[1])
    for (n1, a1, b1), (n2, a2, b2) in zip(ordered, ordered[1:]):
        if a2 < b1:
            raise SpectraError(f"label ranges {n1}={a1}:{b1} and {n2}={a2}:{b2} overlap (stop "
                               "is exclusive); a spectrum must get one label")
    return out


def labelled_from(data, labels, dataset=None, source=None, key=None) -> dict:
    """Where labelled spectra are, as JSON types: what a model keeps of the
    spectra it was trained with (``trained_on_``) and what an evaluation
    compares with it. A file's ``dataset``; a run's ``source`` and ``key``."""
    about = {"data": os.path.abspath(str(data)), "labels": [str(s) for s in labels]}
    if source:
        about.update(source=source, key=key)
    elif dataset:
        about["dataset"] = dataset
    return about


def _dataset(f, name, what):
    """``f[name]``, which must be an HDF5 dataset."""
    import h5py

    obj = f.get(name)
    if obj is None:
        raise SpectraError(f"{f.filename} has no {what} {name!r}")
    if not isinstance(obj, h5py.Dataset):
        raise SpectraError(f"{name!r} in {f.filename} is a {type(obj).__name__.lower()}, not a "
                           f"dataset; name the {what} itself (e.g. {name.rstrip('/')}/data)")
    return obj


def _find_spectra(f, dataset):
    """The spectra dataset: the one named, the NeXus default NXdata signal, or
    the only 2-D numeric dataset in the file."""
    import h5py

    if dataset:
        return _dataset(f, dataset, "dataset"), None
    grp = f
    while "default" in grp.attrs and grp.attrs["default"] in grp:
        name = grp.attrs["default"]
        grp = grp[name.decode() if isinstance(name, bytes) else name]
        if not isinstance(grp, h5py.Group):
            break
    if isinstance(grp, h5py.Group) and "signal" in grp.attrs:
        sig = grp.attrs["signal"]
        sig = sig.decode() if isinstance(sig, bytes) else str(sig)
        if not isinstance(grp.get(sig), h5py.Dataset):
            raise SpectraError(f"the NeXus signal {sig!r} of {grp.name} in {f.filename} is not "
                               "a dataset there; fix the file's 'signal' attribute or name the "
                               "spectra with --dataset")
        axes = grp.attrs.get("axes")
        axis = None
        if axes is not None:
            axes = [a.decode() if isinstance(a, bytes) else str(a) for a in np.atleast_1d(axes)]
            if axes[-1] != "." and isinstance(grp.get(axes[-1]), h5py.Dataset):
                axis = grp[axes[-1]][()]
        return grp[sig], axis
    found = []
    f.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset)
                 and obj.ndim == 2 and obj.dtype.kind in "fiu" else None)
    if len(found) != 1:
        names = ", ".join(d.name for d in found) or "none"
        raise SpectraError(f"cannot tell which dataset of {f.filename} holds the spectra "
                           f"(2-D candidates: {names}); name it with --dataset")
    return found[0], None


@contextlib.contextmanager
def open_spectra(path, dataset=None):
    """``(file, spectra dataset, axis or None)`` of an HDF5/NeXus file, the
    dataset named or found as :func:`_find_spectra` does, checked to be 2-D."""
    import h5py

    if not os.path.exists(path):
        raise SpectraError(f"{path} does not exist")
    if os.path.isdir(path):  # h5py says "[Errno 21] Unable to synchronously open file (file read failed ..."
        raise SpectraError(f"{path} is a directory, not an HDF5 file of spectra (a run is classified "
                           "as a stream: a replay of it)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SpectraError(f"cannot read {path} as HDF5: {e}")
    with f:
        dset, axis = _find_spectra(f, dataset)
        if dset.ndim != 2:
            raise SpectraError(f"{dset.name} has shape {dset.shape}; spectra must be "
                               "(n_spectra, n_points)")
        if not dset.shape[0]:
            raise SpectraError(f"{dset.name} in {path} holds no spectra (shape {dset.shape})")
        yield f, dset, axis


def axis_of(f, axis_dataset, n_points):
    """The dataset ``axis_dataset`` of the open file ``f``: one position per
    point of its ``n_points``-point spectra."""
    axis = _dataset(f, axis_dataset, "axis dataset")[()]
    if np.shape(axis) != (n_points,):
        raise SpectraError(f"axis dataset {axis_dataset!r} has shape {np.shape(axis)}; "
                           f"it needs one value per point, ({n_points},)")
    return as_axis(axis, f"axis dataset {axis_dataset!r}")


def axis_source(text):
    """``FILE`` or ``FILE:/DATASET`` (an HDF5/NeXus dataset) -> ``(FILE, DATASET or None)``."""
    path, sep, dataset = text.strip().rpartition(":/")
    if not sep:
        return text.strip(), None
    if not path or not dataset.strip("/"):
        raise SpectraError(f"axis {text!r}: give FILE, or FILE:/DATASET for an HDF5/NeXus file")
    return path, "/" + dataset


def read_axis(path, dataset=None):
    """The positions of a detector's points, from a file beside its data
    (e.g. its calibration): an HDF5/NeXus file's ``dataset``, or without one
    the axis of its NeXus default data; numbers in a ``.npy`` or text file
    (whitespace or newlines between them). Checked to be one finite number
    per point; whether they cover a model's is for the model to say."""
    import h5py

    if not os.path.isfile(path):
        raise SpectraError(f"axis file {path} does not exist")
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            if dataset:
                axis = _dataset(f, dataset, "axis dataset")[()]
            else:
                try:
                    axis = _find_spectra(f, None)[1]
                except SpectraError:
                    axis = None
                if axis is None:
                    raise SpectraError(f"{path} has no NeXus default data with an axis; "
                                       "name the axis dataset (FILE:/DATASET)")
    elif dataset:
        raise SpectraError(f"{path} is not an HDF5 file, so it has no dataset {dataset!r}")
    else:
        try:
            if str(path).endswith(".npy"):
                axis = np.load(path, allow_pickle=False)
            else:
                axis = np.loadtxt(path, dtype=np.float64, ndmin=1)
        except (OSError, ValueError, EOFError) as e:  # EOFError: an empty .npy
            raise SpectraError(f"cannot read {path} as an axis (numbers, or a .npy array): {e}")
    return as_axis(axis, f"the axis in {path}")


def as_axis(axis, what):
    """``axis`` as float64 positions, one per point: a single row or column
    taken as such; anything else, or NaN, refused naming ``what``."""
    axis = np.asarray(axis)
    if axis.ndim > 1 and sum(n > 1 for n in axis.shape) <= 1:
        axis = axis.reshape(-1)  # one row or one column
    if axis.ndim != 1 or axis.dtype.kind not in "fiu" or axis.size < 2:
        raise SpectraError(f"{what} has shape {axis.shape} ({axis.dtype}); it needs "
                           "one number per point of the spectra")
    if not np.isfinite(axis).all():
        raise SpectraError(f"{what} has NaN or inf at points "
                           f"{np.flatnonzero(~np.isfinite(axis))[:10].tolist()}")
    return axis.astype(np.float64)


def run_axis(path, source, key, train_ids=None):
    """The spectra's axis kept in a run: ``source``/``key`` holds the
    positions of the points (a control or instrument key, one array per
    train, e.g. the 2-theta of an azimuthal integration). It must be the
    same in every train of ``train_ids`` (default all): a calibration
    changed within them is refused, naming the first train that differs."""
    from extra_data import by_id

    from .sources import run_keydata

    kd = run_keydata(path, source, key)
    if train_ids is not None:
        kd = kd.select_trains(by_id[list(train_ids)])
    what = f"the axis {source} {key}"
    if len(kd.entry_shape) != 1:
        raise SpectraError(f"{what} holds {kd.entry_shape or 'one number'} per train; it needs "
                           "one number per point of the spectra")
    counts = np.asarray(kd.data_counts(labelled=False), np.intp)
    if counts.max(initial=0) > 1:
        raise SpectraError(f"{what} holds {counts.max()} arrays in a train (one per pulse?); "
                           "an axis is one array per train")
    if not counts.sum():
        raise SpectraError(f"{what} has no data in the trains labelled")
    axis = first = None
    # a few hundred trains at a time: a long run's axis need not fit in memory
    for part in kd.split_trains(trains_per_part=256):
        values = part.ndarray()
        if not len(values):
            continue
        if axis is None:
            axis, first = as_axis(values[0], what), values[0]
        changed = np.flatnonzero(~np.all(values == first, axis=1))
        if changed.size:
            tids = np.repeat(part.train_ids, np.asarray(part.data_counts(labelled=False), np.intp))
            raise SpectraError(f"{what} changes within the trains labelled (train "
                               f"{tids[changed[0]]} differs from train {kd.train_ids[np.argmax(counts > 0)]}): "
                               "label trains of one calibration")
    return axis


def load_labelled_file(path, labels, dataset=None, axis_dataset=None, return_origins=False,
                       min_labels=2, max_per_label=None, random_state=0):
    """``(X, y, axis)`` from an HDF5/NeXus file, and with ``return_origins``
    the :class:`Origins` of its rows. ``max_per_label``: keep at most this
    many spectra per label, drawn at random from its rows (reproducibly for
    ``random_state``); only those are read, so memory stays at what is kept.
    ``None``: every labelled row."""
    with open_spectra(path, dataset) as (f, dset, nexus_axis):
        axis = file_axis(f, dset, nexus_axis, axis_dataset)
        rows, y = labelled_rows(f, dset, labels, min_labels, max_per_label, random_state)
        try:
            X = read_rows(dset, rows)
        except OSError as e:  # a chunk HDF5 cannot read back: a damaged or cut copy
            raise SpectraError(f"cannot read the labelled rows of {dset.name} in {path} (a damaged "
                               f"file?): {e}") from None
        origins = Origins(f"{os.path.basename(path)}: {dset.name}", rows=rows)
    return (X, y, axis, origins) if return_origins else (X, y, axis)


def file_axis(f, dset, nexus_axis, axis_dataset=None):
    """The positions of the points of ``dset``'s spectra in the open file
    ``f``: the dataset ``axis_dataset`` (checked), else the NeXus axis found
    with them where it has one value per point (not, e.g., one per
    spectrum); None without one."""
    if axis_dataset:
        return axis_of(f, axis_dataset, dset.shape[1])
    if nexus_axis is not None and np.shape(nexus_axis) == (dset.shape[1],):
        return nexus_axis
    return None


def labelled_rows(f, dset, labels, min_labels=2, max_per_label=None, random_state=0):
    """``(rows, y)``: the rows of ``dset`` (in the open file ``f``) that
    ``labels`` name -- ``NAME=START:STOP`` ranges, or ``@DATASET`` of one
    label per spectrum -- and the label of each, at most ``max_per_label``
    of a label (:func:`.inputs.at_most_per_class`); in the order named."""
    if len(labels) == 1 and labels[0].startswith("@"):
        name = labels[0][1:]
        y = _dataset(f, name, "label dataset")[()]
        if np.ndim(y) != 1:
            raise SpectraError(f"{name} has shape {np.shape(y)}; it needs one label per spectrum")
        if len(y) != dset.shape[0]:
            raise SpectraError(f"{name} has {len(y)} labels for {dset.shape[0]} spectra")
        y = as_labels(y, len(y))  # missing ones named by their rows, before any is dropped
        rows = np.arange(len(y))
    else:
        rows, y = [], []
        for name, start, stop in parse_ranges(labels, min_labels):
            if start < 0 or stop > dset.shape[0]:
                raise SpectraError(f"range {name}={start}:{stop} is outside the "
                                   f"{dset.shape[0]} spectra of {dset.name}")
            rows.append(np.arange(start, stop))
            y += [name] * (stop - start)
        rows, y = np.concatenate(rows), np.array(y)
    classes = np.unique(y, return_inverse=True)[1].reshape(-1)
    keep = at_most_per_class(classes, max_per_label, np.random.default_rng(random_state))
    return rows[keep], y[keep]


def read_rows(dset, rows, block: int = 1024):
    """``dset[rows]`` of an HDF5 dataset for distinct ``rows`` in any order:
    a slice of up to ``block`` rows read where they lie close together, one
    row at a time where they are sparse, so memory stays at one block beside
    what is kept (h5py's own list indexing took 12 s for 20,000 of 50,000
    rows of 4,020 points, a slice of all of them 3 s)."""
    rows = np.asarray(rows, np.intp)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    out = np.empty((len(rows),) + dset.shape[1:], dset.dtype)
    i = 0
    while i < len(ordered):
        first = ordered[i]
        j = int(np.searchsorted(ordered, first + block))
        if j - i >= block // 16:
            out[order[i:j]] = dset[first:ordered[j - 1] + 1][ordered[i:j] - first]
        else:
            for k in range(i, j):
                out[order[k]] = dset[ordered[k]]
        i = j
    return out


def find_run_spectra(path, min_points: int = 64) -> tuple[str, str]:
    """``(source, key)`` of the spectra in an EuXFEL run, found from the data.

    Spectra are instrument keys whose entries are 1-D floating-point arrays of
    at least ``min_points`` points (one spectrum per pulse). A run with exactly
    one such key needs no names; otherwise the error lists what was found, so
    the caller can name ``source`` and ``key`` itself.
    """
    from extra_data import RunDirectory

    try:
        run = RunDirectory(str(path))
    except Exception as e:  # extra_data raises several kinds for "not a run"
        raise SpectraError(f"{path} is not a readable EuXFEL run directory ({e})") from None
    found = _spectra_keys(run, min_points)
    if len(found) == 1:
        return found[0]
    if not found:
        raise SpectraError(f"no spectra in {path}: no instrument key holds 1-D float arrays "
                           f"of at least {min_points} points; name the source and key")
    listed = ", ".join(f"{s} {k}" for s, k in found)
    raise SpectraError(f"several keys of {path} could hold spectra ({listed}); name the source and key")


def _spectra_keys(run, min_points: int = 64) -> list[tuple[str, str]]:
    found = []
    for source in sorted(run.instrument_sources):
        for key in sorted(run[source].keys()):
            kd = run[source, key]
            if kd.ndim == 2 and kd.entry_shape[0] >= min_points and np.issubdtype(kd.dtype, np.floating):
                found.append((source, key))
    return found


def spectra_in(run) -> str:
    """For one who named no source, or not that of spectra, of ``run`` (a path or an
    ``extra_data`` collection): where its spectra could be, as the end of a sentence (""
    where ``run`` is not a run: opening it says so)."""
    from extra_data import RunDirectory

    try:
        found = _spectra_keys(run if hasattr(run, "instrument_sources") else RunDirectory(str(run)))
    except Exception:  # extra_data raises several kinds for "not a run"
        return ""
    if not found:
        return "; no key of this run holds spectra (1-D float arrays)"
    return "; this run's could be " + " or ".join(f"{s} (key {k})" for s, k in found)


def find_run_axis(path, n_points: int) -> list[tuple[str, str]]:
    """The control keys of a run that could be the axis of spectra of
    ``n_points`` points: float arrays of that many values, strictly
    increasing or decreasing in the first train (not a background or a
    mask), as ``(source, key)`` with Karabo's names (without ``.value``)."""
    from extra_data import RunDirectory

    run = RunDirectory(str(path))
    found = []
    for source in sorted(run.control_sources):
        for key in sorted(run[source].keys()):
            if not key.endswith(".value"):
                continue
            kd = run[source, key]
            if kd.entry_shape != (n_points,) or not np.issubdtype(kd.dtype, np.floating):
                continue
            try:
                increasing_axis(kd[0].ndarray().reshape(-1), n_points)
            except SpectraError:
                continue
            found.append((source, key[:-len(".value")]))
    return found


def load_labelled_run(path, labels, source, key, max_per_label=None, random_state=0,
                      return_origins=False, axis_source=None, axis_key=None, min_labels=2):
    """``(X, y, axis)`` from an EuXFEL run: the pulses of the labelled trains,
    and with ``return_origins`` their :class:`Origins`. ``axis``: from
    ``axis_key`` of ``axis_source`` (default ``source``), :func:`run_axis`
    over the labelled trains; None without ``axis_key``.

    ``max_per_label``: keep at most this many spectra per label, drawn
    evenly from all its trains (reproducibly for ``random_state``); the run
    is read train by train, so memory stays at one train plus what is kept.
    ``None``: every pulse.
    """
    from extra_data import by_id

    from .sources import RunSource

    kd = RunSource(path, source, key).keydata
    rng = np.random.default_rng(random_state)
    per_label = {}
    for name, start, stop in parse_ranges(labels, min_labels):
        tids = [t for t in kd.train_ids if start <= t < stop]
        if not tids:
            raise SpectraError(f"no train of the run is in {name}={start}:{stop} "
                               f"(the run has trains {kd.train_ids[0]}..{kd.train_ids[-1]})")
        per_label.setdefault(name, []).extend(tids)
    X, y, trains, pulses = [], [], [], []
    for name, tids in per_label.items():
        sel = kd.select_trains(by_id[tids])
        if max_per_label is None:
            arr = sel.ndarray()
            parts = [arr.reshape(-1, arr.shape[-1])]
            # each pulse's train, and its index in the train
            counts = np.asarray(sel.data_counts(labelled=False), np.intp)
            place = [np.repeat(sel.train_ids, counts),
                     np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)]
        else:
            quota = -(-int(max_per_label) // len(tids))  # per train, rounded up
            parts, place = [], [[], []]
            for tid, arr in sel.trains():
                arr = np.asarray(arr).reshape(-1, arr.shape[-1])
                take = np.sort(rng.choice(len(arr), min(quota, len(arr)), replace=False))
                parts.append(arr[take])
                place[0].append(np.full(len(take), tid))
                place[1].append(take)
            place = [np.concatenate(p) for p in place]
        arr = np.concatenate(parts)
        if max_per_label is not None and len(arr) > max_per_label:
            keep = np.sort(rng.choice(len(arr), int(max_per_label), replace=False))
            arr, place = arr[keep], [p[keep] for p in place]
        X.append(arr)
        y += [name] * len(arr)
        trains.append(place[0])
        pulses.append(place[1])
    X, y = np.concatenate(X), np.array(y)
    axis = None
    if axis_key:
        axis = run_axis(path, axis_source or source, axis_key,
                        np.unique(np.concatenate(list(per_label.values()))))
        if axis.size != X.shape[1]:
            raise SpectraError(f"the axis {axis_source or source} {axis_key} has {axis.size} "
                               f"values; the spectra have {X.shape[1]} points")
    if not return_origins:
        return X, y, axis
    return X, y, axis, Origins(f"{os.path.basename(os.path.normpath(str(path)))} ({source} {key})",
                               trains=np.concatenate(trains), pulses=np.concatenate(pulses))


def load_labelled(path, labels, dataset=None, axis_dataset=None, source=None, key=None,
                  max_per_label=None, random_state=0, return_origins=False,
                  axis_source=None, axis_key=None, min_labels=2):
    """Labelled spectra from a file or a run directory (see module docstring);
    label ranges of at least ``min_labels`` labels;
    ``max_per_label`` caps the spectra read per label (drawn at random from
    a file's rows, evenly from a run's trains; reproducibly for ``random_state``);
    ``return_origins``: their :class:`Origins` as a fourth value. The axis:
    a file's ``axis_dataset`` (default its NeXus axis), a run's ``axis_key``
    of ``axis_source`` (default ``source``)."""
    if not os.path.exists(path):
        raise SpectraError(f"{path} does not exist")
    if os.path.isdir(path):
        if not source or not key:
            raise SpectraError(f"a run's spectra are named by their source and key{spectra_in(path)}")
        if axis_dataset:
            raise SpectraError("a run keeps its axis in a key, not a dataset: name the axis key "
                               "(and its source, if not the spectra's)")
        return load_labelled_run(path, labels, source, key, max_per_label, random_state,
                                 return_origins, axis_source, axis_key, min_labels)
    if axis_key or axis_source:
        raise SpectraError(f"{path} is a file: its axis is a dataset (the NeXus default axis "
                           "unless one is named), not a run's source and key")
    return load_labelled_file(path, labels, dataset, axis_dataset, return_origins, min_labels,
                              max_per_label, random_state)
