"""A stream's results kept in an HDF5 file, pulse by pulse, as they come.

What a beamline keeps of a classified run or bridge, to select pulses by
phase afterwards or to set the labels beside other data of the same
trains::

    /pulses/train_id, pulse, label, confidence, ambiguous   one row per pulse classified
    /pulses/probability                                     (pulses, classes): every class's
    /trains/train_id, classified, malformed                 one row per train delivered
    /classes                                                the labels' names (label: index)
    /trains_written                                         (1,): how many trains are whole on disk

The file is created at once (an existing one is kept and refused), its
datasets extended every ``flush_s`` seconds while results come in -- by a
thread of its own, so that what came before a source falls silent (the
end of a run on a bridge) is there within that time --, and readable while
the stream runs with HDF5's single-writer/multiple-reader mode
(``h5py.File(path, "r", swmr=True)``): up to ``/trains_written`` trains
and their pulses, since a reader may see a dataset's new rows before
their values (as zeros). Its root attribute ``state`` says
how it ended: ``finished``, ``stopped``, ``interrupted`` or ``failed``
(with ``error``), and ``running`` while it runs -- or if its process died,
in which case it holds the results up to the last flush. The counters at
the end are in the attribute ``stats`` (JSON). :func:`.results_reader.read_results`
reads a file back, also while it is written; ``daas spectra results`` prints it.
"""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np

from ..oserrors import os_error_text
from .errors import SpectraError

__all__ = ["ResultsFile", "PhaseRuns", "first_and_latest", "phases_line", "phase_now", "train_text",
           "train_id_or_none", "NO_TRAIN_ID", "STATES", "PULSE_COLUMNS", "TRAIN_COLUMNS"]

STATES = ("finished", "stopped", "interrupted", "failed")
PULSE_COLUMNS = {"train_id": np.uint64, "pulse": np.uint32, "label": np.int16,
                 "confidence": np.float32, "ambiguous": np.bool_}
