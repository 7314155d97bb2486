"""Where streamed spectra come from: a Karabo bridge, a replayed run, an iterable.

A source yields ``(train_id, spectra, received)`` per train: ``spectra`` is
whatever array arrived (the stream checks it), ``received`` the
``time.perf_counter()`` at which it was complete. A run, a bridge or an
iterable of mappings given an ``axis_key`` (the positions of the points,
sent with the spectra, e.g. by an azimuthal integration) yields
``(train_id, spectra, received, axis)``, the axis ``None`` where the
train has none; the stream checks it too. ``live`` says what a
stream does by default when it falls behind: a live source (a bridge, a run
replayed at a ``train_rate``) has its oldest queued train dropped -- fresh data
matters more than old; a non-live one (a run read as fast as possible, an
iterable) is read more slowly instead, losing nothing. ``SpectraStream``'s
``drop_oldest=`` overrides it either way.
"""

from __future__ import annotations

import collections.abc
import logging
import numbers
import os
import re
import time

import numpy as np

from . import allocator
from .errors import SpectraError
from .train_span import checked_span, in_span, span_text

__all__ = ["IterableSource", "RunSource", "KaraboBridgeSource", "as_source"]

log = logging.getLogger(__name__)

_TCP = re.compile(r"^tcp://(\[[0-9a-fA-F:.]+\]|[^:/\[\]]+):\d{1,5}$")


class IterableSource:
    """Trains from any iterable of 2-D arrays (``(n_pulses, n_points)``) or of
    ``(train_id, array)`` pairs; bare arrays get consecutive train ids from
    ``first_train_id``. ``live=True`` makes the stream drop instead of wait.

    With ``key``, each item (or the second of a pair) is a mapping holding
    the spectra under ``key`` -- one source's data of a bridge message, or
    an azimuthal integration's result -- and, with ``axis_key``, each
    train's positions of the points under that key; an item without
    ``key`` is counted in ``malformed_trains``.
    """

    def __init__(self, iterable, first_train_id: int = 0, live: bool = False,
                 key: str | None = None, axis_key: str | None = None):
        if axis_key is not None and key is None:
            raise SpectraError(f"axis_key={axis_key!r} needs key=: the items are then mappings "
                               "holding the spectra under key and their axis under axis_key")
        self.iterable = iterable
        self.first_train_id = int(first_train_id)
        self.live = bool(live)
        self.key, self.axis_key = key, axis_key

    def trains(self, stop, stats):
        tid = self.first_train_id
        for item in self.iterable:
            if stop.is_set():
                return
            if isinstance(item, tuple) and len(item) == 2:
                tid, arr = int(item[0]), item[1]
            else:
                arr = item
            axis = None
            if self.key is not None:
                data = arr if isinstance(arr, collections.abc.Mapping) else {}
                arr, axis = data.get(self.key), data.get(self.axis_key)
            if arr is None:
                stats.malformed_trains += 1
            elif self.axis_key is None:
                yield tid, arr, time.perf_counter()
            else:
                yield tid, arr, time.perf_counter(), axis
            tid += 1


