"""Tests of the C scan behind the CSV reader's fast proof (pipeline/_csvscan.c), against Python's csv module."""

from __future__ import annotations

import csv
import io

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import _csvscan
from pipeline.read_csv import _WHITESPACE


def expected(text: str, sep: str, width: int) -> tuple[int, int]:
    """(records, ragged) as the csv module splits `text`; an empty line is a record, never ragged."""
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    return len(records), sum(1 for r in records if r and len(r) != width)


@pytest.mark.parametrize(
    ("data", "result"),
    [
        (b"a,b\n1,2\n", (True, 2, 0)),
        (b"a,b\n1\n3,4,5\n", (True, 3, 2)),
        (b"a,b\n\n1,2\r\n\r\n", (True, 4, 0)),
        (b'a,b\n"x""y",2\n"line\nbreak","c,d"\r\n', (True, 3, 0)),
        (b"a,b\n1,2", (True, 2, 0)),
        (b"a,b\n1,2,", (True, 2, 1)),
        (b'a,b\n"x"y,2\n', (False, 0, 0)),  # text after a closing quote
        (b'a,b\nx"y,2\n', (False, 0, 0)),  # a quote inside an unquoted field
        (b'a,b\n"x,2\n', (False, 0, 0)),  # never closed
    ],
)
def test_records_ragged_and_quoting(data: bytes, result: tuple[bool, int, int]) -> None:
    assert _csvscan.scan(data, ",", 2)[:3] == result


def test_columns_that_may_hold_blank_or_padded_cells() -> None:
    # 1: a field starting like whitespace (also a non-ASCII space's lead byte) or a quoted "" (polars reads "");
    # 2: a field ending like whitespace (also a non-ASCII space's last byte), a line end's \r aside
    data = 'a,b,c,d,e,f,g\nx, y,"",\u3000,z,"q ",s\n"", ok ,q,r,,t,u\r\n'.encode()
    assert _csvscan.scan(data, ",", 7)[3] == b"\x01\x03\x01\x03\x00\x02\x00"
    assert _csvscan.scan(b"a,b\nx,y\r\r\n", ",", 2)[3] == b"\x00\x02"  # polars reads "y\r"
    # only a whole whitespace character counts: é (C3 A9) and à (C3 A0) end like U+2029 and U+00A0 do
    assert _csvscan.scan("a,b,c\nCafé,voilà,\u2029\n".encode(), ",", 3)[3] == b"\x00\x00\x03"
    assert _csvscan.scan(b'a,b\n"x"y,2\n', ",", 2)[3] == b"\x03\x03"  # not well formed: every column


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sep must be"):
        _csvscan.scan(b"a\n", '"', 1)
    with pytest.raises(TypeError):
        _csvscan.scan("text, not bytes", ",", 1)  # type: ignore[arg-type]


_TOKENS = st.sampled_from(["a", "é", " ", ",", ";", '"', '""', "\n", "\r\n"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_TOKENS, max_size=40), st.integers(min_value=1, max_value=4), st.sampled_from([",", ";"]))
def test_same_records_as_the_csv_module_when_well_formed(tokens: list[str], width: int, sep: str) -> None:
    # (no lone "\r": the csv module ends a line there, polars and the scan do not; see pipeline/read_csv.py)
    text = "".join(tokens)
    well_formed, records, ragged, spaced = _csvscan.scan(text.encode(), sep, width)
    assert len(spaced) == width
    if well_formed:
        assert (records, ragged) == expected(text, sep, width)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(max_size=6), min_size=1, max_size=4), min_size=1, max_size=10))
def test_what_the_csv_module_writes_is_well_formed(records: list[list[str]]) -> None:
    for quoting in (csv.QUOTE_MINIMAL, csv.QUOTE_ALL):
        buf = io.StringIO()
        csv.writer(buf, quoting=quoting, lineterminator="\r\n").writerows(records)
        text = buf.getvalue()
        well_formed, seen, ragged, _ = _csvscan.scan(text.encode(), ",", 2)
        assert well_formed
        assert (seen, ragged) == expected(text, ",", 2)


_CELL = st.text(alphabet=st.sampled_from(["a", "é", ",", '"', "\n", *_WHITESPACE]), max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(_CELL, min_size=3, max_size=3), min_size=1, max_size=8),
    st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    st.sampled_from(["\n", "\r\n"]),
)
def test_flags_cover_every_cell_polars_reads_padded(records: list[list[str]], quoting: int, end: str) -> None:
    buf = io.StringIO()
    csv.writer(buf, quoting=quoting, lineterminator=end).writerows([["h1", "h2", "h3"], *records])
    text = buf.getvalue()
    well_formed, _, ragged, spaced = _csvscan.scan(text.encode(), ",", 3)
    assert well_formed and ragged == 0
    frame = pl.read_csv(text.encode(), infer_schema=False)
    for i, column in enumerate(frame.columns):
        cells = [c for c in frame[column] if c]
        if any(c[0] in _WHITESPACE for c in cells):
            assert spaced[i] & 1, (column, cells)
        if any(c[-1] in _WHITESPACE for c in cells):
            assert spaced[i] & 2, (column, cells)
