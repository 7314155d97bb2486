"""Which class pairs the labels say are separated by peak position
(:mod:`server_ext.spectra.nuisance`), on data the estimator can meet."""

import numpy as np

from server_ext.spectra.nuisance import position_tolerance
from server_ext.spectra.synthetic import make_powder_series


def test_background_free_data_keeps_pattern_pairs_apart_from_position_pairs():
    """Background-subtracted data (as many facility pipelines deliver) has
    windows with neither signal nor noise; they must not hide the pattern
    difference between two structures (it used to come out as 0/0 = NaN,
    and every pair was called "position")."""
    n, p = 120, 2010
    s = make_powder_series("shift", n_spectra=n, n_points=p, background=0.0, random_state=0)
    train = np.arange(0, n, 4)
    t = position_tolerance(s.X[train], s.y[train], 3, s.axis, p // 15, 0.015, p / 480)
    found = {q["classes"]: q["separated_by"] for q in t.pairs}
    # A -> B -> A': B is another structure, A' the same in a larger cell
    assert found == {(0, 1): "pattern", (0, 2): "position", (1, 2): "pattern"}
    assert all(np.isfinite(q["unexplained"]) for q in t.pairs)
    assert t.scale[1] == 1.0  # B keeps the whole strain augmentation
    assert (t.scale[[0, 2]] < 0.5).all()
