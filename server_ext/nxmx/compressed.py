"""``mode="copy"``: a self-contained, compressed data copy.

Two compressions: ``"bitshuffle"`` (bitshuffle/LZ4, HDF5 filter 32008: fast
and compact, but a reader's HDF5 needs the bitshuffle plugin) and
``"gzip"`` (HDF5's built-in shuffle + deflate filters, which every HDF5
reads without plugins; slower, larger).

The chunks (one whole frame each) are compressed in a thread pool, by the
bitshuffle library that ``hdf5plugin`` ships called through ctypes, or by
``zlib`` (both release the GIL), and stored with ``write_direct_chunk``: the
bytes are exactly what the HDF5 filters would write, so any reader with
those filters decodes them. Where a source chunk is exactly one
unfiltered frame (EuXFEL corrected AGIPD/LPD data), the workers also read
it themselves with ``os.pread`` at the offset HDF5 reports, so reading runs
in parallel too. Where the library cannot be loaded the copy falls back to
HDF5's own (serial) filter pipeline.
"""

import ctypes
import os
import struct
import threading
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from .errors import CorruptRunError
from .vds import fill_value

#: Frames per work item of the copy: small enough that each of several
#: threads gets work from the first frames on, large enough to amortise
#: the per-item overhead.
BATCH_FRAMES = 8

#: deflate level of ``compression="gzip"``: higher levels cost much more
#: time for a few per cent on detector floats.
GZIP_LEVEL = 4


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


def gzip_chunk(arr):
    """One chunk as HDF5's shuffle + deflate filters store it: the bytes
    grouped by significance (shuffle), then a zlib stream."""
    arr = np.ascontiguousarray(arr)
    shuffled = arr.view(np.uint8).reshape(-1, arr.itemsize).T.tobytes()
    return zlib.compress(shuffled, GZIP_LEVEL)


def chunk_encoder(compression):
    """``encode(frame, scratch) -> bytes`` for *compression*, or None where
    the copy must use HDF5's own (serial) filter pipeline."""
    if compression == "gzip":
        return lambda frame, scratch: gzip_chunk(frame)
    return compress_chunk if _bitshuffle_lib() is not None else None


def _scratch(shape, dtype, compression):
    """This thread's frame and compression buffers, reused from batch to batch:
    fresh multi-MB arrays cost a page fault per 4 KiB on every frame."""
    bufs = getattr(_worker, "bufs", None)
    if bufs is None or bufs[0].shape != shape or bufs[0].dtype != dtype or bufs[2] != compression:
        frame = np.empty(shape, dtype)
        scratch = None
        if compression == "bitshuffle":
            lib = _bitshuffle_lib()
            bound = 12 + lib.bshuf_compress_lz4_bound(frame.size, frame.itemsize,
                                                      lib.bshuf_default_block_size(frame.itemsize))
            scratch = np.empty(bound, np.uint8)
        bufs = _worker.bufs = (frame, scratch, compression)
    return bufs[:2]


def _frame_batch(fds, offsets, pre, shape, dtype, src_fill, out_fill, names, compression, layout):
    """Assemble and compress whole frames (all modules: one chunk each).

    ``offsets[m, i]``: byte offset of module m's one-frame source chunk,
    -1 where the output has no data (fill), -2 where the source chunk was
    never written (the source's fill value); ``pre[m]``: frames read by the
    caller instead; ``names``: file name per descriptor, for errors.
    """
    n_mod, n = offsets.shape
    frame, scratch = _scratch((n_mod,) + tuple(shape), np.dtype(dtype), compression)
    encode = chunk_encoder(compression)
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
                fd = int(fds[m, i])
                view = memoryview(frame[m]).cast("B")
                try:
                    got = os.preadv(fd, [view], int(off))
                except OSError as e:
                    raise _read_error(names.get(fd, "a source file"), e) from None
                if got != view.nbytes:
                    raise _read_error(names.get(fd, "a source file"),
                                      f"short read: {got} of {view.nbytes} bytes at offset {int(off)}")
        image = frame if layout.is_module_stack else layout.to_image(frame)
        out.append(encode(image, scratch))
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


def create_compressed(group, name, table, layout, compression="bitshuffle"):
    """The output dataset: one compressed chunk per frame (all modules, one
    ``geometry.ImageLayout`` image), as dxtbx reads a whole frame at a time."""
    if compression == "gzip":
        filters = {"compression": "gzip", "compression_opts": GZIP_LEVEL, "shuffle": True}
    else:
        filters = dict(hdf5plugin.Bitshuffle(cname="lz4"))
    shape = (len(table),) + layout.shape
    return group.create_dataset(
        name, shape=shape, dtype=table.dtype, chunks=(1,) + shape[1:],
        fillvalue=fill_value(table.dtype), **filters)


class _ModuleSource:
    """One module file opened for reading: h5py handle, raw descriptor, offsets."""

    def __init__(self, fname, dataset, frame_shape, direct):
        self.fname = fname
        self.h5, self.fd = None, -1
        try:
            self.h5 = h5py.File(fname, "r")
            self.ds = self.h5[dataset]
            self.offsets = chunk_offsets(self.ds, frame_shape) if direct else None
            self.fd = os.open(fname, os.O_RDONLY) if self.offsets is not None else -1
            self.fill = self.ds.fillvalue
        except (OSError, KeyError) as e:
            self.close()
            raise _read_error(fname, e) from None

    def read(self, row, sub=None):
        """One frame through HDF5 (for chunks the workers cannot read raw)."""
        try:
            return self.ds[row] if sub is None else self.ds[row, sub]
        except OSError as e:
            raise _read_error(self.fname, e) from None

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.h5 is not None:
            self.h5.close()
            self.h5 = None


