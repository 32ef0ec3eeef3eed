"""How a workbook cell's stored value becomes the text a person saw: numbers, number formats, dates, durations.

calamine (through fastexcel) gives most cells right; these functions give the text of the cells it does not
(see read_excel's module docstring): numbers as the shortest text that reads back as the same number, number
formats that only pad or decorate a whole number (`000000`, `"PO-"0000`, `000-000`, `0.00`), dates in a 1904
workbook, elapsed-time formats (`[h]:mm:ss`), ODS time values.

The text forms (the same for .xlsx, .xls and .ods):
- number: `1234`, `2.5`, `0.14285714285714285`, `1.23456789012e-10` (Python's shortest round-trip form;
  whole numbers below 10^16 without a decimal point or exponent);
- date `2024-12-05`; date-time `2024-12-05 14:30:00` (a space, no `T`; milliseconds only when not zero:
  `2024-12-05 14:30:00.123`); time of day `14:30:00`; elapsed time as its format shows it (`255:10:10`).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import date, timedelta

#: number format ids Excel does not write out (ECMA-376 18.8.30); 5–8 and 27–36/50–58 are locale-dependent.
BUILTIN_FORMATS: dict[int, str] = {
    0: "General",
    1: "0",
    2: "0.00",
    3: "#,##0",
    4: "#,##0.00",
    9: "0%",
    10: "0.00%",
    11: "0.00E+00",
    12: "# ?/?",
    13: "# ??/??",
    14: "mm-dd-yy",
    15: "d-mmm-yy",
    16: "d-mmm",
    17: "mmm-yy",
    18: "h:mm AM/PM",
    19: "h:mm:ss AM/PM",
    20: "h:mm",
    21: "h:mm:ss",
    22: "m/d/yy h:mm",
    37: "#,##0 ;(#,##0)",
    38: "#,##0 ;[Red](#,##0)",
    39: "#,##0.00;(#,##0.00)",
    40: "#,##0.00;[Red](#,##0.00)",
    45: "mm:ss",
    46: "[h]:mm:ss",
    47: "mmss.0",
    48: "##0.0E+0",
    49: "@",
}
_LOCALE_DATES = set(range(27, 37)) | set(range(50, 59))

_QUOTED = re.compile(r'"[^"]*"|\\.|_.|\*.')
_BRACKET = re.compile(r"\[[^\]]*\]")
_ELAPSED = re.compile(r"\[(h+|m+|s+)\]", re.I)
_DATE_TOKEN = re.compile(r"[ymdhs]|am/pm|a/p", re.I)


@dataclass(frozen=True)
class Format:
    """What a cell style's number format means for its text."""

    kind: str  # "general", "text", "date", "elapsed", "code" (rendered here) or "other" (not rendered)
    code: str  # the format code


def classify(code: str) -> Format:
    """The kind of a number format code (see Format.kind)."""
    section = _first_section(code)
    bare = _QUOTED.sub("", section)
    if bare.strip().lower() == "general" and bare == section:
        return Format("general", code)
    if bare.strip() == "@":
        return Format("text", code)
    if _ELAPSED.search(bare):
        return Format("elapsed", code)
    if _DATE_TOKEN.search(_BRACKET.sub("", bare)):
        return Format("date", code)
    if _code_tokens(section) is not None and ";" not in _QUOTED.sub("", code):
        return Format("code", code)
    return Format("other", code)


def builtin_format(num_fmt_id: int) -> str | None:
    """The code of a built-in number format id, a date placeholder for the locale-dependent date ids."""
    if num_fmt_id in _LOCALE_DATES:
        return "yyyy-mm-dd"
    return BUILTIN_FORMATS.get(num_fmt_id)