TRAIN_COLUMNS = {"train_id": np.uint64, "classified": np.uint32, "malformed": np.uint32}
NO_TRAIN_ID = np.iinfo(np.uint64).max  # the file's train id of a bridge message without one
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
    (``benchmarks/results_file.py``); ``purity``: that of the phases by
    train kept as trains come (:class:`PhaseRuns`, :meth:`summary`), kept
    as the attribute ``purity``, the reader's default (the file holds every
    pulse: any purity reads back). ``add(result)`` per train,
    ``close(state, error=None, stats=None)`` at the end (also as a context
    manager: ``failed`` on an exception, ``interrupted`` on Ctrl-C).
    """

    def __init__(self, path, classes, about: dict | None = None, flush_s: float = 1.0,
                 compress: bool = True, purity: float = 0.9):
        import h5py

        self.path = os.fspath(path)
        self.classes = np.asarray(classes)
        self.flush_s = float(flush_s)
        self.phase_runs = PhaseRuns(self.classes, purity)  # as added, for a summary at any time
        try:
            self._file = h5py.File(self.path, "x", libver="latest")
        except FileExistsError:
            raise SpectraError(f"{self.path} exists; give another file for the results, or "
                               "remove it") from None
        except OSError as e:
            raise SpectraError(f"cannot create {self.path} for the results: "
                               f"{os_error_text(e)}") from None
        f = self._file
        f.attrs.update(state="running", created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       purity=self.phase_runs.purity,
                       **{k: str(v) for k, v in (about or {}).items() if v is not None})
        f.create_dataset("classes", data=[str(c) for c in self.classes],
                         dtype=h5py.string_dtype())
        # gzip: readable by any HDF5 tool; smaller chunks than HDF5 would pick,
        # since the last, partial one is compressed again at every flush
        filters = {"compression": "gzip", "compression_opts": 1} if compress else {}
        for group, columns in (("pulses", PULSE_COLUMNS), ("trains", TRAIN_COLUMNS)):
            for name, dtype in columns.items():
                f.create_dataset(f"{group}/{name}", shape=(0,), maxshape=(None,), dtype=dtype,
                                 chunks=(_CHUNK_ROWS,), **filters)
        f.create_dataset("pulses/probability", shape=(0, len(self.classes)),
                         maxshape=(None, len(self.classes)), dtype=np.float32,
                         chunks=(_CHUNK_ROWS, len(self.classes)), **filters)
        f["trains/train_id"].attrs["missing"] = NO_TRAIN_ID
        f.create_dataset("trains_written", shape=(1,), dtype=np.uint64)  # 0 until the first flush
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
        tid = _stored_train_id(result.train_id)
        n = len(result.pulses)
        with self._lock:
            if self._broken is not None:
                raise self._broken
            labels = self.phase_runs.add_result(result)
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

    def summary(self, max_runs: int = 50) -> dict:
        """What was added so far: :meth:`PhaseRuns.summary`."""
        return self.phase_runs.summary(max_runs)

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
                for i, name in enumerate((*PULSE_COLUMNS, "probability")):
                    _append(f[f"pulses/{name}"], np.concatenate([p[i] for p in pulses]))
            if trains:
                for i, name in enumerate(TRAIN_COLUMNS):
                    _append(f[f"trains/{name}"],
                            np.array([t[i] for t in trains], TRAIN_COLUMNS[name]))
            # a SWMR reader may see the new rows before their values: the count that
            # makes them whole changes only once they are on disk
            f.flush()
            if trains:
                f["trains_written"][0] = self.trains + len(trains)
                f.flush()
        except (OSError, RuntimeError) as e:  # a quota, an I/O error
            self._broken = SpectraError(
                f"writing the results to {self.path} failed ({os_error_text(e)}); HDF5 may have left it "
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
                                            f"failed ({os_error_text(e)}); its state still reads "
                                            "'running'")
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


NO_PULSE, MIXED = -1, -2  # PhaseRuns' phases of a train besides a class index


class PhaseRuns:
    """The phase of each run of consecutive trains, train by train: a
    class (its index in ``classes``) where it holds at least ``purity`` of
    a train's pulses, ``MIXED`` where none does, ``NO_PULSE`` where no
    pulse of the train was classified. ``runs``: ``[first, last, phase,
    n_trains]`` each; ``named()`` with the class names."""

    def __init__(self, classes, purity: float = 0.9):
        if not 0 < purity <= 1:
            raise SpectraError(f"purity must be in (0, 1], not {purity:g}")
        self.classes, self.purity = np.asarray(classes), float(purity)
        self.runs: list[list[int]] = []
        self.counts = np.zeros(len(self.classes), np.int64)  # pulses per class, all trains
        self.trains = 0

    def add(self, train_id: int, labels) -> None:
        """One train's pulses, as class indices."""
        counts = np.bincount(labels, minlength=len(self.classes))
        self.counts += counts
        self.trains += 1
        total = counts.sum()
        phase = (NO_PULSE if total == 0 else int(counts.argmax())
                 if counts.max() >= self.purity * total else MIXED)
        if self.runs and self.runs[-1][2] == phase:
            self.runs[-1][1] = train_id
            self.runs[-1][3] += 1
        else:
            self.runs.append([train_id, train_id, phase, 1])

    def add_result(self, result) -> np.ndarray:
        """One train's :class:`.stream.TrainResult`; returns its labels as
        class indices."""
        labels = np.searchsorted(self.classes, result.labels).astype(np.int16)
        self.add(_stored_train_id(result.train_id), labels)
        return labels

    def current(self) -> tuple | None:
        """``(first, last, name, n_trains)`` of the run the last train added
        belongs to; None before any."""
        return self._named(self.runs[-1]) if self.runs else None

    def _named(self, run) -> tuple:
        first, last, phase, n = run
        return train_id_or_none(first), train_id_or_none(last), {MIXED: "mixed", NO_PULSE: "none classified"}.get(
            phase) or str(self.classes[phase]), n

    def named(self) -> list[tuple]:
        """``(first, last, name, n_trains)`` per run; ``"mixed"``, ``"none
        classified"`` for those phases; a train without an id (a bridge
        message without ``timestamp.tid``) is ``None``."""
        return [self._named(run) for run in self.runs]

    def summary(self, max_runs: int = 50) -> dict:
        """What was added so far, for a status line: ``pulses`` and
        ``trains``, ``classes`` (pulses per class), ``phases`` (``[first,
        last, name, n_trains]`` per run of trains: all, or the first and
        the latest of ``max_runs``), ``more_runs`` (how many runs are left
        out) and ``more_runs_after`` (how many of ``phases`` come before them)."""
        # up to max_runs only: a stream sends this with every train it reports
        shown, left_out = first_and_latest(self.runs, max_runs)
        return {"pulses": int(self.counts.sum()), "trains": self.trains,
                "classes": {str(c): int(n) for c, n in zip(self.classes, self.counts)},
                "phases": [list(self._named(r)) for r in shown], "more_runs": left_out,
                "more_runs_after": (max_runs + 1) // 2 if left_out else len(shown)}


def first_and_latest(items, most: int | None) -> tuple[list, int]:
    """``items`` where there are at most ``most`` (or ``most`` is None);
    else its first ``ceil(most / 2)`` and latest ``floor(most / 2)``:
    where a long series began and where it is now. And how many are left
    out between them."""
    if most is None or len(items) <= most:
        return list(items), 0
    head, tail = (most + 1) // 2, most // 2
    return list(items[:head]) + list(items[len(items) - tail:]), len(items) - most


def _stored_train_id(tid: int | None) -> int:
    """A train's id as the file and :class:`PhaseRuns` keep it: ``NO_TRAIN_ID`` for none."""
    return NO_TRAIN_ID if tid is None else int(tid)


def train_id_or_none(tid: int | None) -> int | None:
    """A train id as said (JSON, Python): ``None`` for a train without one."""
    return None if tid is None or tid == NO_TRAIN_ID else int(tid)


def train_text(tid: int | None) -> str:
    """A train id as printed: ``"(no id)"`` for a train without one (``None``,
    or the results file's marker for it)."""
    return "(no id)" if train_id_or_none(tid) is None else str(tid)


def phase_now(run, n_runs: int) -> str:
    """``"phase now: after since train 1200000100 (37 trains, run 3)"``:
    the run of trains a stream is in (:meth:`PhaseRuns.current`)."""
    first, _, phase, n = run
    return f"phase now: {phase} since train {train_text(first)} ({n} train{'s' if n != 1 else ''}, run {n_runs})"


def phases_line(summary: dict | None, shown: int = 6) -> str:
    """``"100-130 before, 131-133 mixed, (12 more runs), 900-990 after"``:
    the runs of trains of a :meth:`PhaseRuns.summary` -- the first and the
    latest of ``shown`` (:func:`first_and_latest`) --, and how many are
    left out between; empty where there are none."""
    summary = summary or {}
    runs, more = summary.get("phases") or [], summary.get("more_runs", 0)
    after = summary.get("more_runs_after", len(runs))
    # the summary's runs are the series' with `more` left out after `after`
    picked, _ = first_and_latest(range(len(runs) + more), shown)
    parts, left_out, previous = [], 0, -1
    for i in picked:
        left_out += i - previous - 1
        previous = i
        if after <= i < after + more:
            left_out += 1
            continue
        if left_out:
            parts.append(_more_runs(left_out))
            left_out = 0
        first, last, phase, n = runs[i if i < after else i - more]
        parts.append(f"{train_text(first)}-{train_text(last)} {phase}" if n > 1
                     else f"{train_text(first)} {phase}")
    left_out += len(runs) + more - previous - 1
    return ", ".join(parts + ([_more_runs(left_out)] if left_out else []))


def _more_runs(n: int) -> str:
    return f"({n} more run{'s' if n != 1 else ''})"
