"""``mode="copy"``: a self-contained, bitshuffle/LZ4-compressed data copy.

The chunks (one module of one frame each) are compressed in a thread pool
by the bitshuffle library that ``hdf5plugin`` ships, called through ctypes
(which releases the GIL), and stored with ``write_direct_chunk``: the bytes
are exactly what the HDF5 filter would write, so any reader with the
bitshuffle plugin decodes them. Where a source chunk is exactly one
unfiltered frame (EuXFEL corrected AGIPD/LPD data), the workers also read
it themselves with ``os.pread`` at the offset HDF5 reports, so reading runs
in parallel too. Where the library cannot be loaded the copy falls back to
HDF5's own (serial) filter pipeline.
"""

import ctypes
import os
import struct
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from .vds import fill_value

BATCH_FRAMES = 32


@lru_cache(maxsize=1)
def _bitshuffle_lib():
    path = Path(hdf5plugin.__file__).parent / "plugins" / "libh5bshuf.so"
    try:
        lib = ctypes.CDLL(str(path))
        f = lib.bshuf_compress_lz4
    except (OSError, AttributeError):
        return None
    f.restype = ctypes.c_int64
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]
    lib.bshuf_compress_lz4_bound.restype = ctypes.c_size_t
    lib.bshuf_compress_lz4_bound.argtypes = [ctypes.c_size_t] * 3
    lib.bshuf_default_block_size.restype = ctypes.c_size_t
    lib.bshuf_default_block_size.argtypes = [ctypes.c_size_t]
    return lib


def compress_chunk(arr, scratch=None):
    """One chunk in the HDF5 bitshuffle/LZ4 filter's stored format.

    ``scratch``: a reusable uint8 buffer of at least the compression bound;
    the result is then a copy of just the compressed bytes.
    """
    lib = _bitshuffle_lib()
    arr = np.ascontiguousarray(arr)
    n, es = arr.size, arr.itemsize
    block = lib.bshuf_default_block_size(es)
    size = 12 + lib.bshuf_compress_lz4_bound(n, es, block)
    out = scratch if scratch is not None and scratch.size >= size else np.empty(size, np.uint8)
    struct.pack_into(">QI", out, 0, arr.nbytes, block * es)
    nb = lib.bshuf_compress_lz4(arr.ctypes.data, out.ctypes.data + 12, n, es, block)
    if nb < 0:
        raise RuntimeError(f"bitshuffle compression failed ({nb})")
    return out[: 12 + nb].copy() if out is scratch else out[: 12 + nb]


_worker = threading.local()


def _scratch(shape, dtype):
    """This thread's frame and compression buffers, reused from batch to batch:
    fresh multi-MB arrays cost a page fault per 4 KiB on every frame."""
    bufs = getattr(_worker, "bufs", None)
    if bufs is None or bufs[0].shape != shape or bufs[0].dtype != dtype:
        frame = np.empty(shape, dtype)
        lib = _bitshuffle_lib()
        bound = 12 + lib.bshuf_compress_lz4_bound(frame.size, frame.itemsize,
                                                  lib.bshuf_default_block_size(frame.itemsize))
        bufs = _worker.bufs = (frame, np.empty(bound, np.uint8))
    return bufs


def _frame_batch(fds, offsets, pre, shape, dtype, src_fill, out_fill):
    """Assemble and compress whole frames (all modules: one chunk each).

    ``offsets[m, i]``: byte offset of module m's one-frame source chunk,
    -1 where the output has no data (fill), -2 where the source chunk was
    never written (the source's fill value); ``pre[m]``: frames read by the
    caller instead.
    """
    n_mod, n = offsets.shape
    frame, scratch = _scratch((n_mod,) + tuple(shape), np.dtype(dtype))
    out = []
    for i in range(n):
        for m in range(n_mod):
            if m in pre:
                frame[m] = pre[m][i]
                continue
            off = offsets[m, i]
            if off == -1:
                frame[m] = out_fill
            elif off == -2:
                frame[m] = src_fill[m]
            else:
                view = memoryview(frame[m]).cast("B")
                if os.preadv(int(fds[m, i]), [view], int(off)) != view.nbytes:
                    raise OSError("short read: a source file is truncated")
        out.append(compress_chunk(frame, scratch))
    return out


def chunk_offsets(ds, frame_shape):
    """Byte offset of each frame's chunk (-1: unallocated), or None unless
    every chunk is one unfiltered frame stored in native byte order."""
    if ds.chunks != (1,) + tuple(frame_shape) or not ds.dtype.isnative:
        return None
    if ds.id.get_create_plist().get_nfilters() or not hasattr(ds.id, "chunk_iter"):
        return None
    offsets = np.full(ds.shape[0], -1, np.int64)

    def visit(info):
        offsets[info.chunk_offset[0]] = info.byte_offset

    ds.id.chunk_iter(visit)
    return offsets