@functools.lru_cache(maxsize=256)
def _first_section(code: str) -> str:
    out, quoted, escaped = [], False, False
    for ch in code:
        if escaped:
            escaped = False
        elif ch == "\\" and not quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            break
        out.append(ch)
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _code_tokens(section: str) -> tuple[tuple[str, str], ...] | None:
    """The tokens of a format that only pads or decorates a number: ("lit", text), ("digit", "0" or "#"),
    ("point", "."); None for anything else (thousands separators, %, E+, fractions, colours, conditions)."""
    tokens: list[tuple[str, str]] = []
    i, seen_digit, seen_point = 0, False, False
    while i < len(section):
        ch = section[i]
        if ch == '"':
            end = section.find('"', i + 1)
            if end < 0:
                return None
            tokens.append(("lit", section[i + 1 : end]))
            i = end + 1
            continue
        if ch == "\\" and i + 1 < len(section):
            tokens.append(("lit", section[i + 1]))
            i += 2
            continue
        if ch in "0#":
            if seen_point and ch == "#":
                return None
            tokens.append(("digit", ch))
            seen_digit = True
        elif ch == "." and not seen_point and seen_digit:
            tokens.append(("point", "."))
            seen_point = True
        elif ch in " -+/():$" or (ch.isalpha() and ch not in "eEhHmMsSdDyYbBgG"):
            tokens.append(("lit", ch))
        else:
            return None
        i += 1
    if not seen_digit:
        return None
    if seen_point and tokens[-1] == ("point", "."):
        return None
    # digits after the point must be contiguous zeros
    if seen_point:
        after = tokens[tokens.index(("point", ".")) + 1 :]
        decimals = [t for t in after if t[0] == "digit"]
        first = after.index(decimals[0]) if decimals else 0
        if not decimals or any(t[0] != "digit" for t in after[first : first + len(decimals)]):
            return None
    return tuple(tokens)


