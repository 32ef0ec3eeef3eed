"""Dry-run benchmark: read → map → validate → plan on a 1,000,000-row CSV and a 100,000-row workbook.

Usage: .venv/bin/python benchmarks/bench_dry_run.py [--rows 1000000] [--xlsx-rows 100000] [--profile]

Generates the inputs in a temporary folder, then runs each measurement in its own subprocess (so that its peak
RSS, from os.wait4's ru_maxrss, is its own): plain `pl.read_csv(path, infer_schema=False)`, plain
`pl.read_excel(path)`, and our pipeline on each. Prints seconds, peak MB and the ratios against the targets
(≤ 4× the plain CSV read, ≤ 1.5× the plain Excel read, ≤ 1.5 GB peak for 1M rows). `--profile` adds a cProfile
of our pipeline on the CSV (top 25 by cumulative time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADERS = [
    "Job No",
    "Job Type",
    "Customer Code",
    "Duration",
    "Contact Person",
    "Notes",
    "PO Number",
    "Access Code",
    "Gate Code",
    "Legacy Ref",
]

MAPPING = """
[fields.typeId]
column = "Job Type"
lookup = "job_types"
[fields.contactId]
column = "Customer Code"
lookup = "customers"
[fields.plannedDuration]
column = "Duration"
parse = "duration"
[fields.reference]
column = "Legacy Ref"
template = "LEG-{Job No}"
[fields.description]
column = "Notes"
[fields.personId]
column = "Contact Person"
[fields.orderNumber]
column = "PO Number"
[custom_fields]
"Access Code" = 432632
"Gate Code" = 432633
[lookups.job_types]
file = "job_types.csv"
[lookups.customers]
file = "customers.csv"
"""

MAPPING_XLSX = """
[fields.typeId]
column = "Job Type"
[fields.contactId]
column = "Customer Code"
[fields.plannedDuration]
column = "Duration"
parse = "integer"
[fields.reference]
column = "Legacy Ref"
template = "LEG-{Job No}"
[fields.description]
column = "Notes"
[fields.personId]
column = "Contact Person"
[fields.orderNumber]
column = "PO Number"
[custom_fields]
"Access Code" = 432632
"Gate Code" = 432633
"""


def make_frame(n: int) -> pl.DataFrame:
    """n rows of realistic text: a few percent of rows carry a mistake, ~25% have no legacy reference."""
    i = pl.col("i")
    durations = ["90", "1:30", "1h30", "2 hours", "45 min", "1.5h", "60", "75", "120", "30", "2h"] * 9 + ["12.5"]
    notes = ["Annual service, café kitchen; €85 agreed", 'Leak "urgent"\nring twice', None, "x" * 600]
    return pl.DataFrame({"i": pl.int_range(0, n, eager=True)}).select(
        ("J" + (i + 100000).cast(pl.String)).alias("Job No"),
        pl.lit(pl.Series(["BSV", "ERP", "AIN", "INS", "bsv "])).gather(i % 5).alias("Job Type"),
        ("00" + (101 + i % 20).cast(pl.String)).alias("Customer Code"),
        pl.lit(pl.Series(durations)).gather(i % len(durations)).alias("Duration"),
        ((i % 97).cast(pl.String).str.zfill(8) + "-fc5d-5d21-9f4a-5ba330146a90").alias("Contact Person"),
        pl.lit(pl.Series(notes)).gather(pl.when(i % 1001 == 1000).then(3).otherwise(i % 3)).alias("Notes"),
        pl.when(i % 3 == 0).then("PO-" + i.cast(pl.String)).alias("PO Number"),
        ((1000 + i % 9000).cast(pl.String) + "#").alias("Access Code"),
        pl.when(i % 2 == 0).then("G" + (i % 90).cast(pl.String)).alias("Gate Code"),
        pl.when(i % 4 != 3).then("WO-" + i.cast(pl.String)).alias("Legacy Ref"),
    )


def generate(folder: Path, rows: int, xlsx_rows: int) -> dict[str, Path]:
    import xlsxwriter

    (folder / "job_types.csv").write_text("code,id\nBSV,101\nERP,102\nAIN,103\nINS,104\n", encoding="utf-8")
    (folder / "customers.csv").write_text(
        "code,id\n" + "".join(f"00{101 + k},{5001 + k}\n" for k in range(20)), encoding="utf-8"
    )
    (folder / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    (folder / "mapping_xlsx.toml").write_text(MAPPING_XLSX, encoding="utf-8")
    make_frame(rows).write_csv(folder / "jobs.csv")
    frame = make_frame(xlsx_rows).with_columns(
        pl.col("Job Type").replace_strict(["BSV", "ERP", "AIN", "INS", "bsv "], [101, 102, 103, 104, 101]),
        (pl.col("Customer Code").str.slice(2).cast(pl.Int64) + 4900),
        pl.Series("Duration", [60, 90, 120, 45, 30] * (xlsx_rows // 5) + [60] * (xlsx_rows % 5), dtype=pl.Int64),
    )
    wb = xlsxwriter.Workbook(
        str(folder / "jobs.xlsx"),
        {"constant_memory": True, "strings_to_formulas": False, "strings_to_numbers": False, "strings_to_urls": False},
    )
    ws = wb.add_worksheet("Jobs")
    for c, h in enumerate(HEADERS):
        ws.write_string(0, c, h)
    for r, row in enumerate(frame.iter_rows(), start=1):
        for c, v in enumerate(row):
            if v is None:
                continue
            if isinstance(v, int):
                ws.write_number(r, c, v)
            else:
                ws.write_string(r, c, v)
    wb.close()
    return {
        "csv": folder / "jobs.csv",
        "xlsx": folder / "jobs.xlsx",
        "mapping": folder / "mapping.toml",
        "mapping_xlsx": folder / "mapping_xlsx.toml",
    }


def measure(kind: str, path: Path, mapping_path: Path | None) -> dict[str, object]:
    """Run one measurement in this process; returns seconds and row counts (stage times for the pipeline)."""
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    if kind == "plain_csv":
        rows = pl.read_csv(path, infer_schema=False).height
    elif kind == "plain_excel":
        rows = pl.read_excel(path).height
    else:
        from pipeline.mapping import apply_mapping, load_mapping
        from pipeline.payload import plan_payloads
        from pipeline.read import read_table
        from pipeline.validate import validate

        assert mapping_path is not None
        t = time.perf_counter()
        mapping = load_mapping(mapping_path)
        raw = read_table(path, sheet=mapping.sheet, encoding=mapping.encoding, delimiter=mapping.delimiter)
        stages["read"] = time.perf_counter() - t
        t = time.perf_counter()
        mapped = apply_mapping(raw, mapping)
        stages["map"] = time.perf_counter() - t
        t = time.perf_counter()
        result = validate(mapped, mapping)
        stages["validate"] = time.perf_counter() - t
        t = time.perf_counter()
        planned = plan_payloads(result.valid, mapping)
        stages["plan"] = time.perf_counter() - t
        rows = raw.frame.height
        stages["valid_rows"] = planned.height
        stages["error_cells"] = result.errors.height
    return {"seconds": time.perf_counter() - t0, "rows": rows, "stages": stages}


def run_child(kind: str, path: Path, mapping: Path | None) -> dict[str, object]:
    args = [sys.executable, __file__, "--child", kind, str(path)] + ([str(mapping)] if mapping else [])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"measurement {kind} failed with exit code {proc.returncode}")
    result = json.loads(out)
    result["peak_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return result


def profile(files: dict[str, Path]) -> None:
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    measure("pipeline", files["csv"], files["mapping"])
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--xlsx-rows", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, *rest = args.child
        print(json.dumps(measure(kind, Path(path), Path(rest[0]) if rest else None)))
        return
    with tempfile.TemporaryDirectory(prefix="bench_dry_run_") as tmp:
        t = time.perf_counter()
        files = generate(Path(tmp), args.rows, args.xlsx_rows)
        print(
            f"generated {args.rows:,}-row CSV ({files['csv'].stat().st_size / 1e6:.0f} MB) and "
            f"{args.xlsx_rows:,}-row xlsx ({files['xlsx'].stat().st_size / 1e6:.1f} MB) "
            f"in {time.perf_counter() - t:.1f} s"
        )
        results = {
            "plain_csv": run_child("plain_csv", files["csv"], None),
            "pipeline_csv": run_child("pipeline", files["csv"], files["mapping"]),
            "plain_excel": run_child("plain_excel", files["xlsx"], None),
            "pipeline_excel": run_child("pipeline", files["xlsx"], files["mapping_xlsx"]),
        }
        for name, r in results.items():
            stages = r["stages"]
            detail = ", ".join(f"{k} {v:.2f}s" if isinstance(v, float) else f"{k} {v:,}" for k, v in stages.items())  # type: ignore[attr-defined]
            print(f"{name:15s} {r['seconds']:7.2f} s  peak {r['peak_mb']:7.0f} MB  rows {r['rows']:,}  {detail}")
        secs = {name: float(r["seconds"]) for name, r in results.items()}  # type: ignore[arg-type]
        csv_ratio = secs["pipeline_csv"] / secs["plain_csv"]
        xlsx_ratio = secs["pipeline_excel"] / secs["plain_excel"]
        peak = float(results["pipeline_csv"]["peak_mb"])  # type: ignore[arg-type]
        print(f"CSV   pipeline / plain read = {csv_ratio:.2f}x (target <= 4x)   {'OK' if csv_ratio <= 4 else 'MISSED'}")
        print(
            f"Excel pipeline / plain read = {xlsx_ratio:.2f}x (target <= 1.5x) "
            f"{'OK' if xlsx_ratio <= 1.5 else 'MISSED'}"
        )
        print(
            f"CSV   pipeline peak = {peak:.0f} MB (target <= 1536 MB for 1M rows) {'OK' if peak <= 1536 else 'MISSED'}"
        )
        if args.profile:
            profile(files)


if __name__ == "__main__":
    main()
