"""The spectra engine's one user-facing exception type."""


class SpectraError(ValueError):
    """Bad input to the spectra classifier or its stream: wrong shape, NaN,
    unknown labels, unreadable model or data file.

    ``user_error = True`` makes ``daas`` print the message without a
    traceback; the message says what to change. ``rows``: the rows of the
    spectra passed in that the error is about, where it names some, so that
    a caller that read them from a file can say where they are there
    (:func:`.datafiles.located`).
    """

    user_error = True

    def __init__(self, *args, rows=None):
        super().__init__(*args)
        self.rows = None if rows is None else [int(r) for r in rows]
