import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from server_ext.spectra import (BinnedSpectraClassifier, IterableSource, KaraboBridgeSource,
                                RunSource, SpectraError, SpectraStream)
from server_ext.spectra.synthetic import write_demo_run

SRC, KEY = "SPB_TEST/PROC/SPECTRA:output", "data.intensity"


def trains_of(X, per_train):
    return [X[i:i + per_train] for i in range(0, len(X) - per_train + 1, per_train)]


def feed(server, tid, arr):
    server.feed({SRC: {KEY: arr}}, {SRC: {"timestamp.tid": tid, "source": SRC}})


def wait_until(condition, what, timeout=60.0):
    """Poll ``condition`` until true; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)


def assert_delivered_match(results, expected_ids, expected_labels):
    """Whatever was dropped: the delivered trains are a subsequence of the
    expected ones, in order, each with the labels it would have had."""
    by_id = dict(zip(expected_ids, expected_labels))
    ids = [r.train_id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and set(ids) <= set(by_id), ids
    for r in results:
        np.testing.assert_array_equal(r.labels, by_id[r.train_id])


def test_iterable_stream_matches_batch_prediction(fitted, intensity_series):
    clf, _ = fitted
    X = intensity_series.X
    trains = trains_of(X, 10)
    stream = SpectraStream(clf, IterableSource(trains, first_train_id=500))
    results = list(stream)
    assert [r.train_id for r in results] == list(range(500, 500 + len(trains)))
    labels, conf, amb = clf.predict_with_confidence(X[:10 * len(trains)])
    np.testing.assert_array_equal(np.concatenate([r.labels for r in results]), labels)
    # float32 products over 10 rows and over 200 may round differently (BLAS blocking)
    np.testing.assert_allclose(np.concatenate([r.confidence for r in results]), conf, rtol=1e-5)
    np.testing.assert_array_equal(np.concatenate([r.ambiguous for r in results]), amb)
    pulse = list(results[3])[4]
    assert (pulse.train_id, pulse.pulse) == (503, 4) and pulse.label == labels[34]
    st = stream.stats
    assert (st.trains, st.spectra, st.malformed, st.dropped, st.gaps) == (len(trains), len(labels), 0, 0, 0)
    assert st.spectra_per_s > 0 and st.latency(50) <= st.latency(99)
    assert "spectra/s" in st.summary() and f"received {len(trains)} " in st.summary()
    counters = json.loads(json.dumps(st.counters()))  # JSON-ready, for a REST answer
    assert counters["received"] == counters["trains"] == len(trains)
    assert (counters["spectra"], counters["dropped"], counters["reconnects"]) == (len(labels), 0, 0)
    assert counters["latency_p50_s"] <= counters["latency_p99_s"]
    assert SpectraStream(clf, trains).stats.counters()["latency_p50_s"] is None  # not NaN


def test_malformed_spectra_are_rejected_and_counted(fitted, intensity_series):
    clf, _ = fitted
    X = intensity_series.X[:40]
    bad = X[10:20].copy()
    bad[2, 100] = np.nan
    bad[7, -1] = -np.inf
    dropout = X[30:40].copy()
    dropout[[2, 5]] = 0.0  # no signal: a detector dropout
    trains = [X[:10], bad, X[20:30, :-5], dropout, np.zeros((2, 3, 4)), X[0]]
    stream = SpectraStream(clf, trains)
    results = list(stream)
    assert len(results) == 6
    assert list(results[1].pulses) == [0, 1, 3, 4, 5, 6, 8, 9] and results[1].malformed == 2
    assert len(results[2]) == 0 and results[2].malformed == 10  # wrong length
    assert list(results[3].pulses) == [0, 1, 3, 4, 6, 7, 8, 9] and results[3].malformed == 2
    assert results[4].malformed == 2  # not (pulses, points)
    assert len(results[5]) == 1  # a single spectrum is a train of one
    assert stream.stats.malformed == 16
    assert stream.stats.spectra == 10 + 8 + 8 + 1
    assert stream.stats.unread_points == []  # the two NaN of train 1 share no point


def test_points_nan_in_every_rejected_spectrum_are_reported(fitted, intensity_series, tmp_path):
    """A detector that masks points since the model was trained: the stream
    says which (dropouts and other NaN aside); bridged, they are not."""
    clf, _ = fitted
    X = intensity_series.X[:20].astype(np.float64)
    X[:, [5, 6]] = np.nan
    X[3, 300] = np.nan
    X[4] = 0.0  # a dropout too
    X[7] = np.nan  # a pulse without data: no mask
    empty = intensity_series.X[20:22].astype(np.float64)
    empty[1] = np.nan  # a train whose only NaN spectrum is a pulse without data
    stream = SpectraStream(clf, [X[:10], X[10:], empty])
    list(stream)
    assert stream.stats.malformed == 21 and stream.stats.unread_points == [5, 6]
    assert stream.stats.counters()["unread_points"] == [5, 6]
    masked = BinnedSpectraClassifier.load(clf.save(tmp_path / "m")).mask_points([5])
    stream = SpectraStream(masked, [X[:10], X[10:]])
    list(stream)
    assert stream.stats.malformed == 20 and stream.stats.unread_points == [6]
    stream = SpectraStream(masked.mask_points([6]), [X[:10], X[10:]])
    results = list(stream)
    assert stream.stats.malformed == 3 and stream.stats.unread_points == [300]
    assert [r.malformed for r in results] == [3, 0]


def test_empty_and_ragged_trains_do_not_end_the_stream(fitted, intensity_series):
    clf, _ = fitted
    X = intensity_series.X
    ragged = [X[0], X[1, :-3]]  # rows of different lengths: not an array
    trains = [X[:3], np.zeros((0, X.shape[1]), np.float32), np.zeros(0), ragged,
              [X[2], "not a spectrum"], X[3:5]]
    stream = SpectraStream(clf, IterableSource(trains, first_train_id=7))
    results = list(stream)
    assert [r.train_id for r in results] == [7, 8, 9, 10, 11, 12]
    assert [len(r) for r in results] == [3, 0, 0, 0, 0, 2]
    assert [r.malformed for r in results] == [0, 0, 0, 2, 2, 0]
    np.testing.assert_array_equal(results[-1].labels, clf.predict(X[3:5]))
    st = stream.stats
    assert (st.trains, st.spectra, st.malformed, st.malformed_trains) == (6, 5, 4, 2)


def test_a_stream_is_iterated_once(fitted, intensity_series):
    clf, _ = fitted
    trains = trains_of(intensity_series.X[:20], 5)
    stream = SpectraStream(clf, trains)
    stats = stream.stats
    assert len(list(stream)) == 4
    with pytest.raises(SpectraError, match="iterated once"):
        iter(stream)
    with pytest.raises(SpectraError, match="iterated once"):
        stream.start()
    assert stream.stats is stats and stats.trains == 4
    # the context manager and the loop together are one iteration
    other = SpectraStream(clf, trains)
    with other:
        assert sum(len(r) for r in other) == 20
    with pytest.raises(SpectraError, match="iterated once"):
        other.run()


def test_a_stream_stopped_before_it_started_yields_nothing(fitted, intensity_series):
    """A cancel while the stream is set up (a stop from the server before the
    loop begins) ends it at once, with no error; it still runs once."""
    clf, _ = fitted
    stream = SpectraStream(clf, trains_of(intensity_series.X[:20], 5))
    assert stream.stop() is True
    assert list(stream) == [] and stream.stats.received == 0
    with pytest.raises(SpectraError, match="iterated once"):
        iter(stream)


def test_full_queue_drops_oldest_for_live_sources(fitted, intensity_series):
    clf, _ = fitted
    trains = trains_of(intensity_series.X, 5)[:20]
    exhausted = threading.Event()

    def source():
        yield from trains
        exhausted.set()  # runs once the receiver has queued the last train

    stream = SpectraStream(clf, IterableSource(source(), live=True), queue_size=2)
    it = iter(stream)
    first = next(it)
    assert exhausted.wait(30)
    rest = list(it)
    st = stream.stats
    assert st.received == 20
    assert st.dropped >= 20 - 1 - 2 - 1 and st.trains + st.dropped == 20
    # the newest trains survive, in order
    ids = [first.train_id] + [r.train_id for r in rest]
    assert ids[-1] == 19 and ids == sorted(ids)


def test_non_live_source_waits_instead_of_dropping(fitted, intensity_series):
    clf, _ = fitted
    trains = trains_of(intensity_series.X, 5)[:20]
    stream = SpectraStream(clf, trains, queue_size=1)
    assert not stream.drop_oldest
    n = sum(1 for _ in stream)
    assert n == 20 and stream.stats.dropped == 0
    # a live source made lossless on request: the receiver waits, however slow we are
    lossless = SpectraStream(clf, IterableSource(trains, live=True), queue_size=1,
                             drop_oldest=False)
    it = iter(lossless)
    next(it)
    time.sleep(0.2)  # a slow consumer; with drop_oldest this would drop
    assert lossless.stats.received <= 3 and lossless.stats.dropped == 0
    assert 1 + sum(1 for _ in it) == 20 and lossless.stats.dropped == 0


def test_max_trains_counts_dropped_trains(fitted, intensity_series):
    clf, _ = fitted
    trains = trains_of(intensity_series.X, 5)
    taken = []
    first_taken = threading.Event()

    def endless():  # a live source that never ends by itself
        k = 0
        while True:
            taken.append(k)
            yield trains[k % len(trains)]
            if k == 0:
                assert first_taken.wait(30)  # then a burst
            k += 1

    stream = SpectraStream(clf, IterableSource(endless(), live=True), queue_size=2, max_trains=15)
    it = iter(stream)
    first = next(it)
    first_taken.set()
    wait_until(lambda: stream.stats.received == 15, "the receiver taking 15 trains")
    rest = list(it)  # ends: the 12 dropped trains are not waited for
    st = stream.stats
    # consumer paused after the first: 2 queued survive, the 12 before them are dropped
    assert (st.received, st.trains, st.dropped) == (15, 3, 12)
    assert [first.train_id] + [r.train_id for r in rest] == [0, 13, 14]
    assert len(taken) == 15  # nothing more was asked of the source
    np.testing.assert_array_equal(rest[-1].labels, clf.predict(trains[14]))


def test_stop_cancels_a_stream_whose_source_is_stuck(fitted, intensity_series):
    clf, _ = fitted
    X = intensity_series.X
    release = threading.Event()

    def stuck():
        yield X[:5]
        release.wait(30)  # a source that stops answering and never returns
        yield X[5:10]

    stream = SpectraStream(clf, IterableSource(stuck()))
    it = iter(stream)
    assert len(next(it)) == 5
    t0 = time.monotonic()
    assert stream.stop(timeout=0.3) is False  # bounded, and says the receiver is stuck
    assert time.monotonic() - t0 < 10
    assert list(it) == []  # the consumer ends at once, without an error
    release.set()
    stream._thread.join(10)
    assert not stream._thread.is_alive() and stream.stats.trains == 1


def test_karabo_bridge_over_loopback_counts_gaps(fitted, intensity_series, bridge):
    clf, _ = fitted
    X = intensity_series.X
    ids = [1000, 1001, 1002, 1005, 1006, 1009]
    for k, tid in enumerate(ids):
        arr = X[k * 8:(k + 1) * 8].copy()
        if tid == 1006:
            arr[3, 0] = np.nan
        feed(bridge, tid, arr)
    bridge.feed({"OTHER/SOURCE": {"x": np.zeros(3)}}, {"OTHER/SOURCE": {"timestamp.tid": 1010}})
    feed(bridge, 1011, X[100:108])
    # lossless: with drop_oldest a slow start could drop some of the 7 trains
    stream = SpectraStream(clf, bridge.endpoint, source_name=SRC, key=KEY, timeout=5.0,
                           max_trains=len(ids) + 1, drop_oldest=False)
    results = list(stream)
    assert [r.train_id for r in results] == ids + [1011]
    st = stream.stats
    assert st.gaps == 2 + 2 + 1  # 1003-1004, 1007-1008, 1010 (no spectra in it)
    assert st.malformed == 1 and st.malformed_trains == 1
    expected = clf.predict(X[:48])
    got = np.concatenate([r.labels for r in results[:6]])
    np.testing.assert_array_equal(got, np.delete(expected, 8 * 4 + 3))
    # every class's probability too, for the pulses classified: to float32 rounding, as trains of 8
    # may be summed otherwise by BLAS than one batch of 48 (OpenBLAS on an AMD EPYC: 1 ulp apart)
    np.testing.assert_allclose(np.concatenate([r.probabilities for r in results[:6]]),
                               np.delete(clf.predict_proba(X[:48]), 8 * 4 + 3, axis=0), rtol=1e-6, atol=1e-7)


def test_burst_over_bridge_drops_oldest_and_ends_at_max_trains(fitted, intensity_series,
                                                                bridge):
    clf, _ = fitted
    X = intensity_series.X
    feed(bridge, 3000, X[:4])
    stream = SpectraStream(clf, bridge.endpoint, key=KEY, timeout=5.0, queue_size=1,
                           max_trains=12)
    assert stream.drop_oldest  # a bridge is live: drop-oldest by default
    it = iter(stream)
    first = next(it)
    for k in range(1, 15):  # a burst while the consumer is busy with its first result
        feed(bridge, 3000 + k, X[4 * k:4 * k + 4])
    wait_until(lambda: stream.stats.received == 12, "the receiver taking 12 trains")
    rest = list(it)  # ends after 12 trains received, 10 of them dropped
    st = stream.stats
    assert (st.received, st.trains, st.dropped, st.gaps) == (12, 2, 10, 0)
    assert [first.train_id] + [r.train_id for r in rest] == [3000, 3011]
    np.testing.assert_array_equal(rest[0].labels, clf.predict(X[44:48]))
    assert "dropped 10 " in st.summary() and st.counters()["dropped"] == 10


def test_quiet_bridge_ends_with_an_error_by_default(fitted, intensity_series, bridge):
    clf, _ = fitted
    X = intensity_series.X
    for k in range(3):
        feed(bridge, 4000 + k, X[4 * k:4 * k + 4])
    stream = SpectraStream(clf, bridge.endpoint, key=KEY, timeout=0.2, drop_oldest=False)
    assert stream.source.max_reconnects == 5  # bounded unless asked otherwise
    received = []
    with pytest.raises(SpectraError, match=r"stopped answering.*reconnected 5 times "
                                           r"\(3 trains received\)"):
        for result in stream:
            received.append(result.train_id)
    assert received == [4000, 4001, 4002] and stream.stats.reconnects == 5


def test_max_reconnects_none_waits_until_stopped(fitted, bridge):
    clf, _ = fitted
    stream = SpectraStream(clf, bridge.endpoint, key=KEY, timeout=0.1, max_reconnects=None)

    def stop_later():
        deadline = time.monotonic() + 30  # stop anyway: the test must not hang
        while stream.stats.reconnects < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        stream.stop()

    stopper = threading.Thread(target=stop_later, daemon=True)
    stopper.start()
    assert list(stream) == []  # no error: stopped by the caller, as asked
    stopper.join(30)
    assert not stopper.is_alive() and stream.stats.reconnects >= 8
    assert not stream._thread.is_alive()


def test_bridge_that_comes_back_goes_on(fitted, intensity_series, bridge):
    clf, _ = fitted
    X = intensity_series.X

    def spectra(tid):
        return X[4 * (tid - 2000):4 * (tid - 1999)]

    feed(bridge, 2000, spectra(2000))
    # 3 reconnections in a row are allowed; a train in between resets the count.
    # A silence of 1 s: the feeder below has two of them to bring the trains
    # (with 0.5 s the test failed once on 2 loaded cores)
    stream = SpectraStream(clf, KaraboBridgeSource(bridge.endpoint, key=KEY, timeout=1.0,
                                                   max_reconnects=3), drop_oldest=False)
    marks = [0]

    def feed_later():
        # two silences of two reconnections each, a batch of 4 trains after
        # each (a request pending on a dropped connection may take one with it)
        deadline = time.monotonic() + 30
        for batch, first in ((1, 2001), (2, 2005)):
            while (stream.stats.reconnects < marks[-1] + 2 or stream.stats.received < batch) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            marks.append(stream.stats.reconnects)
            for tid in range(first, first + 4):
                feed(bridge, tid, spectra(tid))

    feeder = threading.Thread(target=feed_later, daemon=True)
    results = []
    with stream:
        feeder.start()
        for result in stream:
            results.append(result)
            if result.train_id >= 2005:  # the source came back a second time
                break
    feeder.join(30)
    assert not feeder.is_alive()
    st = stream.stats
    ids = [r.train_id for r in results]
    assert ids[0] == 2000 and any(2001 <= t <= 2004 for t in ids), ids
    # more reconnections than max_reconnects in all, never more than 3 in a row
    assert marks[1] >= 2 and marks[2] >= marks[1] + 2 and st.reconnects > 3, marks
    # whatever was lost is a gap: every id up to the last one received was
    # received or counted missing (the receiver may have taken trains past
    # the one the loop stopped at, and counted the gaps before them; its
    # counters are read once it has stopped)
    assert not stream._thread.is_alive()
    assert st.last_train_id >= ids[-1] and st.dropped == 0  # a lossless queue
    assert st.received + st.gaps == st.last_train_id - 2000 + 1, (ids, st.counters())
    assert_delivered_match(results, range(2000, 2009), [clf.predict(spectra(t))
                                                        for t in range(2000, 2009)])


def test_replayed_run_and_bridge_serving_it(fitted, tmp_path, bridge):
    clf, _ = fitted
    info = write_demo_run(tmp_path, n_trains=12, pulses_per_train=5, n_points=2010)
    stream = SpectraStream(clf, info["path"], source_name=info["source"], key=info["key"])
    assert not stream.drop_oldest  # a run read as fast as possible: lossless
    results = list(stream)
    assert len(results) == 12 and stream.stats.spectra == 60 and stream.stats.gaps == 0
    assert results[0].train_id == info["first_train"]
    ids = [r.train_id for r in results]
    labels = [r.labels for r in results]
    # paced replay: a live source at a given train rate, which may drop any number
    paced = SpectraStream(clf, RunSource(info["path"], info["source"], info["key"],
                                         train_rate=200.0))
    assert paced.drop_oldest
    paced_results = list(paced)
    assert len(paced_results) + paced.stats.dropped == paced.stats.received == 12
    assert_delivered_match(paced_results, ids, labels)
    # the same run served over the Karabo bridge, as extra_data's file server
    # does, twice: read losslessly, then live (dropping whatever it must)
    import extra_data

    run = extra_data.RunDirectory(info["path"]).select(info["source"], info["key"])
    for _ in range(2):
        for tid, data in run.trains():
            bridge.feed(data)
    lossless = SpectraStream(clf, bridge.endpoint, key=info["key"], timeout=5.0,
                             max_trains=12, drop_oldest=False)
    bridged = list(lossless)
    assert [r.train_id for r in bridged] == ids and lossless.stats.dropped == 0
    for a, b in zip(bridged, labels):
        np.testing.assert_array_equal(a.labels, b)
    live = SpectraStream(clf, bridge.endpoint, key=info["key"], timeout=5.0, max_trains=12)
    live_results = list(live)  # ends after 12 received, however many were dropped
    assert len(live_results) + live.stats.dropped == live.stats.received == 12
    assert_delivered_match(live_results, ids, labels)


def test_bad_sources(fitted, tmp_path):
    clf, _ = fitted
    with pytest.raises(SpectraError, match="EuXFEL run"):
        SpectraStream(clf, str(tmp_path), source_name="A", key="b")
    info = write_demo_run(tmp_path, n_trains=3, pulses_per_train=2, n_points=2010)
    could_be = f"; this run's could be {info['source']} (key {info['key']})"
    with pytest.raises(SpectraError, match="is not in the run") as e:
        RunSource(info["path"], "NO/SUCH:output", "data.x")
    assert str(e.value).endswith(could_be)
    with pytest.raises(SpectraError) as e:  # one number a pulse is no spectrum
        RunSource(info["path"], info["source"], "data.pulseId")
    assert str(e.value) == (f"key 'data.pulseId' of {info['source']!r} holds single numbers, not spectra "
                            f"(1-D arrays){could_be}")
    with pytest.raises(SpectraError, match="key 'data.x' is not in"):
        RunSource(info["path"], info["source"], "data.x")
    with pytest.raises(SpectraError, match="source= and key="):
        SpectraStream(clf, info["path"])
    with pytest.raises(SpectraError, match="ZeroMQ endpoint"):
        KaraboBridgeSource("localhost:4545")
    # without tcp:// an endpoint reads as a path: named as neither, not "a run needs source= and key="
    with pytest.raises(SpectraError, match="'localhost:4545' is neither a Karabo bridge endpoint "
                                           r"\(tcp://HOST:PORT\) nor a run directory"):
        SpectraStream(clf, "localhost:4545")
    with pytest.raises(SpectraError, match="needs a host and a port number"):
        SpectraStream(clf, "tcp://127.0.0.1")
    with pytest.raises(SpectraError, match="cannot stream from int"):
        SpectraStream(clf, 42)
    for bad in (0, -3, 2.5, True, "3"):
        with pytest.raises(SpectraError, match="max_trains must be a whole number"):
            SpectraStream(clf, [np.zeros((1, 2010))], max_trains=bad)
    with pytest.raises(SpectraError, match="max_reconnects must be a whole number >= 0, or None"):
        KaraboBridgeSource("tcp://127.0.0.1:4545", max_reconnects=-1)
    with pytest.raises(SpectraError, match="max_reconnects must be"):
        KaraboBridgeSource("tcp://127.0.0.1:4545", max_reconnects=1.5)
    for bad in (0, -1, float("nan"), "10"):  # -1 replayed as fast as possible, as a live source
        with pytest.raises(SpectraError, match="train_rate must be > 0 trains/s"):
            RunSource(info["path"], info["source"], info["key"], train_rate=bad)


def test_bridge_gives_up_after_max_reconnects(fitted):
    clf, _ = fitted
    # nothing listens on port 1: every wait times out
    source = KaraboBridgeSource("tcp://127.0.0.1:1", key=KEY, timeout=0.2, max_reconnects=2)
    stream = SpectraStream(clf, source)
    with pytest.raises(SpectraError, match="stopped answering.*0 trains received"):
        list(stream)
    assert stream.stats.reconnects == 2 and stream.stats.trains == 0


def test_the_kernels_are_ready_before_the_first_train(fitted, tmp_path):
    """In a fresh process (a stream of the Jupyter server) the first classification
    imports numba and loads the compiled kernels; a stream does that before its
    clock starts, not on its first train (whose latency, and the stream's rate,
    counted it: p99 ~300 ms, 18,000 spectra/s for a 6,400-spectrum replay)."""
    clf, _ = fitted
    clf.save(tmp_path / "model")
    code = f"""
