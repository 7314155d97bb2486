"""BLAS kept to one thread while inference batches run on the pool.

The pool's threads each call BLAS on small products; BLAS's own threads
would only fight them for the cores. OpenBLAS's thread count is
process-wide, and threadpoolctl (3.8) lets only the thread that set a limit
change it while that thread lives. Limiting around each batch from the
caller's thread had two faults: two batches at once from two threads left
BLAS at one thread for good (the second took the first's limit for the
original), and limiting and restoring around every batch halved the rate
of batches of up to ~2,500 spectra on 2 cores. So a thread of its own sets
the limit when a batch begins and none is held, holds it while batches
run, and restores BLAS's threads ``hold_s`` after the last one ended.
"""

from __future__ import annotations

import threading

_CONTROLLER = None


def _controller():
    # finding the libraries costs milliseconds: once
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


class BlasLimit:
    """A context manager: BLAS at one thread inside it (from any thread,
    at once or in turn), and ``hold_s`` seconds after the last exit."""

    def __init__(self, hold_s: float):
        self.hold_s = hold_s
        self._cond = threading.Condition()
        self._running = 0
        self._begun = 0  # batches begun: one may begin and end while the holder sleeps
        self._limited = False
        self._holder = None

    def __enter__(self):
        with self._cond:
            self._running += 1
            self._begun += 1
            if self._holder is None:
                self._holder = threading.Thread(target=self._hold, daemon=True,
                                                name="spectra-blas-limit")
                self._holder.start()
            self._cond.notify_all()
            # bounded: without the limit a batch is slower, not wrong
            self._cond.wait_for(lambda: self._limited or self._holder is None, timeout=10)
        return self

    def __exit__(self, *exc):
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    @property
    def held(self) -> bool:
        """Whether BLAS is limited by this now."""
        with self._cond:
            return self._limited

    def _hold(self):
        with self._cond:
            try:
                with _controller().limit(limits=1, user_api="blas"):
                    self._limited = True
                    self._cond.notify_all()
                    while True:
                        self._cond.wait_for(lambda: not self._running)
                        begun = self._begun
                        if not self._cond.wait_for(lambda: self._begun != begun, timeout=self.hold_s):
                            break
            finally:
                self._limited = False
                self._holder = None
                self._cond.notify_all()
