"""Duration units: which unit a column's plain numbers are in (`unit = "minutes" | "hours"`, or its header).

A duration cell that carries its own unit (`90m`, `2h`, `1h30`, `1:30`) is read as written. A plain number (`90`,
`1.5`) is read in the column's unit: the mapping's `unit`, else the one its header names (`Hours`, `Hrs`,
`Duration (h)`, `Planned Minutes`, `Mins`…). With neither, a plain number is refused: `1` may be a minute or an
hour, and guessing wrong creates jobs with silently wrong durations.
"""

from __future__ import annotations

import re

UNITS = ("minutes", "hours")

_HOUR_WORDS = frozenset({"h", "hr", "hrs", "hour", "hours"})
_MINUTE_WORDS = frozenset({"m", "mn", "min", "mins", "minute", "minutes"})
_WORD = re.compile(r"[a-z]+")


def header_unit(header: str | None) -> str | None:
    """The unit a header names ("hours", "minutes"), or None when it names none or both (`hh:mm`, `Time`)."""
    if not header:
        return None
    found = set(_WORD.findall(header.lower()))
    hours, minutes = bool(found & _HOUR_WORDS), bool(found & _MINUTE_WORDS)
    if hours == minutes:
        return None
    return "hours" if hours else "minutes"
