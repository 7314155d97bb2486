"""Streaming spectra classifier: separable bins, one network per bin, weighted vote.

``from server_ext.spectra import BinnedSpectraClassifier, SpectraStream``.
Importing this package loads NumPy only; scikit-learn, extra_data, ZeroMQ and
TensorFlow are imported by the submodules that need them, on first use.
"""

__all__ = ["BinnedSpectraClassifier", "SpectraStream", "SpectraError",
           "StreamStats", "TrainResult", "KaraboBridgeSource", "RunSource",
           "IterableSource", "ResultsFile", "read_results", "iter_results", "evaluate",
           "Evaluation"]

from .errors import SpectraError

_LAZY = {
    "BinnedSpectraClassifier": "classifier",
    "SpectraStream": "stream",
    "StreamStats": "stream",
    "TrainResult": "stream",
    "KaraboBridgeSource": "sources",
    "RunSource": "sources",
    "IterableSource": "sources",
    "ResultsFile": "results",
    "read_results": "results_reader",
    "iter_results": "results_reader",
    "evaluate": "evaluation",
    "Evaluation": "evaluation",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
