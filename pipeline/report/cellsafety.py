"""Cell safety for every CSV and workbook we write: formula neutralisation, visible control characters, cutting.

Rules (applied to every cell, header cells included, in this order):

1. **Control characters are made visible.** C0 controls other than tab, line feed and carriage return, DEL,
   the C1 controls U+0080–U+009F and the non-characters U+FFFE/U+FFFF are replaced by the text ``[U+XXXX]``
   (four upper-case hex digits), e.g. a BEL becomes ``[U+0007]``. They are invisible in a spreadsheet, are
   refused by openpyxl and are almost always damage (a file decoded with the wrong encoding); the marker makes
   them visible so that a person can fix them. Tab, LF and CR are kept: both CSV (quoted) and xlsx hold them.
2. **Overlong values are cut** so that the cell, including any apostrophe added by rule 3, holds at most
   32,767 UTF-16 units (Excel's limit, as xlsxwriter counts it). The end is replaced by a visible marker
   ``…[cut: N more characters]``, N counted in characters of the (escaped) value.
3. **Formula neutralisation.** Text starting with ``=``, ``+``, ``-``, ``@``, tab or CR would be evaluated by a
   spreadsheet program. In CSV a leading ``'`` is added (OWASP), except for plain negative decimals such as
   ``-12`` or ``-3.5``, which are numbers, not formulas. In xlsx nothing is added: the writers store such
   values as string-typed cells, which Excel never evaluates, so they read back unchanged.

`restore_csv_cell` undoes rule 3 exactly: for every text ``t``, ``restore_csv_cell(neutralise_csv(t)) == t``.
To make that hold for values that already start with apostrophes (``'=x``), neutralisation looks past leading
apostrophes: ``'=x`` is written ``''=x``. A leading ``'`` is removed only when what follows would itself have
been neutralised, so a user's ``'abc`` or ``'-12`` is left alone.
"""

from __future__ import annotations

import re

import polars as pl

#: Most UTF-16 units a cell (or a comment) can hold in Excel.
CELL_LIMIT = 32_767
#: Characters that make a spreadsheet program evaluate a cell when they come first.
RISKY_FIRST = ("=", "+", "-", "@", "\t", "\r")

_CONTROL_CODES: tuple[int, ...] = (
    *(c for c in range(0x00, 0x20) if c not in (0x09, 0x0A, 0x0D)),
    0x7F,
    *range(0x80, 0xA0),
    0xFFFE,
    0xFFFF,
)
_CONTROL_CHARS = [chr(c) for c in _CONTROL_CODES]
_CONTROL_MARKS = [f"[U+{c:04X}]" for c in _CONTROL_CODES]
_CONTROL_TABLE = {c: f"[U+{c:04X}]" for c in _CONTROL_CODES}
_CONTROL_RE = re.compile("[" + "".join(re.escape(ch) for ch in _CONTROL_CHARS) + "]")

#: Regex (Rust and Python syntax) of a value a spreadsheet would evaluate, looking past leading apostrophes.
_RISKY_RE_TEXT = r"^'*[=+\-@\t\r]"
#: A plain negative decimal: left alone because it is data, not a formula.
_PLAIN_NEGATIVE_RE_TEXT = r"^-(?:[0-9]+\.?[0-9]*|\.[0-9]+)$"
_RISKY_RE = re.compile(_RISKY_RE_TEXT)
_PLAIN_NEGATIVE_RE = re.compile(_PLAIN_NEGATIVE_RE_TEXT)


def cut_marker(removed: int) -> str:
    """The visible text that ends a cut value: ``…[cut: N more characters]``."""
    return f"…[cut: {removed} more characters]"


def utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 units, the unit of Excel's cell limit."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def escape_controls(text: str) -> str:
    """`text` with every control character replaced by a visible ``[U+XXXX]`` marker (rule 1)."""
    if _CONTROL_RE.search(text) is None:
        return text
    return text.translate(_CONTROL_TABLE)


def needs_neutralising(text: str) -> bool:
    """True when a spreadsheet opening `text` from a CSV would evaluate it (rule 3)."""
    return _RISKY_RE.match(text) is not None and _PLAIN_NEGATIVE_RE.match(text) is None


def cut(text: str, limit: int = CELL_LIMIT) -> str:
    """`text` unchanged when it fits in `limit` UTF-16 units, else its start plus a visible cut marker."""
    if len(text) <= limit // 2 or utf16_len(text) <= limit:
        return text
    keep = limit - len(cut_marker(len(text)))  # the marker is ASCII apart from "…" (one UTF-16 unit)
    while keep > 0:
        head = text[:keep]
        if utf16_len(head) + len(cut_marker(len(text) - keep)) <= limit:
            return head + cut_marker(len(text) - keep)
        keep -= max(1, utf16_len(head) + len(cut_marker(len(text) - keep)) - limit)
    return cut_marker(len(text))


def neutralise_csv(text: str) -> str:
    """Rule 3 for CSV only: a leading ``'`` when a spreadsheet would evaluate `text` (no escaping, no cutting)."""
    return "'" + text if needs_neutralising(text) else text


def restore_csv_cell(text: str) -> str:
    """Undo `neutralise_csv`: drop a leading ``'`` only when the rest would have been neutralised."""
    if text.startswith("'") and needs_neutralising(text[1:]):
        return text[1:]
    return text


def safe_xlsx_text(text: str) -> str:
    """A value ready for a string-typed xlsx cell or comment: controls made visible, cut to the cell limit."""
    return cut(escape_controls(text))


def safe_csv_text(text: str) -> str:
    """A value ready for a CSV cell that a spreadsheet may open: controls visible, cut, then neutralised."""
    escaped = escape_controls(text)
    risky = needs_neutralising(escaped)
    escaped = cut(escaped, CELL_LIMIT - 1 if risky else CELL_LIMIT)
    return "'" + escaped if risky else escaped


def safe_frame(frame: pl.DataFrame, *, csv: bool) -> pl.DataFrame:
    """Every column of `frame` as text made safe, vectorised (same result as `safe_csv_text`/`safe_xlsx_text`).

    Nulls stay null. Non-string columns are cast to text first. Cutting, which is rare, runs in Python on the
    few cells that need it only.
    """
    out: list[pl.Series] = []
    for name in frame.columns:
        col = frame.get_column(name)
        if col.dtype != pl.String:
            col = col.cast(pl.String)
        col = col.str.replace_many(_CONTROL_CHARS, _CONTROL_MARKS)
        risky = (
            col.str.contains(_RISKY_RE_TEXT) & ~col.str.contains(_PLAIN_NEGATIVE_RE_TEXT)
            if csv
            else pl.Series(name, [False] * len(col), dtype=pl.Boolean)
        ).fill_null(False)
        limit = CELL_LIMIT - risky.cast(pl.Int32)
        # A value whose UTF-16 length cannot exceed the limit needs no closer look (UTF-8 bytes ≥ UTF-16 units/2).
        long_idx = (col.str.len_bytes() > limit).fill_null(False).arg_true()
        if len(long_idx):
            values = col.gather(long_idx).to_list()
            limits = limit.gather(long_idx).to_list()
            col = col.scatter(long_idx, [cut(v, lim) for v, lim in zip(values, limits, strict=True)])
        if csv:
            col = pl.select(pl.when(risky).then(pl.lit("'") + col).otherwise(col).alias(name)).to_series()
        out.append(col.alias(name))
    return pl.DataFrame(out, schema=dict.fromkeys(frame.columns, pl.String)) if out else frame.clear()