def _read_error(fname, err):
    return CorruptRunError(
        f"cannot read the frame data in {fname} ({err}): the file is truncated or corrupt;"
        " copy it again from the facility, or exclude the affected trains with --trains")


class _OpenSources:
    """The module files the copy reads, opened once each.

    A worker reads through the raw descriptor of each frame's file. When a
    module moves on to its next sequence file, the old one is *retired*,
    not closed: queued batches still hold its descriptor, and closing it
    would let the next ``os.open`` reuse the number, so they would read the
    new file at the old file's offsets. A retired file is closed once every
    batch up to the one being built when it retired has been written.
    """

    def __init__(self, table, direct):
        self.table = table
        self.direct = direct
        self.current = {}  # module index -> (file index, _ModuleSource)
        self.retired = deque()  # (last batch that may read it, _ModuleSource)
        self.by_index = {m.index: m for m in table.modules}

    def get(self, mi, fi, batch_no):
        cur = self.current.get(mi)
        if cur is not None and cur[0] == fi:
            return cur[1]
        if cur is not None:
            self.retired.append((batch_no, cur[1]))
        m = self.by_index[mi]
        src = _ModuleSource(m.files[fi], m.dataset, self.table.module_shape,
                            self.direct and m.sub is None)
        self.current[mi] = (fi, src)
        return src

    def written(self, n_batches):
        """Batches ``0 .. n_batches - 1`` are on disk: close what only they read."""
        while self.retired and self.retired[0][0] < n_batches:
            self.retired.popleft()[1].close()

    def close(self):
        for _, src in self.retired:
            src.close()
        for _, src in self.current.values():
            src.close()
        self.retired.clear()
        self.current.clear()


def write_copy(group, name, table, layout, progress=None, check_cancel=None, threads=None,
               compression="bitshuffle"):
    """Copy *table*'s frames into a compressed dataset *name* in *group*.

    *compression*: one of :data:`COMPRESSIONS`. Source files that cannot be
    read raise :class:`CorruptRunError`; a cancelled or failed copy stops
    the worker threads before returning.
    """
    dset = create_compressed(group, name, table, layout, compression)
    direct = chunk_encoder(compression) is not None
    # One worker more than CPUs: a worker waiting on a read, or the main thread
    # writing chunks, would otherwise leave a core idle (2 CPUs: 1.7x -> 2.1x).
    threads = threads or (os.cpu_count() or 1) + 1
    n, n_mod = len(table), table.n_modules
    fidx = np.full((n_mod, n), -1, np.int32)
    row = np.zeros((n_mod, n), np.int64)
    sub = np.zeros((n_mod, n), np.int64)
    for m in table.modules:
        fidx[m.index, m.dst] = m.file_idx
        row[m.index, m.dst] = m.row
        if m.sub is not None:
            sub[m.index, m.dst] = m.sub
    has_cells = {m.index: m.sub is not None for m in table.modules}
    out_fill = fill_value(table.dtype)
    sources = _OpenSources(table, direct=direct)
    pending = deque()  # (first frame, future) per submitted batch, in order
    n_written = 0  # batches written
    done = 0

    def drain(limit):
        nonlocal done, n_written
        while len(pending) > limit:
            i0, fut = pending.popleft()
            chunks = fut.result()
            for k, chunk in enumerate(chunks):
                dset.id.write_direct_chunk((i0 + k,) + (0,) * (dset.ndim - 1), chunk)
            n_written += 1
            sources.written(n_written)
            done += len(chunks)
            if progress:
                progress(done, n)

    pool = ThreadPoolExecutor(threads, thread_name_prefix="nxmx-copy")
    try:
        for batch_no, b0 in enumerate(range(0, n, BATCH_FRAMES)):
            if check_cancel:
                check_cancel()
            b1 = min(n, b0 + BATCH_FRAMES)
            offsets = np.full((n_mod, b1 - b0), -1, np.int64)
            fds = np.full((n_mod, b1 - b0), -1, np.int64)
            names = {}
            pre, src_fill = {}, np.zeros(n_mod)
            for mi in range(n_mod):
                fis = fidx[mi, b0:b1]
                for fi in np.unique(fis[fis >= 0]):
                    src = sources.get(mi, int(fi), batch_no)
                    sel = np.flatnonzero(fis == fi)
                    src_fill[mi] = src.fill
                    rows = row[mi, b0:b1][sel]
                    if src.offsets is not None:
                        o = src.offsets[rows]
                        offsets[mi, sel] = np.where(o < 0, -2, o)
                        fds[mi, sel] = src.fd
                        names[src.fd] = src.fname
                    else:
                        arr = pre.setdefault(mi, np.full((b1 - b0,) + tuple(table.module_shape), out_fill))
                        for j, r in zip(sel, rows):
                            arr[j] = src.read(r, sub[mi, b0 + j] if has_cells[mi] else None)
            if not direct:  # HDF5's own filter, serially; every frame was read above
                block = np.full((b1 - b0, n_mod) + tuple(table.module_shape), out_fill, table.dtype)
                for mi, arr in pre.items():
                    block[:, mi] = arr
                dset[b0:b1] = layout.to_image(block)
                n_written += 1
                sources.written(n_written)
                done += b1 - b0
                if progress:
                    progress(done, n)
                continue
            pending.append((b0, pool.submit(_frame_batch, fds, offsets, pre, table.module_shape,
                                            table.dtype, src_fill, out_fill, names, compression, layout)))
            drain(2 * threads)
        drain(0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        sources.close()
    return dset
