"""The one-pass batched inference against the reference computation, on
plans of every shape the estimator can produce: any number of bins and
segments per bin, wide and narrow segments, baseline on or off, equal or
unequal baseline blocks, 2 to 5 classes, and rows that are NaN or flat."""

import numpy as np
import pytest

from server_ext.spectra import inference
from server_ext.spectra.fused import FusedVote, pool
from server_ext.spectra.preprocess import SegmentPreprocessor


def random_plan(rng, n_points, n_segments, per_bin, n_bins, n_classes, baseline, hidden=16):
    prep = SegmentPreprocessor(n_points, n_segments, per_bin if baseline else 0)
    starts = np.sort(rng.choice(n_segments - per_bin + 1, n_bins, replace=False))
    segments = starts[:, None] + np.arange(per_bin)
    fused = FusedVote(segments,
                      rng.normal(0, 1, (n_bins, per_bin, hidden)),
                      rng.normal(0, 0.5, (n_bins, hidden)),
                      rng.normal(0, 1, (n_bins, hidden, n_classes)),
                      rng.normal(0, 0.5, (n_bins, n_classes)),
                      rng.uniform(0.1, 1.0, n_bins), beta=rng.uniform(0.5, 3.0))
    return prep, fused


def spectra(rng, n, n_points):
    x = np.linspace(0, 1, n_points)
    peaks = sum(rng.uniform(0.5, 3, (n, 1)) * np.exp(-((x - c) / 0.01) ** 2)
                for c in rng.uniform(0.05, 0.95, 12))
    return (peaks + rng.uniform(0.1, 1, (n, 1)) * (1 + x) + rng.normal(0, 0.02, (n, n_points))
            ).astype(np.float32)


def reference(prep, fused, X):
    Z = prep.normalise(prep.segment_means(X))
    return pool(fused.bin_proba(fused.features(Z)), fused.vote, fused.beta)


@pytest.mark.parametrize("n_points, n_segments, per_bin, n_bins, n_classes, baseline", [
    (4020, 240, 16, 8, 2, True),     # the default geometry: 180 wide + 60 narrow segments
    (4020, 240, 16, 15, 3, True),    # every equal bin kept
    (4020, 480, 32, 14, 4, True),    # more segments per bin
    (4020, 240, 8, 30, 5, True),     # many narrow bins, overlapping
    (2010, 240, 16, 15, 3, False),   # no baseline
    (2000, 250, 25, 6, 2, True),     # no wide segments (2000 = 250 x 8)
    (1000, 230, 16, 5, 3, True),     # unequal baseline blocks (230 / 16)
    (300, 300, 20, 3, 2, True),      # one point per segment
])
def test_one_pass_equals_reference(n_points, n_segments, per_bin, n_bins, n_classes, baseline):
    rng = np.random.default_rng(n_points + n_segments + n_bins)
    prep, fused = random_plan(rng, n_points, n_segments, per_bin, n_bins, n_classes, baseline)
    X = spectra(rng, 2 * inference.CHUNK_ROWS + 37, n_points)  # several chunks and a ragged one
    X[5] = np.nan
    X[7, 3] = np.inf
    X[9] = 0.0                      # flat: no signal
    X[11] = 4.0
    P, finite, signal = inference.InferencePlan(prep, fused).score(X)
    assert P.dtype == np.float32 and P.shape == (len(X), n_classes)
    assert np.flatnonzero(~finite).tolist() == [5, 7]
    assert np.flatnonzero(~signal).tolist() == [5, 7, 9, 11]  # bad rows are scored as zeros
    good = finite & signal  # flat rows get 1/K from the classifier, whatever their score
    assert np.abs(P[good] - reference(prep, fused, X[good])).max() < 1e-5
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)
    # other dtypes and a strided view give the same probabilities
    np.testing.assert_allclose(inference.InferencePlan(prep, fused).score(
        X[good][:64].astype(np.float64))[0], P[good][:64], atol=1e-5)
    np.testing.assert_allclose(inference.InferencePlan(prep, fused).score(
        np.asfortranarray(X[good][:64]))[0], P[good][:64], atol=1e-5)


