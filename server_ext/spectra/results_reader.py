"""A stream's results file read back: its pulses, how the stream ended,
the pulses of a phase, the phase of each run of trains.

``read_results(path)`` reads what :class:`.results.ResultsFile` wrote,
also while it is written; ``daas spectra results`` prints it.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from .errors import SpectraError
from .results import PULSE_COLUMNS, TRAIN_COLUMNS, PhaseRuns

__all__ = ["Results", "read_results", "iter_results"]

_COLUMNS = (*PULSE_COLUMNS, "probability")


def checked_confidence(value: float) -> float:
    """A least confidence to select by: from 0 to 1 (90 for 90 % would select nothing, and
    say so nowhere)."""
    if not 0 <= value <= 1:
        raise SpectraError(f"a confidence is from 0 to 1 (0.9, not 90), not {value:g}")
    return value


@dataclasses.dataclass
class Results:
    """A results file read back (:func:`read_results`): one entry per pulse
    in ``train_id``, ``pulse``, ``label`` (an index into ``classes``, as in
    the file), ``confidence``, ``ambiguous``, ``probability`` (``(pulses,
    classes)``, ``classes`` order); one per train in ``trains`` (``train_id``, ``classified``,
    ``malformed``); ``state`` and ``error`` as the stream left them,
    ``stats`` its counters (``None`` while running), ``purity`` that of
    the phases the stream reported (0.9 in a file without it), ``about``
    the rest of the file's attributes (model, source; ``train_ids`` where
    a part of a run was replayed). A column not read
    (``columns=`` of :func:`read_results`) is ``None``."""

    path: str
    state: str
    error: str | None
    classes: np.ndarray
    train_id: np.ndarray | None
    pulse: np.ndarray | None
    label: np.ndarray | None
    confidence: np.ndarray | None
    ambiguous: np.ndarray | None
    probability: np.ndarray | None
    trains: dict
    stats: dict | None
    about: dict
    purity: float = 0.9

    def select(self, label=None, min_confidence: float = 0.0, unambiguous: bool = False):
        """A boolean mask over the pulses: of class ``label`` (any where
        ``None``), with a confidence of at least ``min_confidence``, and
        not flagged ambiguous where ``unambiguous``."""
        mask = self._column("confidence") >= checked_confidence(min_confidence)
        if label is not None:
            mask &= self._column("label") == self.index(label)
        if unambiguous:
            mask &= ~self._column("ambiguous")
        return mask

    def _column(self, name):
        values = getattr(self, name)
        if values is None:
            raise SpectraError(f"the pulses' {name!r} were not read (read_results(..., "
                               "columns=) left them out)")
        return values

    def index(self, label) -> int:
        """The index in ``classes`` of the class named ``label``."""
        found = np.flatnonzero(self.classes == str(label))
        if not len(found):
            raise SpectraError(f"no class {label!r} in {self.path}; its classes: "
                               f"{', '.join(self.classes)}")
        return int(found[0])

    def phases(self, purity: float | None = None) -> list[tuple]:
        """Consecutive trains by their phase: ``(first, last, label, n)``
        for each run of ``n`` trains in which ``label`` has at least
        ``purity`` (default the stream's, :attr:`purity`) of a train's
        pulses -- ``"mixed"`` where no class has,
        ``"none classified"`` where a train had no pulse classified
        (:class:`.results.PhaseRuns`, which a stream's results file keeps
        as it is written)."""
        return self.add_phases(PhaseRuns(self.classes, self.purity if purity is None else purity)).named()

    def between(self, first: int | None = None, last: int | None = None) -> Results:
        """These results cut to the trains with an id from ``first`` to
        ``last``, both included (open where ``None``), and their pulses:
        a temperature plateau, the part of a run after the sample moved.
        Trains without an id are left out; a span the wrong way round, or
        not of whole numbers >= 0, raises :class:`SpectraError`."""
        from .train_span import in_span

        keep = in_span(self.trains["train_id"], first, last)
        pulses = np.repeat(keep, self.trains["classified"])
        return dataclasses.replace(self, trains={c: v[keep] for c, v in self.trains.items()},
                                   **{c: None if getattr(self, c) is None else getattr(self, c)[pulses]
                                      for c in _COLUMNS})

    def add_phases(self, runs: PhaseRuns) -> PhaseRuns:
        """These trains added to ``runs`` (those of the blocks before, from
        :func:`iter_results`)."""
        labels = self._column("label")
        ends = np.cumsum(self.trains["classified"], dtype=np.int64)
        for tid, end, n in zip(self.trains["train_id"], ends, self.trains["classified"]):
            runs.add(int(tid), labels[end - n:end])
        return runs


def read_results(path, columns=None) -> Results:
    """Read a results file -- also one still being written (SWMR), up to
    its last flush, the columns cut to the trains complete in all of them.
    ``columns``: the pulse columns to read (default all: 36 bytes a pulse
    in memory for three classes, 3.5 GB for an hour at 27,000 pulses/s),
    the others ``None``; :func:`iter_results` reads a file of any size in
    blocks of trains."""
    (whole,) = iter_results(path, columns, trains_per_block=None)
    return whole


def iter_results(path, columns=None, trains_per_block: int | None = 1000):
    """:class:`Results` of consecutive blocks of ``trains_per_block`` trains
    (``None``: one block of all; a file without trains gives one empty
    block), each with its own trains and pulses: memory bounded by the
    block, whatever the file's size. Checked as :func:`read_results`."""
    import h5py

    wanted = _COLUMNS if columns is None else tuple(columns)
    unknown = sorted(set(wanted) - set(_COLUMNS))
    if unknown:
        raise SpectraError(f"no pulse column {unknown[0]!r}; there are: {', '.join(_COLUMNS)}")
    if trains_per_block is not None and trains_per_block < 1:
        raise SpectraError(f"trains_per_block must be >= 1 or None, not {trains_per_block!r}")
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
            missing = [f"{g}/{c}" for g, cols in (("pulses", _COLUMNS), ("trains", TRAIN_COLUMNS))
                       for c in cols if f"{g}/{c}" not in f]
            if "classes" not in f or missing:
                raise SpectraError(f"{path} is not a spectra results file (no "
                                   f"{'/classes' if 'classes' not in f else '/' + missing[0]}); "
                                   "'daas spectra classify -o' writes them")
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            classes = f["classes"].asstr()[()]
            # read first: the rows up to it are whole on disk, those after may still be zeros
            # (None: a file written before it was kept)
            written = int(f["trains_written"][0]) if "trains_written" in f else None
            trains = {c: f[f"trains/{c}"][()] for c in TRAIN_COLUMNS}  # 16 bytes a train
            # a flush extends one column after another: a reader may see some longer
            n_trains = min([len(v) for v in trains.values()] + ([written] if written is not None else []))
            trains = {c: v[:n_trains] for c, v in trains.items()}
            ends = np.cumsum(trains["classified"], dtype=np.int64)
            n = int(ends[-1]) if n_trains else 0
            if wanted and min(f[f"pulses/{c}"].shape[0] for c in wanted) < n:
                raise SpectraError(f"{path} holds fewer pulses than its trains count ({n}): "
                                   "damaged")
            stats = attrs.pop("stats", None)
            common = dict(path=path, state=attrs.pop("state", "unknown"),
                          error=attrs.pop("error", None), classes=classes,
                          stats=None if stats is None else json.loads(stats),
                          purity=_purity(attrs.pop("purity", 0.9), path), about=attrs)
            step = trains_per_block or max(n_trains, 1)
            for first in range(0, max(n_trains, 1), step):
                last = min(first + step, n_trains)
                start, stop = (int(ends[first - 1]) if first else 0), (int(ends[last - 1])
                                                                         if last else 0)
                pulses = {c: f[f"pulses/{c}"][start:stop] for c in wanted}
                labels = pulses.get("label")
                if stop > start and labels is not None and (labels.min() < 0
                                                            or labels.max() >= len(classes)):
                    raise SpectraError(f"{path} holds labels beyond its {len(classes)} classes: "
                                       "damaged")
                yield Results(**common, **{c: pulses.get(c) for c in _COLUMNS},
                              trains={c: v[first:last] for c, v in trains.items()})
    except SpectraError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:  # TypeError: classes
        raise SpectraError(f"cannot read {path} as a results file (damaged or truncated?): "
                           f"{e}") from None


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


def _purity(value, path) -> float:
    try:
        purity = float(value)
    except (TypeError, ValueError):
        purity = float("nan")
    if not 0 < purity <= 1:
        raise SpectraError(f"{path} is damaged: its purity attribute is {value!r}, not a "
                           "fraction in (0, 1]")
    return purity