import sys
from server_ext.spectra import BinnedSpectraClassifier, SpectraStream
from server_ext.spectra.align import _best_and_align
from server_ext.spectra.compiled import compiled
from server_ext.spectra.preprocess import _normalise_rows

clf = BinnedSpectraClassifier.load({str(tmp_path / "model")!r})
assert "numba" not in sys.modules, "loading a model compiles nothing"
stream = SpectraStream(clf, iter(()))
stream.start()
print(bool(compiled(_normalise_rows, reorder=True).signatures),
      bool(compiled(_best_and_align).signatures), stream.stats.trains)
stream.stop()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    normalise, align, trains = out.stdout.split()
    assert (normalise, trains) == ("True", "0")
    assert align == str(clf.strain_aligned_)  # the alignment's kernel, where the model aligns


@pytest.mark.parametrize("read", [False, True])
def test_the_benchmarks_stream_without_classification_answers_the_streams_call(
        fitted, intensity_series, benchmark_module, read):
    """The streaming benchmark's peers (the stream's own machinery, and a
    stream that only reads each train) stand in for the classifier: they must
    take the stream's call as it is (broken once by a new keyword)."""
    clf, _ = fitted
    blank = benchmark_module("spectra").without_classification(clf, read=read)
    trains = trains_of(intensity_series.X[:24], 8)
    results = list(SpectraStream(blank, trains))
    assert [len(r) for r in results] == [8, 8, 8]
    assert results[0].probabilities.shape == (8, len(clf.classes_))
