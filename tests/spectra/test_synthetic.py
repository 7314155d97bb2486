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
