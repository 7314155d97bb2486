"""The frame table: which (train, pulse) each output frame is, and where
each module's pixels for it live in the run's files.

Built from the files' INDEX sections and the per-frame pulse/cell labels,
read once per file; frames of all modules are aligned by (train, pulse),
and a module missing a frame leaves a hole that the output fills.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CorruptRunError

PULSE_BITS = 20  # pulse IDs are < 2**20; train and pulse share one int64 key


@dataclass
class ModuleFrames:
    """One module's frames: file, row (and memory-cell slot) per frame."""

    index: int  # module position in the output array
    source: str
    dataset: str  # HDF5 path of the pixel data inside each file
    files: list = field(default_factory=list)  # absolute paths
    src_shapes: list = field(default_factory=list)  # data shape per file
    file_idx: np.ndarray = None
    row: np.ndarray = None
    sub: np.ndarray = None  # slot within a multi-frame entry (JUNGFRAU), else None
    keys: np.ndarray = None
    cell: np.ndarray = None
    dst: np.ndarray = None  # output frame index per frame
    mask_dataset: str = ""


@dataclass
class FrameTable:
    """Per-output-frame labels plus the per-module source mapping."""

    train_id: np.ndarray
    pulse_id: np.ndarray
    cell_id: np.ndarray
    modules: list
    n_modules: int
    module_shape: tuple
    dtype: np.dtype

    def __len__(self):
        return len(self.train_id)

    def select(self, keep):
        """Keep only frames where the boolean array *keep* is true."""
        new_index = np.cumsum(keep) - 1
        for m in self.modules:
            ok = keep[m.dst]
            for name in ("file_idx", "row", "keys", "cell"):
                setattr(m, name, getattr(m, name)[ok])
            if m.sub is not None:
                m.sub = m.sub[ok]
            m.dst = new_index[m.dst[ok]]
        self.train_id = self.train_id[keep]
        self.pulse_id = self.pulse_id[keep]
        self.cell_id = self.cell_id[keep]


def _group_path(source, key):
    group, name = key.split(".", 1)
    return f"INSTRUMENT/{source}/{group}/{name.replace('.', '/')}"


def _read_labels(h5file, path, fname):
    try:
        return h5file[path][()]
    except (KeyError, OSError) as e:
        raise CorruptRunError(
            f"cannot read {path} in {fname} ({e}): the file is truncated or corrupt;"
            " copy it again, or exclude the affected trains with --trains"
        ) from None


def _labels(h5file, path, fname, frames_shape, data_path):
    """Per-frame labels as (entries, frames per entry); one per data frame."""
    labels = _read_labels(h5file, path, fname)
    n_entries = frames_shape[0]
    per_entry = int(np.prod(frames_shape[1:], dtype=np.int64))
    if labels.size != n_entries * per_entry or (labels.ndim and labels.shape[0] != n_entries):
        raise CorruptRunError(
            f"{fname}: {path} has shape {labels.shape} but {data_path} holds"
            f" {n_entries * per_entry} frames ({'x'.join(map(str, frames_shape))}); the file is"
            " inconsistent: copy it again from the facility, or remove it from the run directory")
    return labels.reshape(n_entries, per_entry)


def _module_frames(run, det, modno, train_ids):
    kind = det.kind
    src = det.sources[modno]
    index_group = kind.data_key.split(".", 1)[0]
    data_path = _group_path(src, kind.data_key)
    mf = ModuleFrames(index=det.module_index(modno), source=src, dataset=data_path,
                      mask_dataset=_group_path(src, kind.mask_key) if kind.mask_key else "")
    parts = []
    # Sequence files in train order, so frames come out sorted.
    for fa in sorted(run[src].files, key=lambda fa: (fa.train_ids[:1].tolist(), fa.filename)):
        fname = fa.filename
        try:
            firsts, counts = fa.get_index(src, index_group)
            tids = np.asarray(fa.train_ids)
            h5 = fa.file
            shape = h5[data_path].shape
        except (OSError, KeyError) as e:
            raise CorruptRunError(
                f"cannot read {fname} ({e}): the file is truncated or corrupt;"
                " copy it again from the facility, or remove it from the run directory"
            ) from None
        n = min(len(tids), len(firsts))
        tids, firsts, counts = tids[:n], firsts[:n].astype(np.int64), counts[:n].astype(np.int64)
        keep = np.isin(tids, train_ids, assume_unique=True) & (counts > 0)
        tids, firsts, counts = tids[keep], firsts[keep], counts[keep]
        if not len(tids):
            continue
        if int((firsts + counts).max()) > shape[0]:
            raise CorruptRunError(
                f"{fname}: the index points past the end of {data_path};"
                " the file is truncated: copy it again from the facility"
            )
        total = int(counts.sum())
        starts = np.cumsum(counts) - counts
        rows = np.arange(total) - np.repeat(starts - firsts, counts)
        frame_tid = np.repeat(tids, counts)
        if kind.layout == "xtdf":
            pulses = _labels(h5, _group_path(src, kind.pulse_key), fname, shape[:1], data_path)[:, 0]
            cells = _labels(h5, _group_path(src, kind.cell_key), fname, shape[:1], data_path)[:, 0]
            pulse, cell, sub = pulses[rows], cells[rows], None
        else:  # one entry per train, holding all memory cells
            ncell = shape[1]
            cells = _labels(h5, _group_path(src, kind.cell_key), fname, shape[:2], data_path)
            frame_tid = np.repeat(frame_tid, ncell)
            sub = np.tile(np.arange(ncell), total)
            rows = np.repeat(rows, ncell)
            pulse = sub
            cell = cells[rows, sub]
        mf.files.append(fname)
        mf.src_shapes.append(shape)
        parts.append((np.full(len(rows), len(mf.files) - 1, np.int32), rows, sub,
                      frame_tid.astype(np.int64), pulse.astype(np.int64), cell))
    if not parts:
        mf.file_idx = np.zeros(0, np.int32)
        mf.row = mf.keys = mf.cell = np.zeros(0, np.int64)
        mf.sub = None if kind.layout == "xtdf" else np.zeros(0, np.int64)
        return mf
    mf.file_idx = np.concatenate([p[0] for p in parts])
    mf.row = np.concatenate([p[1] for p in parts])
    mf.sub = None if kind.layout == "xtdf" else np.concatenate([p[2] for p in parts])
    tid = np.concatenate([p[3] for p in parts])
    pid = np.concatenate([p[4] for p in parts])
    mf.keys = (tid << PULSE_BITS) | pid
    mf.cell = np.concatenate([p[5] for p in parts])
    return mf