class RunSource:
    """Trains replayed from an EuXFEL run with ``extra_data``.

    ``run``: a run directory, a file, or an ``extra_data`` DataCollection;
    ``source``/``key``: where the spectra are (``(pulses, points)`` per
    train); ``train_rate``: replay at this many trains per second (a live
    source then, like the facility), or ``None`` for as fast as possible;
    ``axis_key`` of ``axis_source`` (default ``source``): each train's
    positions of the points, read with its spectra. ``train_ids``:
    ``(first, last)``, the trains replayed (both included, ``None`` an
    open end; :mod:`.train_span`); a span holding none of the run's
    trains is refused, naming those it holds.
    """

    def __init__(self, run, source: str, key: str, train_rate: float | None = None,
                 axis_key: str | None = None, axis_source: str | None = None,
                 train_ids: tuple | None = None):
        if train_rate is not None and not (isinstance(train_rate, numbers.Real) and train_rate > 0):
            raise SpectraError(f"train_rate must be > 0 trains/s (None: as fast as possible), "
                               f"not {train_rate!r}")
        run = _opened(run)
        self.keydata = _spectra_keydata(run, source, key)
        if train_ids is not None:
            self.keydata = _trains_between(self.keydata, checked_span(train_ids))
        self.source, self.key = source, self.keydata.key
        self.axis_key = axis_key
        self.axisdata = None if axis_key is None else _keydata(run, axis_source or source,
                                                                 axis_key)
        self.train_rate = train_rate
        self.live = train_rate is not None

    def trains(self, stop, stats):
        period = 1.0 / self.train_rate if self.train_rate else 0.0
        t_next = time.perf_counter()
        trains = self.keydata.trains()
        if self.axisdata is not None:
            trains = _with_axis(trains, self.axisdata.trains())
        for tid, arr, *axis in trains:
            if stop.is_set():
                return
            if period:
                delay = t_next - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t_next += period
            yield (int(tid), arr, time.perf_counter(), *axis)


def _opened(run):
    """A run directory or file as an ``extra_data`` collection (a collection as it is)."""
    import extra_data

    if not isinstance(run, (str, os.PathLike)):
        return run
    try:
        return extra_data.RunDirectory(run) if os.path.isdir(run) else extra_data.H5File(run)
    except Exception as e:
        raise SpectraError(f"cannot open {os.fspath(run)!r} as an EuXFEL run: {e}")


def run_keydata(run, source, key):
    """``run[source, key]`` of a run (a path or a collection) other than its spectra (an
    axis): a run that cannot be opened, or a missing source or key, said as for spectra."""
    return _keydata(_opened(run), source, key)


def _keydata(run, source, key):
    """``run[source, key]``, a control key also by its Karabo name (without
    ``.value``); a missing source or key refused, listing what there is."""
    if source not in run.all_sources:
        raise SpectraError(f"source {source!r} is not in the run; it has: "
                           f"{', '.join(sorted(run.all_sources))}")
    keys = run[source].keys()
    if key not in keys and f"{key}.value" in keys:
        key = f"{key}.value"
    if key not in keys:
        raise SpectraError(f"key {key!r} is not in {source!r}; it has: "
                           f"{', '.join(sorted(keys))}")
    return run[source, key]


def _spectra_keydata(run, source, key):
    """:func:`_keydata` of spectra: a spectrum (or several) per train; a mistake names where
    the run's spectra could be."""
    from .datafiles import spectra_in

    try:
        kd = _keydata(run, source, key)
    except SpectraError as e:
        raise SpectraError(f"{e}{spectra_in(run)}") from None
    if kd.ndim != 2:  # a pulse's number, or its image read row by row as spectra
        held = "single numbers" if kd.ndim < 2 else "arrays of " + "x".join(map(str, kd.entry_shape))
        raise SpectraError(f"key {kd.key!r} of {source!r} holds {held}, not spectra (1-D arrays)"
                           f"{spectra_in(run)}")
    return kd


def _trains_between(keydata, span):
    """``keydata`` cut to the trains of ``span``; refused where it holds none."""
    from extra_data import by_id

    ids = np.asarray(keydata.train_ids, np.uint64)
    keep = in_span(ids, *span)
    if not keep.any():
        held = f"its {len(ids)} trains are {ids[0]} to {ids[-1]}" if len(ids) else "it holds none"
        raise SpectraError(f"no train of the run's {keydata.source} in {span_text(*span)}: {held}")
    return keydata.select_trains(by_id[ids[keep]])


