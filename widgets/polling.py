"""Follow a job of the extension from a background thread, so the kernel stays free.

The widget asks the server for the job every ``interval`` seconds and hands
each answer to its update function; widget state set from this thread reaches
the browser like any other comm message. Every follower stops on a final
state, on ``stop()``, or after ``timeout`` seconds (with an error message).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

FINAL_STATES = frozenset({"done", "failed", "cancelled", "interrupted", "finished", "stopped"})


class Follower:
    """Call ``fetch()`` until its answer's ``state`` is final; pass each answer to ``update``.

    ``on_error(exception)`` gets a failed fetch (the server is gone, the job
    unknown) or a timeout; it is the last call either way.
    """

    def __init__(self, fetch: Callable[[], dict], update: Callable[[dict], None],
                 on_error: Callable[[BaseException], None], *, interval: float = 0.5,
                 timeout: float = 3600.0, name: str = "daas-follow"):
        self.fetch, self.update, self.on_error = fetch, update, on_error
        self.interval, self.timeout = interval, timeout
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Follower":
        self.thread.start()
        return self

    def stop(self, wait: float = 5.0) -> None:
        self._stop.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(wait)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._stop.is_set():
            try:
                state = self.fetch()
            except Exception as e:  # noqa: BLE001 -- shown in the widget, never raised into the kernel
                self.on_error(e)
                return
            try:
                self.update(state)
            except Exception as e:  # noqa: BLE001
                self.on_error(e)
                return
            if state.get("state") in FINAL_STATES:
                return
            if time.monotonic() > deadline:
                self.on_error(TimeoutError(f"still {state.get('state')} after {self.timeout:g} s; "
                                           "it goes on in the server: create the widget again to follow it"))
                return
            self._stop.wait(self.interval)


def join_within(threads, timeout: float, what: str) -> None:
    """Wait for ``threads`` (``None`` skipped) for at most ``timeout`` seconds
    in all; one still running raises ``TimeoutError`` naming ``what``. A
    script that waits must learn that the wait ran out -- the job itself
    goes on in the server, and waiting again picks it up."""
    deadline = time.monotonic() + timeout
    threads = [t for t in threads if t is not None]
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise TimeoutError(f"{what} did not end within {timeout:g} s; it goes on: wait again, "
                           "or stop it")


def in_background(work: Callable[[], None], on_error: Callable[[BaseException], None],
                  name: str = "daas-work") -> threading.Thread:
    """Run a one-off *work* (a request, a file read) off the kernel's main thread."""
    def run():
        try:
            work()
        except Exception as e:  # noqa: BLE001
            on_error(e)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
