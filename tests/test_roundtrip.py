"""The issue-5 round trip, end to end through the command line against a real sandbox on 127.0.0.1:

import a file with several kinds of failure (our own validation and the sandbox's 422s), open the corrections
file a person gets, fix the offending cells the way a person would (openpyxl for .xlsx, the csv module for .csv),
import the corrections file with the SAME mapping, and check that exactly the fixed rows are created, under their
original row numbers, and that nothing created before is sent again.

Runs use --no-preflight: the sandbox's 422s are what these tests exercise (the pre-flight would catch them).
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from jobfiles import jobimport, legacy_mapping, read_results

from pipeline.sandbox.process import SandboxProcess

BOM = b"\xef\xbb\xbf"

HEADER = ["Ref", "Job Type", "Customer ID", "Minutes", "Notes", "PO", "Access Code", "Gate Code"]
EXTRA = ["row", "status", "errors"]
JOBS_POST = "POST /v1/jobs"


def mapping_text(header_row: int = 1) -> str:
    """One mapping for .csv and .xlsx inputs (the sheet applies to workbooks only, the delimiter is sniffed)."""
    return legacy_mapping(source={"sheet": "Jobs", "header_row": header_row}, custom_fields=True)


def run_dir(result: subprocess.CompletedProcess[str], report_dir: Path) -> Path:
    match = re.search(r"^(?:dry )?run (\S+):", result.stdout, re.MULTILINE)
    assert match, f"no run id in the output:\n{result.stdout}\n{result.stderr}"
    found = report_dir / match.group(1)
    assert found.is_dir(), found
    return found


def posts(sandbox: SandboxProcess) -> int:
    """POST /v1/jobs requests the sandbox received so far, whatever their answer."""
    return sum(sandbox.stats()["requests"].get(JOBS_POST, {}).values())


def assert_created_once(sandbox: SandboxProcess, expected_jobs: int) -> dict[str, Any]:
    stats = sandbox.stats()
    assert stats["duplicates"] == []
    assert set(stats["creations_per_reference"].values()) <= {1}, stats["creations_per_reference"]
    assert stats["jobs_created"] == expected_jobs, stats
    return stats


def is_red(cell: Any) -> bool:
    fill = cell.fill
    if fill is None or fill.fill_type != "solid":
        return False
    rgb = str(fill.fgColor.rgb or "")[-6:]
    if not re.fullmatch(r"[0-9A-Fa-f]{6}", rgb):
        return False
    r, g, b = (int(rgb[i : i + 2], 16) for i in (0, 2, 4))
    return r > g and r > b and r >= 0xC0


def check_corrections_xlsx(
    path: Path,
    sheet: str,
    header_row: int,
    expected_rows: dict[int, tuple[str, str, str]],
    originals: dict[int, dict[str, str | None]],
) -> None:
    """corrections.xlsx: only the attention rows, original columns in order then row/status/errors, every value as
    text and unchanged, the offending cell (per row: status, offending column, a word of its message) red with a
    comment, every other data cell neither red nor commented."""
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == [sheet]
    ws = wb[sheet]
    header = [c.value for c in ws[header_row]]
    assert header == HEADER + EXTRA
    for above in range(1, header_row):  # rows above the header hold no table (at most a note in column A)
        assert all(c.value is None for c in ws[above][1:]), above
    data = list(ws.iter_rows(min_row=header_row + 1))
    assert [int(r[len(HEADER)].value) for r in data] == list(expected_rows), "only the attention rows, in order"
    for cells in data:
        origin = int(cells[len(HEADER)].value)
        status, column, word = expected_rows[origin]
        values = {name: cells[i].value for i, name in enumerate(HEADER)}
        assert values == originals[origin], f"row {origin}: original values as text, unchanged"
        assert cells[len(HEADER) + 1].value == status
        errors = cells[len(HEADER) + 2].value
        assert errors and column in errors and word in errors, (origin, errors)
        for i, cell in enumerate(cells):
            name = (HEADER + EXTRA)[i]
            if name == column:
                assert is_red(cell), f"row {origin}: '{name}' should be red"
                assert cell.comment is not None and word in cell.comment.text, (origin, name, cell.comment)
            else:
                assert not is_red(cell), f"row {origin}: '{name}' should not be red"
                assert cell.comment is None, f"row {origin}: '{name}' should have no comment"


def fix_xlsx(path: Path, sheet: str, header_row: int, fixes: dict[int, dict[str, str | None]]) -> None:
    """Change cells of a corrections workbook with openpyxl, as a person in Excel would, and save it."""
    wb = openpyxl.load_workbook(path)
    ws = wb[sheet]
    names = [c.value for c in ws[header_row]]
    col = {name: i + 1 for i, name in enumerate(names)}
    for r in range(header_row + 1, ws.max_row + 1):
        origin = int(ws.cell(r, col["row"]).value)
        for name, value in fixes.get(origin, {}).items():
            ws.cell(r, col[name]).value = value
    wb.save(path)


def read_corrections_csv(path: Path) -> tuple[bytes, str, list[list[str]]]:
    """(bytes before the header line, the header line's delimiter, records from the header on)."""
    data = path.read_bytes()
    assert data.startswith(BOM), "corrections.csv keeps a UTF-8 BOM"
    text = data[len(BOM) :].decode("utf-8")
    lines = text.split("\n")
    blank = 0
    while lines[blank] == "":
        blank += 1
    header_line = lines[blank]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    records = list(csv.reader(io.StringIO("\n".join(lines[blank:]), newline=""), delimiter=delimiter))
    return data[: len(BOM) + blank], delimiter, [r for r in records if r]


def write_workbook(path: Path, header_row: int, rows: list[list[Any]]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Jobs"
    for r in range(1, header_row):
        ws.cell(r, 1, "Jobs export" if r == 1 else "Generated by the legacy system")
    for c, name in enumerate(HEADER, start=1):
        ws.cell(header_row, c, name)
    for r, values in enumerate(rows, start=header_row + 1):
        for c, value in enumerate(values, start=1):
            if value is not None:
                ws.cell(r, c, value)
    wb.save(path)


def as_text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


# --- .xlsx -------------------------------------------------------------------------------------------------------

XLSX_ROWS: dict[int, list[Any]] = {
    2: ["X-001", "BSV", 5001, 60, "Boiler service", None, "A1", "G1"],
    3: ["X-002", "BSV", 5002, "ninety", "Minutes typed as a word", None, None, None],
    4: ["X-003", "XYZ", 5003, 30, "Unknown job type code", None, None, None],
    5: ["X-004", "BSV", None, 30, "No customer", None, None, None],
    6: ["X-005", "ERP", 5005, 30, "Emergency repair without an order number", None, None, None],
    7: ["X-006", "ERP", 5006, 30, "Gate code on an emergency repair", "PO-106", "A6", "G6"],
    8: ["X-007", "BSV", 424242, 30, "Contact that does not exist", None, None, None],
    9: ["X-008", "AIN", 5008, 20, "+44 20 7946 0000 call first", None, None, None],
}
#: attention rows of the first run: status, the offending column, a word of the message of that cell
XLSX_ATTENTION: dict[int, tuple[str, str, str]] = {
    3: ("invalid", "Minutes", "ninety"),
    4: ("invalid", "Job Type", "XYZ"),
    5: ("invalid", "Customer ID", "required"),
    6: ("rejected", "PO", "OrderNumber"),
    7: ("rejected", "Gate Code", "432633"),  # CustomFields[1].DefinitionId: index 1, Access Code is index 0
    8: ("rejected", "Customer ID", "424242"),  # ContactId
}
XLSX_FIXES: dict[int, dict[str, str | None]] = {
    3: {"Minutes": "90"},
    4: {"Job Type": "BSV"},
    5: {"Customer ID": "5004"},
    6: {"PO": "PO-105"},
    7: {"Gate Code": None},
    8: {"Customer ID": "5007"},
}


def test_roundtrip_xlsx(tmp_path: Path, sandbox_factory: Callable[..., SandboxProcess]) -> None:
    sandbox = sandbox_factory()
    env = {**os.environ, **sandbox.env()}
    source = tmp_path / "jobs.xlsx"
    write_workbook(source, 1, list(XLSX_ROWS.values()))
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(mapping_text(), encoding="utf-8")
    reports = tmp_path / "reports"

    first = jobimport(
        "run", source, "--no-preflight", "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path
    )
    assert first.returncode == 1, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    first_dir = run_dir(first, reports)
    statuses = {int(r["row"]): r["status"] for r in read_results(first_dir / "results.csv")}
    assert statuses == {
        2: "created",
        3: "invalid",
        4: "invalid",
        5: "invalid",
        6: "rejected",
        7: "rejected",
        8: "rejected",
        9: "created",
    }
    assert_created_once(sandbox, 2)
    posts_before = posts(sandbox)

    corrections = first_dir / "corrections.xlsx"
    originals = {row: dict(zip(HEADER, map(as_text, values), strict=True)) for row, values in XLSX_ROWS.items()}
    check_corrections_xlsx(corrections, "Jobs", 1, XLSX_ATTENTION, originals)
    assert not (first_dir / "corrections.csv").exists(), "corrections.csv only for CSV input"

    fix_xlsx(corrections, "Jobs", 1, XLSX_FIXES)
    fixed_input = tmp_path / "corrections.xlsx"
    fixed_input.write_bytes(corrections.read_bytes())
    second = jobimport(
        "run", fixed_input, "--no-preflight", "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path
    )
    assert second.returncode == 0, second.stdout + second.stderr
    second_rows = read_results(run_dir(second, reports) / "results.csv")
    assert [int(r["row"]) for r in second_rows] == list(XLSX_ATTENTION), "original source rows, not file rows"
    assert [r["status"] for r in second_rows] == ["created"] * len(XLSX_ATTENTION)
    assert [int(r["file_row"]) for r in second_rows] == list(range(2, 2 + len(XLSX_ATTENTION)))

    assert_created_once(sandbox, 2 + len(XLSX_FIXES))
    assert posts(sandbox) - posts_before == len(XLSX_FIXES), "only the fixed rows were sent"
    jobs = {j["reference"]: j["body"] for j in sandbox.jobs()}
    assert jobs["X-007"]["contactId"] == 5007
    assert jobs["X-002"]["plannedDuration"] == 90
    assert jobs["X-005"]["orderNumber"] == "PO-105"
    assert jobs["X-006"].get("customFields") == [{"definitionId": 432632, "value": "A6"}]
    assert jobs["X-008"]["description"] == "+44 20 7946 0000 call first"


# --- .csv --------------------------------------------------------------------------------------------------------

CSV_LINES: dict[int, str] = {
    2: "R-001;BSV;5001;60;Café visit — morning;;A1;G1",
    3: "R-002;BSV;5002;abc;Minutes typo;;;",
    4: "R-003;XYZ;5003;30;Unknown job type code;;;",
    5: "",  # a blank line: row 5 does not exist in the reports
    6: "R-004;BSV;;30;No customer;;;",
    7: "R-005;ERP;5005;30;=SUM(A1:A2) is not a formula;;;",
    8: "R-006;ERP;5006;30;Gate code on an emergency repair;PO-6;;G6",
    9: "R-007;BSV;9999;30;+44 20 7946 0000 call first;;;",
    10: "R-008;AIN;5008;20;Ordinary row;;;",
    11: "R-009;BSV;5009;1h;Still wrong minutes;;;",
    12: "R-010;SUR;5010;30;Archived job type;;;",
    13: "R-011;INS;5011;240;Install;PO-11;;",
}
CSV_ATTENTION: dict[int, tuple[str, str, str]] = {
    3: ("invalid", "Minutes", "abc"),
    4: ("invalid", "Job Type", "XYZ"),
    6: ("invalid", "Customer ID", "required"),
    7: ("rejected", "PO", "OrderNumber"),
    8: ("rejected", "Gate Code", "432633"),  # CustomFields[0].DefinitionId
    9: ("rejected", "Customer ID", "9999"),  # ContactId
    11: ("invalid", "Minutes", "1h"),
    12: ("rejected", "Job Type", "archived"),
}
CSV_FIXES: dict[int, dict[str, str]] = {
    3: {"Minutes": "45"},
    4: {"Job Type": "AIN"},
    6: {"Customer ID": "5004"},
    7: {"PO": "PO-5"},
    8: {"Gate Code": ""},
    9: {"Customer ID": "5007"},
}
CSV_CREATED_FIRST = [2, 10, 13]


def csv_originals() -> dict[int, dict[str, str | None]]:
    return {
        row: dict(zip(HEADER, (v or None for v in line.split(";")), strict=True))
        for row, line in CSV_LINES.items()
        if line
    }


def test_roundtrip_csv(tmp_path: Path, sandbox_factory: Callable[..., SandboxProcess]) -> None:
    sandbox = sandbox_factory()
    env = {**os.environ, **sandbox.env()}
    source = tmp_path / "jobs.csv"
    source.write_bytes(BOM + ("\n".join([";".join(HEADER), *CSV_LINES.values()]) + "\n").encode("utf-8"))
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(mapping_text(), encoding="utf-8")
    reports = tmp_path / "reports"

    first = jobimport(
        "run", source, "--no-preflight", "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path
    )
    assert first.returncode == 1, first.stdout + first.stderr
    first_dir = run_dir(first, reports)
    first_rows = read_results(first_dir / "results.csv")
    assert [int(r["row"]) for r in first_rows] == [r for r, line in CSV_LINES.items() if line]
    statuses = {int(r["row"]): r["status"] for r in first_rows}
    assert {r for r, s in statuses.items() if s == "created"} == set(CSV_CREATED_FIRST)
    assert {r: s for r, s in statuses.items() if s != "created"} == {r: a[0] for r, a in CSV_ATTENTION.items()}
    assert_created_once(sandbox, len(CSV_CREATED_FIRST))
    posts_before = posts(sandbox)

    # The workbook a person opens (the input was CSV: the sheet is the one the mapping names, "Jobs")…
    check_corrections_xlsx(first_dir / "corrections.xlsx", "Jobs", 1, CSV_ATTENTION, csv_originals())
    # …so it is read back with the same mapping, like corrections.csv (a "Corrections" sheet was refused)
    again = jobimport(
        "validate",
        first_dir / "corrections.xlsx",
        "--mapping",
        mapping,
        "--report-dir",
        tmp_path / "check",
        env=env,
        cwd=tmp_path,
    )
    assert again.returncode == 1 and "no sheet named" not in again.stderr, again.stdout + again.stderr

    # corrections.csv: BOM, the input's delimiter, same columns, risky cells neutralised with a leading '.
    corrections = first_dir / "corrections.csv"
    prefix, delimiter, records = read_corrections_csv(corrections)
    assert prefix == BOM and delimiter == ";"
    assert records[0] == HEADER + EXTRA
    by_row = {int(rec[len(HEADER)]): rec for rec in records[1:]}
    assert list(by_row) == list(CSV_ATTENTION)
    assert by_row[7][HEADER.index("Notes")] == "'=SUM(A1:A2) is not a formula"
    assert by_row[9][HEADER.index("Notes")] == "'+44 20 7946 0000 call first"
    assert by_row[3][: len(HEADER)] == CSV_LINES[3].split(";")

    # Fix it with the csv module, keeping the BOM, the delimiter and the neutralised cells as they are.
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(records[0])
    for rec in records[1:]:
        for name, value in CSV_FIXES.get(int(rec[len(HEADER)]), {}).items():
            rec[HEADER.index(name)] = value
        writer.writerow(rec)
    fixed_input = tmp_path / "corrections.csv"
    fixed_input.write_bytes(BOM + out.getvalue().encode("utf-8"))

    second = jobimport(
        "run", fixed_input, "--no-preflight", "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path
    )
    assert second.returncode == 1, second.stdout + second.stderr  # rows 11 and 12 were left as they were
    second_rows = read_results(run_dir(second, reports) / "results.csv")
    assert [int(r["row"]) for r in second_rows] == list(CSV_ATTENTION), "original source rows, not file rows"
    assert [int(r["file_row"]) for r in second_rows] == list(range(2, 2 + len(CSV_ATTENTION)))
    second_status = {int(r["row"]): r["status"] for r in second_rows}
    assert second_status == {**dict.fromkeys(CSV_FIXES, "created"), 11: "invalid", 12: "rejected"}
    assert_created_once(sandbox, len(CSV_CREATED_FIRST) + len(CSV_FIXES))
    assert posts(sandbox) - posts_before == len(CSV_FIXES), "only the fixed rows were sent (row 12 is unchanged)"

    jobs = {j["reference"]: j["body"] for j in sandbox.jobs()}
    assert jobs["R-005"]["description"] == "=SUM(A1:A2) is not a formula", "the neutralised cell round-trips"
    assert jobs["R-007"]["description"] == "+44 20 7946 0000 call first"
    assert jobs["R-007"]["contactId"] == 5007
    assert jobs["R-002"]["plannedDuration"] == 45
    assert "customFields" not in jobs["R-006"] or jobs["R-006"]["customFields"] == []
    assert jobs["R-001"]["description"] == "Café visit — morning"

    # The original file again: everything created before is skipped, nothing is sent.
    posts_before = posts(sandbox)
    third = jobimport(
        "run", source, "--no-preflight", "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path
    )
    assert third.returncode == 1, third.stdout + third.stderr
    third_status = {int(r["row"]): r["status"] for r in read_results(run_dir(third, reports) / "results.csv")}
    assert third_status == {
        **dict.fromkeys([*CSV_CREATED_FIRST, 7, 8, 9], "already_created"),  # 7-9: created from the corrections
        **dict.fromkeys([3, 4, 6, 11], "invalid"),  # the original file still has the bad cells
        12: "rejected",
    }
    assert posts(sandbox) == posts_before, "a rerun of the original file sends nothing"
    assert_created_once(sandbox, len(CSV_CREATED_FIRST) + len(CSV_FIXES))


# --- header_row = 3 (title rows above the header) ---------------------------------------------------------------

TITLED_ROWS: dict[int, list[Any]] = {
    4: ["H-001", "BSV", "5001", "60", "First", "", "", ""],
    5: ["H-002", "BSV", "5002", "abc", "Bad minutes", "", "", ""],
    6: ["H-003", "ERP", "5003", "30", "Needs an order number", "", "", ""],
    7: ["H-004", "AIN", "5004", "30", "Last", "", "", ""],
}
TITLED_ATTENTION = {5: ("invalid", "Minutes", "abc"), 6: ("rejected", "PO", "OrderNumber")}
TITLED_FIXES: dict[int, dict[str, str | None]] = {5: {"Minutes": "75"}, 6: {"PO": "PO-H3"}}


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_roundtrip_with_title_rows_above_the_header(
    kind: str, tmp_path: Path, sandbox_factory: Callable[..., SandboxProcess]
) -> None:
    sandbox = sandbox_factory()
    env = {**os.environ, **sandbox.env()}
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(mapping_text(header_row=3), encoding="utf-8")
    reports = tmp_path / "reports"
    source = tmp_path / f"jobs.{kind}"
    if kind == "csv":
        lines = ["Jobs export", "Generated by the legacy system", ";".join(HEADER)]
        lines += [";".join(values) for values in TITLED_ROWS.values()]
        source.write_bytes(BOM + ("\n".join(lines) + "\n").encode("utf-8"))
    else:
        write_workbook(source, 3, [[v or None for v in values] for values in TITLED_ROWS.values()])

    first = jobimport(
        "run", source, "--no-preflight", "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path
    )
    assert first.returncode == 1, first.stdout + first.stderr
    first_dir = run_dir(first, reports)
    statuses = {int(r["row"]): r["status"] for r in read_results(first_dir / "results.csv")}
    assert statuses == {4: "created", 5: "invalid", 6: "rejected", 7: "created"}

    originals = {
        row: dict(zip(HEADER, (v or None for v in values), strict=True)) for row, values in TITLED_ROWS.items()
    }
    sheet = "Jobs"  # the input's sheet, or for a CSV the sheet the mapping names
    check_corrections_xlsx(first_dir / "corrections.xlsx", sheet, 3, TITLED_ATTENTION, originals)
    if kind == "xlsx":
        fixed_input = tmp_path / "corrections.xlsx"
        fixed_input.write_bytes((first_dir / "corrections.xlsx").read_bytes())
        fix_xlsx(fixed_input, sheet, 3, TITLED_FIXES)
    else:
        prefix, delimiter, records = read_corrections_csv(first_dir / "corrections.csv")
        assert prefix == BOM + b"\n\n", "the header of corrections.csv is on row 3, as in the input"
        assert delimiter == ";" and records[0] == HEADER + EXTRA
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        writer.writerow(records[0])
        for rec in records[1:]:
            for name, value in TITLED_FIXES.get(int(rec[len(HEADER)]), {}).items():
                rec[HEADER.index(name)] = value or ""
            writer.writerow(rec)
        fixed_input = tmp_path / "corrections.csv"
        fixed_input.write_bytes(prefix + out.getvalue().encode("utf-8"))

    second = jobimport(
        "run", fixed_input, "--no-preflight", "--mapping", mapping, "--report-dir", reports, env=env, cwd=tmp_path
    )
    assert second.returncode == 0, second.stdout + second.stderr
    second_rows = read_results(run_dir(second, reports) / "results.csv")
    assert [(int(r["row"]), r["status"]) for r in second_rows] == [(5, "created"), (6, "created")]
    assert_created_once(sandbox, 4)
    jobs = {j["reference"]: j["body"] for j in sandbox.jobs()}
    assert jobs["H-002"]["plannedDuration"] == 75
    assert jobs["H-003"]["orderNumber"] == "PO-H3"
