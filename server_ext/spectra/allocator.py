"""Let large trains reuse the memory of the train before (glibc).

ZeroMQ receives every message into a buffer of its own, freed when the
train is done with. glibc's ``malloc`` serves a request above its mmap
threshold with fresh pages from ``mmap()``, which the kernel must fault in
and zero, and unmaps them again on ``free()``. The threshold adapts to what
a process frees, but never above 32 MiB, so a train larger than that -- 2,700
pulses of 4,020 float32 points are 43 MB -- costs ~10,000 page faults and as
many zeroed pages, every train. The bare bridge client spent 43 ms of CPU
per such train with glibc's defaults and 12-14 ms with the buffers kept, at
twice the rate (``benchmarks/spectra.py`` prints both).

:func:`keep_buffers` raises the threshold above the train size and keeps
that much free memory at the top of the heap (``M_TOP_PAD``), so each train
reuses the previous one's pages. The settings are process-wide and only
grow; what they cost is up to twice the largest train kept resident after a
stream. Elsewhere than glibc nothing is changed.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import platform
import threading

__all__ = ["keep_buffers", "kept_bytes"]

log = logging.getLogger(__name__)

_M_TOP_PAD = -2  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_GLIBC_ADAPTS_UP_TO = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
_HEADROOM = 1 << 16  # what a message needs beside its data
_LARGEST = 1 << 30  # beyond this a train is not worth keeping resident

_lock = threading.Lock()
_kept = 0
_refused_from = _LARGEST + 1  # trains this large are not asked for again (0: not glibc)


@functools.lru_cache(maxsize=1)
def _mallopt():
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None


def keep_buffers(nbytes: int) -> bool:
    """Make buffers of ``nbytes`` reusable (see the module documentation).

    Returns whether malloc is set for them: ``True`` below the threshold
    glibc reaches by itself or one already set, ``False`` where glibc is
    absent, refuses, or ``nbytes`` is above 1 GiB. Cheap when nothing
    changes: call it per train."""
    global _kept, _refused_from
    if nbytes <= max(_kept, _GLIBC_ADAPTS_UP_TO):
        return True
    if nbytes >= _refused_from:
        return False
    with _lock:
        if nbytes <= _kept:
            return True
        mallopt = _mallopt()
        # a power of two above nbytes: room for ZeroMQ's message header
        size = 1 << (int(nbytes) + _HEADROOM).bit_length()
        if mallopt is None or not (mallopt(_M_MMAP_THRESHOLD, size) and mallopt(_M_TOP_PAD, size)):
            log.debug("cannot keep %d-byte receive buffers: not glibc, or it refused", nbytes)
            _refused_from = 0 if mallopt is None else min(_refused_from, int(nbytes))
            return False
        _kept = size - _HEADROOM
        log.debug("receive buffers up to %d bytes are now reused", _kept)
        return True


def kept_bytes() -> int:
    """The largest train :func:`keep_buffers` has set malloc for (0: none)."""
    return _kept
