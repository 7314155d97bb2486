"""``mode="copy"``: a self-contained, bitshuffle/LZ4-compressed data copy.

The chunks (one module of one frame each) are compressed in a thread pool
by the bitshuffle library that ``hdf5plugin`` ships, called through ctypes
(which releases the GIL), and stored with ``write_direct_chunk``: the bytes
are exactly what the HDF5 filter would write, so any reader with the
bitshuffle plugin decodes them. Where the library cannot be loaded the
copy falls back to HDF5's own (serial) filter pipeline.
"""

import ctypes
import os
import struct
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from .frames import source_runs
from .vds import fill_value, source_blocks

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


def compress_chunk(arr):
    """One chunk in the HDF5 bitshuffle/LZ4 filter's stored format."""
    lib = _bitshuffle_lib()
    arr = np.ascontiguousarray(arr)
    n, es = arr.size, arr.itemsize
    block = lib.bshuf_default_block_size(es)
    out = np.empty(12 + lib.bshuf_compress_lz4_bound(n, es, block), np.uint8)
    struct.pack_into(">QI", out, 0, arr.nbytes, block * es)
    nb = lib.bshuf_compress_lz4(arr.ctypes.data, out.ctypes.data + 12, n, es, block)
    if nb < 0:
        raise RuntimeError(f"bitshuffle compression failed ({nb})")
    return out[: 12 + nb]


def _compress_batch(frames):
    return [compress_chunk(fr) for fr in frames]


def create_compressed(group, name, table):
    shape = (len(table), table.n_modules) + tuple(table.module_shape)
    return group.create_dataset(
        name, shape=shape, dtype=table.dtype, chunks=(1, 1) + tuple(table.module_shape),
        fillvalue=fill_value(table.dtype), **hdf5plugin.Bitshuffle(cname="lz4"))


def _read_blocks(h5, m, fi, d0, n, f0):
    """Pixel data of *n* frames from flat index *f0*, shape (n, ss, fs)."""
    ds = h5[m.dataset]
    cells = m.sub is not None
    parts = [ds[tuple(slice(s, s + c) for s, c in zip(start, count))]
             for start, count in source_blocks(f0, n, m.src_shapes[fi], cells)]
    arr = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return arr.reshape((n,) + arr.shape[-2:])


def write_copy(group, name, table, progress=None, check_cancel=None, threads=None):
    """Copy *table*'s frames into a compressed dataset *name* in *group*."""
    dset = create_compressed(group, name, table)
    lib = _bitshuffle_lib()
    threads = threads or os.cpu_count() or 1
    total = sum(len(m.dst) for m in table.modules)
    done = 0
    with ThreadPoolExecutor(threads) as pool:
        pending = deque()

        def drain(limit):
            nonlocal done
            while len(pending) > limit:
                mi, d0, fut = pending.popleft()
                chunks = fut.result()
                for i, chunk in enumerate(chunks):
                    dset.id.write_direct_chunk((d0 + i, mi, 0, 0), chunk)
                done += len(chunks)
                if progress:
                    progress(done, total)

        for m in table.modules:
            for fi, fname in enumerate(m.files):
                with h5py.File(fname, "r") as h5:
                    for d0, n, f0 in source_runs(m, fi):
                        for off in range(0, n, BATCH_FRAMES):
                            if check_cancel:
                                check_cancel()
                            k = min(BATCH_FRAMES, n - off)
                            frames = _read_blocks(h5, m, fi, d0 + off, k, f0 + off)
                            if lib is None:
                                dset[d0 + off:d0 + off + k, m.index] = frames
                                done += k
                                if progress:
                                    progress(done, total)
                                continue
                            pending.append((m.index, d0 + off, pool.submit(_compress_batch, frames)))
                            drain(2 * threads)
        drain(0)
    return dset
