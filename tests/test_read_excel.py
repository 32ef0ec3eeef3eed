"""Tests of reading workbooks: text rendering, row numbers, sheets, headers, error cells, corrections files."""

from __future__ import annotations

import datetime
import zipfile
from pathlib import Path

import openpyxl
import polars as pl
import pytest
import xlsxwriter

from pipeline.errors import InputFileError
from pipeline.model import ORIGIN_ROW, ROW, CellError
from pipeline.read import read_table


def workbook(path: Path, sheets: dict[str, dict[str, object]]) -> Path:
    """Write an .xlsx with openpyxl: {sheet: {cell ref: value}}; "#N/A"-like strings become error cells."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, cells in sheets.items():
        ws = wb.create_sheet(name)
        for ref, value in cells.items():
            ws[ref] = value
            if isinstance(value, str) and value.startswith("#") and value.endswith(("!", "A", "?", "0")):
                ws[ref].data_type = "e"
    wb.save(path)
    return path


def test_text_numbers_dates_and_leading_zeros(tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "jobs.xlsx",
        {
            "Jobs": {
                "A1": "Id",
                "B1": "Code",
                "C1": "Due",
                "D1": "At",
                "E1": "Amount",
                "F1": "Time",
                "A2": 1234,
                "B2": "00123",
                "C2": datetime.date(2024, 1, 1),
                "D2": datetime.datetime(2024, 1, 1, 9, 30),
                "E2": 12.5,
                "F2": datetime.time(1, 30),
            }
        },
    )
    t = read_table(path)
    assert (t.kind, t.sheet, t.columns) == ("excel", "Jobs", ["Id", "Code", "Due", "At", "Amount", "Time"])
    assert t.frame.schema[ROW] == pl.Int64
    assert all(t.frame.schema[c] == pl.String for c in t.columns)
    assert t.frame.rows() == [("1234", "00123", "2024-01-01", "2024-01-01 09:30:00", "12.5", "01:30:00", 2, 2)]
    assert t.cell_errors == []


def test_late_text_after_150_numbers_is_kept(tmp_path: Path) -> None:
    cells: dict[str, object] = {"A1": "Customer"}
    cells.update({f"A{r}": r * 10 for r in range(2, 152)})
    cells["A152"] = "C-0042"
    t = read_table(workbook(tmp_path / "late.xlsx", {"Jobs": cells}))
    assert t.frame["Customer"][0] == "20"
    assert t.frame["Customer"][-1] == "C-0042"
    assert t.frame[ROW][-1] == 152


def test_row_numbers_with_leading_and_interior_blank_rows(tmp_path: Path) -> None:
    path = tmp_path / "gaps.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Jobs"
    ws["C2"].font = openpyxl.styles.Font(bold=True)  # styled but empty: not "used"
    ws["B4"], ws["C4"] = "ref", "qty"
    ws["B5"], ws["C5"] = "A", 1
    ws["B8"], ws["C8"] = "B", 2
    ws["B9"], ws["C9"] = "   ", None  # whitespace only: a blank row
    ws["C12"].font = openpyxl.styles.Font(bold=True)  # trailing styled row
    wb.save(path)
    t = read_table(path)
    assert t.frame.rows() == [("A", "1", 5, 5), ("B", "2", 8, 8)]


def test_header_row_three(tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "h3.xlsx",
        {"Jobs": {"A1": "Job export", "A2": "by someone", "A3": "ref", "B3": "qty", "A4": "X", "B4": 5}},
    )
    t = read_table(path, header_row=3)
    assert t.columns == ["ref", "qty"]
    assert t.frame.rows() == [("X", "5", 4, 4)]


def test_first_sheet_with_data_is_chosen(tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "readme.xlsx",
        {
            "Readme": {"A1": "How to fill this workbook", "A2": "One row per job", "A3": "Dates as dd/mm/yyyy"},
            "Empty": {},
            "Headers only": {"A1": "ref", "B1": "qty"},
            "Jobs": {"A1": "ref", "B1": "qty", "A2": "J1", "B2": 3},
            "Later": {"A1": "ref", "B1": "qty", "A2": "other"},
        },
    )
    t = read_table(path)
    assert (t.sheet, t.frame.rows()) == ("Jobs", [("J1", "3", 2, 2)])
    assert read_table(path, sheet="Later").frame["ref"].to_list() == ["other"]
    assert read_table(path, sheet="Readme").columns == ["How to fill this workbook"]


def test_one_column_sheet_is_chosen_when_no_wider_one(tmp_path: Path) -> None:
    path = workbook(tmp_path / "one.xlsx", {"Empty": {}, "Refs": {"A1": "ref", "A2": "J1", "A3": "J2"}})
    t = read_table(path)
    assert (t.sheet, t.frame["ref"].to_list()) == ("Refs", ["J1", "J2"])


def test_unknown_sheet_lists_sheets(tmp_path: Path) -> None:
    path = workbook(tmp_path / "s.xlsx", {"Readme": {"A1": "x"}, "Jobs": {"A1": "ref", "A2": "1"}})
    with pytest.raises(InputFileError) as err:
        read_table(path, sheet="jobs")
    assert str(err.value) == (
        f"{path}: no sheet named 'jobs'; the sheets are 'Readme', 'Jobs'; "
        "give one of them with --sheet or `sheet` in the mapping's [source]"
    )


def test_named_sheet_without_data_rows(tmp_path: Path) -> None:
    path = workbook(tmp_path / "s.xlsx", {"Readme": {"A1": "x"}, "Jobs": {"A1": "ref", "A2": "1"}})
    with pytest.raises(InputFileError) as err:
        read_table(path, sheet="Readme")
    assert str(err.value) == (
        f"{path}, sheet 'Readme': has headers (row 1) but no data rows under them; "
        "check the file, the sheet and header_row"
    )


def test_no_sheet_has_data(tmp_path: Path) -> None:
    path = workbook(tmp_path / "s.xlsx", {"Jobs": {"A1": "ref", "B1": "qty"}})
    with pytest.raises(InputFileError) as err:
        read_table(path)
    assert str(err.value) == (
        f"{path}: no sheet has data rows under a header (sheets: 'Jobs'); check the file or header_row"
    )


def test_error_cells_and_uncached_formulas_are_reported(tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "err.xlsx",
        {
            "Jobs": {
                "B3": "ref",
                "C3": "contact",
                "D3": "total",
                "B4": "J1",
                "C4": "#N/A",
                "D4": 5,
                "B5": "J2",
                "C5": 7,
                "D5": "=C5*2",
                "B6": None,
                "C6": "#REF!",
                "B7": "J4",
                "C7": 8,
                "D7": "#DIV/0!",
            }
        },
    )
    t = read_table(path)
    assert t.frame.rows() == [
        ("J1", None, "5", 4, 4),
        ("J2", "7", None, 5, 5),
        (None, None, None, 6, 6),  # kept: its only cell is an error, so the row needs an outcome
        ("J4", "8", None, 7, 7),
    ]
    fix = "; fix the formula or type the value"
    assert t.cell_errors == [
        CellError(4, None, "contact", "error_cell", f"Column 'contact' (cell C4) shows #N/A in Excel{fix}"),
        CellError(
            5, None, "total", "error_cell", f"Column 'total' (cell D5) has a formula with no saved result in Excel{fix}"
        ),
        CellError(6, None, "contact", "error_cell", f"Column 'contact' (cell C6) shows #REF! in Excel{fix}"),
        CellError(7, None, "total", "error_cell", f"Column 'total' (cell D7) shows #DIV/0! in Excel{fix}"),
    ]


def test_formula_with_saved_value_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cached.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Jobs")
    ws.write_string(0, 0, "qty")
    ws.write_string(0, 1, "label")
    ws.write_number(1, 0, 2)
    ws.write_formula(2, 0, "=A2*2", None, 4)
    ws.write_formula(1, 1, '=IF(A2>5,"big","")', None, "")
    ws.write_string(2, 1, "x")
    wb.close()
    t = read_table(path)
    assert t.frame.rows() == [("2", None, 2, 2), ("4", "x", 3, 3)]
    assert t.cell_errors == []


def test_duplicate_blank_and_reserved_headers(tmp_path: Path) -> None:
    dup = workbook(tmp_path / "dup.xlsx", {"Jobs": {"B1": "qty", "C1": "ref", "D1": "qty", "B2": 1}})
    with pytest.raises(InputFileError) as err:
        read_table(dup)
    assert str(err.value) == (
        f"{dup}, sheet 'Jobs': duplicate headers: 'qty' in column B and column D; give every column a different header"
    )
    blank = workbook(tmp_path / "blank.xlsx", {"Jobs": {"A1": "ref", "C1": "qty", "A2": 1, "B2": 2, "C2": 3}})
    with pytest.raises(InputFileError) as err:
        read_table(blank)
    assert str(err.value) == (
        f"{blank}, sheet 'Jobs': row 1 was read as the header row, but 1 column with data has no header there "
        "(column B); type the missing headers, or give the right header row (--header-row or the mapping's [source])"
    )
    reserved = workbook(tmp_path / "res.xlsx", {"Jobs": {"A1": ORIGIN_ROW, "A2": 1}})
    with pytest.raises(InputFileError, match=f"header '{ORIGIN_ROW}' \\(column A\\) is reserved"):
        read_table(reserved)


def test_corrections_workbook_round_trip(tmp_path: Path) -> None:
    cells: dict[str, object] = {"A1": "ref", "B1": "qty", "C1": "row", "D1": "status", "E1": "errors"}
    cells.update({"A2": "J1", "B2": "x", "C2": "17", "D2": "invalid", "E2": "qty: not a number"})
    t = read_table(workbook(tmp_path / "corr.xlsx", {"Corrections": cells}))
    assert t.is_corrections
    assert t.columns == ["ref", "qty"]
    assert t.frame.rows() == [("J1", "x", 2, 17)]


def test_status_errors_columns_not_last_is_not_corrections(tmp_path: Path) -> None:
    cells = {"A1": "row", "B1": "status", "C1": "errors", "D1": "ref", "A2": "1", "B2": "s", "C2": "e", "D2": "r"}
    t = read_table(workbook(tmp_path / "not.xlsx", {"Jobs": cells}))
    assert not t.is_corrections
    assert t.columns == ["row", "status", "errors", "ref"]
    assert t.frame[ORIGIN_ROW].to_list() == [2]


def test_error_cells_found_across_scan_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells: dict[str, object] = {"A1": "ref", "B1": "value"}
    for r in range(2, 300):
        cells[f"A{r}"] = f"J{r}"
        cells[f"B{r}"] = "#N/A" if r % 37 == 0 else r
    path = workbook(tmp_path / "chunks.xlsx", {"Jobs": cells})
    whole = read_table(path).cell_errors
    monkeypatch.setattr("pipeline.read.excel._CHUNK", 97)  # pieces far smaller than a row
    pieces = read_table(path).cell_errors
    assert [e.row for e in whole] == [r for r in range(2, 300) if r % 37 == 0]
    assert pieces == whole


def test_clean_workbook_is_not_scanned_and_a_mismatch_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Cells with content in the XML == non-null cells calamine read (formulas with a saved value, styled blank
    # cells and empty strings included): no error cell is possible, so the regex scan is skipped.
    path = tmp_path / "clean.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Jobs")
    bold = wb.add_format({"bold": True})
    ws.write_row(0, 0, ["ref", "qty", "note"])
    for r in range(1, 60):
        ws.write_string(r, 0, f"J{r}")
        if r % 7 == 0:
            ws.write_formula(r, 1, "=ROW()*2", None, r * 2)
        elif r % 11 == 0:
            ws.write_blank(r, 1, None, bold)
        else:
            ws.write_number(r, 1, r)
        if r % 5 == 0:
            ws.write_string(r, 2, "x")
    wb.close()

    def no_scan(*args: object) -> list[object]:
        raise AssertionError("scanned a workbook whose cells were all read")

    monkeypatch.setattr("pipeline.read.excel._scan", no_scan)
    t = read_table(path)
    assert t.cell_errors == []
    assert t.frame.height == 59
    assert t.frame.filter(pl.col(ROW) == 15)["qty"].to_list() == ["28"]  # row 15 holds =ROW()*2 of sheet row 15
    with_error = workbook(tmp_path / "err.xlsx", {"Jobs": {"A1": "ref", "B1": "qty", "A2": "J1", "B2": "#N/A"}})
    with pytest.raises(InputFileError, match="scanned a workbook"):  # (read_table wraps the AssertionError)
        read_table(with_error)


# --- OpenDocument (.ods): what LibreOffice writes, made by hand (no ODS writer among our dependencies) -------------

_ODS_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"'
)


def ods_cell(value: object) -> str:
    """One table-cell as LibreOffice saves it: text, a number, a date, ("error", "#N/A"), ("repeat", n) blanks."""
    if value is None:
        return "<table:table-cell/>"
    if isinstance(value, tuple) and value[0] == "repeat":
        return f'<table:table-cell table:number-columns-repeated="{value[1]}"/>'
    if isinstance(value, tuple) and value[0] == "error":
        return (
            '<table:table-cell table:formula="of:=NA()" office:value-type="string" office:string-value="" '
            f'calcext:value-type="error"><text:p>{value[1]}</text:p></table:table-cell>'
        )
    if isinstance(value, float | int):
        return (
            f'<table:table-cell office:value-type="float" office:value="{value}">'
            f"<text:p>{value}</text:p></table:table-cell>"
        )
    if isinstance(value, datetime.date):
        return (
            f'<table:table-cell office:value-type="date" office:date-value="{value.isoformat()}">'
            f"<text:p>{value}</text:p></table:table-cell>"
        )
    return f'<table:table-cell office:value-type="string"><text:p>{value}</text:p></table:table-cell>'


def ods_row(cells: list[object] | int) -> str:
    """A row of cells, or an int n: n empty rows (one element, as LibreOffice writes them)."""
    if isinstance(cells, int):
        return f'<table:table-row table:number-rows-repeated="{cells}"><table:table-cell/></table:table-row>'
    return "<table:table-row>" + "".join(ods_cell(c) for c in cells) + "</table:table-row>"


def ods_workbook(path: Path, sheets: dict[str, list[list[object] | int]]) -> Path:
    tables = "".join(
        f'<table:table table:name="{name}">' + "".join(ods_row(r) for r in rows) + "</table:table>"
        for name, rows in sheets.items()
    )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {_ODS_NS} office:version="1.3">'
        f"<office:body><office:spreadsheet>{tables}</office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">'
        '<manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>'
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_ods_text_numbers_dates_and_error_cells(tmp_path: Path) -> None:
    path = ods_workbook(
        tmp_path / "jobs.ods",
        {
            "Notes": [["read me"]],
            "Jobs": [
                2,  # two empty rows: the header is on row 3
                ["Ref", "Code", "Qty", "When", "Contact"],
                ["A1", "00123", 1234, datetime.date(2024, 3, 5), "x"],
                ["A2", ("error", "#N/A"), 12.5, None, "y"],
                [("repeat", 3), ("error", "#DIV/0!"), "z"],  # D6, after three empty cells in one element
            ],
        },
    )
    t = read_table(path, header_row=3, sheet="Jobs")
    # (calamine reads an error cell as blank: without the scan, row 5 would be "valid" with no Code)
    assert t.frame.select("Ref", "Code", "Qty", "When", "Contact", ROW).rows() == [
        ("A1", "00123", "1234", "2024-03-05", "x", 4),
        ("A2", None, "12.5", None, "y", 5),
        (None, None, None, None, "z", 6),
    ]
    assert [(e.row, e.column, e.check) for e in t.cell_errors] == [(5, "Code", "error_cell"), (6, "When", "error_cell")]
    assert "(cell B5) shows #N/A in the workbook" in t.cell_errors[0].message
    assert "(cell D6) shows #DIV/0! in the workbook" in t.cell_errors[1].message


def test_xls_text_numbers_dates(tmp_path: Path) -> None:
    # an old binary workbook (BIFF8), written by xlwt: same cells as text as from .xlsx
    import xlwt

    book = xlwt.Workbook()
    book.add_sheet("Readme").write(0, 0, "see Jobs")
    sheet = book.add_sheet("Jobs")
    dates = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    rows: list[list[object]] = [
        ["Ref", "Code", "Qty", "When"],
        ["A1", "00123", 1234.0, datetime.date(2024, 3, 5)],
        ["A2", "x", 12.5, None],
    ]
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            if isinstance(value, datetime.date):
                sheet.write(r, c, value, dates)
            elif value is not None:
                sheet.write(r, c, value)
    book.save(str(tmp_path / "jobs.xls"))
    t = read_table(tmp_path / "jobs.xls")
    assert t.sheet == "Jobs"  # the first sheet with a header of two or more columns and data under it
    assert t.frame.rows() == [("A1", "00123", "1234", "2024-03-05", 2, 2), ("A2", "x", "12.5", None, 3, 3)]


def test_ods_without_error_cells_is_not_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.read.excel as read_excel_module

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("content.xml parsed although no cell is an error")

    monkeypatch.setattr(read_excel_module.ElementTree, "iterparse", no_parse)
    path = ods_workbook(tmp_path / "clean.ods", {"Jobs": [["Ref", "Code"], ["A1", "007"]]})
    t = read_table(path)
    assert t.frame.select("Ref", "Code").rows() == [("A1", "007")] and t.cell_errors == []
