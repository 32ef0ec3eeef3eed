"""Vectorised text → value parsers (polars expressions) for the map stage: integers, durations, uuids.

Each parser takes an expression of *trimmed* text (null = blank) and gives an expression of the parsed value,
null when the text does not parse. "Not blank but null after parsing" is how the map stage finds bad cells.

Decisions (documented for users in the mapping help):

- integer: ``1234``, ``+1234``, ``-5``, ``1,234`` / ``1,234,567`` (comma thousands groups of three), and an
  all-zero decimal tail (``1234.0``, ``1234.00``: what spreadsheets export for whole numbers). Refused:
  ``12.5`` (not whole), ``1.234`` (European thousands: ambiguous), ``1,23`` (bad grouping), ``abc``,
  values beyond int64, and scientific notation such as ``1.234e3`` — a spreadsheet writes ids that way only
  after it has already rounded them (``1.23457E+11``), so accepting it would import a wrong id.
- duration (minutes): ``90m``, ``90 min``, ``45 minutes``, ``1:30`` (h:mm, also ``1:30:00`` and Excel
  time cells read as ``1899-12-31 01:30:00``), ``1h30``, ``1h 30m``, ``1 hour 30 minutes``, ``2 hours``,
  ``1.5h`` (decimal hours only when they make whole minutes: ``1.01h`` is refused). A plain number (``90``,
  ``1.5``) is read in the column's unit (pipeline/mapping/units.py): ``90`` / ``90.0`` in minutes (``1.5``
  refused: not whole minutes), ``1.5`` / ``2`` in hours (when they make whole minutes); with no unit, refused.
  Refused always: negative values, minutes ≥ 60 after hours (``1h75``), seconds.
- uuid: braces, ``urn:uuid:`` prefix, upper case and missing dashes are accepted; the result is the
  canonical lower-case dashed form.
"""

from __future__ import annotations

import polars as pl

INT64_MAX = 2**63 - 1

_INTEGER = r"^([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.0*)?$"
_SCIENTIFIC = r"^[+-]?\d+(?:\.\d*)?[eE][+-]?\d+$"

_MIN_UNIT = r"(?:m|mn|min|mins|minute|minutes)"
_HOUR_UNIT = r"(?:h|hr|hrs|hour|hours)"
# (digit counts are bounded so that hours × 60 cannot overflow int64)
# minutes with their unit: "90m", "90 min", "90.0 min"
_DUR_MINUTES = rf"^(\d{{1,15}})(?:\.0*)?\s*{_MIN_UNIT}$"
# a plain number, read in the column's unit: "90", "90.0" (minutes); "2", "1.5" (hours)
_PLAIN_WHOLE = r"^(\d{1,12})(?:\.0*)?$"
_PLAIN_DECIMAL = r"^(\d{1,12}\.\d{1,6})$"
PLAIN_NUMBER = r"^\s*\d+(?:[.,]\d+)?\s*$"
# h:mm, h:mm:00, Excel time cell "1899-12-31 01:30:00"
_DUR_CLOCK = r"^(?:1899-12-31[ t])?(\d{1,12}):([0-5]\d)(?::00(?:\.0+)?)?$"
# whole hours and optional minutes: "2h", "1h30", "1h 30m", "1 hour 30 minutes"
_DUR_HOURS = rf"^(\d{{1,12}})\s*{_HOUR_UNIT}\s*(?:([0-5]?\d)\s*{_MIN_UNIT}?)?$"
# decimal hours: "1.5h", "0.25 hours"
_DUR_DECIMAL_HOURS = rf"^(\d{{1,12}}\.\d{{1,6}})\s*{_HOUR_UNIT}$"

_HEX32 = r"^[0-9a-f]{32}$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def parse_integer(text: pl.Expr) -> pl.Expr:
    """Int64 of `text` (see the module docstring for what is accepted); null when blank or not an integer."""
    groups = text.str.extract_groups(_INTEGER)
    digits = groups.struct.field("2").str.replace_all(",", "", literal=True)
    return pl.concat_str([groups.struct.field("1"), digits]).cast(pl.Int64, strict=False)


def looks_scientific(text: pl.Expr) -> pl.Expr:
    """True where `text` is a number in scientific notation (``1.23457E+11``): refused, with its own message."""
    return text.str.contains(_SCIENTIFIC)


def _whole_minutes(minutes: pl.Expr) -> pl.Expr:
    """Int64 of a Float64 number of minutes when it is whole (within float error), else null."""
    whole = minutes.round(0)
    return pl.when((minutes - whole).abs() < 1e-6).then(whole.cast(pl.Int64, strict=False))


