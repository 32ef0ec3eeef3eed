"""Dry-run benchmark: read → map → validate → plan on a 1,000,000-row CSV and a 100,000-row workbook.

Usage: .venv/bin/python benchmarks/bench_dry_run.py [--rows 1000000] [--xlsx-rows 100000] [--repeat 3] [--profile]

Generates the inputs in a temporary folder: a CSV like a legacy system's export (CRLF line ends, text columns
always quoted, others only when needed, quoted commas, doubled quotes and line breaks in notes, blank and
whitespace-only cells, padded codes, leading zeros, accents, € and the odd emoji, references with a few
duplicates, custom fields, and a small share of mistakes), and a workbook of the same kind of rows (numbers as
numbers, text as text). Then every measurement runs in its own subprocess, so that its peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`, reported by the child) is its own. (A child starts from its
parent's peak, which it inherits through fork/exec: so the inputs are generated in a subprocess too, and this
process never imports polars.)

- `plain_csv`: `pl.read_csv(path, infer_schema=False)` of the CSV;
- `pipeline_csv`: read_table → apply_mapping → validate → plan_payloads of the same file;
- `plain_excel`: `pl.read_excel(path)` of the workbook;
- `pipeline_excel`: the pipeline on the same workbook.

Each child imports its modules (polars, fastexcel, our package) before its clock starts, so no side is charged
for imports (pipeline.validate imports pandera's polars backends, which pandera itself would import on the first
validation); everything the four pipeline calls do on their first call is timed, and the first validation's
cost is also measured on its own and printed. The four
measurements run `--repeat` times, interleaved (the machine may be shared: read ranges, not one number); the
table gives min / median / max seconds, the largest peak, the median of each pipeline stage, then the ratio of
the medians and the ratio within each run against the targets: ≤ 10× the plain CSV read, ≤ 1.5× the plain Excel
read, ≤ 1.5 GB peak for the 1M-row pipeline. `--profile` adds a cProfile of the CSV pipeline (top 25).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
#: columns a legacy exporter quotes in every row (text); the others are quoted only when they need it
ALWAYS_QUOTED = {"Job No", "Customer Code", "Notes", "Legacy Ref"}

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
unit = "minutes"
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
[source]
sheet = "Jobs"
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

NOTES = [
    "Annual service, café kitchen; €85 agreed",
    'Leak "urgent"\nring twice',
    None,
    "Boiler pressure dropping (1.2 to 0.5 bar)",
    "Tenant: Zoë Brontë, flat 3; key under mat",
    None,
    'Replace "smart" thermostat, keep the old one',
    "Gas safety record due",
    "Customer prefers mornings 🙂",
    "Chaudière Vaillant, accès par la cour",
    None,
]


def _pick(values: Sequence[str | None], index: pl.Expr) -> pl.Expr:
    import polars as pl

    return pl.lit(pl.Series(values, dtype=pl.String)).gather(index % len(values))


def make_frame(n: int) -> pl.DataFrame:
    """n rows of text like a legacy export: a few percent of rows carry a mistake, ~25% have no legacy reference."""
    import polars as pl

    i = pl.col("i")
    h = (i * 2654435761) % 1000003  # a cheap scramble, so that mistakes are spread and not periodic
    durations = ["90", "1:30", "1h30", "2 hours", "45 min", "1.5h", "60", "75", "120", "30", "2h", "1h 15m"] * 8
    durations += ["12.5"]  # no unit: a mistake (1 in 97)
    types = ["BSV", "ERP", "AIN", "INS", "bsv ", " INS"] * 166 + ["XYZ"] * 4  # 0.4% unknown codes
    return pl.DataFrame({"i": pl.int_range(0, n, eager=True)}).select(
        ("J" + (i + 100000).cast(pl.String)).alias("Job No"),
        _pick(types, h).alias("Job Type"),
        ("00" + (101 + i % 20).cast(pl.String) + pl.when(i % 50 == 7).then(pl.lit(" ")).otherwise(pl.lit(""))).alias(
            "Customer Code"
        ),
        _pick(durations, h).alias("Duration"),
        pl.when(i % 10 == 3)
        .then(None)
        .when(i % 10 == 5)
        .then("{" + (i % 97).cast(pl.String).str.zfill(8) + "-FC5D-5D21-9F4A-5BA330146A90}")
        .otherwise((i % 97).cast(pl.String).str.zfill(8) + "-fc5d-5d21-9f4a-5ba330146a90")
        .alias("Contact Person"),
        pl.when(h % 1000 == 999).then(pl.lit("x" * 600)).otherwise(_pick(NOTES, i)).alias("Notes"),
        pl.when(i % 3 == 0).then("PO-" + i.cast(pl.String)).when(i % 7 == 1).then(pl.lit("   ")).alias("PO Number"),
        pl.when(i % 11 != 4).then((i % 9000).cast(pl.String).str.zfill(4) + "#").alias("Access Code"),
        pl.when(i % 2 == 0).then("G" + (i % 90).cast(pl.String)).when(i % 5 == 1).then(pl.lit("  ")).alias("Gate Code"),
        pl.when(i % 4 == 3)
        .then(None)
        .when(h % 2000 == 1)  # ~0.05%: the reference of another row, in lower case
        .then("wo-" + ((i + 1) - (i + 1) % 4).cast(pl.String))
        .otherwise("WO-" + i.cast(pl.String))
        .alias("Legacy Ref"),
    )


def csv_text(frame: pl.DataFrame) -> pl.Series:
    """One CSV record per row: ALWAYS_QUOTED columns quoted when not blank, the others only when they must be."""
    import polars as pl

    def cell(name: str) -> pl.Expr:
        col = pl.col(name)
        quoted = pl.concat_str([pl.lit('"'), col.str.replace_all('"', '""', literal=True), pl.lit('"')])
        if name in ALWAYS_QUOTED:
            return pl.when(col.is_not_null()).then(quoted).otherwise(pl.lit(""))
        return pl.when(col.str.contains('[,"\r\n]')).then(quoted).otherwise(col).fill_null("")

    return frame.select(pl.concat_str([cell(c) for c in frame.columns], separator=",").alias("line")).to_series()


def generate(folder: Path, rows: int, xlsx_rows: int) -> dict[str, Path]:
    import polars as pl
    import xlsxwriter

    (folder / "job_types.csv").write_text("code,id\nBSV,101\nERP,102\nAIN,103\nINS,104\n", encoding="utf-8")
    (folder / "customers.csv").write_text(
        "code,id\n" + "".join(f"00{101 + k},{5001 + k}\n" for k in range(20)), encoding="utf-8"
    )
    (folder / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    (folder / "mapping_xlsx.toml").write_text(MAPPING_XLSX, encoding="utf-8")
    for name, n in (("jobs.csv", rows), ("tiny.csv", 100)):
        with (folder / name).open("wb") as f:
            f.write((",".join(HEADERS) + "\r\n").encode())
            lines = pl.DataFrame({"line": csv_text(make_frame(n))})
            lines.write_csv(f, include_header=False, quote_style="never", line_terminator="\r\n")
    frame = make_frame(xlsx_rows).with_columns(
        pl.col("Job Type")
        .str.strip_chars()
        .str.to_uppercase()
        .replace({"BSV": "101", "ERP": "102", "AIN": "103", "INS": "104"}),
        (pl.col("Customer Code").str.strip_chars().cast(pl.Int64) + 4900).cast(pl.String),
        pl.Series("Duration", [60, 90, 120, 45, 30] * (xlsx_rows // 5) + [60] * (xlsx_rows % 5)).cast(pl.String),
    )
    numeric = {"Job Type", "Customer Code", "Duration"}
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
            if HEADERS[c] in numeric and v.isdigit():
                ws.write_number(r, c, int(v))
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
    """Run one measurement in this process; returns seconds, row counts and stage times (pipeline)."""
    import resource

    import polars as pl

    t = time.perf_counter()
    if kind == "plain_excel":
        import fastexcel  # noqa: F401  (pl.read_excel imports it lazily: before the clock, like our modules)
    if kind in ("pipeline", "first_validation"):
        from pipeline.mapping import apply_mapping, load_mapping
        from pipeline.plan import plan_payloads
        from pipeline.read import read_table
        from pipeline.validate import validate
    import_s = time.perf_counter() - t
    stages: dict[str, float] = {}
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    if kind == "plain_csv":
        rows = pl.read_csv(path, infer_schema=False).height
    elif kind == "plain_excel":
        rows = pl.read_excel(path).height
    elif kind == "first_validation":  # the one-time cost in the first validate() call, on a 100-row file
        assert mapping_path is not None
        mapping = load_mapping(mapping_path)
        mapped = apply_mapping(read_table(path), mapping)
        for attempt in ("first", "second"):
            t = time.perf_counter()
            validate(mapped, mapping)
            stages[attempt] = time.perf_counter() - t
        rows = mapped.frame.height
    else:
        assert mapping_path is not None
        t = time.perf_counter()
        mapping = load_mapping(mapping_path)
        raw = read_table(
            path,
            sheet=mapping.sheet,
            header_row=mapping.header_row,
            encoding=mapping.encoding,
            delimiter=mapping.delimiter,
        )
        stages["read"] = time.perf_counter() - t
        t = time.perf_counter()
        mapped = apply_mapping(raw, mapping)
        stages["map"] = time.perf_counter() - t
        t = time.perf_counter()
        result = validate(mapped, mapping)
        stages["validate"] = time.perf_counter() - t
        t = time.perf_counter()
        planned = plan_payloads(result.frame, mapping, result.valid_mask)
        stages["plan"] = time.perf_counter() - t
        rows = raw.frame.height
        counts = {"valid_rows": planned.height, "error_cells": result.errors.height}
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    return {
        "seconds": seconds,
        "rows": rows,
        "stages": stages,
        "counts": counts,
        "peak_mb": peak_mb,
        "import_s": import_s,
    }


def run_child(kind: str, path: Path, mapping: Path | None) -> dict[str, object]:
    args = [sys.executable, __file__, "--child", kind, str(path)] + ([str(mapping)] if mapping else [])
    proc = subprocess.run(args, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measurement {kind} failed with exit code {proc.returncode}")
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def profile(files: dict[str, Path]) -> None:
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    measure("pipeline", files["csv"], files["mapping"])
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def report(results: dict[str, list[dict[str, object]]]) -> None:
    def seconds(name: str) -> list[float]:
        return [float(r["seconds"]) for r in results[name]]  # type: ignore[arg-type]

    print(f"{'measurement':15s} {'min / median / max':>20s}   {'peak':>7s}  rows, stage medians, outcome")
    for name, runs in results.items():
        s = sorted(seconds(name))
        peak = max(float(r["peak_mb"]) for r in runs)  # type: ignore[arg-type]
        timing = f"{s[0]:5.2f} / {statistics.median(s):5.2f} / {s[-1]:5.2f} s"
        line = f"{name:15s} {timing}  {peak:5.0f} MB  {runs[0]['rows']:,}"
        stages: dict[str, float] = runs[0]["stages"]  # type: ignore[assignment]
        if stages:
            parts = [f"{k} {statistics.median(float(r['stages'][k]) for r in runs):.2f}" for k in stages]  # type: ignore[index]
            counts: dict[str, int] = runs[0]["counts"]  # type: ignore[assignment]
            line += "  " + ", ".join(parts) + "  " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
            line += f"  (imports before the clock: {float(runs[0]['import_s']):.2f} s)"  # type: ignore[arg-type]
        print(line)

    def ratio(label: str, pipeline: str, plain: str, target: float) -> None:
        per_run = [a / b for a, b in zip(seconds(pipeline), seconds(plain), strict=True)]
        med = statistics.median(seconds(pipeline)) / statistics.median(seconds(plain))
        runs = " ".join(f"{r:.2f}x" for r in per_run)
        verdict = "OK" if med <= target else "MISSED"
        print(f"{label} pipeline / plain read: {med:.2f}x (medians); per run {runs} (target <= {target:g}x) {verdict}")

    ratio("CSV  ", "pipeline_csv", "plain_csv", 10)
    ratio("Excel", "pipeline_excel", "plain_excel", 1.5)
    peak = max(float(r["peak_mb"]) for r in results["pipeline_csv"])  # type: ignore[arg-type]
    print(
        f"CSV   pipeline peak RSS: {peak:.0f} MB (target <= 1536 MB for 1M rows) {'OK' if peak <= 1536 else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--xlsx-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, *rest = args.child
        print(json.dumps(measure(kind, Path(path), Path(rest[0]) if rest else None)))
        return
    if args.generate:
        generate(Path(args.generate), args.rows, args.xlsx_rows)
        return
    # This process stays small (it never imports polars): a child's ru_maxrss starts from its parent's peak.
    with tempfile.TemporaryDirectory(prefix="bench_dry_run_") as tmp:
        t = time.perf_counter()
        sizes = ["--rows", str(args.rows), "--xlsx-rows", str(args.xlsx_rows)]
        subprocess.run([sys.executable, __file__, "--generate", tmp, *sizes], check=True)
        names = {"csv": "jobs.csv", "xlsx": "jobs.xlsx", "mapping": "mapping.toml", "mapping_xlsx": "mapping_xlsx.toml"}
        files = {key: Path(tmp) / name for key, name in names.items()}
        os.sync()  # the files are written out before anything is timed
        print(
            f"generated {args.rows:,}-row CSV ({files['csv'].stat().st_size / 1e6:.0f} MB) and "
            f"{args.xlsx_rows:,}-row xlsx ({files['xlsx'].stat().st_size / 1e6:.1f} MB) "
            f"in {time.perf_counter() - t:.1f} s; {args.repeat} interleaved runs of each measurement, "
            "each in its own process (seconds: min / median / max)"
        )
        plan = [
            ("plain_csv", files["csv"], None),
            ("pipeline_csv", files["csv"], files["mapping"]),
            ("plain_excel", files["xlsx"], None),
            ("pipeline_excel", files["xlsx"], files["mapping_xlsx"]),
        ]
        results: dict[str, list[dict[str, object]]] = {name: [] for name, _, _ in plan}
        for _ in range(args.repeat):
            for name, path, mapping in plan:
                results[name].append(run_child("pipeline" if name.startswith("pipeline") else name, path, mapping))
        report(results)
        first: dict[str, float] = run_child(  # type: ignore[assignment]
            "first_validation", Path(tmp) / "tiny.csv", files["mapping"]
        )["stages"]
        print(
            f"(one-time cost inside the pipeline's timing: the first validate() of a process takes "
            f"{first['first']:.2f} s on 100 rows, the second {first['second']:.2f} s)"
        )
        if args.profile:
            profile(files)


if __name__ == "__main__":
    main()
