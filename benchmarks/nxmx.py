"""NXmx conversion benchmark: ratios against peers measured in the same run.

1. ``convert_run(mode="virtual")`` vs extra_data's ``AGIPD1M(run).write_virtual_cxi()``
   on a run the size of the issue's (4998 trains x 120 pulses x 16 AGIPD
   modules, ~600,000 frames; pixel data left unwritten). Goal: ratio <= 1.0.
2. Frame-read throughput through the NXmx file vs the same frames read
   straight from the source files. Goal: >= 0.9.
3. ``mode="copy"`` throughput vs a plain h5py copy with the same
   bitshuffle/LZ4 filter and chunks. Goal: >= 2x.

Usage: .venv/bin/python benchmarks/nxmx.py [--quick] [--keep DIR]
"""

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

SOURCE = "SPB_DET_AGIPD1M-1/DET/{}CH0:xtdf"
XGM_SOURCE = "SPB_XTD9_XGM/DOOCS/MAIN"


def make_run(run_dir, ntrains, pulses, per_file, written_trains, rng):
    """Mock corrected AGIPD run in sequence files; pixel data written only
    for the first *written_trains* trains (Poisson photons, compressible)."""
    from extra_data.tests.mockdata import write_file
    from extra_data.tests.mockdata.detectors import AGIPDModule
    from extra_data.tests.mockdata.xgm import XGM

    run_dir.mkdir(parents=True, exist_ok=True)
    frames = rng.poisson(0.05, size=(8, 512, 128)).astype("f4") * 9.3
    for seq, first in enumerate(range(0, ntrains, per_file)):
        n = min(per_file, ntrains - first)
        for mod in range(16):
            path = run_dir / f"CORR-R0001-AGIPD{mod:02}-S{seq:05}.h5"
            write_file(str(path), [AGIPDModule(SOURCE.format(mod).split(":")[0], raw=False,
                                               frames_per_train=pulses)],
                       ntrains=n, firsttrain=10000 + first, chunksize=32, format_version="1.0")
            nwrite = max(0, min(n, written_trains - first)) * pulses
            if nwrite:
                with h5py.File(path, "r+") as f:
                    ds = f[f"INSTRUMENT/{SOURCE.format(mod)}/image/data"]
                    for i in range(0, nwrite, 8):
                        k = min(8, nwrite - i)
                        ds[i:i + k] = frames[:k]
        xgm_path = run_dir / f"CORR-R0001-DA01-S{seq:05}.h5"
        write_file(str(xgm_path), [XGM(XGM_SOURCE)], ntrains=n, firsttrain=10000 + first,
                   chunksize=n, format_version="1.0")
        with h5py.File(xgm_path, "r+") as f:
            ds = f[f"INSTRUMENT/{XGM_SOURCE}:output/data/intensityTD"]
            e = np.ones(ds.shape, np.float32)
            e[:n, :pulses] = rng.uniform(0, 1000, size=(n, pulses))
            ds[:] = e
            f[f"CONTROL/{XGM_SOURCE}/pulseEnergy/wavelengthUsed/value"][:n] = 0.1333


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_virtual(run, work, repeat):
    from extra_data.components import AGIPD1M

    from server_ext.nxmx import convert_run

    def nxmx():
        convert_run(run, work / "v.nxs", mode="virtual", overwrite=True, distance=120)

    def cxi():
        with contextlib.redirect_stdout(io.StringIO()):  # it prints per module
            AGIPD1M(run).write_virtual_cxi(str(work / "v.cxi"))

    nxmx(), cxi()  # warm the page cache and imports for both
    t_nx, t_cxi = [], []
    for _ in range(repeat):  # interleaved, so load changes hit both
        t_nx.append(best_of(nxmx, 1))
        t_cxi.append(best_of(cxi, 1))
    with h5py.File(work / "v.nxs") as f:
        n = f["/entry/data/data"].shape[0]
    return min(t_nx), min(t_cxi), n


def bench_read(work, run_dir, n_frames, repeat):
    """Read frames 0..n through the NXmx VDS vs from the module files."""
    files = {m: h5py.File(sorted(run_dir.glob(f"CORR-*AGIPD{m:02}-S00000.h5"))[0], "r") for m in range(16)}
    dsets = {m: f[f"INSTRUMENT/{SOURCE.format(m)}/image/data"] for m, f in files.items()}
    nx = h5py.File(work / "v.nxs", "r")
    data = nx["/entry/data/data"]
    out = np.empty((16, 512, 128), np.float32)

    image = out.reshape(16 * 512, 128)  # AGIPD: the file's image is the modules stacked

    def via_nxmx():
        for i in range(n_frames):
            data.read_direct(image, np.s_[i])

    def direct():
        for i in range(n_frames):
            for m in range(16):
                dsets[m].read_direct(out, np.s_[i], np.s_[m])

    via_nxmx(), direct()
    for i in (0, n_frames - 1):  # same bytes both ways
        direct_frame = np.stack([dsets[m][i] for m in range(16)])
        assert np.array_equal(data[i].reshape(direct_frame.shape), direct_frame)
    t_nx = min(best_of(via_nxmx, 1) for _ in range(repeat))
    t_direct = min(best_of(direct, 1) for _ in range(repeat))
    nx.close()
    for f in files.values():
        f.close()
    return t_nx, t_direct


