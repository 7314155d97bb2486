"""The per-spectrum strain estimate and alignment (``align_strain``): a
known strain is recovered, the compiled pass is the computation spelt out
in NumPy and runs where numba can cache it nowhere, the one-pass
inference equals the reference
computation with it, "auto" is off where two classes differ by position
or where the held-out copies separate worse aligned, and on where a class
drifts beyond the copies' strain, weak peaks under strain need it, and
models saved before it (format 3) load and classify as before."""

import json
import os

import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier, SpectraError, inference
from server_ext.spectra.align import LOSS, StrainAligner, alignment_is_safe, aligns
from server_ext.spectra.augment import strain_shift
from server_ext.spectra.fused import pool
from server_ext.spectra.preprocess import SegmentPreprocessor
from server_ext.spectra.synthetic import make_powder_series, make_transition_series

N_POINTS = 2010  # as in conftest.py


@pytest.fixture(scope="module")
def pattern_series():
    return make_powder_series("pattern", n_spectra=90, n_points=N_POINTS, random_state=4)


@pytest.fixture(scope="module")
def weak_pair():
    """A against A + superlattice peaks of 3 % (4,020 points, every 4th of
    120 curves labelled), fitted without and with alignment:
    ``(series, train, test, strained test spectra, {align_strain: model})``.
    The copies keep their background's level (``background_drift=0``): the
    drift alone takes this pair to 98.9 % unaligned, and the pair is here
    to show what the alignment does. So do segments of 8 points (the
    "auto" count here): unaligned 100 %, strained too; the pair is fitted
    with segments of 17 points (16 per bin), as the alignment was built
    for."""
    from server_ext.spectra.synthetic import Phase, perturb

    s = make_powder_series((Phase(0), Phase(0, 1.0, 0.03)), n_spectra=120, n_points=4020,
                           random_state=2)
    train = np.arange(0, len(s.X), 4)
    test = np.setdiff1d(np.arange(len(s.X)), train)
    strained = perturb(s.X[test], s.axis, strain=0.01, intensity=0.3, random_state=2)
    models = {align: BinnedSpectraClassifier(epochs=30, random_state=0, align_strain=align,
                                             background_drift=0.0, segments_per_bin=16)
              .fit(s.X[train], s.y[train], axis=s.axis) for align in (False, "auto")}
    return s, train, test, strained, models


def test_alignment_recovers_a_known_strain(pattern_series):
    s = pattern_series
    prep = SegmentPreprocessor(N_POINTS, 240, 16)
    aligner = StrainAligner.fit(prep, s.X, s.y, 3, s.axis, 0.025)
    step = aligner.grid[1] - aligner.grid[0]
    rows = np.arange(0, len(s.X), 2)
    strain = np.random.default_rng(0).uniform(-0.015, 0.015, len(rows))
    strained = strain_shift(s.X.astype(np.float32), rows, s.axis, strain)
    Z0, Z1 = prep.transform(s.X[rows]), prep.transform(strained)
    # the labelled spectra drift about their class mean: compare the two estimates
    found = (1 + aligner.strain(Z1)) / (1 + aligner.strain(Z0)) - 1
    assert np.median(np.abs(found - strain)) <= step
    assert np.abs(found - strain).max() <= 2.5 * step
    # aligned, the strained spectra's features are those of the unstrained ones
    # up to the residual (not the several segments of the strain at high angle)
    before = np.abs(Z1 - Z0).mean()
    after = np.abs(aligner.align(Z1) - aligner.align(Z0)).mean()
    assert after < 0.4 * before


def _by_definition(aligner, Z, columns):
    """The estimate and the interpolation spelt out in NumPy: the first best
    template, the vertex of the parabola through it and its grid
    neighbours (none at the grid's ends), the plan's refinement nearest to
    it, and linear interpolation between the observed segments."""
    left, weight, n_sub = columns
    scores = Z[:, aligner.used] @ aligner.templates
    best = scores.argmax(axis=1)
    G = len(aligner.grid)
    g = best % G
    delta = np.zeros(len(Z), np.float32)
    for r, b in enumerate(best):
        if 0 < g[r] < G - 1:
            lo, mid, hi = scores[r, b - 1:b + 2]
            curve = lo - 2 * mid + hi
            if curve < 0:
                delta[r] = np.clip(0.5 * (lo - hi) / curve, -0.5, 0.5)
    k = g * n_sub + np.rint(delta * (n_sub - 1)).astype(int) + n_sub // 2
    rows = np.arange(len(Z))[:, None]
    j = left[k]
    return g, delta, Z[rows, j] + (Z[rows, j + 1] - Z[rows, j]) * weight[k]