def _check_unique(mf):
    """Refuse a module that labels two frames with the same (train, pulse):
    frames are aligned across modules by that label."""
    keys = mf.keys
    if len(keys) < 2 or np.all(np.diff(keys) > 0):  # the usual case, O(n)
        return
    order = np.argsort(keys, kind="stable")
    same = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if not len(same):
        return
    first, second = order[same[0]], order[same[0] + 1]
    key = int(keys[first])
    files = sorted({Path(mf.files[mf.file_idx[i]]).name for i in (first, second)})
    raise CorruptRunError(
        f"{mf.source} has two frames labelled train {key >> PULSE_BITS}, pulse"
        f" {key & ((1 << PULSE_BITS) - 1)} (in {' and '.join(files)}), so its frames cannot be"
        " aligned with the other modules' by (train, pulse); exclude that train with --trains,"
        " or convert a corrected run with valid pulse IDs")


def build_frame_table(run, det):
    """Build the aligned :class:`FrameTable` for *det* over *run*'s trains.

    Raises :class:`CorruptRunError` where a module repeats a (train, pulse).
    """
    train_ids = np.asarray(run.train_ids, dtype=np.uint64)
    modules = [_module_frames(run, det, modno, train_ids) for modno in sorted(det.sources)]
    for m in modules:
        _check_unique(m)
    first = modules[0].keys
    if all(np.array_equal(m.keys, first) for m in modules[1:]) and np.all(np.diff(first) > 0):
        keys = first  # the usual case: every module has every frame
    else:
        keys = np.unique(np.concatenate([m.keys for m in modules]))
    cell = np.zeros(len(keys), np.uint16)
    for m in reversed(modules):
        m.dst = np.arange(len(keys)) if m.keys is keys else np.searchsorted(keys, m.keys)
        cell[m.dst] = m.cell
    src = det.sources[min(det.sources)]
    dtype = run[src, det.kind.data_key].dtype
    return FrameTable(
        train_id=(keys >> PULSE_BITS).astype(np.uint64),
        pulse_id=(keys & ((1 << PULSE_BITS) - 1)).astype(np.uint64),
        cell_id=cell, modules=modules, n_modules=det.n_modules,
        module_shape=det.kind.module_shape, dtype=np.dtype(dtype),
    )


def source_runs(m, file_i):
    """Contiguous runs of module *m*'s frames in file *file_i*.

    Yields ``(dst_start, length, flat_start)`` where ``flat`` counts frames
    through the file (row * cells + slot), so a run is contiguous in both
    the output and the source.
    """
    sel = np.flatnonzero(m.file_idx == file_i)
    if not len(sel):
        return
    dst = m.dst[sel]
    if m.sub is None:
        flat = m.row[sel]
    else:
        ncell = m.src_shapes[file_i][1]
        flat = m.row[sel] * ncell + m.sub[sel]
    order = np.argsort(dst, kind="stable")
    dst, flat = dst[order], flat[order]
    breaks = np.flatnonzero((np.diff(dst) != 1) | (np.diff(flat) != 1)) + 1
    starts = np.r_[0, breaks]
    ends = np.r_[breaks, len(dst)]
    for s, e in zip(starts, ends):
        yield int(dst[s]), int(e - s), int(flat[s])

