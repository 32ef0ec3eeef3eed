"""The reader's messages a new user meets in the first hour, each pinned word for word: a wrong header row, a
workbook still open in Excel, an empty workbook, an Excel 4 file, a badly quoted CSV, a classic-Mac CSV with a
bad byte, a hostile .ods through the command line (one line on stderr, nothing from the native library)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import openpyxl
import pytest
from jobfiles import jobimport

from pipeline.errors import InputFileError
from pipeline.read import read_table

MAPPING = """
[fields.typeId]
column = "Type"
[fields.contactId]
column = "Customer"
"""


def jobs_workbook(path: Path, rows: list[list[object]], title: str | None = None) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Jobs"
    if title is not None:
        ws.append([title])
        ws.append([])
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def validate(tmp_path: Path, source: Path) -> tuple[int, str]:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING, encoding="utf-8")
    result = jobimport(
        "validate",
        source,
        "--mapping",
        mapping,
        "--report-dir",
        tmp_path / "reports",
        env=dict(os.environ),
        cwd=tmp_path,
    )
    assert "Traceback" not in result.stderr
    return result.returncode, result.stderr


def test_wrong_header_row_names_the_row_used_and_suggests_the_real_one(tmp_path: Path) -> None:
    path = jobs_workbook(
        tmp_path / "jobs.xlsx",
        [["Type", "Customer", "Ref", "Notes"], [101, 2001, "A1", "x"], [102, 2002, "A2", "y"]],
        title="Jobs export, December",
    )
    with pytest.raises(InputFileError) as err:
        read_table(path)
    assert str(err.value) == (
        f"{path}, sheet 'Jobs': row 1 was read as the header row, but 3 columns with data have no header there "
        "(column B, column C, column D); the headers seem to be lower down: row 3 is the first with a value in "
        "every column; give --header-row 3 (or header_row = 3 in the mapping's [source]), or type the missing headers"
    )
    assert read_table(path, header_row=3).columns == ["Type", "Customer", "Ref", "Notes"]


def test_wrong_header_row_in_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_bytes(b"Exported 2024-12-05,,\nType,Customer,Ref\n101,2001,A1\n")
    with pytest.raises(InputFileError) as err:
        read_table(path)
    assert str(err.value) == (
        f"{path}: row 1 was read as the header row, but 2 columns with data have no header there (column 2, "
        "column 3); the headers seem to be lower down: row 2 is the first with a value in every column; give "
        "--header-row 2 (or header_row = 2 in the mapping's [source]), or type the missing headers"
    )


@pytest.mark.parametrize("lock_name", ["~$jobs.xlsx", ".~lock.jobs.xlsx#"])
def test_workbook_open_in_excel_is_warned_about(tmp_path: Path, lock_name: str) -> None:
    path = jobs_workbook(tmp_path / "jobs.xlsx", [["Type", "Customer"], [101, 2001]])
    assert read_table(path).warnings == []
    (tmp_path / lock_name).write_bytes(b"\x0bsomeone   ")
    expected = (
        f"{path}: may be open in Excel or LibreOffice with changes not saved (its lock file {lock_name} is beside "
        "it): what was read is the file as last saved; save and close it, then run again"
    )
    assert read_table(path).warnings == [expected]
    code, stderr = validate(tmp_path, path)
    assert code == 0
    assert stderr.splitlines() == [f"jobimport: warning: {expected}"]


def test_long_workbook_name_lock_file(tmp_path: Path) -> None:
    # Excel writes ~$ over the first two letters of a long name
    path = jobs_workbook(tmp_path / "december_jobs.xlsx", [["Type", "Customer"], [101, 2001]])
    (tmp_path / "~$cember_jobs.xlsx").write_bytes(b"x")
    assert "~$cember_jobs.xlsx" in read_table(path).warnings[0]


def test_empty_workbook_is_called_empty(tmp_path: Path) -> None:
    path = jobs_workbook(tmp_path / "empty.xlsx", [])
    with pytest.raises(InputFileError) as err:
        read_table(path)
    assert str(err.value) == (
        f"{path}: the workbook is empty (no sheet has a cell with a value); "
        "check it is the right file and that it was saved with its data"
    )
    with pytest.raises(InputFileError) as err:
        read_table(path, sheet="Jobs")
    assert str(err.value) == (
        f"{path}, sheet 'Jobs': is empty (no cell has a value); check it is the right file and sheet, "
        "and that it was saved with its data"
    )
    code, stderr = validate(tmp_path, path)
    assert code == 2
    assert stderr.splitlines() == [
        f"jobimport: {path}: the workbook is empty (no sheet has a cell with a value); "
        "check it is the right file and that it was saved with its data"
    ]


def test_header_only_sheet(tmp_path: Path) -> None:
    path = jobs_workbook(tmp_path / "h.xlsx", [["Type", "Customer"]])
    with pytest.raises(InputFileError) as err:
        read_table(path, sheet="Jobs")
    assert str(err.value) == (
        f"{path}, sheet 'Jobs': has headers (row 1) but no data rows under them; "
        "check the file, the sheet and header_row"
    )


def test_header_row_below_the_data(tmp_path: Path) -> None:
    path = jobs_workbook(tmp_path / "h.xlsx", [["Type", "Customer"], [101, 2001]])
    with pytest.raises(InputFileError) as err:
        read_table(path, sheet="Jobs", header_row=5)
    assert str(err.value) == (
        f"{path}, sheet 'Jobs': has nothing at or below row 5 (the header row asked for): its last row with a "
        "value is row 2; give the right header row (--header-row or the mapping's [source])"
    )


@pytest.mark.parametrize(
    ("head", "version"),
    [(b"\x09\x00\x04\x00\x02\x00\x10\x00", "Excel 2.x"), (b"\x09\x04\x06\x00\x00\x00\x10\x00", "Excel 4.0")],
)
def test_very_old_excel_files_are_unsupported_not_damaged(tmp_path: Path, head: bytes, version: str) -> None:
    for name in ("old.xls", "renamed.xlsx"):
        path = tmp_path / name
        path.write_bytes(head + b"\x00" * 200)
        with pytest.raises(InputFileError) as err:
            read_table(path)
        assert str(err.value) == (
            f"{path}: is an {version} file (from before 1995), a format jobimport does not support; "
            "open it in Excel or LibreOffice and save it as .xlsx"
        )


@pytest.mark.parametrize(
    ("data", "row", "what"),
    [
        (b'ref,qty\nA1,1\n"A"2,3\nA3,4\n', 3, "a closing quote is followed by other text before the next delimiter"),
        (b'ref,qty\nA1,1\nA2,"3\nA3,4\n', 3, "a quote is opened and never closed"),
    ],
)
def test_badly_quoted_csv_names_the_row_in_words(tmp_path: Path, data: bytes, row: int, what: str) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(data)
    with pytest.raises(InputFileError) as err:
        read_table(path)
    assert str(err.value) == (
        f"{path}: row {row} cannot be split into comma-separated fields ({what}); fix the quotes in that row: "
        'a value with quotes must be wholly in quotes, with each quote inside doubled ("")'
    )
    assert "chunk" not in str(err.value) and "row_offset" not in str(err.value)


def test_classic_mac_csv_bad_byte_names_its_line(tmp_path: Path) -> None:
    lines = [b"ref,qty"] + [b"A%d,1" % i for i in range(75)] + [b"caf\xe9,2", b"\x81\x8d,3"]
    path = tmp_path / "mac.csv"
    path.write_bytes(b"\r".join(lines) + b"\r")
    data = path.read_bytes()
    e9, x81 = data.index(b"\xe9"), data.index(b"\x81")
    with pytest.raises(InputFileError) as err:
        read_table(path)
    assert str(err.value) == (
        f"{path}: cannot be decoded as utf-8 (byte 0xe9 at offset {e9}, line 77); nor as cp1252 (byte 0x81 at "
        f"offset {x81}, line 78); save it as UTF-8 (CSV UTF-8 in Excel) or give its encoding with --encoding"
    )


def test_hostile_ods_is_one_line_on_stderr(tmp_path: Path) -> None:
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:spreadsheet>'
        '<table:table table:name="Jobs"><table:table-row><table:table-cell office:value-type="string">'
        "<text:p>Type</text:p></table:table-cell></table:table-row>"
        '<table:table-row table:number-rows-repeated="999999999"><table:table-cell '
        'table:number-columns-repeated="999999999" office:value-type="string"><text:p>x</text:p>'
        "</table:table-cell></table:table-row></table:table></office:spreadsheet></office:body>"
        "</office:document-content>"
    )
    path = tmp_path / "hostile.ods"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", content)
    code, stderr = validate(tmp_path, path)
    assert code == 2
    assert stderr.splitlines() == [
        f"jobimport: {path}: is damaged or was not saved by a spreadsheet program: it repeats a row with values "
        "999,999,999 times, more than a sheet can hold (1,048,576 rows); open it in LibreOffice and save it again"
    ]
