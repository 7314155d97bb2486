"""A span of train ids, ``(first, last)``, both included, either open
(``None``): the trains of a results file to read (``daas spectra results
--train-ids``, ``Results.between``) or of a run to replay (``RunSource``,
``daas spectra classify --train-ids``, a stream's ``source.train_ids``)."""

from __future__ import annotations

import numbers
import re

import numpy as np

from .errors import SpectraError
from .results import NO_TRAIN_ID

__all__ = ["parse_span", "checked_span", "in_span", "span_text"]


def parse_span(text: str) -> tuple[int | None, int | None]:
    """``"FIRST-LAST"`` (``"FIRST-"``, ``"-LAST"``: open ends) or one id, as
    the phases of a results file print them, as a checked span."""
    found = re.fullmatch(r"\s*(\d*)\s*-\s*(\d*)\s*|\s*(\d+)\s*", text)
    if not found or found[0].strip() == "-":
        raise SpectraError(f"expected FIRST-LAST train ids (FIRST- or -LAST for open ends, or one "
                           f"id), not {text!r}")
    ends = (found[3], found[3]) if found[3] else (found[1], found[2])
    return checked_span([int(v) if v else None for v in ends])


def checked_span(span) -> tuple[int | None, int | None]:
    """``span`` as ``(first, last)`` of whole numbers >= 0 or ``None``,
    ``first`` not after ``last``; a :class:`SpectraError` saying why not."""
    try:
        first, last = span
    except (TypeError, ValueError):
        raise SpectraError(f"a span of train ids is [first, last], not {span!r}") from None
    for tid in (first, last):
        if tid is not None and (isinstance(tid, bool) or not isinstance(tid, numbers.Integral) or tid < 0):
            raise SpectraError(f"a train id is a whole number >= 0 (or none: an open end), not {tid!r}")
    if first is not None and last is not None and first > last:
        raise SpectraError(f"train {first} comes after train {last}: give the first train id first")
    return (None if first is None else int(first)), (None if last is None else int(last))


def in_span(train_ids, first: int | None, last: int | None) -> np.ndarray:
    """A boolean mask of the ``train_ids`` from ``first`` to ``last`` (a train
    without an id, a results file's ``NO_TRAIN_ID``, is in no span);
    checked first (:func:`checked_span`)."""
    first, last = checked_span((first, last))
    ids = np.asarray(train_ids, np.uint64)
    mask = ids != NO_TRAIN_ID
    if first is not None:
        mask &= ids >= np.uint64(first)
    if last is not None:
        mask &= ids <= np.uint64(last)
    return mask


def span_text(first: int | None, last: int | None) -> str:
    """As said: ``trains 10-20``, ``trains from 10``, ``trains up to 20``, ``train 15``."""
    return (f"train {first}" if first == last and first is not None
            else f"trains {first}-{last}" if None not in (first, last)
            else f"trains from {first}" if first is not None
            else f"trains up to {last}" if last is not None else "every train")
