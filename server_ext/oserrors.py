"""An operating-system error told in one line, for messages to users.

HDF5 reports a failed read or write as a multi-line text of its own (the
time, the file descriptor, a buffer address, byte counts) with the reason
buried in it, once or twice (``error message = 'file too large' ...
error message = 'File too large'``); h5py passes that text on as the
OSError's ``strerror``, with its ``errno``.
"""

from __future__ import annotations

import os
import re

__all__ = ["os_error_text"]

_HDF5_REASON = re.compile(r"error message = '([^']*)'")


def os_error_text(e: BaseException) -> str:
    """``"File too large"`` out of HDF5's report, else the error's own
    ``strerror`` or text, on one line."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    found = _HDF5_REASON.search(text)
    if found:  # the same reason may come twice, in different case: errno is the one source
        number = getattr(e, "errno", None)
        return os.strerror(number) if isinstance(number, int) and number > 0 else found.group(1)
    return " ".join(text.split())
