import threading
import time

import numpy as np
import pytest
from karabo_bridge import ServerInThread

from server_ext.spectra import (IterableSource, KaraboBridgeSource, RunSource, SpectraError,
                                SpectraStream)
from server_ext.spectra.synthetic import write_demo_run

SRC, KEY = "SPB_TEST/PROC/SPECTRA:output", "data.intensity"


def trains_of(X, per_train):
    return [X[i:i + per_train] for i in range(0, len(X) - per_train + 1, per_train)]


@pytest.fixture
def bridge():
    """A Karabo bridge server on an ephemeral loopback port, stopped after."""
    server = ServerInThread("tcp://127.0.0.1:*", maxlen=200)
    server.start()
    yield server
    server.stop()


def feed(server, tid, arr):
    server.feed({SRC: {KEY: arr}}, {SRC: {"timestamp.tid": tid, "source": SRC}})


def test_iterable_stream_matches_batch_prediction(fitted, intensity_series):
    clf, _ = fitted
    X = intensity_series.X
    trains = trains_of(X, 10)
    stream = SpectraStream(clf, IterableSource(trains, first_train_id=500))
    results = list(stream)
    assert [r.train_id for r in results] == list(range(500, 500 + len(trains)))
    labels, conf, amb = clf.predict_with_confidence(X[:10 * len(trains)])
    np.testing.assert_array_equal(np.concatenate([r.labels for r in results]), labels)
    np.testing.assert_allclose(np.concatenate([r.confidence for r in results]), conf, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([r.ambiguous for r in results]), amb)
    pulse = list(results[3])[4]
    assert (pulse.train_id, pulse.pulse) == (503, 4) and pulse.label == labels[34]
    st = stream.stats
    assert (st.trains, st.spectra, st.malformed, st.dropped, st.gaps) == (len(trains), len(labels), 0, 0, 0)
    assert st.spectra_per_s > 0 and st.latency(50) <= st.latency(99)
    assert "spectra/s" in st.summary()


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
    n = sum(1 for _ in stream)
    assert n == 20 and stream.stats.dropped == 0


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
    stream = SpectraStream(clf, bridge.endpoint, source_name=SRC, key=KEY, timeout=5.0,
                           max_trains=len(ids) + 1)
    results = list(stream)
    assert [r.train_id for r in results] == ids + [1011]
    st = stream.stats
    assert st.gaps == 2 + 2 + 1  # 1003-1004, 1007-1008, 1010 (no spectra in it)
    assert st.malformed == 1 and st.malformed_trains == 1
    expected = clf.predict(X[:48])
    got = np.concatenate([r.labels for r in results[:6]])
    np.testing.assert_array_equal(got, np.delete(expected, 8 * 4 + 3))


def test_karabo_bridge_reconnects_after_timeout(fitted, intensity_series, bridge):
    clf, _ = fitted
    X = intensity_series.X
    feed(bridge, 2000, X[:4])
    # max_reconnects bounds the wait should the feeder never deliver (~60 s)
    stream = SpectraStream(clf, KaraboBridgeSource(bridge.endpoint, key=KEY, timeout=0.3,
                                                   max_reconnects=200))

    def feed_later():
        deadline = time.monotonic() + 30
        while stream.stats.reconnects < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        for tid in range(2001, 2006):
            feed(bridge, tid, X[4 * (tid - 2000):4 * (tid - 1999)])

    feeder = threading.Thread(target=feed_later, daemon=True)
    received = []
    with stream:
        feeder.start()
        for result in stream:
            received.append(result.train_id)
            if result.train_id == 2005:
                break
    feeder.join(30)
    assert not feeder.is_alive()
    st = stream.stats
    assert st.reconnects >= 1
    # a request pending on the dropped connection may take one train with it;
    # whatever is lost shows up as a gap
    assert received[0] == 2000 and len(received) + st.gaps == 6


def test_replayed_run_and_bridge_serving_it(fitted, tmp_path, bridge):
    clf, _ = fitted
    info = write_demo_run(tmp_path, n_trains=12, pulses_per_train=5, n_points=2010)
    stream = SpectraStream(clf, info["path"], source_name=info["source"], key=info["key"])
    results = list(stream)
    assert len(results) == 12 and stream.stats.spectra == 60 and stream.stats.gaps == 0
    assert results[0].train_id == info["first_train"]
    # paced replay: a live source at a given train rate
    paced = SpectraStream(clf, RunSource(info["path"], info["source"], info["key"],
                                         train_rate=200.0))
    assert paced.drop_oldest and len(list(paced)) + paced.stats.dropped == 12
    # the same run served over the Karabo bridge, as extra_data's file server does
    import extra_data

    run = extra_data.RunDirectory(info["path"]).select(info["source"], info["key"])
    for tid, data in run.trains():
        bridge.feed(data)
    over_bridge = SpectraStream(clf, bridge.endpoint, key=info["key"], timeout=5.0,
                                max_trains=12)
    bridged = list(over_bridge)
    assert [r.train_id for r in bridged] == [r.train_id for r in results]
    for a, b in zip(bridged, results):
        np.testing.assert_array_equal(a.labels, b.labels)


def test_bad_sources(fitted, tmp_path):
    clf, _ = fitted
    with pytest.raises(SpectraError, match="EuXFEL run"):
        SpectraStream(clf, str(tmp_path), source_name="A", key="b")
    info = write_demo_run(tmp_path, n_trains=3, pulses_per_train=2, n_points=2010)
    with pytest.raises(SpectraError, match="is not in the run"):
        RunSource(info["path"], "NO/SUCH:output", "data.x")
    with pytest.raises(SpectraError, match="key 'data.x' is not in"):
        RunSource(info["path"], info["source"], "data.x")
    with pytest.raises(SpectraError, match="source= and key="):
        SpectraStream(clf, info["path"])
    with pytest.raises(SpectraError, match="ZeroMQ endpoint"):
        KaraboBridgeSource("localhost:4545")
    with pytest.raises(SpectraError, match="needs a host and a port number"):
        SpectraStream(clf, "tcp://127.0.0.1")
    with pytest.raises(SpectraError, match="cannot stream from int"):
        SpectraStream(clf, 42)


def test_bridge_gives_up_after_max_reconnects(fitted):
    clf, _ = fitted
    # nothing listens on port 1: every wait times out
    source = KaraboBridgeSource("tcp://127.0.0.1:1", key=KEY, timeout=0.2, max_reconnects=2)
    stream = SpectraStream(clf, source)
    with pytest.raises(SpectraError, match="stopped answering.*0 trains received"):
        list(stream)
    assert stream.stats.reconnects == 2 and stream.stats.trains == 0
