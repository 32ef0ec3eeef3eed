"""Benchmark of the report writers: 50,000 failed rows (10 columns, two bad cells each) → write_reports.

Run: `.venv/bin/python benchmarks/bench_reports.py [--rows N] [--kind csv|excel] [--library xlsxwriter|openpyxl]`.
Each measurement runs in a fresh subprocess, which reports its wall time and its peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`, so it includes building the input). Targets: ≤ 30 s, ≤ 500 MB.
`--library openpyxl` times an openpyxl writer of the same corrections workbook, for comparison only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

TARGET_SECONDS = 30.0
TARGET_MB = 500.0
COLUMNS = 10


def build(rows: int, kind: str) -> tuple[object, pl.DataFrame, pl.DataFrame]:
    """A RawTable, its outcomes (every row invalid/rejected/failed) and two cell errors per row."""
    from pipeline.model import ORIGIN_ROW, ROW, RawTable

    names = [f"Column {i}" for i in range(COLUMNS)]
    idx = pl.int_range(rows, dtype=pl.Int64, eager=True).cast(pl.String)
    frame = pl.DataFrame({name: f"v{i}-" + idx for i, name in enumerate(names)}).with_columns(
        pl.Series(ROW, range(2, rows + 2), dtype=pl.Int64), pl.Series(ORIGIN_ROW, range(2, rows + 2), dtype=pl.Int64)
    )
    # Some cells a spreadsheet would evaluate, to exercise cell safety.
    risky = pl.when(pl.col(ROW) % 100 == 0).then(pl.lit("=SUM(A1:A2)")).otherwise(pl.col(names[3]))
    frame = frame.with_columns(risky.alias(names[3]))
    raw = RawTable(frame=frame, columns=names, source=Path(f"bench.{kind}"), kind=kind, delimiter=";")
    statuses = pl.Series("status", ["invalid", "rejected", "failed"] * (rows // 3 + 1))[:rows]
    rownums = frame.get_column(ROW)
    outcomes = pl.DataFrame(
        {
            ROW: rownums,
            ORIGIN_ROW: rownums,
            "status": statuses,
            "job_id": pl.Series([None] * rows, dtype=pl.Int64),
            "reference": frame.get_column(names[0]),
            "problem_status": pl.Series([None] * rows, dtype=pl.Int64),
            "problem_title": pl.Series([None] * rows, dtype=pl.String),
            "problem_detail": pl.Series([None] * rows, dtype=pl.String),
            "problem_type": pl.Series([None] * rows, dtype=pl.String),
        }
    )
    errors = pl.concat(
        [
            pl.DataFrame({"row": rownums}).with_columns(
                field=pl.lit(field, pl.String),
                column=pl.lit(column, pl.String),
                check=pl.lit(check, pl.String),
                message=pl.lit(message, pl.String),
            )
            for field, column, check, message in (
                ("contactId", names[2], "lookup", "Customer code not found in contacts.csv; check the code or add it"),
                ("plannedDuration", names[5], "duration", "Duration must look like 90, 1:30 or 1h30"),
            )
        ]
    ).sort("row", maintain_order=True)
    return raw, outcomes, errors


def child(rows: int, kind: str, library: str) -> dict[str, float | int | str]:
    """One measurement, in this (fresh) process."""
    from pipeline.model import RawTable
    from pipeline.report import RunSummary, write_reports

    raw, outcomes, errors = build(rows, kind)
    assert isinstance(raw, RawTable)
    run = RunSummary(
        run_id="bench",
        input=str(raw.source),
        mapping="bench.toml",
        sheet=None,
        encoding="utf-8",
        delimiter=";",
        dry_run=False,
        started_at="2024-01-01T00:00:00Z",
        finished_at="2024-01-01T00:00:01Z",
        duration_s=1.0,
        rows_sent=rows,
        throughput_rows_per_s=float(rows),
        retries=0,
        http_429=0,
        http_5xx=0,
        reconciled=0,
        stop_reason=None,
        exit_code=1,
        customer_id=1,
    )
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if library == "openpyxl":
            _openpyxl_corrections(Path(tmp) / "corrections.xlsx", raw, outcomes, errors)
        else:
            write_reports(Path(tmp), run, raw, outcomes, errors)
        seconds = time.perf_counter() - start
        sizes = {p.name: p.stat().st_size for p in Path(tmp).iterdir()}
    return {
        "rows": rows,
        "kind": kind,
        "library": library,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_write_mb": round(before_mb, 1),
        "files": json.dumps(sizes),
    }


def _openpyxl_corrections(path: Path, raw: object, outcomes: pl.DataFrame, errors: pl.DataFrame) -> None:
    """The same corrections workbook written with openpyxl (comparison only; not used by the tool)."""
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Font, PatternFill

    from pipeline.model import NEEDS_ATTENTION, RawTable
    from pipeline.report import corrections_frame, errors_by_row, offending_cells

    assert isinstance(raw, RawTable)
    attention = outcomes.get_column("status").is_in([s.value for s in NEEDS_ATTENTION])
    frame = corrections_frame(raw, outcomes, errors_by_row(errors), attention)
    cells = {(p, c): m for p, c, m in offending_cells(raw, frame, errors).iter_rows()}
    fill = PatternFill("solid", fgColor="FFC7CE")
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append([*raw.columns, "row", "status", "errors"])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    names = [f"c{i}" for i in range(len(raw.columns))] + ["row", "status", "errors"]
    for pos, values in enumerate(frame.select(names).iter_rows()):
        for col, value in enumerate(values):
            cell = ws.cell(row=pos + 2, column=col + 1, value=value)
            cell.data_type = "s"
            if (pos, col) in cells:
                cell.fill = fill
                cell.comment = Comment(cells[(pos, col)], "jobimport")
    ws.freeze_panes = "A2"
    wb.save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--kind", choices=["csv", "excel"], default="csv")
    parser.add_argument("--library", choices=["xlsxwriter", "openpyxl"], default="xlsxwriter")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.rows, args.kind, args.library)))
        return 0
    cmd = [sys.executable, __file__, "--child", "--rows", str(args.rows), "--kind", args.kind]
    done = subprocess.run([*cmd, "--library", args.library], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return 1
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ok = result["seconds"] <= TARGET_SECONDS and result["peak_rss_mb"] <= TARGET_MB
    print(
        f"{result['rows']:,} failed rows ({args.kind} input, {args.library}): {result['seconds']:.2f} s, "
        f"peak RSS {result['peak_rss_mb']:.0f} MB (before writing {result['rss_before_write_mb']:.0f} MB) "
        f"— targets ≤ {TARGET_SECONDS:.0f} s and ≤ {TARGET_MB:.0f} MB: {'OK' if ok else 'MISSED'}"
    )
    print(f"file sizes (bytes): {result['files']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
