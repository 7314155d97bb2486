import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from server_ext.spectra import BinnedSpectraClassifier, SpectraError
from server_ext.spectra.fused import pool
from server_ext.spectra.synthetic import make_powder_series, make_transition_series, perturb

N_POINTS = 2010  # as in conftest.py


def extremes(n, per_class=2):
    """Protocol A: the first and last curves of the series."""
    return np.r_[np.arange(per_class), np.arange(n - per_class, n)]


def held_out(n, train):
    return np.setdiff1d(np.arange(n), train)


def test_protocol_b_intensity_change(fitted, intensity_series):
    clf, train = fitted
    s = intensity_series
    test = held_out(len(s.X), train)
    labels, conf, amb = clf.predict_with_confidence(s.X[test])
    assert (labels == s.y[test]).mean() >= 0.98
    assert clf.score(s.X[test], s.y[test]) == pytest.approx((labels == s.y[test]).mean())
    # ambiguous flags where the phases coexist, and only there
    switch = np.flatnonzero(np.diff(s.y))[0]
    assert amb.any() and (np.abs(test[amb] - switch) <= 8).all()
    assert ((conf >= 0.5) & (conf <= 1.0)).all()


def test_protocol_a_shift_change_and_robustness(shift_series):
    s = shift_series
    train = extremes(len(s.X))
    test = held_out(len(s.X), train)
    clf = BinnedSpectraClassifier(random_state=1).fit(s.X[train], s.y[train], axis=s.axis)
    acc = (clf.predict(s.X[test]) == s.y[test]).mean()
    assert acc >= 0.95
    strained = perturb(s.X[test], s.axis, strain=0.01, intensity=0.3, random_state=0)
    acc_p = (clf.predict(strained) == s.y[test]).mean()
    assert acc_p >= acc - 0.03


def test_learned_attributes(fitted):
    clf, _ = fitted
    n_kept = len(clf.bins_)
    assert 1 <= n_kept <= clf.n_bins
    assert clf.bins_.shape == (n_kept, 2)
    assert (clf.bins_[:, 0] < clf.bins_[:, 1]).all() and clf.bins_.max() <= N_POINTS
    assert clf.separability_.shape == clf.weights_.shape == (n_kept,)
    assert (clf.weights_ > 0).all() and clf.weights_.max() == pytest.approx(1.0)
    # the published weight of the held-out accuracy: zero (dropped) at <= 55 %
    np.testing.assert_allclose(clf.published_weights_,
                               np.maximum(1.4337 * clf.separability_ ** 2 - 0.4337, 1e-3),
                               atol=2e-4)
    assert (clf.separability_ > 0.55).all()
    assert list(clf.classes_) == [0, 1]
    assert len(clf.bin_models_) == n_kept


def test_fused_equals_keras(fitted, intensity_series):
    clf, _ = fitted
    X = intensity_series.X[::7]
    Fb = clf.transform_bins(X)
    fused = clf.bin_proba(X)
    keras_out = np.stack([np.asarray(m(Fb[b], training=False))
                          for b, m in enumerate(clf.bin_models_)])
    assert np.abs(fused - keras_out).max() < 1e-5
    vote = clf.weights_ / clf.weights_.sum()
    assert np.abs(clf.predict_proba(X) - pool(keras_out, vote, clf.beta_)).max() < 1e-5


