"""The report stage's file writers: from one run's outcomes and source rows, write the files users open.

`write_reports` (the stage's entry point) writes, in the run's report directory: `results.csv` (one line per
source row), `corrections.xlsx` and, for CSV input, `corrections.csv` (only the rows that need attention, ready to
fix and import again; when they are more than a worksheet holds, corrections.csv only, with a note in the
summaries), `summary.json` (machine-readable) and `summary.html` (one self-contained page). Every cell of every CSV
and workbook goes through `pipeline.report.cellsafety`. Each file is written to a temporary name and renamed into
place, so a file that exists is complete. What the summaries say is computed by pipeline/report/summary.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO

import polars as pl

from pipeline.errors import JobImportError
from pipeline.model import NEEDS_ATTENTION, ORIGIN_ROW, REPORT_COLUMNS, ROW, RawTable, Status
from pipeline.report.cellsafety import safe_csv_text, safe_frame
from pipeline.report.summary import ReportPaths, RunSummary, summary_document, summary_stats

RESULTS_CSV = "results.csv"
CORRECTIONS_XLSX = "corrections.xlsx"
CORRECTIONS_CSV = "corrections.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_HTML = "summary.html"

#: What every row's outcome says (columns of both `outcomes` and results.csv).
_OUTCOME_FIELDS: tuple[str, ...] = (
    "status",
    "job_id",
    "reference",
    "problem_status",
    "problem_title",
    "problem_detail",
    "problem_type",
    "note",  # how the outcome was reached where that is worth saying, e.g. "found in BigChange"
)
#: Columns of results.csv before the original columns (`file_row` only when the input was a corrections file).
RESULT_COLUMNS: tuple[str, ...] = ("row", "file_row", *_OUTCOME_FIELDS, "errors")
#: Columns `outcomes` must have.
OUTCOME_COLUMNS: tuple[str, ...] = (ROW, ORIGIN_ROW, *_OUTCOME_FIELDS)
#: Data rows a worksheet holds below its header (Excel's limit is 1,048,576 rows).
XLSX_MAX_DATA_ROWS = 1_048_575


class ReportWriteError(JobImportError):
    """A report file could not be written (disk full, no permission...). The ledger still holds every outcome."""


# --- public entry point -------------------------------------------------------------------------------------


def write_reports(
    report_dir: Path,
    run: RunSummary,
    raw: RawTable,
    outcomes: pl.DataFrame,
    errors: pl.DataFrame,
    previous: pl.DataFrame | None = None,
    mapping_sheet: str | None = None,
) -> ReportPaths:
    """Write every report file of one run into `report_dir` (created if missing) and return their paths.

    corrections.xlsx's sheet is the input's sheet, else the sheet the mapping names (a CSV imported with a
    workbook's mapping), else "Corrections": the corrected workbook imports again with the same mapping."""
    from pipeline.report.html import render_summary_html
    from pipeline.report.workbook import write_corrections_xlsx

    _check_inputs(raw, outcomes)
    outcomes = outcomes.with_columns(pl.col("status").cast(pl.String))
    report_dir = Path(report_dir)
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportWriteError(f"Cannot create the report folder {report_dir}: {exc.strerror or exc}.") from exc

    errors_text = errors_by_row(errors)
    attention = outcomes.get_column("status").is_in([s.value for s in NEEDS_ATTENTION])
    any_attention = bool(attention.any())

    results = report_dir / RESULTS_CSV
    _atomic(results, lambda fh: write_results_csv(fh, raw, outcomes, errors_text))

    corrections = corrections_frame(raw, outcomes, errors_text, attention) if any_attention else None
    xlsx_path: Path | None = None
    csv_path: Path | None = None
    notes: list[str] = []
    if corrections is not None:
        fits = corrections.height <= XLSX_MAX_DATA_ROWS
        if fits:
            xlsx_path = report_dir / CORRECTIONS_XLSX
            cells = offending_cells(raw, corrections, errors)
            sheet = raw.sheet if raw.kind == "excel" and raw.sheet else mapping_sheet or "Corrections"
            _atomic(
                xlsx_path,
                lambda fh: write_corrections_xlsx(
                    fh, corrections, raw.columns, cells, sheet, run.header_row, None if run.dry_run else run.run_id
                ),
            )
        else:
            notes.append(
                f"{corrections.height:,} rows need attention, more than a worksheet holds "
                f"({XLSX_MAX_DATA_ROWS:,}): they are in corrections.csv only."
            )
        if raw.kind == "csv" or not fits:
            csv_path = report_dir / CORRECTIONS_CSV
            delimiter = (raw.delimiter or ",") if raw.kind == "csv" else ","
            _atomic(csv_path, lambda fh: write_corrections_csv(fh, corrections, raw.columns, delimiter, run.header_row))
    if notes:
        run = replace(run, notes=[*run.notes, *notes])

    paths = ReportPaths(
        results_csv=results,
        corrections_xlsx=xlsx_path,
        corrections_csv=csv_path,
        summary_json=report_dir / SUMMARY_JSON,
        summary_html=report_dir / SUMMARY_HTML,
    )
    stats = summary_stats(raw, outcomes, errors, previous)
    document = summary_document(run, stats, paths)
    _atomic(paths.summary_json, lambda fh: fh.write(json.dumps(document, indent=2, ensure_ascii=False).encode()))
    page = render_summary_html(run, stats, paths)
    _atomic(paths.summary_html, lambda fh: fh.write(page.encode("utf-8")))
    return paths


# --- building blocks (public for the tests and for other stages) ----------------------------------------------


def errors_by_row(errors: pl.DataFrame) -> pl.DataFrame:
    """One line per ROW with errors: ``row`` and ``errors`` = ``Column: message; Column: message`` (row-level ones
    as ``message``), in the order found, each distinct (column, message) once."""
    if errors.height == 0:
        return pl.DataFrame(schema={"row": pl.Int64, "errors": pl.String})
    message = pl.coalesce(pl.col("message"), pl.col("check"), pl.lit("error"))
    return (
        errors.select(pl.col("row").cast(pl.Int64), "column", message.alias("message"))
        .unique(maintain_order=True)
        .select(
            "row",
            pl.when(pl.col("column").is_null())
            .then(pl.col("message"))
            .otherwise(pl.col("column") + pl.lit(": ") + pl.col("message"))
            .alias("text"),
        )
        .group_by("row", maintain_order=True)
        .agg(pl.col("text").str.join("; ").alias("errors"))
    )


def write_results_csv(fh: IO[bytes], raw: RawTable, outcomes: pl.DataFrame, errors_text: pl.DataFrame) -> None:
    """results.csv: one line per source row, in source order, our columns then the original ones, UTF-8 BOM."""
    ours = outcomes.join(errors_text, left_on=ROW, right_on="row", how="left", maintain_order="left")
    selected = [pl.col(ORIGIN_ROW).alias("row")]
    if raw.is_corrections:
        selected.append(pl.col(ROW).alias("file_row"))
    selected += [pl.col(c) for c in RESULT_COLUMNS[2:]]
    ours = ours.select(selected)
    header = list(ours.columns) + list(raw.columns)
    body = pl.concat([_numbered(ours), _numbered(raw.frame.select(raw.columns), start=ours.width)], how="horizontal")
    _write_csv(fh, header, safe_frame(body, csv=True), ",")


def corrections_frame(
    raw: RawTable, outcomes: pl.DataFrame, errors_text: pl.DataFrame, attention: pl.Series
) -> pl.DataFrame:
    """The rows that need attention: the original columns (text, original order, renamed ``c0``, ``c1``...) then
    ``row`` (ORIGIN_ROW), ``status``, ``errors``, plus ROW to find the offending cells (not written)."""
    ours = outcomes.join(errors_text, left_on=ROW, right_on="row", how="left", maintain_order="left")
    originals = raw.frame.select([pl.col(c).cast(pl.String).alias(f"c{i}") for i, c in enumerate(raw.columns)])
    frame = pl.concat(
        [
            originals,
            ours.select(
                pl.col(ORIGIN_ROW).cast(pl.String).alias(REPORT_COLUMNS[0]),
                pl.col("status").cast(pl.String).alias(REPORT_COLUMNS[1]),
                pl.col("errors").alias(REPORT_COLUMNS[2]),
                pl.col(ROW).alias(ROW),
            ),
        ],
        how="horizontal",
    )
    return frame.filter(attention)


def offending_cells(raw: RawTable, corrections: pl.DataFrame, errors: pl.DataFrame) -> pl.DataFrame:
    """The cells of `corrections` to highlight: ``pos`` (0-based data row), ``col`` (0-based column) and ``comment``
    (its distinct messages, one per line), sorted by position. Errors without a known source column are left out
    (they are in the ``errors`` column)."""
    schema = {"pos": pl.Int64, "col": pl.Int64, "comment": pl.String}
    if errors.height == 0 or corrections.height == 0:
        return pl.DataFrame(schema=schema)
    positions = corrections.select(pl.col(ROW).alias("row"), pl.int_range(pl.len(), dtype=pl.Int64).alias("pos"))
    columns = pl.DataFrame(
        {"column": list(raw.columns), "col": list(range(len(raw.columns)))},
        schema={"column": pl.String, "col": pl.Int64},
    ).unique("column", keep="first", maintain_order=True)
    message = pl.coalesce(pl.col("message"), pl.col("check"), pl.lit("error"))
    return (
        errors.filter(pl.col("column").is_not_null())
        .select(pl.col("row").cast(pl.Int64), "column", message.alias("message"))
        .unique(maintain_order=True)
        .join(positions, on="row", how="inner", maintain_order="left")
        .join(columns, on="column", how="inner", maintain_order="left")
        .group_by("pos", "col", maintain_order=True)
        .agg(pl.col("message").str.join("\n").alias("comment"))
        .sort("pos", "col")
        .select(schema.keys())
    )


def write_corrections_csv(
    fh: IO[bytes], corrections: pl.DataFrame, columns: list[str], delimiter: str, header_row: int = 1
) -> None:
    """corrections.csv: the original columns then REPORT_COLUMNS, in the input's delimiter, UTF-8 with BOM, the
    headers on `header_row` (blank lines above) so the same mapping reads it back."""
    header = [*columns, *REPORT_COLUMNS]
    body = corrections.select([f"c{i}" for i in range(len(columns))] + list(REPORT_COLUMNS))
    _write_csv(fh, header, safe_frame(_numbered(body), csv=True), delimiter, blank_lines=max(1, header_row) - 1)


# --- helpers --------------------------------------------------------------------------------------------------


def _check_inputs(raw: RawTable, outcomes: pl.DataFrame) -> None:
    """Refuse outcomes that do not match the source rows one to one (a bug upstream, never the user's fault)."""
    missing = [c for c in OUTCOME_COLUMNS if c not in outcomes.columns]
    if missing:
        raise ValueError(f"outcomes lack the columns {missing}")
    if outcomes.height != raw.frame.height:
        raise ValueError(f"outcomes have {outcomes.height} rows, the source has {raw.frame.height}")
    if not outcomes.get_column(ROW).cast(pl.Int64).equals(raw.frame.get_column(ROW).cast(pl.Int64), check_names=False):
        raise ValueError("outcomes are not in source order (their row numbers differ from the source's)")
    known = [s.value for s in Status]
    bad = outcomes.filter(~pl.col("status").cast(pl.String).is_in(known) | pl.col("status").is_null())
    if bad.height:
        raise ValueError(f"unknown status {bad.get_column('status')[0]!r} in outcomes (row {bad.get_column(ROW)[0]})")


def _numbered(frame: pl.DataFrame, start: int = 0) -> pl.DataFrame:
    """`frame` with columns renamed ``_0``, ``_1``... so that duplicate headers can sit side by side."""
    return frame.rename({c: f"_{start + i}" for i, c in enumerate(frame.columns)})


def _write_csv(fh: IO[bytes], header: list[str], body: pl.DataFrame, delimiter: str, blank_lines: int = 0) -> None:
    """BOM, `blank_lines` empty lines, the header (safe, quoted like polars does) and the body (already safe)."""
    line = io.StringIO()
    csv.writer(line, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerow(
        [safe_csv_text(h) for h in header]
    )
    fh.write(b"\xef\xbb\xbf" + b"\n" * blank_lines + line.getvalue().encode("utf-8"))
    body.write_csv(fh, include_header=False, separator=delimiter, quote_style="necessary")


def _atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write `path` through a temporary file renamed into place; a failure leaves no partial file."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportWriteError(f"Cannot write the report file {path}: {exc.strerror or exc}.") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
