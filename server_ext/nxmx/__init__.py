"""European XFEL run -> NeXus/NXmx "Gold Standard" master files.

``convert_run`` writes the file (virtual data over the run's own files, or
a compressed copy), ``validate`` checks one with independent readers, and
``inspect_run`` summarises a run. No Jupyter imports; the validators and
``extra_data`` load on first use.
"""

from .convert import convert_run
from .errors import (ConversionCancelled, ConversionError, CorruptRunError,
                     DetectorNotFoundError, GeometryError, MissingMetadataError,
                     NoFramesError, NotARunError, OutputError, RawDataError,
                     UnsupportedDetectorError)
from .info import inspect_run
from .validation import Finding, ValidationReport, validate

__all__ = [
    "convert_run", "validate", "inspect_run", "ValidationReport", "Finding",
    "ConversionError", "NotARunError", "CorruptRunError", "DetectorNotFoundError",
    "UnsupportedDetectorError", "RawDataError", "GeometryError", "NoFramesError",
    "MissingMetadataError", "OutputError", "ConversionCancelled",
]