def create_compressed(group, name, table):
    """The output dataset: one bitshuffle/LZ4 chunk per frame (all modules),
    as dxtbx reads a whole frame at a time."""
    shape = (len(table), table.n_modules) + tuple(table.module_shape)
    return group.create_dataset(
        name, shape=shape, dtype=table.dtype, chunks=(1,) + shape[1:],
        fillvalue=fill_value(table.dtype), **hdf5plugin.Bitshuffle(cname="lz4"))


class _ModuleSource:
    """The module file being read now: h5py handle, raw descriptor, offsets."""

    def __init__(self, fname, dataset, frame_shape, direct):
        self.h5 = h5py.File(fname, "r")
        self.ds = self.h5[dataset]
        self.offsets = chunk_offsets(self.ds, frame_shape) if direct else None
        self.fd = os.open(fname, os.O_RDONLY) if self.offsets is not None else -1
        self.fill = self.ds.fillvalue

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
        self.h5.close()


def write_copy(group, name, table, progress=None, check_cancel=None, threads=None):
    """Copy *table*'s frames into a compressed dataset *name* in *group*."""
    dset = create_compressed(group, name, table)
    lib = _bitshuffle_lib()
    threads = threads or os.cpu_count() or 1
    n, n_mod = len(table), table.n_modules
    fidx = np.full((n_mod, n), -1, np.int32)
    row = np.zeros((n_mod, n), np.int64)
    sub = np.zeros((n_mod, n), np.int64)
    for m in table.modules:
        fidx[m.index, m.dst] = m.file_idx
        row[m.index, m.dst] = m.row
        if m.sub is not None:
            sub[m.index, m.dst] = m.sub
    by_index = {m.index: m for m in table.modules}
    out_fill = fill_value(table.dtype)
    current = {}  # module index -> (file index, _ModuleSource)
    pending = deque()
    done = 0

    def drain(limit):
        nonlocal done
        while len(pending) > limit:
            i0, fut = pending.popleft()
            chunks = fut.result()
            for k, chunk in enumerate(chunks):
                dset.id.write_direct_chunk((i0 + k,) + (0,) * (dset.ndim - 1), chunk)
            done += len(chunks)
            if progress:
                progress(done, n)

    def source(mi, fi):
        if mi in current and current[mi][0] == fi:
            return current[mi][1]
        if mi in current:
            drain(0)  # workers may still read the old file
            current.pop(mi)[1].close()
        m = by_index[mi]
        src = _ModuleSource(m.files[fi], m.dataset, table.module_shape, lib is not None and m.sub is None)
        current[mi] = (fi, src)
        return src

    batch = max(1, BATCH_FRAMES // 4)
    try:
        with ThreadPoolExecutor(threads) as pool:
            for b0 in range(0, n, batch):
                if check_cancel:
                    check_cancel()
                b1 = min(n, b0 + batch)
                offsets = np.full((n_mod, b1 - b0), -1, np.int64)
                fds = np.full((n_mod, b1 - b0), -1, np.int64)
                pre, src_fill = {}, np.zeros(n_mod)
                for mi in range(n_mod):
                    fis = fidx[mi, b0:b1]
                    for fi in np.unique(fis[fis >= 0]):
                        src = source(mi, int(fi))
                        sel = np.flatnonzero(fis == fi)
                        src_fill[mi] = src.fill
                        rows = row[mi, b0:b1][sel]
                        if src.offsets is not None:
                            o = src.offsets[rows]
                            offsets[mi, sel] = np.where(o < 0, -2, o)
                            fds[mi, sel] = src.fd
                        else:
                            arr = pre.setdefault(mi, np.full((b1 - b0,) + tuple(table.module_shape), out_fill))
                            for j, r in zip(sel, rows):
                                arr[j] = src.ds[r] if by_index[mi].sub is None else src.ds[r, sub[mi, b0 + j]]
                if lib is None:
                    frames = [_assemble(offsets[:, k:k + 1], fds[:, k:k + 1], pre, k, table, src_fill, out_fill)
                              for k in range(b1 - b0)]
                    dset[b0:b1] = np.stack(frames)
                    done += b1 - b0
                    if progress:
                        progress(done, n)
                    continue
                pending.append((b0, pool.submit(_frame_batch, fds, offsets, pre, table.module_shape,
                                                table.dtype, src_fill, out_fill)))
                drain(2 * threads)
            drain(0)
    finally:
        for _, fut in pending:
            fut.cancel()
        for _, src in current.values():
            src.close()
    return dset


def _assemble(offsets, fds, pre, k, table, src_fill, out_fill):
    """One frame without the bitshuffle library (serial fallback)."""
    frame = np.empty((table.n_modules,) + tuple(table.module_shape), table.dtype)
    for m in range(table.n_modules):
        if m in pre:
            frame[m] = pre[m][k]
        elif offsets[m, 0] == -1:
            frame[m] = out_fill
        elif offsets[m, 0] == -2:
            frame[m] = src_fill[m]
        else:
            view = memoryview(frame[m]).cast("B")
            os.preadv(int(fds[m, 0]), [view], int(offsets[m, 0]))
    return frame
