"""A stream's results kept in an HDF5 file, pulse by pulse, as they come.

What a beamline keeps of a classified run or bridge, to select pulses by
phase afterwards or to set the labels beside other data of the same
trains::

    /pulses/train_id, pulse, label, confidence, ambiguous   one row per pulse classified
    /pulses/probability                                     (pulses, classes): every class's
    /trains/train_id, classified, malformed                 one row per train delivered
    /classes                                                the labels' names (label: index)

The file is created at once (an existing one is kept and refused), its
datasets extended every ``flush_s`` seconds while results come in -- by a
thread of its own, so that what came before a source falls silent (the
end of a run on a bridge) is there within that time --, and readable while
the stream runs with HDF5's single-writer/multiple-reader mode
(``h5py.File(path, "r", swmr=True)``). Its root attribute ``state`` says
how it ended: ``finished``, ``stopped``, ``interrupted`` or ``failed``
(with ``error``), and ``running`` while it runs -- or if its process died,
in which case it holds the results up to the last flush. The counters at
the end are in the attribute ``stats`` (JSON). :func:`read_results` reads
a file back, also while it is written; ``daas spectra results`` prints it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time

import numpy as np

from .errors import SpectraError

__all__ = ["ResultsFile", "Results", "read_results", "STATES"]

STATES = ("finished", "stopped", "interrupted", "failed")
_PULSES = {"train_id": np.uint64, "pulse": np.uint32, "label": np.int16,
           "confidence": np.float32, "ambiguous": np.bool_}
_TRAINS = {"train_id": np.uint64, "classified": np.uint32, "malformed": np.uint32}
_NO_TRAIN_ID = np.iinfo(np.uint64).max  # a bridge message without one
# HDF5 cannot finish a file once a write has failed (it is left unreadable, and the
# process may crash on exit): writing stops while this much is still free on the disk
RESERVE_BYTES = 64 << 20
_CHUNK_ROWS = 8192
JOIN_S = 60.0  # the most close() waits for a write in progress (a stalled file system)


class ResultsFile:
    """Write the :class:`.stream.TrainResult` of a stream to ``path``.

    ``classes``: the model's ``classes_``; ``about``: attributes kept with
    the results (the model, the source); ``compress``: gzip (level 1) the
    columns: a fifth of the bytes, under 1 % of a core at 27,000 pulses/s
    (``benchmarks/results_file.py``). ``add(result)`` per train,
    ``close(state, error=None, stats=None)`` at the end (also as a context
    manager: ``failed`` on an exception, ``interrupted`` on Ctrl-C).
    """

    def __init__(self, path, classes, about: dict | None = None, flush_s: float = 1.0,
                 compress: bool = True):
        import h5py

        self.path = os.fspath(path)
        self.classes = np.asarray(classes)
        self.flush_s = float(flush_s)
        try:
            self._file = h5py.File(self.path, "x", libver="latest")
        except FileExistsError:
            raise SpectraError(f"{self.path} exists; give another file for the results, or "
                               "remove it") from None
        except OSError as e:
            raise SpectraError(f"cannot create {self.path} for the results: "
                               f"{e.strerror or e}") from None
        f = self._file
        f.attrs.update(state="running", created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       **{k: str(v) for k, v in (about or {}).items() if v is not None})
        f.create_dataset("classes", data=[str(c) for c in self.classes],
                         dtype=h5py.string_dtype())
        # gzip: readable by any HDF5 tool; smaller chunks than HDF5 would pick,
        # since the last, partial one is compressed again at every flush
        filters = {"compression": "gzip", "compression_opts": 1} if compress else {}
        for group, columns in (("pulses", _PULSES), ("trains", _TRAINS)):
            for name, dtype in columns.items():
                f.create_dataset(f"{group}/{name}", shape=(0,), maxshape=(None,), dtype=dtype,
                                 chunks=(_CHUNK_ROWS,), **filters)
        f.create_dataset("pulses/probability", shape=(0, len(self.classes)),
                         maxshape=(None, len(self.classes)), dtype=np.float32,
                         chunks=(_CHUNK_ROWS, len(self.classes)), **filters)
        f["trains/train_id"].attrs["missing"] = _NO_TRAIN_ID
        f.swmr_mode = True  # readers may follow from here on
        self._pending = {"pulses": [], "trains": []}
        self._last_flush = time.monotonic()
        self.pulses = self.trains = 0
        self._broken = None  # why writing stopped, once it has
        self._lock = threading.Lock()  # the writer thread's and the flusher's turns
        self._closing = threading.Event()
        self._flusher = threading.Thread(target=self._flush_while_open, daemon=True,
                                         name="spectra-results-flush")
        self._flusher.start()

    def _flush_while_open(self):
        while not self._closing.wait(max(self.flush_s, 0.05)):
            with self._lock:
                if self._broken is not None or self._file is None:
                    return  # the writer's next add() or close() says why
                if self._pending["trains"] and time.monotonic() - self._last_flush >= self.flush_s:
                    try:
                        self._flush()
                    except SpectraError:
                        return

    def add(self, result) -> None:
        """One train's results; written at the next flush. Raises the
        :class:`SpectraError` that stopped writing, once one has."""
        tid = _NO_TRAIN_ID if result.train_id is None else result.train_id
        n = len(result.pulses)
        labels = np.searchsorted(self.classes, result.labels).astype(np.int16) if n else None
        with self._lock:
            if self._broken is not None:
                raise self._broken
            if n:
                proba = getattr(result, "probabilities", None)
                if proba is None:  # a result made without them
                    proba = np.full((n, len(self.classes)), np.nan, np.float32)
                self._pending["pulses"].append(
                    (np.full(n, tid, np.uint64), result.pulses, labels, result.confidence,
                     result.ambiguous, proba))
            self._pending["trains"].append((tid, n, result.malformed))
            if time.monotonic() - self._last_flush >= self.flush_s:
                self._flush()

    def flush(self) -> None:
        """Extend the datasets with what came since the last flush; readers
        (SWMR) see it from now on."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self._broken is not None:
            raise self._broken
        f = self._file
        pulses, trains = self._pending["pulses"], self._pending["trains"]
        self._pending = {"pulses": [], "trains": []}
        self._last_flush = time.monotonic()
        disk = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        free = disk.f_bavail * disk.f_frsize
        per_pulse = 24 + 4 * len(self.classes)  # the columns' bytes
        if free < RESERVE_BYTES + per_pulse * sum(len(p[0]) for p in pulses) + 16 * len(trains):
            self._broken = SpectraError(
                f"stopped writing the results to {self.path}: {free >> 20} MiB left on its disk; "
                f"it holds those of the {self.trains} trains written before")
            raise self._broken
        try:
            if pulses:
                for i, name in enumerate((*_PULSES, "probability")):
                    _append(f[f"pulses/{name}"], np.concatenate([p[i] for p in pulses]))
            if trains:
                for i, name in enumerate(_TRAINS):
                    _append(f[f"trains/{name}"], np.array([t[i] for t in trains], _TRAINS[name]))
            f.flush()
        except (OSError, RuntimeError) as e:  # a quota, an I/O error
            self._broken = SpectraError(
                f"writing the results to {self.path} failed ({e}); HDF5 may have left it "
                "unreadable")
            raise self._broken from None
        self.pulses += sum(len(p[0]) for p in pulses)
        self.trains += len(trains)

    def close(self, state: str, error: str | None = None, stats: dict | None = None) -> None:
        """Write what is pending and how the stream ended; the file is
        complete for what was classified, however it ended. Where writing
        had stopped (a full disk), the state is ``failed`` with why, which
        the caller was told then; an error writing now is raised."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, not {state!r}")
        self._closing.set()
        self._flusher.join(JOIN_S)
        if self._flusher.is_alive():
            raise SpectraError(f"the results file {self.path} did not finish a write within "
                               f"{JOIN_S:g} s (a stalled file system?); its state still reads "
                               "'running'")
        with self._lock:
            if self._file is None:
                return
            self._close(state, error, stats)

    def _close(self, state, error, stats) -> None:
        import h5py

        failed = None
        try:
            if self._broken is not None:
                state, error = "failed", str(self._broken)
            else:
                self._flush()
        except SpectraError as e:
            failed = e
            state, error = "failed", str(e)
        finally:
            try:
                self._file.close()
            except (OSError, RuntimeError):
                pass  # what could not be flushed is what is lost
            self._file = None
        try:
            # attributes cannot change under SWMR: the file is opened again for them
            with h5py.File(self.path, "r+") as f:
                f.attrs["state"] = state
                if error:
                    f.attrs["error"] = error
                if stats is not None:
                    f.attrs["stats"] = json.dumps(stats)
        except (OSError, RuntimeError) as e:
            failed = failed or SpectraError(f"writing the end of the results to {self.path} "
                                            f"failed ({e}); its state still reads 'running'")
        if failed is not None:
            raise failed

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            self.close("finished")
        elif issubclass(kind, KeyboardInterrupt):
            self.close("interrupted")
        else:
            self.close("failed", error=str(exc) or kind.__name__)


def _append(dataset, values) -> None:
    n = dataset.shape[0]
    dataset.resize(n + len(values), axis=0)
    dataset[n:] = values


@dataclasses.dataclass
class Results:
    """A results file read back (:func:`read_results`): one entry per pulse
    in ``train_id``, ``pulse``, ``label`` (the class names), ``confidence``,
    ``ambiguous``, ``probability`` (``(pulses, classes)``, ``classes``
    order); one per train in ``trains`` (``train_id``, ``classified``,
    ``malformed``); ``state`` and ``error`` as the stream left them,
    ``stats`` its counters (``None`` while running), ``about`` the rest of
    the file's attributes (model, source)."""

    path: str
    state: str
    error: str | None
    classes: np.ndarray
    train_id: np.ndarray
    pulse: np.ndarray
    label: np.ndarray
    confidence: np.ndarray
    ambiguous: np.ndarray
    probability: np.ndarray
    trains: dict
    stats: dict | None
    about: dict

    def select(self, label=None, min_confidence: float = 0.0, unambiguous: bool = False):
        """A boolean mask over the pulses: of class ``label`` (any where
        ``None``), with a confidence of at least ``min_confidence``, and
        not flagged ambiguous where ``unambiguous``."""
        mask = self.confidence >= min_confidence
        if label is not None:
            if str(label) not in self.classes:
                raise SpectraError(f"no class {label!r} in {self.path}; its classes: "
                                   f"{', '.join(self.classes)}")
            mask &= self.label == str(label)
        if unambiguous:
            mask &= ~self.ambiguous
        return mask

    def phases(self, purity: float = 0.9):
        """Consecutive trains by their phase: ``(first, last, label, n)``
        for each run of ``n`` trains in which ``label`` has at least
        ``purity`` of a train's pulses -- ``"mixed"`` where no class has,
        ``"none classified"`` where a train had no pulse classified."""
        tids = self.trains["train_id"]
        ends = np.cumsum(self.trains["classified"])
        order = np.argsort(self.classes)  # the names of numeric classes need not sort
        codes = order[np.searchsorted(self.classes, self.label, sorter=order)]
        per_train = [np.bincount(codes[e - n:e], minlength=len(self.classes))
                     for e, n in zip(ends, self.trains["classified"])]
        names = [("none classified" if c.sum() == 0 else self.classes[c.argmax()]
                  if c.max() >= purity * c.sum() else "mixed") for c in per_train]
        out = []
        for tid, name in zip(tids, names):
            if out and out[-1][2] == name:
                out[-1][1], out[-1][3] = int(tid), out[-1][3] + 1
            else:
                out.append([int(tid), int(tid), name, 1])
        return [tuple(o) for o in out]


