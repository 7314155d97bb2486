"""Shared small data, one trained classifier per kind of change, a Karabo bridge,
the benchmark's modules."""

import importlib.util
import pathlib
import threading

import numpy as np
import pytest

from server_ext.spectra import BinnedSpectraClassifier
from server_ext.spectra.synthetic import make_powder_series, make_transition_series

# 2,010 points keep the tests quick and still give 67-point bins
N_POINTS = 2010


def _write_nexus(path, X, axis, phases=None):
    """Spectra as a NeXus file holds them: /entry/data/intensity, the NeXus
    default signal, on its axis two_theta; ``phases`` (one label per
    spectrum) as bytes in /entry/phase."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs.update(NX_class="NXentry", default="data")
        data = entry.create_group("data")
        data.attrs.update(NX_class="NXdata", signal="intensity", axes=[".", "two_theta"])
        data["intensity"] = X
        data["two_theta"] = axis
        if phases is not None:
            entry["phase"] = np.asarray(phases).astype("S")
    return path


@pytest.fixture(scope="session")
def write_nexus():
    """``write_nexus(path, X, axis, phases=None)``: spectra written as a NeXus file."""
    return _write_nexus


@pytest.fixture
def bridge():
    """A Karabo bridge server (``REP``) on an ephemeral loopback port; its stop
    is waited for at most 30 s, failing rather than hanging."""
    from karabo_bridge import ServerInThread

    server = ServerInThread("tcp://127.0.0.1:*", maxlen=200)
    server.start()
    yield server
    stopper = threading.Thread(target=server.stop, name="bridge-stop", daemon=True)
    stopper.start()
    stopper.join(30)
    assert not stopper.is_alive(), "the Karabo bridge server did not stop within 30 s"


@pytest.fixture(scope="session")
def benchmark_module():
    """``load(name)``: a module of ``benchmarks/`` -- the independent
    physics generator ``powder_physics``, the benchmark's protocols in
    ``spectra`` -- loaded once."""
    root = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
    loaded = {}

    def load(name):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(name, root / f"{name}.py")
            loaded[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded[name])
        return loaded[name]

    return load


@pytest.fixture(scope="session")
def perovskite_protocol_a(benchmark_module):
    """``accuracy(series_seed, network_seed, **params)``: protocol A of the
    benchmark (the two purest curves per class labelled) on the independent
    ``perovskite_heating`` series, fitted with ``params``: the test accuracy."""
    series = {}

    def accuracy(series_seed, network_seed, **params):
        if series_seed not in series:
            series[series_seed] = benchmark_module("powder_physics").perovskite_heating(
                random_state=series_seed)
        d = series[series_seed]
        X, y = d["X"], d["y"]
        train = benchmark_module("spectra").extremes(y)
        test = np.setdiff1d(np.arange(len(y)), train)
        clf = BinnedSpectraClassifier(random_state=network_seed, **params)
        clf.fit(X[train], y[train], axis=d["axis"])
        return (clf.predict(X[test]) == y[test]).mean()

    return accuracy


@pytest.fixture(scope="session")
def intensity_series():
    return make_transition_series(n_spectra=200, n_points=N_POINTS, kind="intensity",
                                  random_state=11)


@pytest.fixture(scope="session")
def shift_series():
    return make_transition_series(n_spectra=200, n_points=N_POINTS, kind="shift",
                                  random_state=12)


@pytest.fixture(scope="session")
def fitted(intensity_series):
    """Protocol B on the intensity series: every 5th spectrum labelled."""
    s = intensity_series
    train = np.arange(0, len(s.X), 5)
    clf = BinnedSpectraClassifier(random_state=0).fit(s.X[train], s.y[train], axis=s.axis)
    return clf, train


@pytest.fixture(scope="session")
def shift_signal_series():
    """A -> B -> A' powder series: A' is A in a 1 % larger cell."""
    return make_powder_series("shift", n_spectra=180, n_points=N_POINTS, random_state=3)


@pytest.fixture(scope="session")
def shift_signal_fitted(shift_signal_series):
    """Protocol B on the shift series: every 4th spectrum labelled."""
    s = shift_signal_series
    train = np.arange(0, len(s.X), 4)
    clf = BinnedSpectraClassifier(epochs=30, random_state=0)
    return clf.fit(s.X[train], s.y[train], axis=s.axis), train