def test_save_load_round_trip_without_tensorflow(fitted, intensity_series, tmp_path):
    clf, _ = fitted
    path = clf.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir())[:2] == ["arrays.npz", "bin00.keras"]
    X = intensity_series.X[::9]
    expected = clf.predict_proba(X)
    np.save(tmp_path / "X.npy", X)
    code = (
        "import sys, numpy as np\n"
        "from server_ext.spectra import BinnedSpectraClassifier\n"
        f"clf = BinnedSpectraClassifier.load({str(path)!r})\n"
        f"np.save({str(tmp_path / 'P.npy')!r}, clf.predict_proba(np.load({str(tmp_path / 'X.npy')!r})))\n"
        "assert 'tensorflow' not in sys.modules, 'loading for inference imported TensorFlow'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "P.npy"), expected)
    loaded = BinnedSpectraClassifier.load(path)
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.bins_, clf.bins_)
    # the saved Keras models are the ones the fused computation came from
    Fb = loaded.transform_bins(X)
    keras_out = np.stack([np.asarray(m(Fb[b])) for b, m in enumerate(loaded.bin_models_)])
    assert np.abs(keras_out - loaded.bin_proba(X)).max() < 1e-5
    with pytest.raises(SpectraError, match="exists"):
        clf.save(path)
    clf.save(path, overwrite=True)


def test_sklearn_contract(fitted):
    clf, _ = fitted
    params = clf.get_params()
    assert params["n_bins"] == 15 and params["random_state"] == 0
    other = clone(clf).set_params(n_bins=7, bin_placement="fixed")
    assert other.n_bins == 7 and not hasattr(other, "classes_")
    with pytest.raises(SpectraError, match="not fitted"):
        other.predict(np.zeros((1, N_POINTS)))
    # the not-fitted error is scikit-learn's (an AttributeError): hasattr answers
    assert not hasattr(other, "bin_models_") and hasattr(clf, "bin_models_")
    with pytest.raises(NotFittedError):
        check_is_fitted(other)
    check_is_fitted(clf)


def test_three_classes_with_string_labels_fixed_bins():
    s = make_transition_series(n_spectra=150, n_points=1200, n_phases=3, kind="both",
                               random_state=21)
    names = np.array(["cubic", "tetragonal", "orthorhombic"])[s.y]
    train = np.arange(0, 150, 4)
    clf = BinnedSpectraClassifier(n_bins=10, bin_placement="fixed", random_state=2)
    clf.fit(s.X[train], names[train])
    assert set(clf.classes_) == {"cubic", "tetragonal", "orthorhombic"}
    # fixed placement: n_bins (nearly) equal bins tiling the spectrum; kept bins among them
    cand = clf.candidates_
    assert len(cand) == 10 and cand[0, 0] == 0 and cand[-1, 1] == 1200
    np.testing.assert_array_equal(cand[1:, 0], cand[:-1, 1])
    assert np.ptp(cand[:, 1] - cand[:, 0]) <= clf.segments_per_bin_
    assert {tuple(b) for b in clf.bins_} <= {tuple(c) for c in cand}
    test = held_out(150, train)
    assert (clf.predict(s.X[test]) == names[test]).mean() >= 0.95
    P = clf.predict_proba(s.X[test])
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-5)


def test_probabilities_follow_the_phase_fraction(fitted):
    """Calibration: a mixture of the two phases gets a probability between."""
    clf, _ = fitted
    s = make_transition_series(n_spectra=200, n_points=N_POINTS, kind="intensity",
                               random_state=11, poisson=False)
    a, b = s.X[5], s.X[-5]
    mixes = np.stack([(1 - f) * a + f * b for f in (0.0, 0.25, 0.5, 0.75, 1.0)])
    p1 = clf.predict_proba(mixes)[:, 1]
    assert p1[0] < 0.1 and p1[-1] > 0.9
    assert np.all(np.diff(p1) > 0)
    _, _, amb = clf.predict_with_confidence(mixes)
    assert amb[2] and not amb[0] and not amb[-1]


@pytest.mark.parametrize("X, y, match", [
    (np.zeros(50), [0], "one dimension"),
    (np.zeros((2, 3, 50)), [0, 1], "2-D"),
    (np.array([["a"] * 300] * 2), [0, 1], "numeric"),
    (np.zeros((4, 300)), [0, 0, 0, 0], "at least 2 classes"),
    (np.zeros((4, 300)), [0, 1], "one label per spectrum"),
    (np.full((2, 300), np.nan), [0, 1], "NaN or inf"),
    (np.zeros((2, 10)), [0, 1], "too short"),
])
def test_bad_training_input(X, y, match):
    with pytest.raises(SpectraError, match=match):
        BinnedSpectraClassifier().fit(X, y)


