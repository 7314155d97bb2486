"""The spectra engine's one user-facing exception type."""


class SpectraError(ValueError):
    """Bad input to the spectra classifier or its stream: wrong shape, NaN,
    unknown labels, unreadable model or data file.

    ``user_error = True`` makes ``daas`` print the message without a
    traceback; the message says what to change.
    """

    user_error = True