def test_compiled_alignment_is_its_definition(pattern_series):
    s = pattern_series
    prep = SegmentPreprocessor(N_POINTS, 240, 16)
    aligner = StrainAligner.fit(prep, s.X, s.y, 3, s.axis, 0.025)
    rng = np.random.default_rng(3)
    rows = np.arange(len(s.X))
    # strains beyond the grid's reach too: the best template at its ends
    strained = strain_shift(s.X.astype(np.float32), rows, s.axis,
                            rng.uniform(-0.04, 0.04, len(rows)))
    Z = prep.transform(np.concatenate([s.X, strained]))
    Z = np.concatenate([Z, np.zeros((1, Z.shape[1]), np.float32)])  # all scores tie
    G = len(aligner.grid)
    for columns in (aligner.columns(), aligner.columns(np.arange(30, 90))):
        g, delta, expected = _by_definition(aligner, Z, columns)
        assert {0, G - 1} <= set(g.tolist()) and (np.abs(delta) > 0.1).any()
        found_g, found_delta, aligned = aligner._estimate(Z, columns)
        np.testing.assert_array_equal(found_g, g)
        np.testing.assert_allclose(found_delta, delta, atol=1e-6)
        np.testing.assert_allclose(aligned, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(aligner.align(Z), aligner._estimate(Z, aligner.columns())[2])
    step = aligner.grid[1] - aligner.grid[0]
    np.testing.assert_allclose(aligner.strain(Z), aligner.grid[g] + delta * step, atol=1e-9)


@pytest.mark.parametrize("starts", [
    [0, 40, 100, 180, 224],  # a few bins: only their windows are aligned
    list(range(0, 240, 16)),  # bins that tile the spectrum
    list(range(0, 232, 8)),  # overlapping bins: every segment aligned once
], ids=["windows", "tiled", "overlapping"])
def test_one_pass_inference_equals_the_reference_with_alignment(pattern_series, starts):
    s = pattern_series
    rng = np.random.default_rng(5)
    prep = SegmentPreprocessor(N_POINTS, 240, 16)
    aligner = StrainAligner.fit(prep, s.X, s.y, 3, s.axis, 0.025)
    starts = np.array(starts)
    n_bins = len(starts)
    from server_ext.spectra.fused import FusedVote

    fused = FusedVote(starts[:, None] + np.arange(16), rng.normal(0, 1, (n_bins, 16, 16)),
                      rng.normal(0, 0.5, (n_bins, 16)), rng.normal(0, 1, (n_bins, 16, 3)),
                      rng.normal(0, 0.5, (n_bins, 3)), rng.uniform(0.1, 1.0, n_bins), beta=1.5)
    plan = inference.InferencePlan(prep, fused, aligner)
    assert plan.window_columns == (fused.segments.size <= prep.n_segments)
    X = np.concatenate([s.X] * 7).astype(np.float32)  # several chunks and a ragged one
    assert len(X) > inference.CHUNK_ROWS
    X[3] = np.nan
    X[5] *= 3.0  # the scale applied after the alignment, not before
    P, finite, signal = plan.score(X)
    assert np.flatnonzero(~finite).tolist() == [3]
    good = finite & signal
    Z = aligner.align(prep.normalise(prep.segment_means(X[good])))
    reference = pool(fused.bin_proba(fused.features(Z)), fused.vote, fused.beta)
    assert np.abs(P[good] - reference).max() < 1e-5


def test_auto_alignment_is_off_where_classes_differ_by_position(shift_signal_fitted, fitted):
    shift, _ = shift_signal_fitted
    assert any(p["separated_by"] == "position" for p in shift.position_pairs_)
    assert not aligns("auto", 0.015, shift.position_pairs_)
    intensity, _ = fitted  # nothing differs by position there
    assert aligns("auto", 0.015, intensity.position_pairs_)
    assert not aligns("auto", 0.0, intensity.position_pairs_)  # no strain to undo
    assert aligns(True, 0.015, shift.position_pairs_) and not aligns(False, 0.015, [])
    assert not shift.strain_aligned_ and shift.alignment_evidence_ is None


def test_auto_alignment_follows_the_held_out_evidence(fitted, weak_pair, shift_signal_series):
    """The default "auto" aligns unless the aligned held-out copies tell a
    class pair apart worse: the weak peaks and the intensity transition
    yes; not a pair that differs by position when the position test is
    off (aligning erases the difference)."""
    intensity, _ = fitted
    before, after = intensity.alignment_evidence_
    assert before.shape == after.shape == (2, 2)
    assert intensity.strain_aligned_ and after[0, 1] - before[0, 1] >= -LOSS

    weak = weak_pair[-1]["auto"]
    before, after = weak.alignment_evidence_
    assert weak.strain_aligned_ and after[0, 1] - before[0, 1] >= -LOSS

    s = shift_signal_series  # A -> B -> A': A' is A in a 1 % larger cell
    train = np.arange(0, len(s.X), 4)
    blind = BinnedSpectraClassifier(epochs=5, random_state=0, learn_position=False)
    blind.fit(s.X[train], s.y[train], axis=s.axis)
    assert blind.position_pairs_ == []
    before, after = blind.alignment_evidence_
    assert after[0, 2] - before[0, 2] < -LOSS
    assert not blind.strain_aligned_


def test_auto_aligns_where_a_class_drifts_beyond_the_copies():
    """Protocol A on a series whose peaks drift by 6 % along it: the two
    labelled curves at each end show no drift, the copies move by 1.5 % at
    most, so the held-out copies cannot show what aligning gains. The test
    spectra near the transition lie beyond the copies; the alignment
    (reaching 2.5 %) brings them back. Asking the copies for a gain left
    this model unaligned. Without the local strain: its copies' peaks
    moving apart and together also reach these spectra (unaligned 1.0,
    aligned 0.974 with the default ``local_strain``)."""
    s = make_transition_series(n_spectra=120, n_points=N_POINTS, kind="intensity",
                               expansion=0.06, random_state=1)
    n = len(s.y)
    train = np.array([0, 1, n - 2, n - 1])  # each class's two purest curves
    test = np.setdiff1d(np.arange(n), train)
    right = {}
    for align in ("auto", False):
        model = BinnedSpectraClassifier(epochs=30, random_state=0, align_strain=align,
                                        local_strain=0.0)
        model.fit(s.X[train], s.y[train], axis=s.axis)
        right[align] = (model.predict(s.X[test]) == s.y[test]).mean()
        assert model.strain_aligned_ == (align == "auto")
    assert right["auto"] >= 0.95 and right[False] <= right["auto"] - 0.05


def test_alignment_is_safe_rule():
    base = np.array([[1.0, 0.80, 0.95], [0.80, 1.0, 1.0], [0.95, 1.0, 1.0]])
    assert alignment_is_safe(base, base)  # nothing gained, nothing lost
    slightly = base.copy()
    slightly[0, 2] = slightly[2, 0] = 0.95 - LOSS / 2
    assert alignment_is_safe(base, slightly)
    lost = base.copy()
    lost[0, 1] = lost[1, 0] = 0.90  # one pair gains ...
    lost[0, 2] = lost[2, 0] = 0.95 - 2 * LOSS  # ... another loses
    assert not alignment_is_safe(base, lost)
    assert not alignment_is_safe(np.ones((1, 1)), np.ones((1, 1)))  # no pair


def test_alignment_parameter_is_checked():
    X = np.random.default_rng(0).uniform(1, 2, (8, 300))
    with pytest.raises(SpectraError, match="align_strain must be 'auto', True or False"):
        BinnedSpectraClassifier(align_strain="yes").fit(X, np.repeat([0, 1], 4))


def test_aligned_model_round_trip_and_format_3(weak_pair, tmp_path):
    s, _, test, _, models = weak_pair
    clf = models["auto"]
    X = s.X[test[::3]]
    path = clf.save(tmp_path / "v9")
    config = json.loads((path / "config.json").read_text())
    assert config["version"] == 11
    loaded = BinnedSpectraClassifier.load(path)
    assert loaded.strain_aligned_
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    # what fit found comes back too (format 5)
    assert loaded.position_pairs_ == clf.position_pairs_ and len(clf.position_pairs_) == 1
    for name in ("label_targets_", "class_scales_", "alignment_evidence_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(clf, name))
    assert isinstance(loaded.alignment_evidence_, tuple)
    # the same model as format 3 wrote it: no alignment arrays; it loads and
    # classifies as before, without alignment
    with np.load(path / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("align_")}
    np.savez(path / "arrays.npz", **arrays)
    config["version"] = 3
    del config["params"]["align_strain"]
    (path / "config.json").write_text(json.dumps(config))
    old = BinnedSpectraClassifier.load(path)
    assert not old.strain_aligned_
    assert old.align_strain is False  # what it was fitted with, not today's default
    # format 3 did not store what fit found: None, not stale values
    assert old.position_pairs_ is None and old.alignment_evidence_ is None
    assert old.label_targets_ is None and old.class_scales_ is None
    Z = clf._prep.normalise(clf._prep.segment_means(X))
    unaligned = pool(clf._fused.bin_proba(clf._fused.features(Z)), clf._fused.vote, clf.beta_)
    assert np.abs(old.predict_proba(X) - unaligned).max() < 1e-5


def test_weak_peaks_need_the_alignment(weak_pair):
    """Under the copies' random strain the weak peaks at high angle move by
    several segments and the strong peaks' flanks swamp them (95.6 %
    without alignment); aligned, 100 %, strained too."""
    s, _, test, strained, models = weak_pair
    scores = {}
    for align, clf in models.items():
        assert clf.strain_aligned_ == (align == "auto")
        scores[align] = ((clf.predict(s.X[test]) == s.y[test]).mean(),
                         (clf.predict(strained) == s.y[test]).mean())
    assert scores[False][0] < 0.98
    assert min(scores["auto"]) >= 0.99


def test_pair_separability_finds_the_window_that_separates_a_pair():
    """Class 1 differs from 0 only in segments 40-47, class 2 only in 0-15,
    class 3 not at all: the best window separates the first two pairs,
    nothing separates the third."""
    from server_ext.spectra.separability import candidate_starts, pair_separability

    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 200)
    Z = rng.normal(0.0, 1.0, (len(y), 64))
    Z[y == 1, 40:48] += 3.0
    Z[y == 2, :16] += 3.0
    fold = np.arange(len(y)) % 4
    splits = [(fold != k, fold == k) for k in range(4)]
    sep = pair_separability(Z, y, splits, candidate_starts(64, 16, "adaptive"), 16, 4)
    np.testing.assert_array_equal(sep, sep.T)
    assert (np.diag(sep) == 1.0).all()
    assert sep[0, 1] > 0.95 and sep[0, 2] > 0.95 and sep[1, 2] > 0.95
    assert sep[0, 3] < 0.65


def test_kernels_compile_where_no_cache_is_writable(tmp_path):
    """A read-only install without a writable home: numba cannot cache
    the compiled kernels anywhere, and they still run (compiled in the
    process) instead of failing -- the alignment, and the normalisation
    every prediction runs; importing the classifier leaves numba (and
    TensorFlow) unimported until first use."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import server_ext

    source = Path(server_ext.__file__).parent
    copy = tmp_path / "server_ext"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "spectra" / "__pycache__").write_text("")  # numba cannot create it
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(HOME=str(blocked / "home"), XDG_CACHE_HOME=str(blocked / "cache"),
               PYTHONDONTWRITEBYTECODE="1")
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from server_ext.spectra import align, classifier\n"
        "assert 'numba' not in sys.modules and 'tensorflow' not in sys.modules\n"
        "print(align.__file__)\n"
        "a = align.StrainAligner(np.linspace(-0.01, 0.01, 5),\n"
        "    np.eye(10, 10, dtype=np.float32), np.tile(np.arange(20.0), (5, 1)), np.arange(10))\n"
        "Z = np.arange(60, dtype=np.float32).reshape(3, 20)\n"
        "print(np.array_equal(a.align(Z), Z))\n"
        "from server_ext.spectra.preprocess import SegmentPreprocessor\n"
        "prep = SegmentPreprocessor(20, 20, 5)\n"
        "S = prep.segment_means(Z)\n"
        "ok = np.empty(3, bool)\n"
        "inverse = prep.normalise_rows(S, ok, ok.copy())\n"
        "print(np.allclose(S * inverse, prep.normalise(Z), atol=1e-6))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    module, aligned, normalised = done.stdout.split()
    assert Path(module).parent == copy / "spectra"
    assert aligned == "True" and normalised == "True"