def read_results(path) -> Results:
    """Read a results file -- also one still being written (SWMR), up to
    its last flush, the columns cut to the trains complete in all of them."""
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SpectraError(f"no results file {path}")
    writing, short = _superblock(path)
    if writing and short:
        raise SpectraError(f"cannot read {path} as a results file: it ends {short} bytes before "
                           "the end HDF5 recorded (truncated, or caught mid-write: try again)")
    try:
        # SWMR only for a file still open for writing (or whose writer died): a
        # SWMR reader skips HDF5's checks of a closed file, and retries its reads
        # of a damaged one for minutes instead of failing
        with h5py.File(path, "r", swmr=writing) as f:
            missing = [f"{g}/{c}" for g, cols in (("pulses", (*_PULSES, "probability")),
                                                   ("trains", _TRAINS)) for c in cols
                       if f"{g}/{c}" not in f]
            if "classes" not in f or missing:
                raise SpectraError(f"{path} is not a spectra results file (no "
                                   f"{'/classes' if 'classes' not in f else '/' + missing[0]}); "
                                   "'daas spectra classify -o' writes them")
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            classes = f["classes"].asstr()[()]
            trains = {c: f[f"trains/{c}"][()] for c in _TRAINS}
            pulses = {c: f[f"pulses/{c}"][()] for c in (*_PULSES, "probability")}
    except SpectraError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise SpectraError(f"cannot read {path} as a results file (damaged or truncated?): "
                           f"{e}") from None
    # a flush extends one column after another: a reader may see some longer
    n_trains = min(len(v) for v in trains.values())
    trains = {c: v[:n_trains] for c, v in trains.items()}
    n = int(trains["classified"].sum())
    if min(len(v) for v in pulses.values()) < n:
        raise SpectraError(f"{path} holds fewer pulses than its trains count ({n}): damaged")
    pulses = {c: v[:n] for c, v in pulses.items()}
    if n and pulses["label"].max() >= len(classes):
        raise SpectraError(f"{path} holds labels beyond its {len(classes)} classes: damaged")
    stats = attrs.pop("stats", None)
    return Results(path=path, state=attrs.pop("state", "unknown"), error=attrs.pop("error", None),
                   classes=classes, label=classes[pulses.pop("label")],
                   **pulses, trains=trains, stats=None if stats is None else json.loads(stats),
                   about=attrs)


def _superblock(path) -> tuple[bool, int]:
    """Whether ``path`` is marked open for writing, and how many bytes it is
    short of the end its HDF5 superblock records (HDF5's "truncated file"
    check, which a SWMR reader skips); ``(False, 0)`` for a superblock of
    a version that records neither (``ResultsFile`` writes version 3)."""
    with open(path, "rb") as f:
        head = f.read(64)
        size = os.fstat(f.fileno()).st_size
    if len(head) < 13 or head[:8] != b"\x89HDF\r\n\x1a\n" or head[8] not in (2, 3):
        return False, 0
    width = head[9]  # bytes of an address
    if len(head) < 12 + 4 * width:
        return False, 0
    base = int.from_bytes(head[12:12 + width], "little")
    end = int.from_bytes(head[12 + 2 * width:12 + 3 * width], "little")
    return bool(head[11]), max(0, base + end - size)
