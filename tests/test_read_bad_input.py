"""Tests that every unreadable input ends in one InputFileError line naming the file and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import InputFileError
from pipeline.read import read_table


def message(path: Path, **kwargs: object) -> str:
    with pytest.raises(InputFileError) as err:
        read_table(path, **kwargs)  # type: ignore[arg-type]
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    assert err.value.exit_code == 2
    return text


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    assert message(path) == f"{path}: file not found; check the path and the file name"


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.xlsx"
    path.mkdir()
    assert message(path) == f"{path}: is a folder, not a file; give the path of the spreadsheet inside it"


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "jobs.pdf"
    path.write_bytes(b"%PDF-1.4")
    assert message(path) == (
        f"{path}: unsupported file type '.pdf'; save it as one of: .csv .tsv .txt .xlsx .xlsm .xls .ods"
    )


@pytest.mark.parametrize("name", ["empty.csv", "empty.xlsx"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert message(path) == f"{path}: file is empty (0 bytes); export the data again"


def test_garbage_named_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "garbage.xlsx"
    path.write_bytes(b"ref,qty\n1,2\n" * 10)
    assert message(path) == (
        f"{path}: is not a valid .xlsx workbook (the file is damaged or is another kind of file); "
        "open it in Excel and save it as .xlsx"
    )


def test_truncated_zip_named_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "cut.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    assert message(path).startswith(f"{path}: is not a valid .xlsx workbook")


def test_zip_without_workbook(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "other.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "not a workbook")
    text = message(path)
    assert text.startswith(f"{path}: cannot be opened as a workbook (")
    assert text.endswith("); open it in Excel and save it as .xlsx")


def test_encrypted_workbook(tmp_path: Path) -> None:
    path = tmp_path / "secret.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504)
    assert message(path) == (
        f"{path}: is encrypted (password protected) or is an old .xls file renamed to .xlsx; "
        "remove the password in Excel (File > Info > Protect Workbook) or save it as .xlsx, then try again"
    )


def test_garbage_named_xls(tmp_path: Path) -> None:
    path = tmp_path / "garbage.xls"
    path.write_bytes(b"just text")
    assert message(path) == (
        f"{path}: is not a valid .xls workbook (the file is damaged or is another kind of file); "
        "open it in Excel and save it as .xlsx"
    )


def test_bad_header_row(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"a\n1\n")
    assert message(path, header_row=0) == f"{path}: header_row must be a whole number from 1 (got 0); fix the mapping"
    assert message(path, header_row=9) == (
        f"{path}: no header found at or after row 9; check the header row (--header-row or the mapping's [source])"
    )


def test_bad_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"a\n1\n")
    assert message(path, delimiter=";;") == (
        f"{path}: delimiter ';;' is not usable; give one ASCII character such as ',' ';' '|' or 'tab'"
    )
    assert message(path, delimiter="§") == (
        f"{path}: delimiter '§' is not usable; give one ASCII character such as ',' ';' '|' or 'tab'"
    )
