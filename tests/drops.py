"""Helpers for the drop tests: job CSVs of the end-to-end layout, the drop command, its log."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from jobfiles import MAPPING, run_cli, start_cli

HEADER = ["Ref", "Type", "Customer", "Notes", "Access Code"]


def mapping_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mapping.toml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


def job_rows(prefix: str, n: int, bad: dict[int, dict[str, str]] | None = None) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        row = {
            "Ref": f"{prefix}-{i + 1:05d}",
            "Type": "101",
            "Customer": str(5001 + i % 20),
            "Notes": f"Visit {i + 1}",
            "Access Code": f"{i % 10000:04d}",
        }
        row.update((bad or {}).get(i, {}))
        rows.append(row)
    return rows


def csv_text(rows: list[dict[str, str]], header: list[str] | None = None) -> str:
    header = header or HEADER
    lines = [",".join(header)]
    lines += [",".join(row.get(h, "") for h in header) for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] | None = None, age_s: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header or HEADER)
        for row in rows:
            writer.writerow([row.get(h, "") for h in header or HEADER])
    if age_s:
        age(path, age_s)
    return path


def age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


def drop_env(sandbox: Any, home: Path) -> dict[str, str]:
    return {**sandbox.env(), "JOBIMPORT_HOME": str(home)}


def drop(folder: Path, mapping: Path | str, *extra: object, env: dict[str, str], cwd: Path, timeout: float = 180):
    """`jobimport drop FOLDER --mapping M EXTRA…` (settle 0 unless EXTRA gives one)."""
    args = ["drop", str(folder), "--mapping", str(mapping), *(str(e) for e in extra)]
    if "--settle" not in args:
        args += ["--settle", "0"]
    done: subprocess.CompletedProcess[str] = run_cli(args, env, cwd, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def start_drop(folder: Path, mapping: Path | str, *extra: object, env: dict[str, str], cwd: Path):
    args = ["drop", str(folder), "--mapping", str(mapping), *(str(e) for e in extra)]
    if "--settle" not in args:
        args += ["--settle", "0"]
    return start_cli(args, env, cwd)


def log_lines(folder: Path, event: str | None = "file") -> list[dict[str, Any]]:
    path = folder / "drop-log.jsonl"
    if not path.is_file():
        return []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [line for line in lines if event is None or line["event"] == event]


def by_name(folder: Path) -> dict[str, dict[str, Any]]:
    """The last drop-log line of each file name."""
    return {line["name"]: line for line in log_lines(folder)}


def tree(folder: Path) -> list[str]:
    """Every file under `folder` except reports, as sorted relative paths."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.relative_to(folder).as_posix().startswith("reports/")
    )
