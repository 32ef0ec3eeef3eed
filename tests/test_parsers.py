"""Integer, duration and uuid parsers: accepted and refused forms, and property tests (hypothesis)."""

from __future__ import annotations

import re
import uuid

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.mapping.parsers import UUID_PATTERN, looks_scientific, normalise_uuid, parse_duration, parse_integer
from pipeline.mapping.units import header_unit


def run(parser, values: list[str | None]) -> list[object]:  # type: ignore[no-untyped-def]
    return pl.DataFrame({"x": values}, schema={"x": pl.String}).select(parser(pl.col("x"))).to_series().to_list()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234", 1234),
        ("1,234", 1234),
        ("1,234,567", 1234567),
        ("1234.0", 1234),
        ("1234.00", 1234),
        ("0012", 12),
        ("-5", -5),
        ("+7", 7),
        ("9223372036854775807", 2**63 - 1),
        ("12.5", None),
        ("abc", None),
        ("1.234e3", None),
        ("1,23", None),
        ("1.234", None),
        ("1 234", None),
        ("9223372036854775808", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_integer(text: str | None, expected: int | None) -> None:
    assert run(parse_integer, [text]) == [expected]


def test_scientific_notation_is_recognised_for_its_own_message() -> None:
    assert run(looks_scientific, ["1.23457E+11", "1e3", "1234", "12.5"]) == [True, True, False, False]


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("90", None),  # a plain number without a unit: hours or minutes? (see test_plain_numbers_take_the_unit)
        ("90m", 90),
        ("90 min", 90),
        ("90 mins", 90),
        ("45 minutes", 45),
        ("1:30", 90),
        ("1:30:00", 90),
        ("1899-12-31 01:30:00", 90),
        ("1h30", 90),
        ("1H30", 90),
        ("1h 30m", 90),
        ("1 hour 30 minutes", 90),
        ("2 hours", 120),
        ("2h", 120),
        ("1.5h", 90),
        ("1.25 h", 75),
        ("0.5 hours", 30),
        ("0", None),
        ("0m", 0),
        ("90.0", None),
        ("90.0 min", 90),
        ("-90", None),
        ("-1:30", None),
        ("1.5", None),
        ("12.5", None),
        ("1.01h", None),
        ("1h75", None),
        ("1:75", None),
        ("1:30:15", None),
        ("1.5h30m", None),
        ("ninety", None),
        ("9999999999999999h", None),
        (None, None),
    ],
)
def test_parse_duration(text: str | None, minutes: int | None) -> None:
    assert run(parse_duration, [text]) == [minutes]


@pytest.mark.parametrize(
    ("text", "in_minutes", "in_hours"),
    [
        ("90", 90, 5400),
        ("90.0", 90, 5400),
        ("1", 1, 60),
        ("2", 2, 120),
        ("0", 0, 0),
        ("1.5", None, 90),
        ("0.25", None, 15),
        ("1.01", None, None),  # 60.6 minutes
        ("12.5", None, 750),
        ("-2", None, None),
        # a cell with its own unit is read as written, whatever the column's unit
        ("90m", 90, 90),
        ("2h", 120, 120),
        ("1:30", 90, 90),
        ("1.5h", 90, 90),
    ],
)
def test_plain_numbers_take_the_unit(text: str, in_minutes: int | None, in_hours: int | None) -> None:
    assert run(lambda e: parse_duration(e, "minutes"), [text]) == [in_minutes]
    assert run(lambda e: parse_duration(e, "hours"), [text]) == [in_hours]


