"""Publishing the output file: its mode, no overwrite races, I/O errors
reported as ConversionErrors, cancellation mid-copy; nothing left behind."""

import os
import threading
import warnings

import pytest

from server_ext.nxmx import convert_run


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
