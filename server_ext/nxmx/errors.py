"""Errors a user can cause when converting a run; each says what to do."""


class ConversionError(Exception):
    """Base class: bad input or output for an NXmx conversion.

    ``user_error = True`` makes ``daas`` print the message without a
    traceback and exit with status 2.
    """

    user_error = True


class NotARunError(ConversionError):
    """The path is not a European XFEL run directory."""


class CorruptRunError(ConversionError):
    """A file of the run cannot be read (truncated or corrupt HDF5)."""


class DetectorNotFoundError(ConversionError):
    """No detector, several without a choice, or the named one is absent."""


class UnsupportedDetectorError(ConversionError):
    """The detector (or its data flavour) cannot be converted."""


class RawDataError(UnsupportedDetectorError):
    """Raw (uncorrected) detector data was given where corrected data is needed."""


class GeometryError(ConversionError):
    """The geometry cannot be read or does not describe this detector."""


class NoFramesError(ConversionError):
    """The frame selection left nothing to convert."""


class MissingMetadataError(ConversionError):
    """A quantity NXmx requires (e.g. the wavelength) is not in the run."""


class OutputError(ConversionError):
    """The output file cannot be written where asked."""


class ConversionCancelled(ConversionError):
    """The conversion was cancelled; nothing was written."""


class DialsError(Exception):
    """DIALS (run in its own interpreter) is missing, failed or timed out on
    a file; the message says why and what to do. ``user_error = True``: it is
    shown without a traceback."""

    user_error = True


class DialsUnavailableError(DialsError):
    """No DIALS installation was found (see ``server_ext.nxmx.dials.install_hint``)."""


class DialsTimeoutError(DialsError):
    """A DIALS program ran longer than its time limit and was stopped."""