def bench_copy(run, work, trains, repeat):
    from server_ext.nxmx import convert_run
    from server_ext.nxmx.frames import build_frame_table
    from server_ext.nxmx.detectors import select_detector

    sel = run.select_trains(np.s_[:trains])
    table = build_frame_table(sel, select_detector(sel))

    def ours():
        convert_run(sel, work / "c.nxs", mode="copy", overwrite=True, distance=120)

    def plain():
        # The straightforward h5py copy: same chunks (one frame) and filter,
        # blocks of frames read module by module and written whole.
        files = {m.index: [h5py.File(fn, "r") for fn in m.files] for m in table.modules}
        with h5py.File(work / "plain.h5", "w") as f:
            dst = f.create_dataset("data", shape=(len(table), 16, 512, 128), dtype="f4",
                                   chunks=(1, 16, 512, 128), **hdf5plugin.Bitshuffle(cname="lz4"))
            block = np.empty((32, 16, 512, 128), np.float32)
            for a in range(0, len(table), 32):
                b = min(len(table), a + 32)
                for m in table.modules:
                    sel = (m.dst >= a) & (m.dst < b)
                    fi, rows = m.file_idx[sel], m.row[sel]
                    ds = files[m.index][fi[0]][m.dataset]
                    block[:b - a, m.index] = ds[rows[0]:rows[-1] + 1]  # one file per block here
                dst[a:b] = block[:b - a]
        for fl in files.values():
            for fh in fl:
                fh.close()

    ours(), plain()
    t_ours, t_plain = [], []
    for _ in range(repeat):
        t_ours.append(best_of(ours, 1))
        t_plain.append(best_of(plain, 1))
    with h5py.File(work / "c.nxs") as a, h5py.File(work / "plain.h5") as b:
        for i in (0, len(table) // 2, len(table) - 1):
            assert np.array_equal(a["/entry/data/data"][i], b["data"][i].reshape(16 * 512, 128))
        raw = len(table) * 16 * 512 * 128 * 4
        ratio = raw / a["/entry/data/data"].id.get_storage_size()
    return min(t_ours), min(t_plain), len(table), ratio


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smaller run (500 trains x 64 pulses)")
    ap.add_argument("--keep", metavar="DIR", help="build/reuse the mock run in DIR")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    ntrains, pulses, per_file = (500, 64, 250) if args.quick else (4998, 120, 250)
    copy_trains = 4 if args.quick else 10
    rng = np.random.default_rng(0)

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nxmx-bench-"))
    run_dir, work = base / "run", base / "work"
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not (run_dir / "CORR-R0001-AGIPD00-S00000.h5").exists():
            t0 = time.perf_counter()
            make_run(run_dir, ntrains, pulses, per_file, copy_trains, rng)
            print(f"mock run: {ntrains} trains x {pulses} pulses x 16 modules in"
                  f" {len(list(run_dir.glob('*.h5')))} files ({time.perf_counter() - t0:.1f} s to make)")
        from extra_data import RunDirectory
        run = RunDirectory(str(run_dir))

        t_nx, t_cxi, n = bench_virtual(run, work, args.repeat)
        print(f"\n[1] virtual NXmx vs extra_data write_virtual_cxi, {n} frames:")
        print(f"    convert_run(mode='virtual') {t_nx:.2f} s, write_virtual_cxi {t_cxi:.2f} s")
        print(f"    ratio nxmx/cxi = {t_nx / t_cxi:.2f}  (goal <= 1.0)")

        n_read = copy_trains * pulses
        t_nx, t_direct = bench_read(work, run_dir, n_read, args.repeat)
        print(f"\n[2] frame reads, {n_read} frames x 16 modules (4 MiB each), warm cache:")
        print(f"    via NXmx {n_read / t_nx:.0f} frames/s, straight from sources {n_read / t_direct:.0f} frames/s")
        print(f"    throughput ratio nxmx/direct = {t_direct / t_nx:.2f}  (goal >= 0.9)")

        t_ours, t_plain, n, cratio = bench_copy(run, work, copy_trains, args.repeat)
        print(f"\n[3] copy mode, {n} frames x 16 modules ({n * 4 / 1024:.1f} GiB raw),"
              f" compression ratio {cratio:.1f}, {os.cpu_count()} CPUs:")
        print(f"    convert_run(mode='copy') {n / t_ours:.0f} frames/s, plain h5py copy {n / t_plain:.0f} frames/s")
        print(f"    throughput ratio copy/plain = {t_plain / t_ours:.2f}  (goal >= 2.0)")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
