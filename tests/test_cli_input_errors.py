"""Bad input, bad mappings, bad settings and bad arguments, through the command line as a user runs it.

Each must end the run before it starts: exit code 2, exactly one line on stderr that names the problem (no
traceback), nothing sent to the API and no report folder created. An API that cannot be reached is a different
case: the run starts, stops (exit 3) with a one-line reason, and still writes its reports.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
from jobfiles import jobimport, legacy_mapping

from pipeline.sandbox.process import SandboxProcess

HEADER = ["Ref", "Job Type", "Customer ID", "Minutes", "Notes"]
GOOD_ROWS = [
    ["E-001", "BSV", "5001", "60", "First"],
    ["E-002", "AIN", "5002", "30", "Second"],
    ["E-003", "BSV", "5003", "45", "Third"],
]
OLE2 = bytes.fromhex("D0CF11E0A1B11AE1")
UNREACHABLE = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
#: Enough rows for the circuit breaker (20 failures in a row) to open: with fewer, every row fails on its own
#: after its retries (status `failed`, exit 1), which is the documented outcome of a small file.
MANY_ROWS = [[f"U-{i:03d}", "BSV", str(5001 + i % 20), "30", f"Row {i}"] for i in range(25)]


def mapping_text(sheet: str = "Jobs", customer_column: str = "Customer ID") -> str:
    return legacy_mapping(source={"sheet": sheet}, customer_column=customer_column, order_number=False)


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def posts(sandbox: SandboxProcess) -> int:
    return sum(sandbox.stats()["requests"].get("POST /v1/jobs", {}).values())


# --- each case makes (input, mapping, extra arguments) in tmp_path -----------------------------------------------

Case = Callable[[Path], tuple[Path, Path, list[str]]]


def _mapping(tmp: Path, **kw: str) -> Path:
    path = tmp / "mapping.toml"
    path.write_text(mapping_text(**kw), encoding="utf-8")
    return path


def missing_file(tmp: Path) -> tuple[Path, Path, list[str]]:
    return tmp / "no_such_file.csv", _mapping(tmp), []


def a_directory(tmp: Path) -> tuple[Path, Path, list[str]]:
    folder = tmp / "exports.csv"
    folder.mkdir()
    return folder, _mapping(tmp), []


def empty_file(tmp: Path) -> tuple[Path, Path, list[str]]:
    path = tmp / "empty.csv"
    path.write_bytes(b"")
    return path, _mapping(tmp), []


def header_only_csv(tmp: Path) -> tuple[Path, Path, list[str]]:
    return write_csv(tmp / "header_only.csv", []), _mapping(tmp), []


def garbage_xlsx(tmp: Path) -> tuple[Path, Path, list[str]]:
    path = tmp / "garbage.xlsx"
    path.write_bytes(bytes(range(256)) * 8 + b"this is not a workbook")
    return path, _mapping(tmp), []


def password_protected_xlsx(tmp: Path) -> tuple[Path, Path, list[str]]:
    # An encrypted workbook is an OLE2 compound file (EncryptionInfo + EncryptedPackage), whatever its name.
    path = tmp / "protected.xlsx"
    path.write_bytes(OLE2 + b"\x00" * 504 + b"E\x00n\x00c\x00r\x00y\x00p\x00t\x00e\x00d\x00" + b"\x00" * 3000)
    return path, _mapping(tmp), []


def unknown_sheet(tmp: Path) -> tuple[Path, Path, list[str]]:
    path = tmp / "jobs.xlsx"
    book = xlsxwriter.Workbook(str(path))
    book.add_worksheet("Readme").write_string(0, 0, "Jobs to import are on the next sheet")
    jobs = book.add_worksheet("Jobs 2024")
    for r, values in enumerate([HEADER, *GOOD_ROWS]):
        for c, value in enumerate(values):
            jobs.write_string(r, c, value)
    book.close()
    return path, _mapping(tmp, sheet="Jobs"), []


def ragged_csv(tmp: Path) -> tuple[Path, Path, list[str]]:
    path = tmp / "ragged.csv"
    lines = [
        ",".join(HEADER),
        ",".join(GOOD_ROWS[0]),
        "E-002,AIN,5002",
        ",".join(GOOD_ROWS[2]),
        "E-004,BSV,5004,30,a,b",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, _mapping(tmp), []


def toml_syntax_error(tmp: Path) -> tuple[Path, Path, list[str]]:
    mapping = tmp / "mapping.toml"
    mapping.write_text('[source]\nheader_row = 1\n\n[fields.typeId]\ncolumn = "Job Type\n', encoding="utf-8")
    return write_csv(tmp / "jobs.csv", GOOD_ROWS), mapping, []


def unknown_column(tmp: Path) -> tuple[Path, Path, list[str]]:
    return write_csv(tmp / "jobs.csv", GOOD_ROWS), _mapping(tmp, customer_column="Customer Id No"), []


def sheet_of_a_csv(tmp: Path) -> tuple[Path, Path, list[str]]:
    return write_csv(tmp / "jobs.csv", GOOD_ROWS), _mapping(tmp), ["--sheet", "Jobs"]


def zero_concurrency(tmp: Path) -> tuple[Path, Path, list[str]]:
    return write_csv(tmp / "jobs.csv", GOOD_ROWS), _mapping(tmp), ["--max-concurrency", "0"]


CASES: dict[str, tuple[Case, list[str]]] = {
    # case: (how to make it, words the one line must contain)
    "missing file": (missing_file, ["no_such_file.csv", "not found"]),
    "a directory": (a_directory, ["exports.csv", "folder"]),
    "empty file": (empty_file, ["empty.csv", "empty", "0 bytes"]),
    "header-only csv": (header_only_csv, ["header_only.csv", "no data rows"]),
    "garbage named .xlsx": (garbage_xlsx, ["garbage.xlsx", "not a valid .xlsx workbook"]),
    "password-protected workbook": (password_protected_xlsx, ["protected.xlsx", "password"]),
    "unknown sheet": (unknown_sheet, ["no sheet named 'Jobs'", "'Readme'", "'Jobs 2024'"]),
    "ragged csv rows": (ragged_csv, ["ragged.csv", "row 3 has 3", "row 5 has 6", "5 headers"]),
    "toml syntax error": (toml_syntax_error, ["mapping.toml", "TOML", "line 5", "column"]),
    "unknown column": (unknown_column, ["'Customer Id No'", "not a header", "'Customer ID'"]),
    "--max-concurrency 0": (zero_concurrency, ["--max-concurrency", ">= 1", "got 0"]),
    "--sheet with a csv": (sheet_of_a_csv, ["jobs.csv", "--sheet 'Jobs'", ".csv file", "leave --sheet out"]),
}


def assert_one_line(result: subprocess.CompletedProcess[str], words: list[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("jobimport: "), line
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    return line


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_2(name: str, tmp_path: Path, sandbox: SandboxProcess) -> None:
    make, words = CASES[name]
    source, mapping, extra = make(tmp_path)
    reports = tmp_path / "reports"
    sent = posts(sandbox)
    result = jobimport(
        "run",
        source,
        "--mapping",
        mapping,
        "--report-dir",
        reports,
        *extra,
        env={**os.environ, **sandbox.env()},
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert_one_line(result, words)
    assert not reports.exists(), "a run that could not start writes no reports and no ledger"
    assert posts(sandbox) == sent


def test_missing_settings_for_a_real_run(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "jobs.csv", GOOD_ROWS)
    mapping = _mapping(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIGCHANGE_")}
    reports = tmp_path / "reports"
    result = jobimport("run", source, "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    line = assert_one_line(
        result,
        ["BIGCHANGE_BASE_URL", "BIGCHANGE_CLIENT_ID", "BIGCHANGE_CLIENT_SECRET", "BIGCHANGE_CUSTOMER_ID"],
    )
    assert "missing" in line
    assert not reports.exists()
    # A dry run needs no settings at all.
    dry = jobimport("validate", source, "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path)
    assert "Traceback" not in dry.stderr
    assert "BIGCHANGE_" not in dry.stderr


def _stopped_run(result: subprocess.CompletedProcess[str], reports: Path, rows: int) -> None:
    """Exit 3, no traceback, one 'stopped:' line whose reason is in summary.json, every report written, the valid
    rows pending (a rerun sends them)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 3, result.stdout + result.stderr
    stopped = [line for line in result.stderr.splitlines() if line.startswith("jobimport: stopped:")]
    assert len(stopped) == 1, result.stderr
    reason = stopped[0].removeprefix("jobimport: stopped:").strip()
    assert reason
    match = re.search(r"^run (\S+):", result.stdout, re.MULTILINE)
    assert match, result.stdout
    run_dir = reports / match.group(1)
    for name in ("results.csv", "summary.json", "summary.html", "corrections.xlsx", "corrections.csv"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["exit_code"] == 3
    assert summary["stop_reason"] == reason and "\n" not in reason
    assert summary["counts"]["created"] == 0
    with (run_dir / "results.csv").open(encoding="utf-8-sig", newline="") as fh:
        statuses = [r["status"] for r in csv.DictReader(fh)]
    assert len(statuses) == rows
    assert "pending" in statuses and set(statuses) <= {"pending", "failed"}, statuses
    book = openpyxl.load_workbook(run_dir / "corrections.xlsx")
    assert book.active.max_row == 1 + rows


def test_unreachable_api_stops_with_exit_3(tmp_path: Path, sandbox: SandboxProcess) -> None:
    """The token endpoint answers, the API does not (nothing listens on the base URL)."""
    source = write_csv(tmp_path / "jobs.csv", MANY_ROWS)
    reports = tmp_path / "reports"
    env = {**os.environ, **sandbox.env(), "BIGCHANGE_BASE_URL": UNREACHABLE}
    result = jobimport("run", source, "--mapping", _mapping(tmp_path), "--report-dir", reports, env=env, cwd=tmp_path)
    _stopped_run(result, reports, len(MANY_ROWS))


def test_unreachable_host_stops_with_exit_3_in_reasonable_time(tmp_path: Path, sandbox: SandboxProcess) -> None:
    """Nothing listens at all (a wrong host or port: the token URL is derived from the base URL). The run must
    stop by itself, soon, with a reason, and write its reports; 20 s is more than twice the token endpoint's own
    retry budget (5 tries, 7.5 s of backoff)."""
    source = write_csv(tmp_path / "jobs.csv", MANY_ROWS)
    reports = tmp_path / "reports"
    env = {**os.environ, **sandbox.env(), "BIGCHANGE_BASE_URL": UNREACHABLE}
    env.pop("BIGCHANGE_TOKEN_URL")
    mapping = _mapping(tmp_path)
    try:
        result = jobimport(
            "run", source, "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path, timeout=20
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`jobimport run` against an unreachable host was still retrying after {exc.timeout:.0f} s")
    _stopped_run(result, reports, len(MANY_ROWS))
