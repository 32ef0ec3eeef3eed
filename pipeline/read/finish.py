"""What both readers share: `finish_table`, the common end of a read, and the helpers the readers call.

`finish_table` applies the rules common to CSV and workbooks: header checks (blank, duplicate, reserved names),
blank and whitespace-only cells → null, fully blank rows dropped, corrections-file round trip (REPORT_COLUMNS),
and "headers but no data rows". Every problem is an InputFileError with a one-line message. (Apart from
`read_table` so that the readers and the dispatcher do not import each other.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipeline.errors import InputFileError, NoDataRows
from pipeline.model import ORIGIN_ROW, REPORT_COLUMNS, ROW, CellError, RawTable


def column_letter(index: int) -> str:
    """Spreadsheet column letters of a 0-based column index: 0 → A, 25 → Z, 26 → AA."""
    letters = ""
    n = index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def blank_candidates(columns: list[str], lows: Sequence[str | None], highs: Sequence[str | None]) -> list[str]:
    """The columns that can hold a blank (whitespace-only or empty) text, from each one's smallest and largest
    text: such a cell starts with a character ≤ ' ' or a non-ASCII space, so a column whose smallest value starts
    above ' ' and whose largest value is pure ASCII cannot hold one."""
    return [
        c
        for c, lo, hi in zip(columns, lows, highs, strict=True)
        if lo is not None and hi is not None and (lo == "" or lo[0] <= " " or hi[0] >= "\x80")
    ]


def blank_to_null(frame: pl.DataFrame, columns: list[str], maybe_blank: list[str] | None = None) -> pl.DataFrame:
    """Blank and whitespace-only cells of `columns` → null; other text is kept exactly as it is.

    Only the columns that can hold such a cell are rewritten: `maybe_blank` when the reader knows them (the CSV
    scan does), else `blank_candidates` from each column's smallest and largest text.
    """
    if frame.height == 0 or not columns:
        return frame
    if maybe_blank is None:
        ends = frame.select(
            pl.col(columns).min().name.suffix("\x00lo"), pl.col(columns).max().name.suffix("\x00hi")
        ).row(0)
        maybe_blank = blank_candidates(columns, ends[: len(columns)], ends[len(columns) :])
    wanted = set(maybe_blank)
    suspect = [c for c in columns if c in wanted]
    if not suspect:
        return frame
    return frame.with_columns(
        pl.when(pl.col(c).str.strip_chars().str.len_bytes() == 0).then(None).otherwise(pl.col(c)).alias(c)
        for c in suspect
    )


def finish_table(
    *,
    body: pl.DataFrame,
    headers: list[str | None],
    rows: pl.Series,
    where: str,
    column_labels: list[str],
    source: Path,
    kind: str,
    sheet: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    cell_errors: list[CellError] | None = None,
    keep_rows: set[int] | None = None,
    maybe_blank: list[str] | None = None,
    trimmed: list[str] | None = None,
    unrendered: dict[int, str] | None = None,
    header_at: int | None = None,
) -> RawTable:
    """Common end of both readers: header checks, blanks → null, blank rows dropped, corrections round trip.

    `body` holds the data rows as positional pl.String columns (one per entry of `headers`); `rows` their
    visible row numbers; `where` names the file (and sheet) in messages; `column_labels[i]` names column i for a
    person ("column C" in a workbook, "column 3" in a CSV). Rows numbered in `keep_rows` are kept even when
    blank (e.g. their only cell is an Excel error value). `maybe_blank`: the columns of `body` that can hold a
    blank but non-null cell, when the reader knows (see blank_to_null); `trimmed`: the columns of `body` known to
    hold no cell with leading or trailing whitespace (RawTable.trimmed); `unrendered`: positions of the columns of
    `body` holding numbers whose number format was not reproduced, with the format (RawTable.unrendered);
    `header_at`: the row the headers were read from (named in messages about them).
    """
    positional = body.columns
    trimmed_positional = set(trimmed or ())
    body = blank_to_null(body, positional, maybe_blank)
    names = [None if h is None or not h.strip() else h.strip() for h in headers]

    # Blank headers: a column without a header but without any data either is harmless and dropped.
    keep: list[int] = []
    blank_with_data: list[str] = []
    for i, name in enumerate(names):
        if name is None:
            if body.height and body.get_column(positional[i]).null_count() < body.height:
                blank_with_data.append(column_labels[i])
            continue
        keep.append(i)
    if blank_with_data:
        listed = ", ".join(blank_with_data[:10])
        if header_at is None:
            raise InputFileError(
                f"{where}: {_count(len(blank_with_data), 'column')} with data but no header ({listed}); "
                "type a header in the header row"
            )
        # a title above the table (one cell named, the rest blank) rather than one missing header: look lower
        lower = _header_candidate(body, rows) if len(blank_with_data) >= len(keep) else None
        hint = (
            f"the headers seem to be lower down: row {lower} is the first with a value in every column; give "
            f"--header-row {lower} (or header_row = {lower} in the mapping's [source]), or type the missing headers"
            if lower is not None
            else "type the missing headers, or give the right header row (--header-row or the mapping's [source])"
        )
        raise InputFileError(
            f"{where}: row {header_at} was read as the header row, but {_count(len(blank_with_data), 'column')} "
            f"with data {'has' if len(blank_with_data) == 1 else 'have'} no header there ({listed}); {hint}"
        )
    kept_names = [names[i] for i in keep]
    if not kept_names:
        raise InputFileError(
            f"{where}: the header row is blank; give the right header row (--header-row or the mapping's [source])"
        )

    seen: dict[str, list[int]] = {}
    for i in keep:
        seen.setdefault(str(names[i]), []).append(i)
    dups = [(n, idx) for n, idx in seen.items() if len(idx) > 1]
    if dups:
        parts = "; ".join(f"'{n}' in {' and '.join(column_labels[i] for i in idx)}" for n, idx in dups[:5])
        raise InputFileError(f"{where}: duplicate headers: {parts}; give every column a different header")
    for reserved in (ROW, ORIGIN_ROW):
        if reserved in seen:
            label = column_labels[seen[reserved][0]]
            raise InputFileError(f"{where}: header '{reserved}' ({label}) is reserved by jobimport; rename that column")

    frame = body.select(pl.col(positional[i]).alias(str(names[i])) for i in keep)
    frame = frame.with_columns(rows.cast(pl.Int64).alias(ROW))
    data_cols = [str(n) for n in kept_names]
    not_blank = ~pl.all_horizontal(pl.col(c).is_null() for c in data_cols)
    if keep_rows:
        not_blank = not_blank | pl.col(ROW).is_in(sorted(keep_rows))
    # (a blank row has a null in every column: none when some column has none, and null counts are known)
    if frame.height and all(frame.get_column(c).null_count() for c in data_cols):
        keep_mask = frame.select(not_blank.alias("keep")).get_column("keep")
        if not keep_mask.all():  # filtering copies every column: only when there is a blank row to drop
            frame = frame.filter(keep_mask)
    if frame.height == 0:
        raise NoDataRows(
            f"{where}: has headers but no data rows; check the file, the sheet and header_row", columns=data_cols
        )

    columns = data_cols
    # Our corrections files end with row, status, errors; an analyst may have deleted status and errors (the
    # `row` column alone keeps each row's link to the original file).
    extra = next(
        (
            tail
            for tail in (REPORT_COLUMNS, REPORT_COLUMNS[:2], (REPORT_COLUMNS[0], REPORT_COLUMNS[2]), REPORT_COLUMNS[:1])
            if len(columns) > len(tail) and tuple(columns[-len(tail) :]) == tail
        ),
        (),
    )
    is_corrections = bool(extra)
    if is_corrections:
        columns = columns[: -len(extra)]
        origin_text = frame.get_column(REPORT_COLUMNS[0]).str.strip_chars().str.strip_prefix("'")
        origin = origin_text.cast(pl.Int64, strict=False)
        bad = frame.filter(origin.is_null() | (origin < 1)).get_column(ROW)
        if bad.len():
            listed = ", ".join(str(r) for r in bad.head(5).to_list())
            more = f" and {bad.len() - 5} more" if bad.len() > 5 else ""
            raise InputFileError(
                f"{where}: corrections file has a blank or invalid 'row' value in row {listed}{more}; "
                "put back the original row number (a whole number) or delete the 'row', 'status' and 'errors' columns"
            )
        frame = frame.with_columns(origin.alias(ORIGIN_ROW)).drop(list(extra))
    else:
        frame = frame.hstack([frame.get_column(ROW).alias(ORIGIN_ROW)])
    frame = frame.select([*columns, ROW, ORIGIN_ROW])
    shown_as = {str(names[i]): code for i, code in sorted((unrendered or {}).items()) if names[i] in columns}
    warnings = []
    if shown_as:
        listed = ", ".join(f"'{name}' ({code})" for name, code in list(shown_as.items())[:5])
        more = f" and {len(shown_as) - 5} more" if len(shown_as) > 5 else ""
        warnings.append(
            f"{where}: number formats not reproduced in column {listed}{more}: those cells are read as the plain "
            "number (e.g. 0.25 for 25%); check the values, or format the cells as text in Excel"
        )
    return RawTable(
        frame=frame,
        columns=columns,
        source=source,
        kind=kind,
        sheet=sheet,
        encoding=encoding,
        delimiter=delimiter,
        is_corrections=is_corrections,
        cell_errors=list(cell_errors or []),
        trimmed=frozenset(str(names[i]) for i in keep if positional[i] in trimmed_positional),
        unrendered=shown_as,
        warnings=warnings,
    )


def _header_candidate(body: pl.DataFrame, rows: pl.Series, look: int = 200) -> int | None:
    """The row number of the first of the next `look` rows that looks like a header row: a value in every column
    that has data, none of them a number, all different."""
    head = body.head(look)
    filled = [c for c in head.columns if head.get_column(c).null_count() < head.height]
    if not filled:
        return None
    full = head.select(pl.all_horizontal(pl.col(c).is_not_null() for c in filled).alias("f")).get_column("f")
    for i in full.arg_true().to_list():
        values = [str(head.item(i, c)).strip() for c in filled]
        if len(set(values)) == len(values) and not any(_looks_numeric(v) for v in values):
            return int(rows[i])
    return None


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
