"""European XFEL run -> NeXus/NXmx "Gold Standard" master files.

``convert_run`` writes the file (virtual data over the run's own files, or
a compressed copy), ``validate`` checks one with independent readers,
``inspect_run`` summarises a run, and ``server_ext.nxmx.dials`` reads and
indexes files with an installed DIALS (in its own interpreter). No Jupyter imports; h5py, ``extra_data``
and the validators load on first use of what needs them, so importing this
package (e.g. for its exception types) is cheap.
"""

import importlib

from .errors import (ConversionCancelled, ConversionError, CorruptRunError,
                     DetectorNotFoundError, DialsError, DialsTimeoutError,
                     DialsUnavailableError, GeometryError, MissingMetadataError,
                     NoFramesError, NotARunError, OutputError, RawDataError,
                     UnsupportedDetectorError)

# Public name -> submodule that defines it, imported on first access.
_LAZY = {
    "convert_run": ".convert",
    "validate": ".validation",
    "ValidationReport": ".validation",
    "Finding": ".validation",
    "inspect_run": ".info",
}

__all__ = [
    "convert_run", "validate", "inspect_run", "ValidationReport", "Finding",
    "ConversionError", "NotARunError", "CorruptRunError", "DetectorNotFoundError",
    "UnsupportedDetectorError", "RawDataError", "GeometryError", "NoFramesError",
    "MissingMetadataError", "OutputError", "ConversionCancelled",
    "DialsError", "DialsUnavailableError", "DialsTimeoutError",
]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
