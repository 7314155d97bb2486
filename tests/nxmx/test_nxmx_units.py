"""Small pieces: mask translation, bitshuffle chunks, frame alignment."""

import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from server_ext.nxmx.beam import Beam, pulse_rank
from server_ext.nxmx.compressed import compress_chunk
from server_ext.nxmx.mask import EUXFEL_TO_NXMX, NX_DEAD, NX_GAP, NX_NOISY, translate_mask
from server_ext.nxmx.vds import source_blocks


def test_translate_mask_bits():
    m = np.array([0, 1 << 0, 1 << 1, 1 << 19, (1 << 1) | (1 << 19), 1 << 30], np.uint32)
    out = translate_mask(m)
    assert out.dtype == np.uint32
    assert list(out) == [0, NX_DEAD, NX_NOISY, NX_GAP, NX_NOISY | NX_GAP, NX_DEAD]
    assert all(v & 0xFFFF or v >> 31 for v in EUXFEL_TO_NXMX.values())  # all reject or tag


def test_compressed_chunk_decodes_with_hdf5plugin(tmp_path):
    rng = np.random.default_rng(5)
    frames = [rng.poisson(0.5, (512, 128)).astype("f4"), rng.normal(size=(37, 11)).astype("f8"),
              np.arange(1000, dtype="u2").reshape(10, 100)]
    with h5py.File(tmp_path / "c.h5", "w") as f:
        for i, a in enumerate(frames):
            ds = f.create_dataset(str(i), shape=(1,) + a.shape, dtype=a.dtype, chunks=(1,) + a.shape,
                                  **hdf5plugin.Bitshuffle(cname="lz4"))
            ds.id.write_direct_chunk((0,) * ds.ndim, compress_chunk(a))
            np.testing.assert_array_equal(ds[0], a)


def test_pulse_rank():
    assert list(pulse_rank(np.array([5, 5, 5, 7, 9, 9]))) == [0, 1, 2, 0, 0, 1]


def test_source_blocks_for_memory_cells():
    # 5 frames starting at entry 1, cell 14 of 16: 2 + 3 cells
    blocks = source_blocks(1 * 16 + 14, 5, (4, 16, 8, 8), cells=True)
    assert blocks == [((1, 14, 0, 0), (1, 2, 8, 8)), ((2, 0, 0, 0), (1, 3, 8, 8))]
    blocks = source_blocks(16, 40, (4, 16, 8, 8), cells=True)
    assert blocks == [((1, 0, 0, 0), (2, 16, 8, 8)), ((3, 0, 0, 0), (1, 8, 8, 8))]
    assert source_blocks(3, 4, (10, 8, 8), cells=False) == [((3, 0, 0), (4, 8, 8))]


def test_beam_select_keeps_frames_aligned():
    wl = np.linspace(1.0, 1.9, 10)
    energy = np.arange(10.0) * 100
    keep = energy >= 450
    beam = Beam(wl.copy(), energy.copy())
    beam.select(keep)
    np.testing.assert_array_equal(beam.wavelength_A, wl[5:])
    np.testing.assert_array_equal(beam.pulse_energy_uJ, energy[5:])
    no_xgm = Beam(wl.copy(), None)
    no_xgm.select(keep)
    assert no_xgm.pulse_energy_uJ is None and no_xgm.photons_per_pulse is None
    np.testing.assert_array_equal(no_xgm.wavelength_A, wl[5:])


def test_package_import_is_lazy():
    code = ("import sys, server_ext.nxmx as nx; assert 'h5py' not in sys.modules, 'h5py';"
            " from server_ext.nxmx import convert_run, validate, inspect_run;"
            " assert 'h5py' in sys.modules and callable(convert_run) and nx.validate is validate")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2], timeout=120)
