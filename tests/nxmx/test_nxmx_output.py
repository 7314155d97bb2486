"""Publishing the output file: its mode, no overwrite races, I/O errors
reported as ConversionErrors, cancellation mid-copy; nothing left behind."""

import os
import threading
import warnings

import pytest

from server_ext.nxmx import OutputError, convert_run


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
