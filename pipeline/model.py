"""Shared vocabulary of the stages: row-number column, API field names, outcome statuses, cell errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import polars as pl

#: Name of the column holding the row number a person sees in the spreadsheet (1-based, header included).
ROW = "__row__"
#: Name of the column holding the row of the original import file a record came from (see RawTable).
ORIGIN_ROW = "__origin_row__"

#: Fields of POST /v1/jobs that a mapping can fill (customFields come from [custom_fields]).
API_FIELDS: tuple[str, ...] = (
    "typeId",
    "contactId",
    "plannedDuration",
    "reference",
    "description",
    "personId",
    "orderNumber",
)
REQUIRED_FIELDS: tuple[str, ...] = ("typeId", "contactId")
INT_FIELDS: tuple[str, ...] = ("typeId", "contactId", "plannedDuration")

#: Prefix of a custom-field column in the job frame: f"{CUSTOM_PREFIX}{definition_id}".
CUSTOM_PREFIX = "cf:"

#: Columns our reports add to a corrections file; a reader of that file ignores them (round trip).
REPORT_COLUMNS: tuple[str, ...] = ("row", "status", "errors")


class Status(StrEnum):
    """One outcome per source row (DESIGN.md, "Outcome statuses")."""

    CREATED = "created"
    ALREADY_CREATED = "already_created"
    INVALID = "invalid"
    REJECTED = "rejected"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    PENDING = "pending"
    VALID = "valid"


#: Statuses that need a human or a rerun; these rows go to corrections files.
NEEDS_ATTENTION = frozenset({Status.INVALID, Status.REJECTED, Status.FAILED, Status.UNCERTAIN, Status.PENDING})
#: Statuses that make a run successful (exit 0) when every row has one of them.
SUCCESS = frozenset({Status.CREATED, Status.ALREADY_CREATED})


@dataclass(frozen=True, slots=True)
class CellError:
    """A problem with one cell (or one row, when `column` is None) of the source file."""

    row: int  # spreadsheet row number (ROW)
    field: str | None  # API field ("contactId", "cf:432632") or None for row-level problems
    column: str | None  # source column header, or None when no column fed it
    check: str  # short machine name: "required", "integer", "lookup", "max_length", "api", ...
    message: str  # readable sentence: what is wrong and what to do


#: Polars schema of every table of cell errors (mapping conversion errors, validation failures, API errors).
ERROR_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "field": pl.String(),
    "column": pl.String(),
    "check": pl.String(),
    "message": pl.String(),
}


def errors_frame(errors: list[CellError] | None = None) -> pl.DataFrame:
    """A polars DataFrame of `errors` (possibly empty) with ERROR_SCHEMA."""
    items = errors or []
    return pl.DataFrame(
        {
            "row": [e.row for e in items],
            "field": [e.field for e in items],
            "column": [e.column for e in items],
            "check": [e.check for e in items],
            "message": [e.message for e in items],
        },
        schema=ERROR_SCHEMA,
    )


@dataclass
class RawTable:
    """What `read` gives: the source rows as text, with the row numbers a person sees.

    `frame` has one pl.String column per header, in the file's order (cells as text; blank cells null), plus
    ROW (pl.Int64): the spreadsheet row number of that record, and ORIGIN_ROW (pl.Int64): the row of the
    *original* import file this record came from (equal to ROW, except when reading back one of our
    corrections files, whose `row` column carries it). Fully blank rows are not in `frame`.
    """

    frame: pl.DataFrame
    columns: list[str]  # source headers in file order (without ROW/ORIGIN_ROW and without REPORT_COLUMNS)
    source: Path
    kind: str  # "csv" or "excel"
    sheet: str | None = None  # Excel: the sheet read
    encoding: str | None = None  # CSV: the encoding used ("utf-8", "utf-8-sig", "utf-16", "cp1252"...)
    delimiter: str | None = None  # CSV: the delimiter used
    is_corrections: bool = False  # True when the file is one of our corrections files (REPORT_COLUMNS found)
    cell_errors: list[CellError] = field(default_factory=list)  # e.g. Excel error cells (#N/A) → check "error_cell"
    # columns known to hold no cell with leading or trailing whitespace (trimming them would change nothing)
    trimmed: frozenset[str] = frozenset()
    # columns holding numbers shown through a number format the reader does not reproduce (column → format code):
    # their cells hold the number itself (e.g. `0.25` for a cell shown as `25%`)
    unrendered: dict[str, str] = field(default_factory=dict)
    # things a person should know about the read that are not errors (one line each, without the file name)
    warnings: list[str] = field(default_factory=list)
