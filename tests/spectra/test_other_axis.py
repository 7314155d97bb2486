"""Spectra integrated onto another axis than the model's -- another grid,
range or wavelength -- are classified through ``axis=``: interpolated at
the model's positions. What cannot be read is refused, saying why."""

import json

import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier, SpectraError, SpectraStream
from server_ext.spectra.synthetic import make_powder_series

N, P = 120, 2010
TRAIN, TEST = np.arange(0, N, 4), np.arange(2, N, 4)


def q_of(two_theta, wavelength):
    return 4 * np.pi * np.sin(np.radians(two_theta) / 2) / wavelength


@pytest.fixture(scope="module")
def on_q():
    """A -> B -> A' (A' in a 1 % larger cell) on q, every 4th curve labelled."""
    s = make_powder_series("shift", n_spectra=N, n_points=P, axis_kind="q", random_state=0)
    clf = BinnedSpectraClassifier(random_state=0).fit(s.X[TRAIN], s.y[TRAIN], axis=s.axis)
    return clf, s


def test_the_same_series_on_another_grid_and_wavelength(on_q):
    """The same sample measured at 0.7 instead of 1.54 angstrom, on 2-theta
    4-60 degrees: on its q axis it classifies as on the model's own grid;
    its points taken as the model's, it does not."""
    clf, s = on_q
    assert clf.score(s.X[TEST], s.y[TEST]) >= 0.97
    other = make_powder_series("shift", n_spectra=N, n_points=P, two_theta_range=(4.0, 60.0),
                               wavelength=0.7, random_state=0)
    q = q_of(other.axis, 0.7)
    assert (clf.predict(other.X[TEST], axis=q) == other.y[TEST]).mean() >= 0.97
    assert (clf.predict(other.X[TEST]) == other.y[TEST]).mean() < 0.5
    coarse = make_powder_series("shift", n_spectra=N, n_points=1500, random_state=0)
    labels, confidence, _ = clf.predict_with_confidence(coarse.X[TEST], axis=q_of(coarse.axis, 1.5406))
    assert (labels == coarse.y[TEST]).mean() >= 0.97 and confidence.min() > 0
    # its own axis: exactly as without it
    np.testing.assert_array_equal(clf.predict_proba(s.X[TEST], axis=s.axis.copy()),
                                  clf.predict_proba(s.X[TEST]))


def test_interpolation_is_linear_between_the_neighbours(on_q):
    clf, s = on_q
    rng = np.random.default_rng(1)
    X = rng.gamma(3.0, 40.0, (5, 700))
    axis = np.linspace(s.axis[0] - 0.01, s.axis[-1] + 0.02, 700)
    Y = clf.axis_plan(axis)(X)
    assert Y.shape == (5, P) and Y.dtype == np.float32
    expected = np.stack([np.interp(s.axis, axis, row) for row in X])
    np.testing.assert_allclose(Y, expected, rtol=1e-5)


def test_axes_that_cannot_be_read_are_refused(on_q, tmp_path):
    clf, s = on_q
    X = s.X[TEST]
    with pytest.raises(SpectraError, match=r"axis must have one value per point of X \(2010\)"):
        clf.predict(X, axis=s.axis[:-1])
    narrow = np.linspace(s.axis[0] + 0.5, s.axis[-1], P)
    with pytest.raises(SpectraError, match=r"the spectra's axis runs from 1\.21091 to 5\.76773; the "
                       r"model reads 0\.710912 to 5\.76773 \(178 of its 2010 points outside\)"):
        clf.predict(X, axis=narrow)
    with pytest.raises(SpectraError, match="runs the other way"):
        clf.predict(X, axis=-s.axis)  # decreasing, as a d-spacing, against q
    bumpy = s.axis.copy()
    bumpy[10] = bumpy[11]
    with pytest.raises(SpectraError, match="strictly increasing or decreasing"):
        clf.predict(X, axis=bumpy)
    plain = BinnedSpectraClassifier(epochs=2, random_state=0).fit(s.X[TRAIN], s.y[TRAIN])
    assert plain.axis_ is None
    with pytest.raises(SpectraError, match="fitted without an axis"):
        plain.predict(X, axis=s.axis)
    with pytest.raises(SpectraError, match="fitted without an axis"):
        SpectraStream(plain, [X], axis=s.axis)


