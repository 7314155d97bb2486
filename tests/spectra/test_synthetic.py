import numpy as np
import pytest

from server_ext.spectra.synthetic import make_transition_series, perturb, write_demo_run


def test_series_is_deterministic_and_has_a_transition():
    a = make_transition_series(n_spectra=60, n_points=500, random_state=3)
    b = make_transition_series(n_spectra=60, n_points=500, random_state=3)
    c = make_transition_series(n_spectra=60, n_points=500, random_state=4)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
    assert a.X.shape == (60, 500) and a.X.dtype == np.float32
    assert (a.X >= 0).all()  # Poisson counts
    # labels switch once, in the middle, where the phase fraction crosses 0.5
    switch = np.flatnonzero(np.diff(a.y))
    assert len(switch) == 1 and 20 < switch[0] < 40
    assert a.fraction[0] < 0.01 and a.fraction[-1] > 0.99
    # the phase weights: fractions of each spectrum, the label the larger
    assert a.weights.shape == (60, 2)
    np.testing.assert_allclose(a.weights.sum(1), 1.0)
    np.testing.assert_array_equal(a.weights.argmax(1), a.y)
    np.testing.assert_allclose(a.weights[:, 1], a.fraction)
    # near the transition both phases are present
    assert 0.1 < a.weights[switch[0], 1] < 0.9


@pytest.mark.parametrize("kind", ["intensity", "shift"])
def test_phases_differ_by_the_requested_change(kind):
    s = make_transition_series(n_spectra=40, n_points=1000, kind=kind, poisson=False,
                               expansion=0.0, intensity_drift=0.0, background=0.0,
                               random_state=5)
    norm = s.X / s.X.sum(1, keepdims=True)
    between = np.abs(norm[0] - norm[-1]).sum()
    within = np.abs(norm[0] - norm[1]).sum()
    assert between > 0.03 and between > 10 * within


def test_three_phases():
    s = make_transition_series(n_spectra=90, n_points=600, n_phases=3, random_state=1)
    assert set(s.y.tolist()) == {0, 1, 2}
    assert (np.diff(s.y) >= 0).all()


def test_perturb_moves_peaks_and_scales_intensity():
    s = make_transition_series(n_spectra=4, n_points=2000, poisson=False, random_state=2)
    p = perturb(s.X, s.axis, strain=0.01, intensity=0.3, random_state=0)
    assert p.shape == s.X.shape
    ratio = p.sum(1) / s.X.sum(1)
    assert ((ratio > 0.65) & (ratio < 1.35)).all()
    assert not np.allclose(p / p.sum(1, keepdims=True), s.X / s.X.sum(1, keepdims=True), atol=1e-4)


def test_write_demo_run_is_an_euxfel_run(tmp_path):
    import extra_data

    info = write_demo_run(tmp_path, n_trains=30, pulses_per_train=4, n_points=800)
    run = extra_data.RunDirectory(info["path"])
    kd = run[info["source"], info["key"]]
    assert kd.shape == (30 * 4, 800)
    assert run.train_ids[0] == info["first_train"] and len(run.train_ids) == info["n_trains"]
    assert info["first_train"] < info["transition_train"] < info["first_train"] + 30
    axis = run[info["axis_source"], info["axis_key"]].ndarray()
    assert axis.shape == (30, 800)
    tid, first = next(kd.trains())
    assert tid == info["first_train"] and first.shape == (4, 800)
    # a second call keeps the existing run
    again = write_demo_run(tmp_path, n_trains=30, pulses_per_train=4, n_points=800)
    assert again == info
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _centroid_of_strongest(x, axis):
    i = int(np.argmax(x))
    window = slice(max(0, i - 15), i + 16)
    w = x[window] - x[window].min()
    return float((axis[window] * w).sum() / w.sum())


@pytest.mark.parametrize("axis_kind", ["2theta", "q"])
def test_powder_shift_layout_moves_peaks_by_the_cell_step(axis_kind):
    from server_ext.spectra.synthetic import make_powder_series

    s = make_powder_series("shift", n_spectra=60, n_points=3000, axis_kind=axis_kind,
                           poisson=False, drift=0.0, intensity_drift=0.0, background=0.0,
                           cell_step=0.01, random_state=4)
    assert set(s.y.tolist()) == {0, 1, 2} and (np.diff(s.y) >= 0).all()
    a, b, a2 = s.X[0], s.X[30], s.X[-1]
    # A' is A in a 1 % larger cell: the same pattern, every peak at lower angle / q
    c, c2 = _centroid_of_strongest(a, s.axis), _centroid_of_strongest(a2, s.axis)
    if axis_kind == "q":
        assert c2 == pytest.approx(c / 1.01, rel=2e-3)
    else:
        assert c2 < c
    # and structure B is another pattern altogether
    norm = lambda v: v / v.sum()  # noqa: E731
    assert np.abs(norm(a) - norm(b)).sum() > 0.3


def test_powder_weak_layout_adds_peaks_of_a_few_percent():
    from server_ext.spectra.synthetic import make_powder_series

    s = make_powder_series("weak", n_spectra=80, n_points=3000, poisson=False, drift=0.0,
                           intensity_drift=0.0, background=0.0, weak=0.03, random_state=5)
    assert set(s.y.tolist()) == {0, 1, 2, 3}
    assert s.weights.shape == (80, 4)
    np.testing.assert_array_equal(s.weights.argmax(1), s.y)
    a, aw = s.X[0], s.X[30]
    extra = aw / aw.max() - a / a.max()  # beam jitter scales all: compare shapes
    assert 0.02 < extra.max() < 0.04 and extra.min() > -1e-4


def test_powder_series_is_deterministic_and_drifts():
    from server_ext.spectra.synthetic import make_powder_series

    a = make_powder_series("pattern", n_spectra=30, n_points=500, random_state=1)
    b = make_powder_series("pattern", n_spectra=30, n_points=500, random_state=1)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.X.dtype == np.float32 and (a.X >= 0).all()
    with pytest.raises(ValueError, match="layout"):
        make_powder_series("nonsense")
