"""Dask preload for the embedded workers: batch work yields the CPU to the server and kernels.

On a notebook server the scientist's clicks and kernels matter more than
how fast a conversion finishes; the worker processes therefore run at the
nice value in ``DAAS_WORKER_NICE`` (all their threads, and the threads they
start later, which inherit it).
"""

import os


def renice_process(increment: int) -> None:
    """Lower the priority of every thread of this process by *increment* (Linux: nice is per thread)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
        except OSError:  # a thread that ended meanwhile
            pass


def dask_setup(worker) -> None:
    increment = int(os.environ.get("DAAS_WORKER_NICE", "0") or 0)
    if increment > 0:
        renice_process(increment)