def test_fast_segment_means_equal_the_exact_ones():
    rng = np.random.default_rng(0)
    for n_points, n_segments in ((4020, 240), (4020, 480), (2000, 250), (17, 17), (17, 1)):
        prep = SegmentPreprocessor(n_points, n_segments, 0)
        X = spectra(rng, 50, n_points)
        exact = prep.segment_means(X)
        np.testing.assert_allclose(prep.segment_means_fast(X), exact, rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(prep.segment_means_fast(X.astype(np.int32)),
                                   prep.segment_means(X.astype(np.int32)), rtol=2e-6)


@pytest.mark.parametrize("n_points, n_segments, block", [
    (4020, 240, 16), (4020, 480, 32), (4020, 240, 8), (2010, 240, 0), (1000, 230, 16),
    (300, 300, 20), (17, 17, 17), (37, 37, 0)])  # one block; fewer segments than LANES
def test_compiled_normalisation_equals_its_definition(n_points, n_segments, block):
    rng = np.random.default_rng(n_points + n_segments)
    prep = SegmentPreprocessor(n_points, n_segments, block)
    X = spectra(rng, 300, n_points)
    X[5] = np.nan
    X[7, 3] = -np.inf
    X[9] = 0.0
    X[11] = -4.0
    X[13] *= -1.0  # without a baseline its mean is negative: the scale is then 1
    S = prep.segment_means(X)
    expected_finite = np.isfinite(S).all(axis=1)
    zeroed = np.where(expected_finite[:, None], S, 0.0).astype(np.float32)
    finite, signal = np.empty(len(S), bool), np.empty(len(S), bool)
    inverse = prep.normalise_rows(S, finite, signal)
    np.testing.assert_array_equal(finite, expected_finite)
    np.testing.assert_array_equal(signal, prep.has_signal(zeroed))
    assert np.flatnonzero(~signal).tolist() == [5, 7, 9, 11]
    np.testing.assert_allclose(S, prep.baseline_free(zeroed), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(S * inverse, prep.normalise(zeroed), rtol=1e-5, atol=1e-5)
    assert inverse[5, 0] == 1.0 and (inverse[13, 0] == 1.0) == (not block)


def blas_threads():
    """The thread count of each BLAS library the limit controls (those
    loaded when it was first used: NumPy's among them)."""
    from threadpoolctl import threadpool_info

    from server_ext.spectra.blas_limit import _controller

    controlled = {c.filepath for c in _controller().lib_controllers if c.user_api == "blas"}
    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["filepath"] in controlled}


def test_blas_is_one_thread_while_batches_run_and_gets_its_threads_back(monkeypatch):
    """Two threads classifying at once left BLAS at one thread for good, and
    limiting around every batch halved the rate of small ones: BLAS is one
    thread in every batch, stays so between batches in quick succession,
    and gets its threads back ``hold_s`` after the last; a child forked
    meanwhile classifies."""
    import os
    import select
    import threading

    from server_ext.spectra.blas_limit import BlasLimit
    from tests.spectra.test_stream import wait_until

    wait_until(lambda: not inference._BLAS.held, "the limit of earlier batches released")
    before = blas_threads()
    if inference._threads() < 2 or set(before.values()) == {1}:
        pytest.skip(f"batches run on the caller's thread or BLAS runs one thread: {before}")
    limit = BlasLimit(hold_s=0.2)
    monkeypatch.setattr(inference, "_BLAS", limit)
    rng = np.random.default_rng(5)
    plan = inference.InferencePlan(*random_plan(rng, 1000, 230, 16, 5, 3, True))
    X = spectra(rng, 3 * inference.CHUNK_ROWS, 1000)
    expected = plan.score(X)[0]
    inside, results = [], []

    def resample(chunk):  # in the pool's threads, inside a batch
        inside.append(set(blas_threads().values()))
        return chunk

    def classify():
        results.extend(plan.score(X, resample)[0] for _ in range(3))

    callers = [threading.Thread(target=classify) for _ in range(2)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(120)
    assert len(results) == 6 and not any(t.is_alive() for t in callers)
    for P in results:
        np.testing.assert_allclose(P, expected, atol=1e-6)
    assert len(inside) == 6 * 3 and all(t == {1} for t in inside), inside
    wait_until(lambda: blas_threads() == before, "BLAS's threads restored")
    assert not limit.held

    limit.hold_s = 60.0
    plan.score(X)
    assert limit.held and set(blas_threads().values()) == {1}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own limit, none of the parent's threads
        try:
            ok = np.allclose(plan.score(X)[0], expected, atol=1e-6)
            os.write(w, b"classified" if ok else b"wrong")
        finally:
            os._exit(0)
    os.close(w)
    try:
        answered = select.select([r], [], [], 60)[0]
        answer = os.read(r, 100) if answered else b""
    finally:
        os.close(r)
        if not answered:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert answer == b"classified"
    limit.hold_s = 0.05
    plan.score(X)  # the last batch, begun and ended maybe before the holder woke
    wait_until(lambda: blas_threads() == before, "BLAS's threads restored 0.05 s after it, not 60",
               timeout=30)
    assert not limit.held