def test_the_axis_is_saved_and_a_stream_reads_through_it(on_q, tmp_path):
    clf, s = on_q
    path = clf.save(tmp_path / "m")
    loaded = BinnedSpectraClassifier.load(path)
    np.testing.assert_array_equal(loaded.axis_, s.axis)
    other = make_powder_series("shift", n_spectra=N, n_points=1500, random_state=0)
    q = q_of(other.axis, 1.5406)
    trains = [other.X[TEST][:15], other.X[TEST][15:]]
    stream = SpectraStream(loaded, trains, axis=q)
    labels = np.concatenate([r.labels for r in stream])
    np.testing.assert_array_equal(labels, clf.predict(other.X[TEST], axis=q))
    assert stream.stats.malformed == 0
    # NaN at two points of the other grid: the model's points beside them are named
    bad = other.X[TEST].astype(np.float64)
    bad[:, [600, 601]] = np.nan
    stream = SpectraStream(loaded, [bad], axis=q)
    list(stream)
    unread = stream.stats.unread_points
    assert stream.stats.malformed == len(bad) and unread
    assert q[599] < s.axis[unread[0]] and s.axis[unread[-1]] < q[602]
    with SpectraStream(loaded, [other.X[TEST][:, :-1]], axis=q) as short:  # a point short
        assert [r.malformed for r in short] == [len(TEST)]
    # a model saved before the axis was kept: None, spectra on its own points only
    arrays = dict(np.load(path / "arrays.npz"))
    del arrays["axis_"]
    np.savez(path / "arrays.npz", **arrays)
    assert BinnedSpectraClassifier.load(path).axis_ is None
    arrays["axis_"] = s.axis[::-1][:-1]
    np.savez(path / "arrays.npz", **arrays)
    with pytest.raises(SpectraError, match="incomplete or corrupt"):
        BinnedSpectraClassifier.load(path)
    assert json.loads((path / "config.json").read_text())["version"] == 11


def test_a_detectors_axis_is_read_from_a_file_beside_its_data(tmp_path):
    """``read_axis``: a NeXus file's default axis, a text column or row, a
    .npy array; NaN, a table, too few numbers, or a .npy file empty or cut
    short refused, saying where."""
    import h5py

    from server_ext.spectra.datafiles import axis_source, read_axis

    axis = np.linspace(10.0, 90.0, 700)
    with h5py.File(tmp_path / "detector.nxs", "w") as f:
        f.attrs["default"] = "entry"
        data = f.create_group("entry").create_group("data")
        f["entry"].attrs["default"] = "data"
        data.attrs.update(NX_class="NXdata", signal="intensity", axes=[".", "two_theta"])
        data["intensity"], data["two_theta"] = np.ones((2, 700)), axis
    np.testing.assert_array_equal(read_axis(tmp_path / "detector.nxs"), axis)
    np.testing.assert_array_equal(read_axis(*axis_source(f"{tmp_path}/detector.nxs:/entry/data/two_theta")),
                                  axis)
    np.savetxt(tmp_path / "row.txt", axis[None])
    np.savetxt(tmp_path / "column.txt", axis)
    for name in ("row.txt", "column.txt"):
        np.testing.assert_allclose(read_axis(tmp_path / name), axis)
    assert axis_source("a/b.txt") == ("a/b.txt", None)
    bad = axis.copy()
    bad[[3, 7]] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.savetxt(tmp_path / "table.txt", np.stack([axis, axis], 1))
    np.savetxt(tmp_path / "one.txt", axis[:1])
    (tmp_path / "empty.npy").write_bytes(b"")  # a copy that never finished
    np.save(tmp_path / "cut.npy", axis)
    with open(tmp_path / "cut.npy", "r+b") as f:
        f.truncate(1000)
    for name, message in (("nan.npy", r"has NaN or inf at points \[3, 7\]"),
                          ("table.txt", r"has shape \(700, 2\)"),
                          ("one.txt", r"has shape \(1,\)"),
                          ("empty.npy", "cannot read .*empty.npy as an axis"),
                          ("cut.npy", "cannot read .*cut.npy as an axis")):
        with pytest.raises(SpectraError, match=message):
            read_axis(tmp_path / name)