def _with_axis(trains, axes):
    """``(train_id, spectra, axis)``: each train's spectra beside the axis
    of the same train, ``None`` where that train has none (both in train
    order, as a run's keys are read)."""
    axes = iter(axes)
    pending = next(axes, None)
    for tid, arr in trains:
        while pending is not None and pending[0] < tid:
            pending = next(axes, None)
        yield tid, arr, (pending[1] if pending is not None and pending[0] == tid else None)


class KaraboBridgeSource:
    """Trains from a Karabo bridge endpoint (the EuXFEL online protocol).

    ``endpoint``: e.g. ``tcp://host:4545``; ``source``: the data source name
    (``None``: the first source carrying ``key``); ``key``: the spectra key;
    ``sock``: ``REQ`` (request each train), ``SUB`` or ``PULL``; after
    ``timeout`` seconds without data the connection is re-made (counted in
    ``reconnects``, logged as a warning), at most ``max_reconnects`` times in
    a row; one more silence and the stream raises :class:`SpectraError`, the
    bridge having stopped answering -- with the defaults after about
    ``timeout * (max_reconnects + 1)`` = 12 s of silence. A train arriving
    resets the count. ``max_reconnects=None`` waits forever, until the
    stream is stopped: only when asked for.

    With a stream that waits instead of dropping (``drop_oldest=False``),
    a ``REQ`` socket asks for the next train only when there is room: the
    bridge keeps the rest (up to its own queue length); with ``PULL`` the
    sender blocks once ZeroMQ's buffers are full, with ``SUB`` the publisher
    drops -- losses the stream sees only as ``gaps``.

    ``axis_key`` of ``axis_source`` (default the spectra's source): each
    train's positions of the points, sent with the spectra.

    ``keep_buffers`` (default ``True``): trains larger than 32 MiB make this
    process's ``malloc`` reuse their memory rather than map fresh pages per
    train -- half or more of the receiving CPU (see :mod:`.allocator`, which
    also says what it costs); ``False`` leaves the allocator alone.
    """

    live = True

    def __init__(self, endpoint: str, source: str | None = None, key: str = "data.intensity",
                 timeout: float = 2.0, sock: str = "REQ", max_reconnects: int | None = 5,
                 keep_buffers: bool = True, axis_key: str | None = None,
                 axis_source: str | None = None):
        endpoint = checked_endpoint(endpoint)
        if sock not in ("REQ", "SUB", "PULL"):
            raise SpectraError(f"sock must be 'REQ', 'SUB' or 'PULL', not {sock!r}")
        if not timeout > 0:
            raise SpectraError(f"timeout must be > 0 seconds, not {timeout!r}")
        if max_reconnects is not None and (not isinstance(max_reconnects, numbers.Integral)
                                           or isinstance(max_reconnects, bool)
                                           or max_reconnects < 0):
            raise SpectraError(f"max_reconnects must be a whole number >= 0, or None to wait "
                               f"forever, not {max_reconnects!r}")
        self.endpoint, self.source, self.key = endpoint, source, key
        self.timeout, self.sock, self.max_reconnects = timeout, sock, max_reconnects
        self.keep_buffers = bool(keep_buffers)
        self.axis_key, self.axis_source = axis_key, axis_source

    def _pick(self, data, meta):
        """``(train_id, spectra, axis)`` of a message; spectra None where it
        has none, axis None where it has none or none was asked for."""
        if self.source is not None:
            src = self.source
        else:
            src = next((s for s, d in data.items() if self.key in d), None)
        if src is None or src not in data or self.key not in data[src]:
            return None, None, None
        m = meta.get(src) or data[src].get("metadata", {})
        tid = m.get("timestamp.tid")
        axis = None
        if self.axis_key is not None:
            axis = data.get(self.axis_source or src, {}).get(self.axis_key)
        return (None if tid is None else int(tid)), data[src][self.key], axis

    def _connect(self, tick):
        """A client on a context of its own: destroying that context is the
        public way to drop a stuck connection."""
        import zmq
        from karabo_bridge import Client

        context = zmq.Context()
        try:
            return Client(self.endpoint, sock=self.sock, timeout=tick, context=context), context
        except zmq.ZMQError as e:
            context.destroy(linger=0)
            raise SpectraError(f"cannot connect to the Karabo bridge {self.endpoint}: {e}")

    def trains(self, stop, stats):
        # short receive slices, so that stop() is honoured promptly; the
        # connection is re-made after ``timeout`` seconds without data
        tick = min(self.timeout, 0.1)
        client, context = self._connect(tick)
        misses = 0
        waited = 0.0
        try:
            while not stop.is_set():
                try:
                    data, meta = client.next()  # a pending request is not re-sent
                except TimeoutError:
                    waited += tick
                    if waited < self.timeout or stop.is_set():
                        continue
                    # a REQ socket whose request went unanswered is stuck:
                    # only a fresh connection recovers
                    context.destroy(linger=0)
                    waited = 0.0
                    misses += 1
                    if self.max_reconnects is not None and misses > self.max_reconnects:
                        raise SpectraError(
                            f"the Karabo bridge {self.endpoint} stopped answering: nothing for "
                            f"{self.timeout:g} s, reconnected {self.max_reconnects} "
                            f"time{'' if self.max_reconnects == 1 else 's'} "
                            f"({stats.received} trains received); check that the bridge is "
                            "running, or raise timeout/max_reconnects (None: wait forever)")
                    stats.reconnects += 1
                    log.warning("no data from the Karabo bridge %s for %g s: reconnecting "
                                "(%d of %s)", self.endpoint, self.timeout, misses,
                                "unlimited" if self.max_reconnects is None
                                else self.max_reconnects)
                    client, context = self._connect(tick)
                    continue
                waited = 0.0
                misses = 0
                received = time.perf_counter()
                tid, arr, axis = self._pick(data, meta)
                if arr is None:
                    stats.malformed_trains += 1
                    continue
                if self.keep_buffers:
                    allocator.keep_buffers(getattr(arr, "nbytes", 0))
                yield (tid, arr, received) if self.axis_key is None else (tid, arr, received, axis)
        finally:
            context.destroy(linger=0)