@pytest.mark.parametrize(
    ("header", "unit"),
    [
        ("Hours", "hours"),
        ("Hrs", "hours"),
        ("Est. hrs", "hours"),
        ("Duration (h)", "hours"),
        ("Duration (hours)", "hours"),
        ("Minutes", "minutes"),
        ("Planned Minutes", "minutes"),
        ("Planned mins", "minutes"),
        ("Duration (m)", "minutes"),
        ("Duration", None),
        ("Est. Time", None),
        ("Duration (hh:mm)", None),
        ("Hours and minutes", None),
        ("Visit Length", None),
    ],
)
def test_header_unit(header: str, unit: str | None) -> None:
    assert header_unit(header) == unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{3E893453-FC5D-5D21-9F4A-5BA330146A90}", "3e893453-fc5d-5d21-9f4a-5ba330146a90"),
        ("3e893453fc5d5d219f4a5ba330146a90", "3e893453-fc5d-5d21-9f4a-5ba330146a90"),
        ("urn:uuid:3e893453-fc5d-5d21-9f4a-5ba330146a90", "3e893453-fc5d-5d21-9f4a-5ba330146a90"),
        ("3e893453-fc5d-5d21-9f4a", None),
        ("3e893453-fc5d-5d21-9f4a-5ba330146a9g", None),
        ("not-a-uuid", None),
    ],
)
def test_normalise_uuid(text: str, expected: str | None) -> None:
    assert run(normalise_uuid, [text]) == [expected]


def _group(n: int) -> str:
    return f"{n:,}"


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1), st.sampled_from(["plain", "commas", "dot0", "pad"]))
def test_integer_round_trip(n: int, form: str) -> None:
    text = {"plain": str(n), "commas": _group(n), "dot0": f"{n}.0", "pad": f"  {n} "}[form]
    assert run(lambda e: parse_integer(e.str.strip_chars()), [text]) == [n]


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=9))
def test_integer_refuses_fractions(n: int, frac: int) -> None:
    assert run(parse_integer, [f"{n}.{frac}"]) == [None]


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=2**63, max_value=2**80))
def test_integer_refuses_overflow(n: int) -> None:
    assert run(parse_integer, [str(n)]) == [None]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**5), st.integers(min_value=0, max_value=59))
def test_duration_forms_agree(hours: int, minutes: int) -> None:
    total = hours * 60 + minutes
    forms = [
        f"{total}m",
        f"{total} min",
        f"{total} minutes",
        f"{hours}:{minutes:02d}",
        f"{hours}h{minutes:02d}",
        f"{hours}h {minutes}m",
        f"{hours} hours {minutes} minutes",
    ]
    assert run(parse_duration, forms) == [total] * len(forms)
    assert run(lambda e: parse_duration(e, "minutes"), [str(total)]) == [total]


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=10**4), st.sampled_from([0, 25, 5, 75]))
def test_decimal_hours_are_exact_minutes(hours: int, hundredths: int) -> None:
    text = f"{hours}.{hundredths:02d}h" if hundredths else f"{hours}.5h"
    expected = hours * 60 + (hundredths * 60 // 100 if hundredths else 30)
    assert run(parse_duration, [text]) == [expected]


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=12))
def test_duration_never_negative_and_never_crashes(text: str) -> None:
    (value,) = run(parse_duration, [text])
    assert value is None or value >= 0
    if text.strip().startswith("-"):
        assert value is None


@settings(max_examples=100, deadline=None)
@given(st.uuids(), st.sampled_from(["braces", "upper", "nodash", "plain"]))
def test_uuid_forms_normalise(u: uuid.UUID, form: str) -> None:
    text = {"braces": "{" + str(u) + "}", "upper": str(u).upper(), "nodash": u.hex, "plain": str(u)}[form]
    assert run(normalise_uuid, [text]) == [str(u)]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=45), st.text(alphabet="0123456789abcdefABCDEF-{}:nru ", max_size=45)))
def test_uuid_parser_writes_only_canonical_uuids(text: str) -> None:
    # validate.py relies on it: a person id parsed as a uuid is not checked against UUID_PATTERN again
    (value,) = run(normalise_uuid, [text])
    assert value is None or re.fullmatch(UUID_PATTERN, value)
