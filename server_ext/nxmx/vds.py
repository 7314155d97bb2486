"""``/entry/data/data`` as an HDF5 virtual dataset over the run's files.

Frame selection lives in the mapping itself: each (module, file) becomes
one mapping whose source and destination selections are unions of
hyperslabs, so nothing is copied and the cost grows with the number of
files, not frames.
"""

import h5py
import numpy as np
from h5py import h5d, h5p, h5s, h5t

from .frames import source_runs


def fill_value(dtype):
    return np.array(np.nan if np.issubdtype(dtype, np.floating) else 0, dtype=dtype)


def source_blocks(flat0, n, src_shape, cells, window=None):
    """Hyperslabs (start, count) covering *n* frames from flat index *flat0*;
    *window* ``((slow0, fast0), (slow, fast))`` restricts them to part of
    each frame (default: all of it)."""
    tail = tuple(src_shape[2:] if cells else src_shape[1:])
    zeros = (0,) * len(tail)
    if window is not None:
        zeros, tail = tuple(window[0]), tuple(window[1])
    if not cells:
        return [((flat0,) + zeros, (n,) + tail)]
    ncell = src_shape[1]
    row, cell = divmod(flat0, ncell)
    blocks = []
    if cell:
        k = min(n, ncell - cell)
        blocks.append(((row, cell) + zeros, (1, k) + tail))
        n -= k
        row += 1
    full, rest = divmod(n, ncell)
    if full:
        blocks.append(((row, 0) + zeros, (full, ncell) + tail))
        row += full
    if rest:
        blocks.append(((row, 0) + zeros, (1, rest) + tail))
    return blocks


def _mappings(m, fi, window):
    """[(dst runs, src blocks)] for one tile *window* of one module file,
    each a valid union."""
    runs = list(source_runs(m, fi))
    if not runs:
        return []
    cells = m.sub is not None
    src_shape = m.src_shapes[fi]
    flats = [r[2] for r in runs]
    # A union of hyperslabs is walked in storage order on both sides, so
    # one mapping is right only if the source order follows the output's.
    if all(a < b for a, b in zip(flats, flats[1:])):
        groups = [runs]
    else:
        groups = [[r] for r in runs]
    out = []
    for group in groups:
        blocks = [b for d0, n, f0 in group for b in source_blocks(f0, n, src_shape, cells, window)]
        out.append((group, blocks))
    return out


def write_virtual(group, name, table, layout, progress=None, check_cancel=None):
    """Create the virtual dataset *name* in *group* for *table*'s frames,
    each tile mapped to its rows of the image (``geometry.ImageLayout``)."""
    shape = (len(table),) + layout.shape
    tile = tuple(layout.tile_shape)
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_fill_value(fill_value(table.dtype))
    vspace = h5s.create_simple(shape)
    total = sum(len(m.files) for m in table.modules)
    done = 0
    # (first image row, source window, rows x cols) of what each module maps:
    # the whole module where the image is a stack of modules, else each tile.
    by_module = {}
    for i, (mod, ss, fs) in enumerate(layout.tiles):
        if layout.is_module_stack:
            if mod not in by_module:
                by_module[mod] = [(layout.row(i), None, tuple(layout.module_shape))]
        else:
            by_module.setdefault(mod, []).append((layout.row(i), ((ss.start, fs.start), tile), tile))
    for m in table.modules:
        for fi, fname in enumerate(m.files):
            if check_cancel:
                check_cancel()
            src_shape = m.src_shapes[fi]
            for row0, window, block in by_module[m.index]:
                for runs, blocks in _mappings(m, fi, window):
                    dspace = h5s.create_simple(shape)
                    dspace.select_none()
                    for d0, n, _ in runs:
                        dspace.select_hyperslab((d0, row0, 0), (n,) + block, op=h5s.SELECT_OR)
                    sspace = h5s.create_simple(src_shape)
                    sspace.select_none()
                    for start, count in blocks:
                        sspace.select_hyperslab(start, count, op=h5s.SELECT_OR)
                    dcpl.set_virtual(dspace, fname.encode(), m.dataset.encode(), sspace)
            done += 1
            if progress:
                progress(done, total)
    tid = h5t.py_create(table.dtype)
    dsid = h5d.create(group.id, name.encode(), tid, vspace, dcpl=dcpl)
    return h5py.Dataset(dsid)