@pytest.mark.parametrize("axis", [
    np.r_[np.arange(150), np.arange(150)],  # two scans joined
    np.r_[0.0, 0.0, np.arange(1.0, 299.0)],  # a repeated position
    np.r_[np.nan, np.arange(1.0, 300.0)],
])
def test_an_axis_that_is_not_monotonic_is_refused(axis):
    """The strain of the copies scales positions about 0: it needs them in
    order (either way); the wrong axis is refused, not read as point
    indices."""
    X = np.random.default_rng(0).poisson(50.0, (4, 300)).astype(float)
    with pytest.raises(SpectraError, match="strictly increasing or decreasing"):
        BinnedSpectraClassifier().fit(X, [0, 0, 1, 1], axis=axis)


def test_bad_params_and_prediction_input(fitted):
    clf, _ = fitted
    with pytest.raises(SpectraError, match="bin_placement"):
        BinnedSpectraClassifier(bin_placement="magic").fit(np.ones((4, 500)), [0, 0, 1, 1])
    with pytest.raises(SpectraError, match="trained on 2010"):
        clf.predict(np.ones((3, 100)))
    bad = np.ones((3, N_POINTS))
    bad[1, -1] = np.inf  # in the tail beyond the last full segment, too
    bad[2, 7] = np.nan
    with pytest.raises(SpectraError,
                       match=r"2 spectra contain NaN or inf \(rows \[1, 2\], points \[7, 2009\]\)"):
        clf.predict(bad)
    assert SpectraError.user_error is True


def test_load_errors(tmp_path):
    with pytest.raises(SpectraError, match="not a saved spectra classifier"):
        BinnedSpectraClassifier.load(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "other"}')
    np.savez(tmp_path / "arrays.npz", a=np.zeros(1))
    with pytest.raises(SpectraError, match="not a saved spectra classifier"):
        BinnedSpectraClassifier.load(tmp_path)


