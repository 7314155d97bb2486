"""Publishing the output file: its mode, no overwrite races, I/O errors
reported as ConversionErrors, cancellation mid-copy; nothing left behind."""

import errno
import os
import tempfile
import threading
import warnings

import h5py
import pytest

from server_ext.nxmx import ConversionCancelled, CorruptRunError, OutputError, convert_run
from server_ext.nxmx import compressed

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def convert(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_run(*args, **kwargs)


def only(path):
    """The folder holds *path* and nothing else (no .part file)."""
    return sorted(path.parent.iterdir()) == [path]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_output_mode_follows_umask(agipd_dir, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = convert(agipd_dir, tmp_path / "m.nxs", trains=slice(0, 1), distance=100)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert only(out)


def test_file_appearing_before_publication_is_kept(agipd_dir, tmp_path, monkeypatch):
    out = tmp_path / "race.nxs"
    real_link, real_replace = os.link, os.replace

    def competitor_first(real):
        def publish(src, dst, *a, **kw):
            if os.fspath(dst) == os.fspath(out) and not out.exists():
                out.write_bytes(b"another job's result")
            return real(src, dst, *a, **kw)
        return publish

    monkeypatch.setattr(os, "link", competitor_first(real_link))
    monkeypatch.setattr(os, "replace", competitor_first(real_replace))
    with pytest.raises(OutputError, match="appeared during the conversion"):
        convert(agipd_dir, out, trains=slice(0, 1), distance=100)
    assert out.read_bytes() == b"another job's result"
    assert only(out)
    # With overwrite the finished file replaces it.
    convert(agipd_dir, out, trains=slice(0, 1), distance=100, overwrite=True)
    assert out.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    assert only(out)


def test_temporary_file_cannot_be_created(agipd_dir, tmp_path, monkeypatch):
    def full(*a, **kw):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(OutputError, match="cannot create a file in .*quota"):
        convert(agipd_dir, tmp_path / "q.nxs", trains=slice(0, 1), distance=100)
    assert list(tmp_path.iterdir()) == []


class _DiskFillsUp:
    """A dataset whose chunk writes fail with ENOSPC after *ok* chunks."""

    def __init__(self, dset, ok):
        self._dset, self._ok = dset, ok
        self.ndim = dset.ndim

    @property
    def id(self):
        return self

    def write_direct_chunk(self, *args):
        if self._ok <= 0:
            raise ENOSPC
        self._ok -= 1
        return self._dset.id.write_direct_chunk(*args)


def test_disk_full_during_copy(agipd_dir, tmp_path, monkeypatch):
    real = compressed.create_compressed
    monkeypatch.setattr(compressed, "create_compressed", lambda *a: _DiskFillsUp(real(*a), 20))
    out = tmp_path / "full.nxs"
    with pytest.raises(OutputError, match="No space left on device.*free space"):
        convert(agipd_dir, out, mode="copy", trains=slice(0, 1), distance=100)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_metadata(agipd_dir, tmp_path, monkeypatch):
    from server_ext.nxmx import nexus

    def full(*a, **kw):
        raise ENOSPC

    monkeypatch.setattr(nexus, "write_detector", full)
    with pytest.raises(OutputError, match="No space left"):
        convert(agipd_dir, tmp_path / "full.nxs", trains=slice(0, 1), distance=100)
    assert list(tmp_path.iterdir()) == []


def test_hdf5_itself_failing_a_write_leaves_nothing_and_exits_cleanly(agipd_dir, tmp_path):
    """Not a Python stand-in: HDF5's own write fails (a file-size limit,
    which Python turns into EFBIG). HDF5 cannot finish such a file (the
    spectra results file measured it: unreadable, a crash on exit); the
    conversion says so, removes its partial file and exits with 2, not a
    signal."""
    import subprocess
    import sys

    # the limit set in the child itself: preexec_fn is unsafe in a process with threads
    daas = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_FSIZE, "
            "(2 << 20, 2 << 20)); sys.argv[0] = 'daas'; runpy.run_module('hub_ext.cli', "
            "run_name='__main__')")
    out = tmp_path / "out" / "big.nxs"
    out.parent.mkdir()
    r = subprocess.run([sys.executable, "-c", daas, "nxmx", "convert", str(agipd_dir),
                        "-o", str(out), "--mode", "copy", "--compression", "gzip", "--distance",
                        "100", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr)
    # the reason in HDF5's report, not its time, descriptor and buffer address
    assert f"writing {out} failed (File too large); check the free space" in r.stderr, r.stderr
    assert "buf = 0x" not in r.stderr
    assert "Nothing was written" in r.stderr and "Traceback" not in r.stderr
    assert list(out.parent.iterdir()) == []


def test_short_read_of_a_source_file_during_copy(agipd_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(compressed.os, "preadv", lambda fd, bufs, off: 100)
    with pytest.raises(CorruptRunError, match=r"CORR-R0238-AGIPD\d\d-S00000.h5.*short read"):
        convert(agipd_dir, tmp_path / "s.nxs", mode="copy", trains=slice(0, 1), distance=100)
    assert list(tmp_path.iterdir()) == []


def test_hdf5_read_error_of_a_source_file_during_copy(jf_dir, tmp_path, monkeypatch):
    real = h5py.Dataset.__getitem__

    def failing(self, key):
        if self.name.endswith("/data/adc"):
            raise OSError("Can't synchronously read data (inflate() failed)")
        return real(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", failing)
    with pytest.raises(CorruptRunError, match=r"JNGFR\d\d-S00000.h5.*inflate\(\) failed.*copy it again"):
        convert(jf_dir, tmp_path / "j.nxs", mode="copy", trains=slice(0, 1), photon_energy=9, distance=100)
    assert list(tmp_path.iterdir()) == []


def test_cancel_during_copy_stops_workers_and_leaves_nothing(agipd_dir, tmp_path):
    cancel = threading.Event()
    calls = []

    def progress(done, total):
        calls.append((done, total))
        cancel.set()  # after the first batch is written

    with pytest.raises(ConversionCancelled):
        convert(agipd_dir, tmp_path / "c.nxs", mode="copy", trains=slice(0, 3), threads=2,
                distance=100, progress=progress, cancel=cancel)
    assert calls and calls[-1][0] < calls[-1][1], "cancelled before the end"
    assert list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("nxmx-copy")]


def test_folder_without_write_permission(agipd_dir, tmp_path, monkeypatch):
    # CI runs as root, which ignores permission bits: deny through os.access.
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if os.fspath(p) == os.fspath(tmp_path)
                        else real(p, m, **kw))
    with pytest.raises(OutputError, match="no write permission in"):
        convert(agipd_dir, tmp_path / "w.nxs", trains=slice(0, 1), distance=100)
    assert list(tmp_path.iterdir()) == []
