"""ipywidgets apps over the daas Jupyter Server extension's jobs.

``NXmxConverter`` converts a European XFEL run to NXmx and shows the result;
``SpectraClassifierApp`` trains, classifies and streams spectra. Work they
start is a job of the extension (it outlives the kernel); plots are
matplotlib figures on ipympl canvases (no JavaScript of ours). Imports are
lazy: ``import widgets`` loads neither ipywidgets nor matplotlib.
"""

import importlib

_LAZY = {
    "NXmxConverter": ".nxmx_converter",
    "SpectraClassifierApp": ".spectra_app",
    "FrameViewer": ".frame_viewer",
    "separability_figure": ".figures",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