def test_import_does_not_load_tensorflow():
    code = ("import sys, server_ext, server_ext.spectra, server_ext.spectra.classifier, "
            "server_ext.spectra.stream, server_ext.spectra.synthetic\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _tail_change_series(n, n_points=4020, seed=5):
    """Two classes that differ only by a peak in the last 150 points."""
    rng = np.random.default_rng(seed)
    x = np.arange(n_points)
    base = 200.0 + 50.0 * np.exp(-((x - 1000) / 60.0) ** 2) + 80.0 * np.exp(-((x - 2500) / 40.0) ** 2)
    y = np.arange(n) % 2
    tail_peak = 150.0 * np.exp(-((x - 3945) / 12.0) ** 2)
    lam = base[None, :] * rng.uniform(0.8, 1.2, (n, 1)) + y[:, None] * tail_peak[None, :]
    return rng.poisson(lam).astype(np.float32), y


@pytest.mark.parametrize("placement", ["fixed", "adaptive"])
def test_every_point_is_in_a_candidate_bin(placement):
    X, y = _tail_change_series(60)
    train = np.arange(0, 60, 3)
    test = held_out(60, train)
    clf = BinnedSpectraClassifier(bin_placement=placement, random_state=0)
    clf.fit(X[train], y[train])
    covered = np.zeros(X.shape[1], bool)
    for a, b in clf.candidates_:
        covered[a:b] = True
    assert covered.all()
    if placement == "fixed":  # the equal grid tiles the spectrum
        assert len(clf.candidates_) == clf.n_bins and clf.candidates_[-1, 1] == X.shape[1]
        np.testing.assert_array_equal(clf.candidates_[1:, 0], clf.candidates_[:-1, 1])
    assert (clf.bins_[:, 1] > X.shape[1] - 150).any()
    assert (clf.predict(X[test]) == y[test]).mean() >= 0.95


def test_fit_leaves_global_random_state_alone_and_is_reproducible():
    import random

    X, y = _tail_change_series(12, n_points=600, seed=8)
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    P = [BinnedSpectraClassifier(epochs=5, random_state=3).fit(X, y).predict_proba(X)
         for _ in range(2)]
    assert (random.random(), np.random.random()) == expected
    np.testing.assert_array_equal(P[0], P[1])


def test_training_spectra_per_class_are_capped(monkeypatch):
    import server_ext.spectra.classifier as classifier_module

    seen = []
    real_augment = classifier_module.augment

    def recording_augment(X, *args, **kw):
        seen.append(X)
        return real_augment(X, *args, **kw)

    monkeypatch.setattr(classifier_module, "augment", recording_augment)
    X, y = _tail_change_series(90, n_points=600, seed=9)
    y = np.where(np.arange(90) < 70, y, 1)  # 35 of class 0, 55 of class 1
    clf = BinnedSpectraClassifier(epochs=2, max_train_per_class=20, random_state=4)
    P = clf.fit(X, y).predict_proba(X)
    assert seen[0].shape == (40, 600) and seen[0].dtype == np.float32
    rows = [int(np.flatnonzero((X == r).all(1))[0]) for r in seen[0]]
    assert rows == sorted(rows) and np.bincount(y[rows]).tolist() == [20, 20]
    # reproducible for a given random_state
    np.testing.assert_array_equal(clone(clf).fit(X, y).predict_proba(X), P)
    assert np.array_equal(seen[1], seen[0])
    clone(clf).set_params(max_train_per_class=None).fit(X, y)
    assert len(seen[2]) == 90


def test_flat_spectra_are_ambiguous_not_confident(fitted, intensity_series):
    clf, _ = fitted
    X = intensity_series.X[:4].copy()
    X[1] = 0.0  # detector dropout
    X[3] = 537.0  # constant: no signal either
    labels, conf, amb = clf.predict_with_confidence(X)
    np.testing.assert_array_equal(amb, [False, True, False, True])
    np.testing.assert_allclose(conf[[1, 3]], 0.5)
    np.testing.assert_allclose(clf.predict_proba(X)[[1, 3]], 0.5)
    with pytest.raises(SpectraError, match=r"2 labelled spectra are flat.*rows \[1, 3\]"):
        BinnedSpectraClassifier().fit(X, [0, 0, 1, 1])


@pytest.mark.parametrize("params, match", [
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"n_bins": "15"}, r"n_bins must be an int, not '15'"),
    ({"segments_per_bin": 2.5}, "segments_per_bin must be 'auto' or an int >= 1, not 2.5"),
    ({"segments_per_bin": "fine"}, "segments_per_bin must be 'auto' or an int"),
    ({"segments_per_bin": 0}, "segments_per_bin must be 'auto' or an int >= 1, not 0"),
    ({"learn_position": 1}, "learn_position must be True or False"),
    ({"learn_mixtures": "no"}, "learn_mixtures must be True or False"),
    ({"epochs": -1}, "epochs must be >= 1"),
    ({"learning_rate": 0}, "learning_rate must be >= "),
    ({"max_overlap": 1.5}, "max_overlap must be between 0.0 and 1.0"),
    ({"ambiguity_threshold": float("nan")}, "ambiguity_threshold must be between"),
    ({"cv_folds": 1}, "cv_folds must be >= 2"),
    ({"max_bins": 0}, "max_bins must be >= 1"),
    ({"max_train_per_class": "all"}, "max_train_per_class must be an int or None"),
    ({"shift": "x"}, "shift must be a number or None"),
    ({"baseline": "yes"}, "baseline must be True or False"),
    ({"random_state": 1.5}, "random_state must be None or an int"),
    ({"denoise_below": -1}, "denoise_below must be >= 0"),
    ({"denoise_below": None}, "denoise_below must be an int, not None"),
    ({"background_drift": 1.5}, "background_drift must be between 0.0 and 1.0"),
    ({"split_variation": -0.1}, "split_variation must be between 0.0 and 1.0"),
    ({"split_variation": 1.5}, "split_variation must be between 0.0 and 1.0"),
    ({"split_variation": "half"}, "split_variation must be a number"),
    ({"split_variation": None}, "split_variation must be a number"),
])
def test_every_parameter_is_checked(params, match):
    X, y = _tail_change_series(4, n_points=600)
    with pytest.raises(SpectraError, match=match):
        BinnedSpectraClassifier(**params).fit(X, y)


