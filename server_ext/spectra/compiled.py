"""Row-by-row kernels compiled by numba on first use.

Compiled on first use, so that importing the classifier does not import
numba (0.3 s). The machine code is cached beside the module or in the
user's cache directory; where neither is writable (a read-only install
without a home) it is compiled in each process instead of failing. The
kernels release the GIL, so the inference threads run them in parallel.
"""

from __future__ import annotations

import functools

__all__ = ["compiled"]


#: what ``reorder=True`` allows: sums and products regrouped (so that
#: reductions vectorise), the sign of a zero ignored -- not the absence of
#: NaN and inf, which the kernels must still see
REORDER = frozenset({"reassoc", "nsz"})


@functools.cache
def compiled(kernel, reorder=False):
    """``kernel`` (a plain Python function over NumPy arrays) compiled;
    ``reorder``: floating-point sums may be regrouped (:data:`REORDER`)."""
    import numba

    options = dict(nogil=True, fastmath=set(REORDER) if reorder else False)
    try:
        return numba.njit(cache=True, **options)(kernel)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(**options)(kernel)