def number_text(value: float) -> str:
    """The shortest text that reads back as `value`: whole numbers below 10^16 as integers, else repr."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def render_code(value: float, code: str) -> str | None:
    """`value` as a padding/decorating format shows it (`000000` → `000100`, `"PO-"0000` → `PO-0042`,
    `000-000` → `123-456`, `0.00` → `1.50`), or None when the format would round the value (then the number is
    kept as it is) or is not such a format."""
    tokens = _code_tokens(_first_section(code))
    if tokens is None or not math.isfinite(value):
        return None
    points = [i for i, t in enumerate(tokens) if t[0] == "point"]
    int_part = tokens[: points[0]] if points else tokens
    frac_part = tokens[points[0] + 1 :] if points else []
    decimals = sum(1 for t in frac_part if t[0] == "digit")
    shown = f"{abs(value):.{decimals}f}"
    if float(shown) != abs(value):
        return None  # the format would round it: what it shows is not the value
    whole, _, frac = shown.partition(".")
    if whole == "0":
        whole = ""
    digits = list(whole)
    out: list[str] = []
    slots = [i for i, t in enumerate(int_part) if t[0] == "digit"]
    fill: dict[int, str] = {}
    for i in reversed(slots):
        if digits:
            fill[i] = digits.pop()
        else:
            fill[i] = "0" if int_part[i][1] == "0" else ""
    if digits and slots:
        fill[slots[0]] = "".join(digits) + fill[slots[0]]
    for i, (kind, text) in enumerate(int_part):
        out.append(fill[i] if kind == "digit" else text)
    if points:
        out.append(".")
        frac_digits = list(frac)
        for kind, text in frac_part:
            out.append(frac_digits.pop(0) if kind == "digit" else text)
    text = "".join(out)
    return f"-{text}" if value < 0 else text


def serial_text(value: float, date1904: bool) -> str:
    """A date serial as `2024-12-05`, `2024-12-05 14:30:00(.123)` or `14:30:00(.123)` (time only, serial < 1)."""
    ms = round(value * 86_400_000)
    days, in_day = divmod(ms, 86_400_000)
    clock = _clock(in_day)
    if days == 0 and in_day:
        return clock
    if date1904:
        day = date(1904, 1, 1) + timedelta(days=days)
    elif days == 60:
        return "1900-02-29" + (f" {clock}" if in_day else "")  # Excel's day that never was
    else:
        day = date(1899, 12, 31) + timedelta(days=days - (1 if days > 60 else 0))
    return day.isoformat() + (f" {clock}" if in_day else "")


def _clock(ms: int) -> str:
    seconds, milli = divmod(ms, 1000)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    text = f"{hours:02d}:{minute:02d}:{sec:02d}"
    return f"{text}.{milli:03d}" if milli else text


def elapsed_text(value: float, code: str) -> str:
    """A duration (in days) as an elapsed-time format shows it: `[h]:mm:ss` → `255:10:10`, `[h]:mm` → `255:10`,
    `[mm]:ss` → `15310:10`; seconds are rounded like Excel rounds them (to the unit shown)."""
    bare = _QUOTED.sub("", _first_section(code)).lower()
    unit = _ELAPSED.search(bare)
    lead = unit.group(1)[0] if unit else "h"
    width = len(unit.group(1)) if unit else 1  # `[hh]` shows 01:18:43, `[h]` 1:18:43
    has_seconds = "s" in bare.replace("[s", "")
    has_minutes = lead == "h" and ("m" in _ELAPSED.sub("", bare))
    sign = "-" if value < 0 else ""
    total_s = round(abs(value) * 86_400) if has_seconds or lead == "s" else round(abs(value) * 1440) * 60
    if lead == "s":
        return f"{sign}{total_s:0{width}d}"
    if lead == "m":
        minutes, sec = divmod(total_s, 60)
        return f"{sign}{minutes:0{width}d}:{sec:02d}" if has_seconds else f"{sign}{minutes:0{width}d}"
    hours, rest = divmod(total_s, 3600)
    minute, sec = divmod(rest, 60)
    text = f"{sign}{hours:0{width}d}"
    if has_minutes:
        text += f":{minute:02d}"
    if has_seconds:
        text += f":{sec:02d}"
    return text


_ISO_DURATION = re.compile(r"^(-)?P(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$")


_SHOWN_FRACTION = re.compile(r"\d[.,]\d")


def iso_duration_text(value: str, shown: str | None = None) -> str | None:
    """An ODS time value (`PT11H12M12S`, `PT255H10M10S`, `P1DT2H`) as `11:12:12` / `255:10:10` / `26:00:00`;
    fractions of a second kept to the millisecond when not zero — unless `shown` (the cell's displayed text) has
    none: then rounded to the second, as its format shows it. None when it is not such a value."""
    m = _ISO_DURATION.match(value.strip())
    if not m:
        return None
    sign, days, hours, minutes, seconds = m.groups()
    ms = round(float(seconds or 0) * 1000)
    if shown is not None and not _SHOWN_FRACTION.search(shown):
        ms = round(ms / 1000) * 1000
    total_ms = ((int(days or 0) * 24 + int(hours or 0)) * 60 + int(minutes or 0)) * 60_000 + ms
    secs, milli = divmod(total_ms, 1000)
    mins, sec = divmod(secs, 60)
    hrs, minute = divmod(mins, 60)
    text = f"{sign or ''}{hrs:02d}:{minute:02d}:{sec:02d}"
    return f"{text}.{milli:03d}" if milli else text


def iso_datetime_text(value: str) -> str:
    """An ODS date value (`2024-12-05`, `2024-12-05T14:30:00.123`) in the one form: a space, no midnight,
    milliseconds only when not zero."""
    day, _, clock = value.strip().partition("T")
    if not clock:
        return day
    hms, _, frac = clock.partition(".")
    milli = round(float(f"0.{frac}") * 1000) if frac else 0
    if milli == 1000:  # (rounded up to the next second: rare enough to keep the seconds as they are)
        milli = 999
    if hms in ("00:00:00", "00:00") and not milli:
        return day
    return f"{day} {hms}" + (f".{milli:03d}" if milli else "")