def test_labels_from_pandas_and_missing_labels(tmp_path):
    import pandas as pd

    X, y = _tail_change_series(16, n_points=600, seed=3)
    names = pd.Series(np.array(["before", "after"], dtype=object)[y], dtype=object)
    clf = BinnedSpectraClassifier(epochs=3, random_state=0).fit(X, names)
    assert clf.classes_.dtype.kind == "U" and list(clf.classes_) == ["after", "before"]
    loaded = BinnedSpectraClassifier.load(clf.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    for bad in (np.where(y == 1, np.nan, 0.0), [None] + names.tolist()[1:],
                pd.Series(names, dtype="string").where(np.arange(16) != 2)):
        with pytest.raises(SpectraError, match="missing|NaN"):
            BinnedSpectraClassifier().fit(X, bad)
    with pytest.raises(SpectraError, match="all strings or all numbers"):
        BinnedSpectraClassifier().fit(X, np.array([1, "a"] * 8, dtype=object))


def test_incomplete_model_directories(fitted, intensity_series, tmp_path):
    import json
    import shutil

    clf, _ = fitted
    good = clf.save(tmp_path / "good")

    def broken(name, damage, match="incomplete or corrupt"):
        path = tmp_path / name
        shutil.copytree(good, path)
        damage(path)
        with pytest.raises(SpectraError, match=match):
            BinnedSpectraClassifier.load(path)

    def drop_params(path):
        config = json.loads((path / "config.json").read_text())
        del config["params"]
        (path / "config.json").write_text(json.dumps(config))

    def drop_array(path):
        with np.load(path / "arrays.npz") as z:
            arrays = {k: z[k] for k in z.files if k != "W2"}
        np.savez(path / "arrays.npz", **arrays)

    def wrong_scales(path):
        with np.load(path / "arrays.npz") as z:
            arrays = {k: z[k] for k in z.files}
        arrays["class_scales_"] = np.ones(len(clf.classes_) + 1)
        np.savez(path / "arrays.npz", **arrays)

    def cut(name, size):
        def damage(path):
            with open(path / name, "r+b") as f:
                f.truncate(size)
        return damage

    def flip_a_byte(name):  # in the first member's data: its CRC no longer matches
        def damage(path):
            data = bytearray((path / name).read_bytes())
            data[200] ^= 0xFF
            (path / name).write_bytes(bytes(data))
        return damage

    def unknown_method(name):  # a flipped bit in the zip's directory names a method that does not exist
        def damage(path):
            data = bytearray((path / name).read_bytes())
            entry = data.find(b"PK\x01\x02")  # each member's central directory entry
            while entry >= 0:
                data[entry + 10:entry + 12] = (77).to_bytes(2, "little")
                entry = data.find(b"PK\x01\x02", entry + 4)
            (path / name).write_bytes(bytes(data))
        return damage

    def renamed_member(path):  # a flipped bit in the zip's directory: "config.json" no longer there
        data = (path / "bin00.keras").read_bytes()
        at = data.rindex(b"config.json")  # the directory, at the end of the file
        (path / "bin00.keras").write_bytes(data[:at] + b"conf1g.json" + data[at + len(b"config.json"):])

    broken("no-params", drop_params)
    broken("no-array", drop_array)
    broken("no-keras", lambda path: (path / "bin00.keras").unlink())
    broken("scales-of-another-model", wrong_scales)
    # damaged files, as a copy cut short or a flipped bit leaves them: the
    # error names the file, not a zipfile traceback
    for name, damage in (("empty-arrays", cut("arrays.npz", 0)),
                         ("cut-arrays", cut("arrays.npz", 1000)),
                         ("flipped-arrays", flip_a_byte("arrays.npz")),
                         ("unknown-method-arrays", unknown_method("arrays.npz"))):
        broken(name, damage, match=r"incomplete or corrupt \(arrays.npz is damaged")
    X = intensity_series.X[:20]
    for name, damage in (("cut-keras", cut("bin00.keras", 1000)),
                         ("flipped-keras", flip_a_byte("bin00.keras")),
                         ("unknown-method-keras", unknown_method("bin00.keras")),
                         ("renamed-member-keras", renamed_member)):
        path = tmp_path / name
        shutil.copytree(good, path)
        damage(path)
        loaded = BinnedSpectraClassifier.load(path)  # the fused arrays: classifies without Keras
        np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
        with pytest.raises(SpectraError, match=r"incomplete or corrupt \(bin00.keras is damaged"):
            loaded.bin_models_


# ------------------------------------------------ a peak shift as the signal
def test_classes_that_differ_only_by_position_are_separated(shift_signal_fitted,
                                                           shift_signal_series):
    """A -> B -> A': the classifier learns from the labels that A and A'
    differ by position, keeps B's copies fully strained, and separates all
    three."""
    from sklearn.metrics import confusion_matrix

    clf, train = shift_signal_fitted
    s = shift_signal_series
    test = held_out(len(s.X), train)
    found = [p["classes"] for p in clf.position_pairs_ if p["separated_by"] == "position"]
    assert found == [(0, 2)]
    assert clf.position_scale_[1] == 1.0 and (clf.position_scale_[[0, 2]] < 0.5).all()
    cm = confusion_matrix(s.y[test], clf.predict(s.X[test]))
    assert cm[0, 2] + cm[2, 0] == 0  # A and A' never confused
    assert np.trace(cm) / cm.sum() >= 0.97
    P = clf.predict_proba(s.X[test])
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-5)


