"""`jobimport validate` and `jobimport run --dry-run` on the bundled samples, through the command line, and a
property test of row accounting on random CSV files.

A dry run sends nothing (not even a token request), exits 1 because the samples have invalid rows, and writes
results.csv (every source row once, in source order, `valid` or `invalid`), payloads.jsonl (one JobCreate body per
valid row) and summary.json (counts that add up).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jobfiles import jobimport, read_results

from pipeline.cli import main as cli_main
from pipeline.sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
MAPPINGS = ROOT / "mappings"
EXPECTED = json.loads((SAMPLES / "expected_outcomes.json").read_text(encoding="utf-8"))

#: The source column each `invalid` row of expected_outcomes.json is refused on (from its description).
ERROR_COLUMNS: dict[str, dict[int, str]] = {
    "legacy_jobs.csv": {
        10: "Job Type",  # unknown job type code
        14: "Customer Code",  # unknown customer code
        18: "Duration",  # duration without unit
        22: "Contact Person",  # truncated person uuid
        26: "Notes",  # description over 500 characters
        30: "Legacy Ref",  # duplicate reference
        31: "Legacy Ref",
        35: "Customer Code",  # blank customer code
    },
    "jobs.xlsx": {
        9: "Customer ID",  # #N/A error cell
        13: "Planned Minutes",  # 12.5 minutes
        17: "Job Type ID",  # blank job type
        21: "Person ID",  # bad person id
        24: "Job Ref",  # duplicate reference
        25: "Job Ref",
    },
}
SAMPLE_CASES = [("legacy_jobs.csv", "legacy_csv.toml", "Job No"), ("jobs.xlsx", "jobs_xlsx.toml", "Job Ref")]
COMMANDS = [["validate"], ["run", "--dry-run"]]


def source_rows(sample: str, key_column: str) -> list[tuple[int, str]]:
    """(row number a person sees, key cell) of every non-blank data row, read without the product's reader."""
    path = SAMPLES / sample
    found: list[tuple[int, str]] = []
    if sample.endswith(".csv"):
        text = path.read_bytes().decode("cp1252")
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
        key = records[0].index(key_column)
        for number, record in enumerate(records[1:], start=2):
            if any(cell.strip() for cell in record):
                found.append((number, record[key]))
        return found
    ws = openpyxl.load_workbook(path, read_only=True)["Jobs"]
    rows = list(ws.iter_rows(values_only=True))
    key = list(rows[0]).index(key_column)
    for number, values in enumerate(rows[1:], start=2):
        if any(v is not None and str(v).strip() for v in values):
            found.append((number, str(values[key])))
    return found


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(("sample", "mapping", "key_column"), SAMPLE_CASES, ids=[c[0] for c in SAMPLE_CASES])
def test_dry_run_on_samples(
    command: list[str],
    sample: str,
    mapping: str,
    key_column: str,
    tmp_path: Path,
    sandbox: SandboxProcess,
    openapi_contract: Any,
) -> None:
    reports = tmp_path / "reports"
    requests_before = sandbox.stats()["requests_total"]
    result = jobimport(
        *command,
        SAMPLES / sample,
        "--mapping",
        MAPPINGS / mapping,
        "--report-dir",
        reports,
        env={**os.environ, **sandbox.env()},
        cwd=tmp_path,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert sandbox.stats()["requests_total"] == requests_before, "a dry run sends nothing"
    assert list(reports.glob("ledger-*")) == [], "a dry run records nothing in a ledger"
    match = re.search(r"^dry run (\S+):", result.stdout, re.MULTILINE)
    assert match, result.stdout
    run_dir = reports / match.group(1)

    expected_invalid = sorted(int(r) for r, (outcome, _) in EXPECTED[sample].items() if outcome == "invalid")
    assert sorted(ERROR_COLUMNS[sample]) == expected_invalid, "this test's table follows expected_outcomes.json"

    # results.csv: every source row once, in order, with its own cells; rejected ones are `valid` in a dry run.
    results = read_results(run_dir / "results.csv")
    source = source_rows(sample, key_column)
    assert [(int(r["row"]), r[key_column]) for r in results] == source
    statuses = {int(r["row"]): r["status"] for r in results}
    assert sorted(r for r, s in statuses.items() if s == "invalid") == expected_invalid
    assert {s for r, s in statuses.items() if r not in expected_invalid} == {"valid"}
    for r in results:
        row = int(r["row"])
        if row in ERROR_COLUMNS[sample]:
            column = ERROR_COLUMNS[sample][row]
            assert r["errors"].startswith(f"{column}: "), (row, r["errors"])
        else:
            assert r["errors"] == "" and r["job_id"] == "" and r["problem_status"] == "", r

    # payloads.jsonl: one line per valid row, in order, each a JobCreate body.
    lines = (run_dir / "payloads.jsonl").read_text(encoding="utf-8").splitlines()
    payloads = [json.loads(line) for line in lines]
    valid_rows = [row for row, _ in source if statuses[row] == "valid"]
    assert [p["row"] for p in payloads] == valid_rows
    keys = [p["key"] for p in payloads]
    assert all(keys) and len(set(keys)) == len(keys)
    for p in payloads:
        openapi_contract.validate("JobCreate", p["payload"])
        if p["payload"].get("reference"):
            assert p["key"] == p["payload"]["reference"]

    # summary.json: counts add up.
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    counts = summary["counts"]
    assert summary["dry_run"] is True and summary["rows_sent"] == 0 and summary["exit_code"] == 1
    assert sum(counts.values()) == summary["total_rows"] == len(source) == len(results)
    assert counts["valid"] == len(payloads)
    assert counts["invalid"] == len(expected_invalid)
    assert {s: n for s, n in counts.items() if s not in ("valid", "invalid")} == dict.fromkeys(
        ["created", "already_created", "rejected", "failed", "uncertain", "pending"], 0
    )
    assert summary["needs_attention"] == len(expected_invalid)
    assert summary["errors"]["rows_with_errors"] == len(expected_invalid)
    assert sum(summary["errors"]["by_column"].values()) == summary["errors"]["total"]
    for column in set(ERROR_COLUMNS[sample].values()):
        assert summary["errors"]["by_column"].get(column, 0) >= 1, column


# --- property: row accounting on random CSV files ---------------------------------------------------------------

PROPERTY_MAPPING = """
[source]
delimiter = ","

[fields.typeId]
column = "Type"

[fields.contactId]
column = "Contact"

[fields.description]
column = "Notes"
"""
TYPES = ["101", "102", "103", "abc", "", "1.5", " 104 ", "-4", "1e3"]
CONTACTS = ["5001", "5002", "x", "", "99999999999999999999999", "0042"]
BAD_TYPES = {"abc", "", "1.5", "1e3"}
BAD_CONTACTS = {"x", ""}
NOTES = st.text(alphabet="ab é,;\"'\n=+-", max_size=12)  # no lone CR: csv.writer would not quote it
ROW = st.one_of(
    st.just(None),  # a blank line
    st.tuples(st.sampled_from(TYPES), st.sampled_from(CONTACTS), NOTES),
)


def _records(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, min_size=1, max_size=12), newline=st.sampled_from(["\n", "\r\n"]))
def test_validate_accounts_for_every_csv_row(rows: list[tuple[str, str, str] | None], newline: str) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(["Type", "Contact", "Notes"])
    for row in rows:
        if row is None:
            out.write(newline)
        else:
            writer.writerow(row)
    text = out.getvalue()
    # Oracle: the stdlib reader's record numbers (a quoted newline does not start a record; a blank line does).
    expected: list[tuple[int, list[str]]] = [
        (number, record)
        for number, record in enumerate(_records(text)[1:], start=2)
        if any(cell.strip() for cell in record)
    ]
    assume(expected)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "random.csv"
        source.write_bytes(text.encode("utf-8"))
        mapping = folder / "mapping.toml"
        mapping.write_text(PROPERTY_MAPPING, encoding="utf-8")
        reports = folder / "reports"
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(["validate", str(source), "--mapping", str(mapping), "--report-dir", str(reports)])
        assert code in (0, 1), f"exit {code} for:\n{text!r}"
        (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
        results = read_results(run_dir / "results.csv")

    assert [int(r["row"]) for r in results] == [number for number, _ in expected], text
    for r, (number, record) in zip(results, expected, strict=True):
        assert r["status"] in ("valid", "invalid"), r
        assert r["Type"] == record[0], (number, r, record)
        if record[0] in BAD_TYPES or record[1] in BAD_CONTACTS:
            assert r["status"] == "invalid", (number, r)
    assert code == (0 if all(r["status"] == "valid" for r in results) else 1)


def test_columns_the_mapping_does_not_read_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A column the mapping does not read is neither checked nor sent: the run says so, by name, so a date column
    full of mistakes is not taken for a checked one."""
    source = tmp_path / "jobs.csv"
    lines = (SAMPLES / "legacy_jobs.csv").read_text(encoding="cp1252").splitlines()  # (the sample is cp1252)
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    extra = [f"{lines[0]}{delimiter}Scheduled Date{delimiter}Notes 2"]
    extra += [f"{line}{delimiter}2025-02-30{delimiter}x" for line in lines[1:4]]
    source.write_text("\n".join(extra) + "\n", encoding="cp1252")
    report_dir = tmp_path / "reports"
    code = cli_main(
        ["validate", str(source), "--mapping", str(MAPPINGS / "legacy_csv.toml"), "--report-dir", str(report_dir)]
    )
    assert code in (0, 1)
    said = (
        "3 columns of the file are not in the mapping, so not checked and not sent: "
        "'Raised On', 'Scheduled Date', 'Notes 2'."
    )
    assert said in " ".join(capsys.readouterr().out.split())  # (the terminal output may wrap it)
    summary = json.loads(next(report_dir.glob("*/summary.json")).read_text(encoding="utf-8"))
    assert said in summary["notes"]