def checked_endpoint(endpoint) -> str:
    """A Karabo bridge's ZeroMQ endpoint, refused saying why where ZeroMQ could not use it."""
    endpoint = str(endpoint)
    if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise SpectraError(f"{endpoint!r} is not a ZeroMQ endpoint; use tcp://HOST:PORT")
    if endpoint.startswith("tcp://") and not _TCP.match(endpoint):
        raise SpectraError(f"{endpoint!r} needs a host and a port number, e.g. "
                           "tcp://127.0.0.1:4545")
    return endpoint


def as_source(obj, **kw):
    """A source from a source object, a ``tcp://`` endpoint, a run path
    (needs ``source=`` and ``key=``) or an iterable."""
    if hasattr(obj, "trains") and hasattr(obj, "live"):
        return obj
    if isinstance(obj, str) and "://" in obj:
        return KaraboBridgeSource(obj, **kw)
    if isinstance(obj, (str, os.PathLike)):
        if not os.path.exists(obj):  # "host:4545" without tcp:// reads as a path too
            raise SpectraError(f"{os.fspath(obj)!r} is neither a Karabo bridge endpoint "
                               "(tcp://HOST:PORT) nor a run directory: no such path")
        if "source" not in kw or "key" not in kw:
            from .datafiles import spectra_in

            raise SpectraError(f"replaying a run needs source= and key={spectra_in(obj)}")
        return RunSource(obj, **kw)
    if isinstance(obj, np.ndarray) and obj.ndim == 3:
        return IterableSource(list(obj), **kw)
    try:
        iter(obj)
    except TypeError:
        raise SpectraError(f"cannot stream from {type(obj).__name__}: give a tcp:// endpoint, "
                           "a run directory, or an iterable of (pulses, points) arrays")
    return IterableSource(obj, **kw)
