"""A stream whose source sends the positions of its points with each train
(``axis_key``: an azimuthal integration's 2-theta or q beside its
intensities): each train is read through its own axis, a recalibration
included; a train whose axis is missing or cannot be read through is
rejected whole, counted and said why, and the stream goes on."""

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier, SpectraError, SpectraStream
from server_ext.spectra.synthetic import DEMO_AXIS_SOURCE, write_demo_run

SRC, KEY, AXIS = "SPB_TEST/PROC/SPECTRA:output", "data.intensity", "data.radial"


@pytest.fixture(scope="module")
def replay(fitted, tmp_path_factory):
    """A run of 700-point spectra (the model reads 2,010 points on the same
    10-90 degrees), its 2-theta a control key per train: train 2 recalibrated
    (9.5-90.5), train 3 NaN at a point, train 4 not covering the model's
    range."""
    info = write_demo_run(tmp_path_factory.mktemp("run"), n_trains=6, pulses_per_train=4,
                          n_points=700)
    axes = np.tile(np.linspace(10.0, 90.0, 700), (6, 1))
    axes[2] = np.linspace(9.5, 90.5, 700)
    axes[3, 5] = np.nan
    axes[4] = np.linspace(20.0, 90.0, 700)
    (run_file,) = Path(info["path"]).glob("*.h5")
    with h5py.File(run_file, "a") as f:
        f[f"CONTROL/{DEMO_AXIS_SOURCE}/twoTheta/value"][...] = axes
        X = f[f"INSTRUMENT/{info['source']}/{info['key'].replace('.', '/')}"][()]
    return info, axes, X.reshape(6, 4, 700)


def test_a_replayed_run_is_read_through_each_trains_axis(fitted, replay, caplog):
    clf, _ = fitted
    info, axes, X = replay
    run = dict(source_name=info["source"], key=info["key"])
    without = SpectraStream(clf, info["path"], **run).run()
    assert (without.spectra, without.malformed) == (0, 24)  # 700 points are not the model's 2,010
    with caplog.at_level(logging.WARNING, logger="server_ext.spectra.stream"):
        stream = SpectraStream(clf, info["path"], axis_key="twoTheta",
                               axis_source=DEMO_AXIS_SOURCE, **run)
        results = list(stream)
    assert [len(r) for r in results] == [4, 4, 4, 0, 0, 4]
    for t in (0, 1, 2, 5):
        labels, confidence, _ = clf.predict_with_confidence(X[t], axis=axes[t])
        np.testing.assert_array_equal(results[t].labels, labels)
        np.testing.assert_array_equal(results[t].confidence, confidence)
    # the recalibrated train was read through its own axis, not the others'
    assert not np.array_equal(results[2].confidence,
                              clf.predict_with_confidence(X[2], axis=axes[0])[1])
    st = stream.stats
    assert (st.unreadable_axis, st.malformed, st.malformed_trains, st.trains) == (2, 8, 2, 6)
    first = info["first_train"]
    assert st.axis_error == (f"train {first + 4}: the spectra's axis runs from 20 to 90; the "
                             "model reads 10 to 90 (252 of its 2010 points outside): spectra "
                             "must cover the model's axis")
    assert st.counters()["axis_error"] == st.axis_error
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2, warned  # one per reason, not one per train
    assert f"train {first + 3}" in warned[0] and "the axis twoTheta has NaN or inf at points [5]" \
        in warned[0]


