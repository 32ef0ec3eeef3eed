"""Past runs through the command line: `jobimport status` lists them, `jobimport report RUN_ID` rebuilds a run's
reports from the ledger, and a second run of the same input says what changed since the first.

Scenario: import a CSV (two rows created, two invalid, two rejected), fix one invalid and one rejected row in the
same file, import it again (against a real sandbox on 127.0.0.1).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from jobfiles import jobimport, legacy_mapping

from pipeline.sandbox.process import SandboxProcess

HEADER = "Ref,Job Type,Customer ID,Minutes,Notes,PO"
ORIGINAL = {
    2: "K-001,BSV,5001,60,Created first time,",
    3: "K-002,BSV,5002,abc,Bad minutes (fixed later),",  # invalid → fixed
    4: "K-003,ERP,5003,30,No order number (fixed later),",  # rejected (OrderNumber) → fixed
    5: "K-004,XYZ,5004,30,Unknown job type (left as is),",  # invalid, stays
    6: "K-005,SUR,5005,30,Archived job type (left as is),",  # rejected, stays
    7: "K-006,AIN,5006,30,Created first time too,",
}
FIXED = {
    **ORIGINAL,
    3: "K-002,BSV,5002,45,Bad minutes (fixed later),",
    4: "K-003,ERP,5003,30,No order number (fixed later),PO-3",
}
MAPPING = legacy_mapping()


def write_input(path: Path, rows: dict[int, str]) -> None:
    path.write_text("\n".join([HEADER, *rows.values()]) + "\n", encoding="utf-8")


def run_id_of(result: subprocess.CompletedProcess[str]) -> str:
    match = re.search(r"^run (\S+):", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    return match.group(1)


def statuses(path: Path) -> dict[int, str]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return {int(r["row"]): r["status"] for r in csv.DictReader(fh)}


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_status_report_and_changes(tmp_path: Path, sandbox_factory: Callable[..., SandboxProcess]) -> None:
    sandbox = sandbox_factory()
    env = {**os.environ, **sandbox.env()}
    source = tmp_path / "jobs.csv"
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING, encoding="utf-8")
    reports = tmp_path / "reports"
    # --no-preflight: the sandbox's 422s (rejected rows) are part of what status and report show
    args = ("run", source, "--no-preflight", "--mapping", mapping, "--report-dir", reports)

    write_input(source, ORIGINAL)
    first = jobimport(*args, env=env, cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    first_id = run_id_of(first)
    first_dir = reports / first_id
    assert statuses(first_dir / "results.csv") == {
        2: "created",
        3: "invalid",
        4: "rejected",
        5: "invalid",
        6: "rejected",
        7: "created",
    }
    original_input = source.read_bytes()
    original_files = {
        name: (first_dir / name).read_bytes() for name in ("results.csv", "corrections.csv", "summary.json")
    }

    write_input(source, FIXED)
    second = jobimport(*args, env=env, cwd=tmp_path)
    assert second.returncode == 1, second.stdout + second.stderr
    second_id = run_id_of(second)
    assert second_id != first_id
    second_dir = reports / second_id
    assert statuses(second_dir / "results.csv") == {
        2: "already_created",
        3: "created",
        4: "created",
        5: "invalid",
        6: "rejected",
        7: "already_created",
    }
    assert sandbox.stats()["jobs_created"] == 4

    # What changed since the first run, in summary.json and in summary.html.
    summary = json.loads((second_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["changes"] is not None, "the second run of the same input compares itself with the first"
    assert summary["changes"]["fixed"] == 2
    assert summary["changes"]["still_failing"] == 2
    assert summary["changes"]["new"] == 0
    assert summary["changes"]["not_in_this_run"] == 0
    page = (second_dir / "summary.html").read_text(encoding="utf-8")
    assert re.search(r'data-change="fixed">\s*2\s*<', page), "summary.html shows 2 fixed rows"
    assert re.search(r'data-change="still_failing">\s*2\s*<', page), "summary.html shows 2 rows still failing"
    assert json.loads(original_files["summary.json"])["changes"] is None, "the first run has nothing to compare"

    # jobimport status: both runs, newest first, with their counts.
    status = jobimport("status", "--report-dir", reports, env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Traceback" not in status.stderr
    lines = status.stdout.splitlines()
    first_line = next(line for line in lines if first_id in line)
    second_line = next(line for line in lines if second_id in line)
    assert lines.index(second_line) < lines.index(first_line), "newest run first"
    for text in ("2 created", "2 invalid", "2 rejected"):
        assert text in first_line, (text, first_line)
    for text in ("2 created", "2 already_created", "1 invalid", "1 rejected"):
        assert text in second_line, (text, second_line)
    # first hour: every heading stands over its column
    header = lines[0]
    for line in (first_line, second_line):
        assert line.index("20") == header.index("run id")
        assert line[header.index("finished") :].startswith(line.split()[1])
        assert line.index(str(source)) == header.index("input"), (header, line)
        assert line[header.index("exit") + len("exit") - 1] == "1"
        assert line[header.index("counts")].isdigit()

    # jobimport report FIRST_ID: rebuild the first run's reports from the ledger, with the file as it was then.
    source.write_bytes(original_input)
    (first_dir / "results.csv").unlink()
    (first_dir / "corrections.csv").unlink()
    rebuilt = jobimport("report", first_id, "--report-dir", reports, env=env, cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "Traceback" not in rebuilt.stderr
    assert (first_dir / "results.csv").read_bytes() == original_files["results.csv"]
    assert (first_dir / "corrections.csv").read_bytes() == original_files["corrections.csv"]
    assert json.loads((first_dir / "summary.json").read_text(encoding="utf-8")) == json.loads(
        original_files["summary.json"]
    )
    assert sandbox.stats()["jobs_created"] == 4, "rebuilding reports sends nothing"


def test_report_after_the_input_was_edited_does_not_mix_runs(
    tmp_path: Path, sandbox_factory: Callable[..., SandboxProcess]
) -> None:
    """`report RUN_ID` re-reads the input file. When its cells were edited since that run (same rows, new values),
    the rebuilt results.csv must not pair the old outcomes with the new cells: refuse (exit 2, one line) or
    rebuild exactly what the run saw."""
    sandbox = sandbox_factory()
    env = {**os.environ, **sandbox.env()}
    source = tmp_path / "jobs.csv"
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING, encoding="utf-8")
    reports = tmp_path / "reports"
    write_input(source, ORIGINAL)
    first = jobimport("run", source, "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    first_dir = reports / run_id_of(first)
    original = (first_dir / "results.csv").read_bytes()

    write_input(source, FIXED)  # edited in place after the run, not imported again
    (first_dir / "results.csv").unlink()
    rebuilt = jobimport("report", run_id_of(first), "--report-dir", reports, env=env, cwd=tmp_path)
    if rebuilt.returncode == 2:
        assert "jobs.csv" in one_line(rebuilt)
    else:
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        assert (first_dir / "results.csv").read_bytes() == original, (
            "the rebuilt results.csv shows today's cells next to the first run's outcomes"
        )


def test_report_of_an_unknown_run(tmp_path: Path, sandbox: SandboxProcess) -> None:
    env = {**os.environ, **sandbox.env()}
    reports = tmp_path / "reports"
    # No ledger at all yet.
    for args in (["report", "20990101T000000Z-beef"], ["status"]):
        result = jobimport(*args, "--report-dir", reports, env=env, cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "ledger" in one_line(result)

    # A ledger, but not that run.
    source = tmp_path / "jobs.csv"
    write_input(source, {2: ORIGINAL[5]})  # one invalid row: a real run that sends nothing
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING, encoding="utf-8")
    run = jobimport("run", source, "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    result = jobimport("report", "20990101T000000Z-beef", "--report-dir", reports, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result)
    assert "20990101T000000Z-beef" in line and "status" in line