def test_strain_stays_nuisance_for_the_class_it_does_not_separate(shift_signal_fitted,
                                                                 shift_signal_series):
    clf, train = shift_signal_fitted
    s = shift_signal_series
    test = held_out(len(s.X), train)
    b = test[s.y[test] == 1]
    b = b[np.abs(s.fraction[b] - 1.0) < 0.05]  # pure B, away from the transitions
    strained = perturb(s.X[b], s.axis, strain=0.01, intensity=0.3, random_state=0)
    assert (clf.predict(s.X[b]) == 1).mean() == 1.0
    assert (clf.predict(strained) == 1).mean() >= 0.98


def curves_farthest_from_other_classes(y, per_class=2):
    """Protocol A on a series of several classes: per class, the curves
    farthest along the series from any curve of another class."""
    idx = np.arange(len(y))
    out = []
    for c in np.unique(y):
        dist = np.abs(idx[:, None] - idx[y != c][None, :]).min(1).astype(float)
        dist[y != c] = -1
        out.extend(np.argsort(-dist, kind="stable")[:per_class])
    return np.sort(np.array(out))


def test_a_small_net_cell_change_is_signal_and_the_copies_move_away_from_it():
    """A -> B -> A' where thermal expansion runs against a 1 % smaller cell:
    the two curves labelled per class leave A and A' only ~0.2 % apart, far
    less than the strain augmentation, while their test spectra drift
    apart. Nothing but position separates A from A', so position is signal
    (it used to be taken for drift: 50 %), and the copies move freely away
    from the other class, so the drifting test spectra are still covered
    (with copies held symmetrically near their curve they fell to B). The
    same data with every movement declared nuisance confuses A and A'."""
    s = make_powder_series("shift", n_spectra=180, n_points=N_POINTS, cell_step=-0.01,
                           random_state=3)
    train = curves_farthest_from_other_classes(s.y)
    test = held_out(len(s.X), train)
    scores = {}
    for learn in (True, False):
        clf = BinnedSpectraClassifier(epochs=30, learn_position=learn, random_state=0)
        clf.fit(s.X[train], s.y[train], axis=s.axis)
        pred = clf.predict(s.X[test])
        aa = np.isin(s.y[test], [0, 2])
        scores[learn] = (pred[aa] == s.y[test][aa]).mean()
        if learn:
            pair = [p for p in clf.position_pairs_ if p["separated_by"] == "position"]
            assert [p["classes"] for p in pair] == [(0, 2)]
            assert pair[0]["higher"] == 2  # a smaller cell: higher angles
            assert (pred == s.y[test]).mean() >= 0.97
    assert scores[True] >= 0.97 and scores[False] <= 0.8


