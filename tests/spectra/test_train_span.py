"""Spans of train ids, as the CLI, the API and the app give them."""

import numpy as np
import pytest

from server_ext.spectra import SpectraError
from server_ext.spectra.results import NO_TRAIN_ID
from server_ext.spectra.train_span import checked_span, in_span, parse_span, span_text


@pytest.mark.parametrize("text, span", [("10-20", (10, 20)), (" 10 - 20 ", (10, 20)), ("10-", (10, None)),
                                        ("-20", (None, 20)), ("15", (15, 15)), ("15-15", (15, 15))])
def test_a_span_read_as_the_phases_print_it(text, span):
    assert parse_span(text) == span


@pytest.mark.parametrize("text, message", [
    ("", "expected FIRST-LAST"), ("-", "expected FIRST-LAST"), ("1-2-3", "expected FIRST-LAST"),
    ("a-b", "expected FIRST-LAST"), ("1.5-2", "expected FIRST-LAST"), ("20-10", "train 20 comes after train 10")])
def test_a_malformed_span_says_why(text, message):
    with pytest.raises(SpectraError, match=message):
        parse_span(text)


@pytest.mark.parametrize("span", [(True, 2), (1.5, 2), (-1, 2), ("1", 2), (1, 2, 3), 5, None])
def test_a_forged_span_is_refused(span):
    with pytest.raises(SpectraError):
        checked_span(span)


def test_the_trains_in_a_span():
    ids = np.array([5, 6, 7, 8, NO_TRAIN_ID], np.uint64)
    assert in_span(ids, 6, 7).tolist() == [False, True, True, False, False]
    assert in_span(ids, None, None).tolist() == [True] * 4 + [False]  # a train without an id is in none
    assert in_span(ids, 8, None).tolist() == [False, False, False, True, False]
    assert checked_span([np.int64(3), None]) == (3, None)
    for first, last in ((8, 6), (-1, None), (1.5, 2)):  # as Results.between or RunSource may be called
        with pytest.raises(SpectraError):
            in_span(ids, first, last)
    assert [span_text(*s) for s in ((1, 2), (3, 3), (4, None), (None, 5), (None, None))] == \
        ["trains 1-2", "train 3", "trains from 4", "trains up to 5", "every train"]
