"""Classify spectra as they stream in, train by train, with live counters.

Example::

    from server_ext.spectra import BinnedSpectraClassifier, SpectraStream
    clf = BinnedSpectraClassifier.load("model.spectra")
    with SpectraStream(clf, "tcp://exflong:4545", key="data.intensity") as stream:
        for result in stream:
            if result.ambiguous.any():
                ...
            print(stream.stats.summary(), end="\\r")

A receiver thread pulls trains from the source into a bounded queue; the
iterating thread classifies them with the fused computation. The rules:

* **Overflow.** When the queue is full, ``drop_oldest=True`` drops the oldest
  queued train and counts it in ``stats.dropped`` (the newest data is what an
  experiment needs to see); ``drop_oldest=False`` makes the receiver wait
  (back-pressure: nothing is lost, the source is read more slowly). The
  default follows the source: drop for a live one (a Karabo bridge, a run
  replayed at a ``train_rate``, ``IterableSource(live=True)``), wait for the
  others (a run read as fast as possible, an iterable).
* **End.** The stream ends when the source ends, or after ``max_trains``
  trains *received* from it: delivered (yielded) plus dropped. It never waits
  for trains that were dropped.
* **A quiet source.** A bridge silent for ``timeout`` seconds is reconnected
  (``stats.reconnects``, and a logged warning); after ``max_reconnects``
  reconnections in a row without a train (default 5) the stream raises
  :class:`SpectraError`. Only an explicit ``max_reconnects=None`` waits
  forever, until :meth:`SpectraStream.stop` is called (from any thread).
  A train arriving resets the count: a source that comes back goes on.
* **Stopping.** ``stop()`` -- called on leaving ``with``, on breaking out of
  the loop, on an error, or from another thread to cancel -- stops the
  receiver and waits for it a bounded time (``stop(timeout=10.0)``).

Counters: :class:`StreamStats` (``stream.stats``); ``stats.counters()`` is a
plain dict of them for a status page or a REST answer.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import numbers
import threading
import time

import numpy as np

from .datafiles import as_axis
from .errors import SpectraError
from .inputs import unread_points
from .sources import as_source

__all__ = ["SpectraStream", "StreamStats", "TrainResult", "PulseResult"]

log = logging.getLogger(__name__)

PulseResult = collections.namedtuple(
    "PulseResult", "train_id pulse label confidence ambiguous")


@dataclasses.dataclass
class TrainResult:
    """Results for one train: ``pulses`` are the indices (within the train) of
    the well-formed spectra, with their ``labels``, ``confidence`` and
    ``ambiguous`` flags, and ``probabilities`` of every class (``(pulses,
    classes)``, the classifier's ``classes_`` order); ``malformed`` counts
    the rejected ones. Iterating gives one :class:`PulseResult` per
    classified pulse."""

    train_id: int
    pulses: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    ambiguous: np.ndarray
    malformed: int
    latency: float
    probabilities: np.ndarray | None = None

    def __iter__(self):
        for p, lab, c, a in zip(self.pulses, self.labels, self.confidence, self.ambiguous):
            yield PulseResult(self.train_id, int(p), lab, float(c), bool(a))

    def __len__(self):
        return len(self.pulses)


class StreamStats:
    """Live counters of a stream.

    ``received``: trains taken from the source (``trains + dropped`` once
    the queue is empty; what ``max_trains`` counts);
    ``spectra``/``trains``: classified, i.e. delivered (a train without
    pulses counts as a train); ``malformed``: spectra rejected (NaN/inf,
    wrong length, flat: no signal, as from a detector dropout);
    ``malformed_trains``: messages without the spectra key (not received),
    or whose spectra are not an array (ragged rows); ``dropped``: trains
    dropped from the full queue (``drop_oldest``); ``gaps``: train ids
    missing between consecutive received trains; ``reconnects``:
    connections re-made after a timeout; rates and latency percentiles over
    the last ``window`` trains (latency: from the train's arrival to its
    result, queueing included); ``unread_points``: the points NaN or inf in
    every spectrum that was rejected for NaN or inf in the last train that
    had such (outside the model's bridged points): what the detector masks
    since the model was trained, for ``mask_points``; ``unreadable_axis``:
    trains rejected whole because the axis sent with them (a source's
    ``axis_key``) is missing or cannot be read through (their spectra
    counted in ``malformed``, the train in ``malformed_trains``), and
    ``axis_error`` why, for the last of them. :meth:`counters` gives them
    all as a dict.
    """

    def __init__(self, window: int = 1000):
        self.spectra = self.trains = self.malformed = self.malformed_trains = 0
        self.received = self.dropped = self.gaps = self.reconnects = 0
        self.started = time.perf_counter()
        self.last_train_id = None
        self.unread_points: list[int] = []
        self.unreadable_axis = 0
        self.axis_error: str | None = None
        self._lat = collections.deque(maxlen=window)
        self._done = collections.deque(maxlen=window)  # (time, n_spectra)

    def record(self, n_spectra, latency):
        now = time.perf_counter()
        self.trains += 1
        self.spectra += n_spectra
        self._lat.append(latency)
        self._done.append((now, n_spectra))

    @property
    def elapsed(self):
        return time.perf_counter() - self.started

    def _window_rate(self, spectra):
        if len(self._done) < 2:
            el = self.elapsed
            return (self.spectra if spectra else self.trains) / el if el > 0 else 0.0
        dt = self._done[-1][0] - self._done[0][0]
        n = sum(s for _, s in list(self._done)[1:]) if spectra else len(self._done) - 1
        return n / dt if dt > 0 else 0.0

    @property
    def spectra_per_s(self):
        return self._window_rate(True)

    @property
    def trains_per_s(self):
        return self._window_rate(False)

    def latency(self, q):
        """Latency percentile ``q`` (0-100) in seconds over the window."""
        return float(np.percentile(np.fromiter(self._lat, float), q)) if self._lat else float("nan")

    def counters(self) -> dict:
        """The counters as a JSON-ready dict: the integer counters by name,
        plus ``spectra_per_s``, ``trains_per_s``, ``latency_p50_s``,
        ``latency_p99_s`` (``None`` before the first train) and
        ``elapsed_s``."""
        def number(x):
            return None if x != x else float(x)  # NaN is not JSON

        out = {name: getattr(self, name) for name in _COUNTERS}
        out.update(unread_points=list(self.unread_points), axis_error=self.axis_error,
                   spectra_per_s=float(self.spectra_per_s), trains_per_s=float(self.trains_per_s),
                   latency_p50_s=number(self.latency(50)),
                   latency_p99_s=number(self.latency(99)), elapsed_s=float(self.elapsed))
        return out

    def summary(self):
        return (f"{self.spectra_per_s:10.0f} spectra/s {self.trains_per_s:6.1f} trains/s "
                f"p50 {1e3 * self.latency(50):6.1f} ms p99 {1e3 * self.latency(99):6.1f} ms | "
                f"received {self.received} trains {self.trains} spectra {self.spectra} "
                f"malformed {self.malformed} dropped {self.dropped} gaps {self.gaps} "
                f"reconnects {self.reconnects}")


_COUNTERS = ("received", "trains", "spectra", "malformed", "malformed_trains", "dropped",
             "gaps", "reconnects", "unreadable_axis")


_END = object()
_ONCE = "a SpectraStream can be iterated once; create a new one to read the source again"


def _len_or_one(obj):
    try:
        return max(1, len(obj))
    except TypeError:
        return 1


class SpectraStream:
    """Consume a source train by train and yield a :class:`TrainResult` each.

    Parameters
    ----------
    classifier : BinnedSpectraClassifier
        A fitted or loaded classifier.
    source : source object, ``tcp://`` endpoint, run directory or iterable
        See :mod:`.sources`.
    source_name, key : str
        The EuXFEL data source and key holding the spectra (a run needs
        both; a bridge finds the source carrying ``key`` when no name is
        given).
    **source_options
        Passed to the source: a bridge takes ``timeout=`` (seconds without
        data before reconnecting), ``max_reconnects=`` (default 5; ``None``:
        forever) and ``sock=``; a run ``train_rate=``. See :mod:`.sources`.
    queue_size : int
        Trains waiting between receiver and classifier.
    drop_oldest : bool or None
        What a full queue does: ``True`` drops the oldest queued train
        (counted in ``stats.dropped``), ``False`` makes the receiver wait
        (lossless back-pressure). ``None`` (default): the source decides,
        ``True`` for live sources (``source.live``), else ``False``.
    max_trains : int or None
        End after this many trains received from the source -- delivered
        plus dropped -- or, ``None``, when the source ends.
    axis : array or None
        The positions of the source's points where they are not the
        model's (``axis=`` of ``predict_proba``): each train's spectra are
        interpolated at the model's; checked at once. Where the source
        sends its positions with each train instead (``axis_key=``, and
        ``axis_source=``, of a run or a bridge; ``key=`` and ``axis_key=`` of
        an iterable of mappings), each train is read through
        its own: a train whose axis is missing or cannot be read through
        is rejected whole (``stats.unreadable_axis``, and why in
        ``stats.axis_error``), the stream goes on.

    The iterator yields :class:`TrainResult` in arrival order; the counters
    are in :attr:`stats`. See the module documentation for the rules.
    """

    def __init__(self, classifier, source, queue_size: int = 4, drop_oldest=None,
                 max_trains: int | None = None, source_name: str | None = None,
                 key: str | None = None, axis=None, **source_options):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(classifier)
        self.classifier = classifier
        self.axis = None if axis is None else np.asarray(axis, np.float64).reshape(-1)
        if self.axis is not None:
            classifier.axis_plan(self.axis)  # a clear error now, not at the first train
        self._n_points = classifier.n_features_in_ if axis is None else self.axis.size
        if source_name is not None:
            source_options["source"] = source_name
        if key is not None:
            source_options["key"] = key
        self.source = as_source(source, **source_options)
        self._axis_key = getattr(self.source, "axis_key", None)
        if self._axis_key is not None:
            if self.axis is not None:
                raise SpectraError(f"the axis comes either with each train ({self._axis_key!r}) "
                                   "or from a file (axis=), not both")
            classifier.require_axis()
        self.queue_size = max(1, int(queue_size))
        self.drop_oldest = self.source.live if drop_oldest is None else bool(drop_oldest)
        if max_trains is not None and (not isinstance(max_trains, numbers.Integral)
                                       or isinstance(max_trains, bool) or max_trains < 1):
            raise SpectraError(
                f"max_trains must be a whole number >= 1 or None, not {max_trains!r}")
        self.max_trains = None if max_trains is None else int(max_trains)
        self.stats = StreamStats()
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = None
        self._error = None
        self._consumed = False
        self._axis_why = None

    # -------------------------------------------------------------- receiver
    def _receive(self):
        st = self.stats
        trains = None
        try:
            trains = self.source.trains(self._stop, st)
            for tid, arr, received, *axis in trains:
                st.received += 1
                if tid is not None:
                    if st.last_train_id is not None and tid > st.last_train_id + 1:
                        st.gaps += tid - st.last_train_id - 1
                    st.last_train_id = tid
                with self._cond:
                    while len(self._queue) >= self.queue_size and not self._stop.is_set():
                        if self.drop_oldest:
                            self._queue.popleft()
                            st.dropped += 1
                        else:
                            self._cond.wait(0.1)
                    if self._stop.is_set():
                        break
                    self._queue.append((tid, arr, received, *axis))
                    self._cond.notify_all()
                if self.max_trains is not None and st.received >= self.max_trains:
                    break  # dropped trains count: never wait for them
        except BaseException as e:  # handed to the consuming thread
            self._error = e
        finally:
            close = getattr(trains, "close", None)
            if close is not None:  # a bridge source closes its connection now
                try:
                    close()
                except Exception as e:
                    log.warning("closing the spectra source failed: %s", e)
            with self._cond:
                self._queue.append(_END)
                self._cond.notify_all()

    def start(self):
        """Start receiving (``with stream:`` and iterating call this). A
        stream runs once: a stopped one cannot be started again; one stopped
        before it started (a cancel while it was set up) yields nothing."""
        if self._stop.is_set():
            if self._thread is None:
                return self
            raise SpectraError(_ONCE)
        if self._thread is None:
            self.classifier.warm_up()  # the first train would otherwise wait for it
            self.stats.started = time.perf_counter()
            self._thread = threading.Thread(target=self._receive, name="spectra-receiver",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop receiving and wait for the receiver thread, at most
        ``timeout`` seconds; safe from any thread (to cancel a stream) and
        more than once. Returns whether the receiver has stopped; one stuck
        in the source (an iterable that blocks) is left behind, as a daemon
        thread, with a logged warning."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the spectra stream's receiver did not stop within %g s; "
                        "its source does not return", timeout)
            return False
        return True

    close = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------ classifier
    def _empty(self, tid, received, n_bad, whole_train=False):
        """The result of a train without pulses, or whose ``n_bad`` spectra
        were all rejected; ``whole_train``: it was not an array of spectra."""
        empty = np.zeros(0, np.intp)
        self.stats.malformed += n_bad
        self.stats.malformed_trains += int(whole_train)
        latency = time.perf_counter() - received
        self.stats.record(0, latency)
        return TrainResult(tid, empty, self.classifier.classes_[empty], np.zeros(0, np.float32),
                           np.zeros(0, bool), n_bad, latency,
                           np.zeros((0, len(self.classifier.classes_)), np.float32))

    def _note_unread(self, rejected):
        """``stats.unread_points`` from the ``rejected`` spectra of a train:
        only those with NaN or inf at some points (a flat one is a dropout,
        one NaN everywhere a pulse without data: neither is a mask)."""
        points = unread_points(rejected, self.classifier.bridged_points_)
        if points is not None:
            self.stats.unread_points = points.tolist()

    def _train_axis(self, tid, axis, n_points):
        """The train's own ``axis`` (from the source's ``axis_key``) checked
        against its spectra of ``n_points`` and the model; None, with the
        reason in the counters (logged when it changes), where it cannot
        be read through."""
        what = f"the axis {self._axis_key}"
        try:
            if axis is None:
                raise SpectraError(f"{what} is not in the train")
            axis = as_axis(axis, what)
            if axis.size != n_points:
                raise SpectraError(f"{what} has {axis.size} positions for spectra of {n_points} "
                                   "points")
            if not np.array_equal(axis, self.classifier.axis_):
                self.classifier.axis_plan(axis)
            self._axis_why = None
            return axis
        except SpectraError as e:
            why = str(e)
        if why != self._axis_why:  # once while it lasts, not once per train
            log.warning("the spectra of train %s (and of the trains after it while this lasts) "
                        "rejected: %s", tid, why)
            self._axis_why = why
        self.stats.unreadable_axis += 1
        self.stats.axis_error = f"train {tid}: {why}"
        return None

    def _classify(self, tid, arr, received, axis=None):
        clf = self.classifier
        try:
            arr = np.asarray(arr)
        except (ValueError, TypeError):  # ragged rows
            return self._empty(tid, received, _len_or_one(arr), whole_train=True)
        if arr.dtype.kind == "O":
            return self._empty(tid, received, _len_or_one(arr), whole_train=True)
        if arr.ndim == 1:  # one spectrum, or none
            if not arr.size:
                return self._empty(tid, received, 0)
            arr = arr[None, :]
        if arr.ndim == 2 and arr.shape[0] == 0:
            return self._empty(tid, received, 0)  # a train without pulses
        if self._axis_key is None:
            axis, n_points = self.axis, self._n_points
        elif arr.ndim == 2:
            axis = self._train_axis(tid, axis, arr.shape[1])
            if axis is None:
                return self._empty(tid, received, arr.shape[0], whole_train=True)
            n_points = axis.size
        else:
            n_points = None  # not spectra: rejected below
        if arr.ndim != 2 or arr.shape[1] != n_points or arr.dtype.kind not in "fiub":
            return self._empty(tid, received, arr.shape[0] if arr.ndim >= 1 else 1)
        idx, conf, amb, ok, proba = clf.classify_batch(arr, axis=axis, return_proba=True)
        n_bad = int(len(ok) - ok.sum())
        if n_bad:
            rejected = arr[~ok]  # on the model's points, as mask_points takes them
            self._note_unread(rejected if axis is None else clf.axis_plan(axis)(rejected))
            pulses = np.flatnonzero(ok)
            idx, conf, amb, proba = idx[ok], conf[ok], amb[ok], proba[ok]
        else:
            pulses = np.arange(len(ok))
        self.stats.malformed += n_bad
        latency = time.perf_counter() - received
        self.stats.record(len(pulses), latency)
        return TrainResult(tid, pulses, clf.classes_[idx], conf, amb, n_bad, latency, proba)

    def __iter__(self):
        # checked here rather than in the generator, so that iter() refuses at once
        if self._consumed:
            raise SpectraError(_ONCE)
        self.start()
        self._consumed = True
        return self._results()

    def _results(self):
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stop.is_set():
                        self._cond.wait(0.1)
                    if self._stop.is_set():  # stop() from another thread: a cancel
                        return
                    item = self._queue.popleft()
                    self._cond.notify_all()
                if item is _END:
                    if self._error is not None:
                        raise self._error
                    return
                yield self._classify(*item)
        finally:
            self.stop()

    def run(self, callback=None):
        """Consume the whole stream (or ``max_trains``); call ``callback(result,
        stats)`` per train; return the :class:`StreamStats`."""
        for result in self:
            if callback is not None:
                callback(result, self.stats)
        return self.stats