def test_weak_peak_series_four_classes():
    s = make_powder_series("weak", n_spectra=200, n_points=N_POINTS, random_state=6)
    train = np.arange(0, len(s.X), 4)
    test = held_out(len(s.X), train)
    clf = BinnedSpectraClassifier(epochs=30, random_state=0).fit(s.X[train], s.y[train],
                                                                 axis=s.axis)
    assert list(clf.classes_) == [0, 1, 2, 3]
    # the weak peaks, not the drift, separate A from A + superlattice: no class
    # pair is taken for position-separated, so every class keeps full augmentation
    assert (clf.position_scale_ == 1.0).all()
    assert (clf.predict(s.X[test]) == s.y[test]).mean() >= 0.95
    strained = perturb(s.X[test], s.axis, strain=0.01, intensity=0.3, random_state=1)
    away = np.abs(s.fraction[test] - np.round(s.fraction[test])) < 0.05
    acc = (clf.predict(s.X[test][away]) == s.y[test][away]).mean()
    assert (clf.predict(strained[away]) == s.y[test][away]).mean() >= acc - 0.05


def test_weak_peak_from_two_curves_per_class():
    """Protocol A on the weak-peak series (A, A + superlattice peaks of 3 %,
    distorted A, C): per class the 2 curves farthest from the other
    classes. Their noise used to be learnt in place of the weak peaks: A
    and A + weak peaks scored 81 % (90 % over all classes) with
    ``denoise_below=0``, 95 % (97 %) with the labelled curves denoised.
    The local strain (the default ``local_strain``) costs a little here,
    where a 3 % peak must stand out of two curves: 88 % (94 %); over
    network seeds 0-2 on this series and the next, 86-92 % with it
    against 86-95 % without."""
    s = make_powder_series("weak", n_spectra=180, n_points=N_POINTS, random_state=2)
    idx = np.arange(len(s.y))
    far = np.array([np.abs(idx[:, None] - idx[None, s.y != c]).min(1) for c in range(4)])
    train = np.sort(np.concatenate([np.argsort(-np.where(s.y == c, far[c], -1))[:2]
                                    for c in range(4)]))
    test = held_out(len(s.y), train)
    for local_strain, pair, overall in ((0.0, 0.92, 0.95), (0.002, 0.86, 0.92)):
        clf = BinnedSpectraClassifier(epochs=30, random_state=0, local_strain=local_strain)
        ok = clf.fit(s.X[train], s.y[train], axis=s.axis).predict(s.X[test]) == s.y[test]
        assert ok[s.y[test] < 2].mean() >= pair and ok.mean() >= overall, local_strain


def test_fit_reports_progress():
    from server_ext.spectra.training import FitProgress

    X, y = _tail_change_series(12, n_points=600, seed=8)
    events = []
    BinnedSpectraClassifier(epochs=20, random_state=3).fit(X, y, progress=events.append)
    assert all(isinstance(e, FitProgress) for e in events)
    stages = [e.stage for e in events]
    assert stages[0] == "screen" and stages[-1] == "calibrate"
    train = [e for e in events if e.stage == "train"]
    assert len(train) == 10 and train[-1].done == train[-1].total == 20
    assert [e.done for e in train] == sorted(e.done for e in train)


