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
iterating thread classifies them with the fused computation. When the
classifier falls behind a live source the oldest queued train is dropped and
counted -- the newest data is what an experiment needs to see.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time

import numpy as np

from .errors import SpectraError
from .sources import as_source

__all__ = ["SpectraStream", "StreamStats", "TrainResult", "PulseResult"]

PulseResult = collections.namedtuple(
    "PulseResult", "train_id pulse label confidence ambiguous")


@dataclasses.dataclass
class TrainResult:
    """Results for one train: ``pulses`` are the indices (within the train) of
    the well-formed spectra, with their ``labels``, ``confidence`` and
    ``ambiguous`` flags; ``malformed`` counts the rejected ones. Iterating
    gives one :class:`PulseResult` per classified pulse."""

    train_id: int
    pulses: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    ambiguous: np.ndarray
    malformed: int
    latency: float

    def __iter__(self):
        for p, lab, c, a in zip(self.pulses, self.labels, self.confidence, self.ambiguous):
            yield PulseResult(self.train_id, int(p), lab, float(c), bool(a))

    def __len__(self):
        return len(self.pulses)


class StreamStats:
    """Live counters of a stream.

    ``spectra``/``trains``: classified (a train without pulses counts as a
    train); ``malformed``: spectra rejected (NaN/inf, wrong length,
    flat: no signal, as from a detector dropout);
    ``malformed_trains``: messages without the spectra key, or whose spectra
    are not an array (ragged rows); ``dropped``: trains dropped from the
    full queue; ``gaps``: train ids missing between consecutive received
    trains; ``reconnects``: connections re-made after a timeout; rates and
    latency percentiles over the last ``window`` trains (latency: from the
    train's arrival to its result, queueing included).
    """

    def __init__(self, window: int = 1000):
        self.spectra = self.trains = self.malformed = self.malformed_trains = 0
        self.received = self.dropped = self.gaps = self.reconnects = 0
        self.started = time.perf_counter()
        self.last_train_id = None
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

    def summary(self):
        return (f"{self.spectra_per_s:10.0f} spectra/s {self.trains_per_s:6.1f} trains/s "
                f"p50 {1e3 * self.latency(50):6.1f} ms p99 {1e3 * self.latency(99):6.1f} ms | "
                f"trains {self.trains} spectra {self.spectra} malformed {self.malformed} "
                f"dropped {self.dropped} gaps {self.gaps} reconnects {self.reconnects}")


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
        Passed to the source (``timeout=``, ``sock=``, ``train_rate=`` ...).
    queue_size : int
        Trains waiting between receiver and classifier.
    drop_oldest : bool or None
        Drop the oldest queued train when full (default: for live sources);
        otherwise the receiver waits.
    max_trains : int or None
        Stop after this many classified trains.
    """

    def __init__(self, classifier, source, queue_size: int = 4, drop_oldest=None,
                 max_trains: int | None = None, source_name: str | None = None,
                 key: str | None = None, **source_options):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(classifier)
        self.classifier = classifier
        if source_name is not None:
            source_options["source"] = source_name
        if key is not None:
            source_options["key"] = key
        self.source = as_source(source, **source_options)
        self.queue_size = max(1, int(queue_size))
        self.drop_oldest = self.source.live if drop_oldest is None else bool(drop_oldest)
        self.max_trains = max_trains
        self.stats = StreamStats()
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = None
        self._error = None
        self._consumed = False

    # -------------------------------------------------------------- receiver
    def _receive(self):
        st = self.stats
        try:
            for tid, arr, received in self.source.trains(self._stop, st):
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
                    self._queue.append((tid, arr, received))
                    self._cond.notify_all()
        except BaseException as e:  # handed to the consuming thread
            self._error = e
        finally:
            with self._cond:
                self._queue.append(_END)
                self._cond.notify_all()

    def start(self):
        """Start receiving (``with stream:`` and iterating call this). A
        stream runs once: a stopped one cannot be started again."""
        if self._stop.is_set():
            raise SpectraError(_ONCE)
        if self._thread is None:
            self.stats.started = time.perf_counter()
            self._thread = threading.Thread(target=self._receive, name="spectra-receiver",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self):
        """Stop receiving and wait for the receiver thread."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

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
                           np.zeros(0, bool), n_bad, latency)

    def _classify(self, tid, arr, received):
        clf = self.classifier
        try:
            arr = np.asarray(arr)
        except (ValueError, TypeError):  # ragged rows
            return self._empty(tid, received, _len_or_one(arr), whole_train=True)
        if arr.dtype.kind == "O":
            return self._empty(tid, received, _len_or_one(arr), whole_train=True)
        if arr.ndim == 1:  # one spectrum, or none
            arr = arr[None, :] if arr.size else arr.reshape(0, clf.n_features_in_)
        if arr.ndim == 2 and arr.shape[0] == 0:
            return self._empty(tid, received, 0)  # a train without pulses
        if arr.ndim != 2 or arr.shape[1] != clf.n_features_in_ or arr.dtype.kind not in "fiub":
            return self._empty(tid, received, arr.shape[0] if arr.ndim >= 1 else 1)
        idx, conf, amb, ok = clf.classify_batch(arr)
        n_bad = int(len(ok) - ok.sum())
        if n_bad:
            pulses = np.flatnonzero(ok)
            idx, conf, amb = idx[ok], conf[ok], amb[ok]
        else:
            pulses = np.arange(len(ok))
        self.stats.malformed += n_bad
        latency = time.perf_counter() - received
        self.stats.record(len(pulses), latency)
        return TrainResult(tid, pulses, clf.classes_[idx], conf, amb, n_bad, latency)

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
                    while not self._queue:
                        self._cond.wait(0.1)
                    item = self._queue.popleft()
                    self._cond.notify_all()
                if item is _END:
                    if self._error is not None:
                        raise self._error
                    return
                yield self._classify(*item)
                if self.max_trains is not None and self.stats.trains >= self.max_trains:
                    return
        finally:
            self.stop()

    def run(self, callback=None):
        """Consume the whole stream (or ``max_trains``); call ``callback(result,
        stats)`` per train; return the :class:`StreamStats`."""
        for result in self:
            if callback is not None:
                callback(result, self.stats)
        return self.stats