def test_a_bridge_sends_the_axis_with_each_train(fitted, intensity_series, bridge):
    """Spectra on 1,000 points with their axis beside them, or in another
    source's data; a train without it, or with one of the wrong length,
    rejected whole."""
    clf, _ = fitted
    s = intensity_series
    axis = np.linspace(s.axis[0], s.axis[-1], 1000)
    X = np.stack([np.interp(axis, s.axis, row) for row in s.X[:16]])
    sends = [{SRC: {KEY: X[0:4], AXIS: axis}},
             {SRC: {KEY: X[4:8]}},
             {SRC: {KEY: X[8:12], AXIS: axis[:-1]}},
             {SRC: {KEY: X[12:16], AXIS: axis}}]
    for tid, data in enumerate(sends):
        bridge.feed(data, {SRC: {"timestamp.tid": 100 + tid}})
    stream = SpectraStream(clf, bridge.endpoint, source_name=SRC, key=KEY, axis_key=AXIS,
                           timeout=5.0, max_trains=4, drop_oldest=False)
    results = list(stream)
    assert [len(r) for r in results] == [4, 0, 0, 4]
    np.testing.assert_array_equal(np.concatenate([results[0].labels, results[3].labels]),
                                  clf.predict(np.concatenate([X[:4], X[12:]]), axis=axis))
    st = stream.stats
    assert (st.unreadable_axis, st.malformed) == (2, 8)
    assert st.axis_error == "train 102: the axis data.radial has 999 positions for spectra of " \
                            "1000 points"
    # the axis in another source's data (a calibration device's)
    other = "SPB_TEST/CAL/AXIS"
    bridge.feed({SRC: {KEY: X[:4]}, other: {"radial": axis}},
                {SRC: {"timestamp.tid": 200}, other: {"timestamp.tid": 200}})
    stream = SpectraStream(clf, bridge.endpoint, source_name=SRC, key=KEY, axis_key="radial",
                           axis_source=other, timeout=5.0, max_trains=1, drop_oldest=False)
    (result,) = list(stream)
    np.testing.assert_array_equal(result.labels, clf.predict(X[:4], axis=axis))


def test_an_iterable_of_mappings_sends_the_axis_with_each_train(fitted, intensity_series):
    """In a notebook: an integration's results, intensities and radial
    positions per train, as mappings; a recalibrated train read through its
    own axis, a train without its axis rejected, one without spectra
    counted malformed."""
    clf, _ = fitted
    s = intensity_series
    axes = [np.linspace(s.axis[0], s.axis[-1], 900), np.linspace(s.axis[0] - 0.5,
                                                                  s.axis[-1] + 0.5, 900)]
    X = [np.stack([np.interp(a, s.axis, row) for row in s.X[i:i + 4]])
         for i, a in zip((0, 100), axes)]
    items = [(10, {KEY: X[0], AXIS: axes[0]}), (11, {KEY: X[1], AXIS: axes[1]}),
             (12, {KEY: X[0]}), (13, {AXIS: axes[0]}), (14, X[0])]
    stream = SpectraStream(clf, items, key=KEY, axis_key=AXIS)
    results = list(stream)
    assert [(r.train_id, len(r)) for r in results] == [(10, 4), (11, 4), (12, 0)]
    for r, x, a in zip(results, X, axes):
        labels, confidence, _ = clf.predict_with_confidence(x, axis=a)
        np.testing.assert_array_equal(r.labels, labels)
        np.testing.assert_array_equal(r.confidence, confidence)
    st = stream.stats
    assert (st.unreadable_axis, st.malformed, st.malformed_trains) == (1, 4, 3)
    assert st.axis_error == "train 12: the axis data.radial is not in the train"
    with pytest.raises(SpectraError, match="axis_key='data.radial' needs key="):
        SpectraStream(clf, items, axis_key=AXIS)


def test_an_axis_per_train_that_cannot_be_used_is_refused_at_once(fitted, intensity_series,
                                                                   replay):
    clf, _ = fitted
    info, axes, _ = replay
    run = dict(source_name=info["source"], key=info["key"], axis_source=DEMO_AXIS_SOURCE)
    with pytest.raises(SpectraError, match=r"either with each train \('twoTheta'\) or from a "
                                           r"file \(axis=\), not both"):
        SpectraStream(clf, info["path"], axis_key="twoTheta", axis=axes[0], **run)
    with pytest.raises(SpectraError, match=f"key 'nothing' is not in '{DEMO_AXIS_SOURCE}'"):
        SpectraStream(clf, info["path"], axis_key="nothing", **run)
    s = intensity_series
    plain = BinnedSpectraClassifier(random_state=0, n_bins=3).fit(s.X[::5], s.y[::5])
    with pytest.raises(SpectraError, match=r"fitted without an axis, so it cannot read spectra "
                                           r"on another: pass spectra of its 2010 points"):
        SpectraStream(plain, info["path"], axis_key="twoTheta", **run)
