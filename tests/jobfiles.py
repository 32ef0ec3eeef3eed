"""Generated job files for end-to-end tests: a CSV of N valid rows (with references) and its mapping."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parents[1]

MAPPING = """
[source]
delimiter = ","

[fields.typeId]
column = "Type"

[fields.contactId]
column = "Customer"

[fields.reference]
column = "Ref"

[fields.description]
column = "Notes"

[custom_fields]
"Access Code" = 432632
"""


JOB_TYPES = ROOT / "samples" / "lookups" / "job_types.csv"

#: A mapping with the job type and contact as constants (5001 / 101), reference from Ref, description from Notes:
#: for tests of reading hostile or mangled files, where only those two columns matter.
CONSTANT_MAPPING = """
[fields.typeId]
value = "101"
[fields.contactId]
value = "5001"
[fields.reference]
column = "Ref"
[fields.description]
column = "Notes"
"""


def legacy_mapping(
    *,
    source: dict[str, str | int] | None = None,
    customer_column: str = "Customer ID",
    order_number: bool = True,
    custom_fields: bool = False,
) -> str:
    """The mapping of the CLI tests' legacy layout: Ref, Job Type (code → id), Customer ID, Minutes, Notes, PO,
    Access Code, Gate Code. `source` becomes [source] (e.g. {"sheet": "Jobs", "header_row": 3})."""
    lines = []
    if source:
        lines.append("[source]")
        lines += [f"{key} = {value!r}".replace("'", '"') for key, value in source.items()]
    lines += [
        "[fields.typeId]",
        'column = "Job Type"',
        'lookup = "job_types"',
        "[fields.contactId]",
        f'column = "{customer_column}"',
        "[fields.plannedDuration]",
        'column = "Minutes"',
        'parse = "integer"',
        "[fields.reference]",
        'column = "Ref"',
        "[fields.description]",
        'column = "Notes"',
    ]
    if order_number:
        lines += ["[fields.orderNumber]", 'column = "PO"']
    if custom_fields:
        lines += ["[custom_fields]", '"Access Code" = 432632', '"Gate Code" = 432633']
    lines += ["[lookups.job_types]", f"file = '{JOB_TYPES.as_posix()}'"]
    return "\n".join(lines) + "\n"


def write_jobs(
    folder: Path,
    rows: int,
    prefix: str = "E2E",
    bad: dict[int, dict[str, str]] | None = None,
    without_reference: Callable[[int], bool] = lambda i: False,
) -> Path:
    """jobs.csv with `rows` rows (type 101, contacts 5001..5020, references PREFIX-00001…) and mapping.toml.

    `bad` replaces cells of given 0-based rows, e.g. {3: {"Customer": "999999"}} for a sandbox 422.
    `without_reference(i)`: row i has an empty reference (its key is then its payload's fingerprint)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "jobs.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["Ref", "Type", "Customer", "Notes", "Access Code"])
        writer.writeheader()
        for i in range(rows):
            row = {
                "Ref": f"{prefix}-{i + 1:05d}",
                "Type": "101",
                "Customer": str(5001 + i % 20),
                "Notes": f"Service visit {i + 1}",
                "Access Code": f"{(i * 7919) % 10000:04d}",
            }
            if without_reference(i):
                row["Ref"] = ""
            row.update((bad or {}).get(i, {}))
            writer.writerow(row)
    (folder / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    return path


def jobimport(*args: object, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline ARGS` as a user runs it, with exactly the environment `env` (plus the test's own
    JOBIMPORT_HOME, so that ledgers stay in the test's folder unless `env` names another)."""
    if "JOBIMPORT_HOME" in os.environ and "JOBIMPORT_HOME" not in env:
        env = {**env, "JOBIMPORT_HOME": os.environ["JOBIMPORT_HOME"]}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *(str(a) for a in args)],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
    )


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`jobimport ARGS` with this process's environment plus `env`."""
    return jobimport(*args, env={**os.environ, **env}, cwd=cwd, timeout=timeout)


def read_results(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def start_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def latest_run(report_dir: Path) -> Path:
    runs = sorted(p for p in report_dir.iterdir() if p.is_dir())
    assert runs, f"no run folder in {report_dir}"
    return runs[-1]


def results(run_dir: Path) -> pl.DataFrame:
    return pl.read_csv(run_dir / "results.csv", infer_schema=False)


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def assert_created_exactly_once(sandbox: Any, references: list[str]) -> dict[str, int]:
    """Every reference created exactly once in the sandbox; returns reference → sandbox job id."""
    stats = sandbox.stats()
    counts = stats["creations_per_reference"]
    assert stats["duplicates"] == [], f"created more than once: {stats['duplicates'][:10]}"
    missing = [r for r in references if counts.get(r) != 1]
    assert not missing, f"{len(missing)} references not created exactly once, e.g. {missing[:5]}"
    return {job["reference"]: int(job["id"]) for job in sandbox.jobs()}