def parse_duration(text: pl.Expr, unit: str | None = None) -> pl.Expr:
    """Int64 minutes of `text` (see the module docstring for the accepted forms); null when it does not parse.

    `unit` ("minutes", "hours" or None) is the unit of plain numbers; with None they do not parse."""
    norm = text.str.to_lowercase().str.strip_chars().str.replace_all(r"\s+", " ")
    minutes = norm.str.extract(_DUR_MINUTES, 1).cast(pl.Int64, strict=False)
    clock = norm.str.extract_groups(_DUR_CLOCK)
    from_clock = clock.struct.field("1").cast(pl.Int64, strict=False) * 60 + clock.struct.field("2").cast(
        pl.Int64, strict=False
    )
    hours = norm.str.extract_groups(_DUR_HOURS)
    from_hours = hours.struct.field("1").cast(pl.Int64, strict=False) * 60 + hours.struct.field("2").cast(
        pl.Int64, strict=False
    ).fill_null(0)
    from_decimal = _whole_minutes(norm.str.extract(_DUR_DECIMAL_HOURS, 1).cast(pl.Float64, strict=False) * 60)
    forms = [minutes, from_clock, from_hours, from_decimal]
    if unit is not None:
        whole = norm.str.extract(_PLAIN_WHOLE, 1).cast(pl.Int64, strict=False)
        if unit == "hours":
            decimal = norm.str.extract(_PLAIN_DECIMAL, 1).cast(pl.Float64, strict=False)
            forms += [whole * 60, _whole_minutes(decimal * 60)]
        else:
            forms.append(whole)
    return pl.coalesce(forms)


def normalise_uuid(text: pl.Expr) -> pl.Expr:
    """Canonical lower-case dashed uuid of `text`; null when it is not a uuid."""
    hexed = (
        text.str.to_lowercase()
        .str.strip_chars()
        .str.strip_prefix("urn:uuid:")
        .str.strip_prefix("{")
        .str.strip_suffix("}")
        .str.replace_all("-", "", literal=True)
    )
    ok = hexed.str.contains(_HEX32)
    canonical = pl.concat_str(
        [
            hexed.str.slice(0, 8),
            hexed.str.slice(8, 4),
            hexed.str.slice(12, 4),
            hexed.str.slice(16, 4),
            hexed.str.slice(20, 12),
        ],
        separator="-",
    )
    return pl.when(ok).then(canonical)


def parse_value(kind: str, text: pl.Expr, unit: str | None = None) -> pl.Expr:
    """Dispatch on a mapping's `parse` option: text | integer | duration (plain numbers in `unit`) | uuid."""
    if kind == "integer":
        return parse_integer(text)
    if kind == "duration":
        return parse_duration(text, unit)
    if kind == "uuid":
        return normalise_uuid(text)
    return text


def parse_scalar(kind: str, text: str, unit: str | None = None) -> object:
    """Parse one value with the same rules (used for constants and defaults of a mapping)."""
    return pl.select(parse_value(kind, pl.lit(text, dtype=pl.String), unit)).item()


# --- messages for values that did not parse ------------------------------------------------------------------

#: how a message describes what a field expects.
FIELD_HINT: dict[str, str] = {
    "typeId": "job type ids are whole numbers like 101",
    "contactId": "contact ids are whole numbers like 5001",
    "plannedDuration": "planned durations are whole minutes like 90",
}

_PREVIEW = 60


def text_of(*parts: str | pl.Expr) -> pl.Expr:
    """Concatenate literal text and expressions (never `pl.format`: it reads `{name}` in user text as a column)."""
    return pl.concat_str([pl.lit(p, dtype=pl.String) if isinstance(p, str) else p for p in parts])


def quoted(text: pl.Expr) -> pl.Expr:
    """`text` cut to 60 characters for a message."""
    return pl.when(text.str.len_chars() > _PREVIEW).then(text.str.slice(0, _PREVIEW - 1) + "…").otherwise(text)


def bad_value_expr(field_name: str, kind: str, text: pl.Expr, unit: str | None = None) -> pl.Expr:
    """Message for a non-blank `text` that did not parse as `kind` for `field_name` (durations: plain numbers in
    `unit`)."""
    q = quoted(text)
    hint = FIELD_HINT.get(field_name, "")
    if kind == "integer":
        return (
            pl.when(looks_scientific(text))
            .then(
                text_of(
                    "'",
                    q,
                    "' is in scientific notation, so the spreadsheet has already rounded it; "
                    "format the column as a plain number or text and export again",
                )
            )
            .otherwise(text_of("'", q, f"' is not a whole number; {hint}"))
        )
    if kind == "duration":
        if unit is None:
            plain = text_of(
                "'",
                q,
                "' has no unit (hours or minutes?) and neither has its column; "
                'add unit = "minutes" or unit = "hours" to the mapping, or write 90m or 1.5h',
            )
        elif unit == "hours":
            plain = text_of("'", q, " hours' is not a whole number of minutes; write it as h:mm, like 1:05")
        else:
            plain = text_of("'", q, "' is not a whole number of minutes (the column is in minutes); write 90 or 1:30")
        return (
            pl.when(text.str.contains(r"^\s*-"))
            .then(text_of("'", q, "' is negative; a planned duration is 0 minutes or more"))
            .when(text.str.contains(PLAIN_NUMBER))
            .then(plain)
            .when(text.str.contains(r"(?i)^\s*\d+[.,]\d+\s*h"))
            .then(text_of("'", q, "' is not a whole number of minutes; write the minutes, like 1h05 or 65"))
            .otherwise(text_of("'", q, "' is not a duration; write minutes (90), h:mm (1:30) or hours (1h30, 1.5h)"))
        )
    if kind == "uuid":
        return text_of(
            "'",
            q,
            "' is not a person id; person ids are uuids like 3e893453-fc5d-5d21-9f4a-5ba330146a90 "
            "(copy it from the contact's persons in BigChange)",
        )
    return text_of("'", q, "' is not valid")