def test_one_pass_inference_equals_the_reference(fitted, intensity_series):
    """The chunked, threaded one-pass computation (baseline and normalisation
    folded into the first layer) equals normalise-then-vote."""
    from server_ext.spectra import inference

    clf, _ = fitted
    X = np.concatenate([intensity_series.X] * 6)  # more than one chunk
    assert len(X) > inference.CHUNK_ROWS
    Z = clf._prep.normalise(clf._prep.segment_means(X))
    if clf.strain_aligned_:
        Z = clf._aligner.align(Z)
    reference = pool(clf._fused.bin_proba(clf._fused.features(Z)), clf._fused.vote, clf.beta_)
    P = clf.predict_proba(X)
    assert np.abs(P - reference).max() < 1e-5
    np.testing.assert_allclose(clf.predict_proba(X.astype(np.float64)[:50]), P[:50], atol=1e-6)


def test_model_format_versions(fitted, tmp_path):
    import json

    clf, _ = fitted
    path = clf.save(tmp_path / "v4")
    config = json.loads((path / "config.json").read_text())
    assert config["version"] == 11 and config["params"]["segments_per_bin"] == "auto"
    assert config["params"]["local_strain"] == clf.local_strain > 0
    assert config["params"]["split_variation"] == clf.split_variation > 0
    assert "fixed_ranges" in config["params"] and clf.fixed_ranges is None
    # a version-8 model had no fixed ranges declared; a version-7 one was
    # fitted without varied splits, a version-6 one without the local
    # strain too, and each says so
    v8 = dict(config, version=8, params={k: v for k, v in config["params"].items()
                                         if k != "fixed_ranges"})
    (path / "config.json").write_text(json.dumps(v8))
    assert BinnedSpectraClassifier.load(path).fixed_ranges is None
    v7 = dict(v8, version=7, params={k: v for k, v in v8["params"].items()
                                     if k != "split_variation"})
    (path / "config.json").write_text(json.dumps(v7))
    loaded = BinnedSpectraClassifier.load(path)
    assert loaded.split_variation == 0.0 and loaded.local_strain == clf.local_strain
    v6 = dict(v7, version=6, params={k: v for k, v in v7["params"].items()
                                     if k != "local_strain"})
    (path / "config.json").write_text(json.dumps(v6))
    loaded = BinnedSpectraClassifier.load(path)
    assert loaded.local_strain == 0.0 and loaded.split_variation == 0.0
    X = np.ones((2, N_POINTS)) + np.arange(N_POINTS)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    # a version-2 model (parameter then called n_features, always a count)
    # still loads; it classifies without strain alignment (version 4),
    # whatever arrays it holds
    config["version"] = 2
    del config["params"]["segments_per_bin"]
    config["params"]["n_features"] = clf.segments_per_bin_
    for name in ("learn_position", "learn_mixtures", "align_strain", "local_strain",
                 "split_variation", "fixed_ranges"):
        del config["params"][name]  # none existed then: defaults
    (path / "config.json").write_text(json.dumps(config))
    old = BinnedSpectraClassifier.load(path)
    assert old.segments_per_bin == old.segments_per_bin_ == clf.segments_per_bin_
    assert not old.strain_aligned_ and old.local_strain == old.split_variation == 0.0
    Z = clf._prep.normalise(clf._prep.segment_means(X))
    unaligned = pool(clf._fused.bin_proba(clf._fused.features(Z)), clf._fused.vote, clf.beta_)
    np.testing.assert_allclose(old.predict_proba(X), unaligned, atol=1e-5)
    config["version"] = 99
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(SpectraError, match="format version 99"):
        BinnedSpectraClassifier.load(path)
