"""Every workbook cell read as the text a person saw: numbers never cut, number formats that pad or decorate,
dates in both date systems, elapsed times, ODS time values, and the one date-time form of every reader.

Each test builds its own real file (openpyxl/xlsxwriter for .xlsx, xlwt for .xls, a hand-written content.xml for
.ods) and asserts the exact text of each cell, and a dry run through the command line shows the payloads carry it.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
import xlwt
from jobfiles import jobimport

from pipeline.errors import InputFileError
from pipeline.read import read_table
from pipeline.read.cells import classify, elapsed_text, iso_duration_text, render_code, serial_text


def cells(path: Path, **kw: object) -> dict[str, str | None]:
    """{kind: text} of a two-column sheet (kind, value) read by jobimport."""
    t = read_table(path, **kw)  # type: ignore[arg-type]
    return dict(t.frame.select(t.columns[0], t.columns[1]).rows())


def with_values(path: Path, values: dict[str, str]) -> Path:
    """Rewrite the stored <v> text of some cells of the first sheet ({ref: text}), e.g. the 17 significant digits
    Excel writes where openpyxl and xlsxwriter write 16."""
    member = "xl/worksheets/sheet1.xml"
    with zipfile.ZipFile(path) as zin:
        items = [(info, zin.read(info.filename)) for info in zin.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info, data in items:
            if info.filename == member:
                for ref, text in values.items():
                    data, n = re.subn(
                        rb'(<c r="%s"[^>]*>(?:<f>[^<]*</f>)?<v>)[^<]*(</v>)' % ref.encode(),
                        rb"\g<1>" + text.encode() + rb"\g<2>",
                        data,
                    )
                    assert n == 1, ref
            zout.writestr(info, data)
    return path


def kinds_workbook(path: Path, rows: list[tuple[str, object, str | None]], epoch_1904: bool = False) -> Path:
    """An .xlsx (openpyxl) with a header (kind, value) and one row per (kind, value, number format or None)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Jobs"
    ws.append(["kind", "value"])
    for kind, value, fmt in rows:
        ws.append([kind, value])
        if fmt is not None:
            ws.cell(ws.max_row, 2).number_format = fmt
    if epoch_1904:
        wb.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
    wb.save(path)
    return path


# --- .xlsx ---------------------------------------------------------------------------------------------------


def test_numbers_are_never_cut(tmp_path: Path) -> None:
    rows: list[tuple[str, object, str | None]] = [
        ("seventh", 1 / 7, None),
        ("tiny", 1.23456789012e-10, None),
        ("negative tiny", -4e-10, None),
        ("whole", 1234, None),
        ("half", 2.5, None),
        ("nine decimals", 0.123456789, None),
        ("huge", 1e20, None),
    ]
    path = with_values(kinds_workbook(tmp_path / "n.xlsx", rows), {"B2": "0.14285714285714285"})
    assert cells(path) == {
        "seventh": "0.14285714285714285",  # (calamine alone: 0.142857143)
        "tiny": "1.23456789012e-10",  # (calamine alone: 0)
        "negative tiny": "-4e-10",  # (calamine alone: -0)
        "whole": "1234",
        "half": "2.5",
        "nine decimals": "0.123456789",
        "huge": "1e+20",
    }
    for text in ("0.14285714285714285", "1.23456789012e-10", "-4e-10"):
        assert str(float(text)) == text  # the shortest text that reads back as the same number


def test_padding_and_literal_number_formats_as_shown(tmp_path: Path) -> None:
    rows: list[tuple[str, object, str | None]] = [
        ("zero padded", 100, "000000"),
        ("literal prefix", 42, '"PO-"0000'),
        ("escaped literal", 7, "\\#000"),
        ("grouped digits", 123456, "000-000"),
        ("longer than the padding", 1234567, "000000"),
        ("two decimals", 1.5, "0.00"),
        ("negative padded", -5, "000"),
        ("plain whole number format", 12, "0"),
    ]
    t = read_table(kinds_workbook(tmp_path / "f.xlsx", rows))
    assert dict(t.frame.select("kind", "value").rows()) == {
        "zero padded": "000100",
        "literal prefix": "PO-0042",
        "escaped literal": "#007",
        "grouped digits": "123-456",
        "longer than the padding": "1234567",
        "two decimals": "1.50",
        "negative padded": "-005",
        "plain whole number format": "12",
    }
    assert t.unrendered == {}
    assert t.warnings == []


def test_formats_not_reproduced_keep_the_number_and_are_noted(tmp_path: Path) -> None:
    rows: list[tuple[str, object, str | None]] = [
        ("percent", 0.25, "0%"),
        ("padding would round", 100.5, "000000"),
        ("thousands", 1234567.891, "#,##0.00"),
    ]
    path = kinds_workbook(tmp_path / "u.xlsx", rows)
    t = read_table(path)
    assert dict(t.frame.select("kind", "value").rows()) == {
        "percent": "0.25",
        "padding would round": "100.5",  # (000000 would show 000101: not the value)
        "thousands": "1234567.891",
    }
    assert t.unrendered == {"value": "0%"}
    assert t.warnings == [
        f"{path}, sheet 'Jobs': number formats not reproduced in column 'value' (0%): those cells are read as the "
        "plain number (e.g. 0.25 for 25%); check the values, or format the cells as text in Excel"
    ]


DATE_ROWS: list[tuple[str, object, str | None]] = [
    ("date", datetime.date(2024, 12, 5), None),
    ("date-time", datetime.datetime(2024, 12, 5, 14, 30), None),
    ("milliseconds", datetime.datetime(2024, 12, 5, 14, 30, 0, 123000), None),
    ("half a second", datetime.datetime(2024, 12, 5, 14, 30, 0, 500000), None),
    ("midnight", datetime.datetime(2024, 12, 5), None),
    ("time of day", datetime.time(11, 12, 12), None),
]
DATE_TEXTS = {
    "date": "2024-12-05",
    "date-time": "2024-12-05 14:30:00",
    "milliseconds": "2024-12-05 14:30:00.123",
    "half a second": "2024-12-05 14:30:00.500",
    "midnight": "2024-12-05",
    "time of day": "11:12:12",
}


@pytest.mark.parametrize("date1904", [None, "1", "true"])
def test_dates_in_one_form_in_both_date_systems(tmp_path: Path, date1904: str | None) -> None:
    path = kinds_workbook(tmp_path / "d.xlsx", DATE_ROWS, epoch_1904=date1904 is not None)
    if date1904 == "true":  # the other spelling of the same setting
        with zipfile.ZipFile(path) as zin:
            items = [(i, zin.read(i.filename)) for i in zin.infolist()]
        with zipfile.ZipFile(path, "w") as zout:
            for info, data in items:
                if info.filename == "xl/workbook.xml":
                    assert b'date1904="1"' in data
                    data = data.replace(b'date1904="1"', b'date1904="true"')
                zout.writestr(info, data)
    assert cells(path) == DATE_TEXTS


def test_a_1904_serial_is_read_in_its_own_date_system(tmp_path: Path) -> None:
    # the same stored number is another day in each system: 1,462 days apart
    wb = xlsxwriter.Workbook(tmp_path / "s.xlsx", {"date_1904": True})
    ws = wb.add_worksheet("Jobs")
    ws.write_row(0, 0, ["kind", "value"])
    ws.write_string(1, 0, "serial")
    ws.write_number(1, 1, 44169.5, wb.add_format({"num_format": "yyyy-mm-dd hh:mm"}))
    wb.close()
    assert cells(tmp_path / "s.xlsx") == {"serial": "2024-12-05 12:00:00"}
    assert serial_text(44169.5, date1904=True) == "2024-12-05 12:00:00"
    assert serial_text(45631.5, date1904=False) == "2024-12-05 12:00:00"


def test_elapsed_time_formats_as_shown(tmp_path: Path) -> None:
    duration = datetime.timedelta(hours=255, minutes=10, seconds=10)
    rows: list[tuple[str, object, str | None]] = [
        ("h:mm:ss", duration, "[h]:mm:ss"),
        ("h:mm", duration, "[h]:mm"),
        ("mm:ss", duration, "[mm]:ss"),
        ("short", datetime.timedelta(minutes=90), "[h]:mm:ss"),
    ]
    assert cells(kinds_workbook(tmp_path / "e.xlsx", rows)) == {
        "h:mm:ss": "255:10:10",  # (calamine alone: 1900-01-10 15:10:10)
        "h:mm": "255:10",
        "mm:ss": "15310:10",
        "short": "1:30:00",
    }


def test_elapsed_time_keeps_the_leading_zeros_its_format_shows(tmp_path: Path) -> None:
    """Issue 22, finding 9: `[hh]:mm:ss` showed 01:18:43 in Excel and was read 1:18:43."""
    short = datetime.timedelta(hours=1, minutes=18, seconds=43)
    rows: list[tuple[str, object, str | None]] = [
        ("hh", short, "[hh]:mm:ss"),
        ("h", short, "[h]:mm:ss"),
        ("mm", datetime.timedelta(minutes=5, seconds=7), "[mm]:ss"),
        ("long", datetime.timedelta(hours=255, minutes=10, seconds=10), "[hh]:mm:ss"),
    ]
    assert cells(kinds_workbook(tmp_path / "z.xlsx", rows)) == {
        "hh": "01:18:43",
        "h": "1:18:43",
        "mm": "05:07",
        "long": "255:10:10",
    }


def test_text_cells_are_never_reformatted(tmp_path: Path) -> None:
    rows: list[tuple[str, object, str | None]] = [
        ("text like a float", "0.14285714285714285000", None),
        ("text like a date", "2024-12-05T14:30:00", None),
        ("text in a padded format", "12", "000000"),
        ("exponent-like text", "1E5", None),
    ]
    assert cells(kinds_workbook(tmp_path / "t.xlsx", rows)) == {
        "text like a float": "0.14285714285714285000",
        "text like a date": "2024-12-05T14:30:00",
        "text in a padded format": "12",
        "exponent-like text": "1E5",
    }


def test_format_classification_and_rendering() -> None:
    assert [classify(c).kind for c in ("General", "@", "[h]:mm:ss", "yyyy-mm-dd", "000000", '"PO-"0000', "0%")] == [
        "general",
        "text",
        "elapsed",
        "date",
        "code",
        "code",
        "other",
    ]
    assert classify("#,##0.00").kind == "other"
    assert classify("0.00E+00").kind == "other"
    assert classify("[Red]0;0").kind == "other"
    assert render_code(42, '"PO-"0000') == "PO-0042"
    assert render_code(2.5, "0") is None  # would show 3
    assert render_code(0, "#") == ""
    assert elapsed_text(10.632060185185185, "[h]:mm:ss") == "255:10:10"
    assert iso_duration_text("PT11H12M12S") == "11:12:12"
    assert iso_duration_text("PT255H10M10S") == "255:10:10"
    assert iso_duration_text("P1DT2H0M0.5S") == "26:00:00.500"


# --- .ods ----------------------------------------------------------------------------------------------------

_ODS_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"'
)


def ods(path: Path, rows_xml: str, sheet: str = "Jobs") -> Path:
    """An .ods whose content.xml is written by hand (one table)."""
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {_ODS_NS} office:version="1.2">'
        f'<office:body><office:spreadsheet><table:table table:name="{sheet}">{rows_xml}</table:table>'
        "</office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>'
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("META-INF/manifest.xml", manifest)
        z.writestr("content.xml", content)
    return path


def ods_text(text: str) -> str:
    return f'<table:table-cell office:value-type="string"><text:p>{text}</text:p></table:table-cell>'


def ods_rows(rows: list[tuple[str, str]]) -> str:
    return "".join(f"<table:table-row>{ods_text(k)}{cell}</table:table-row>" for k, cell in rows)


def test_ods_times_dates_and_numbers(tmp_path: Path) -> None:
    def value(kind: str, attr: str, raw: str, shown: str) -> str:
        return (
            f'<table:table-cell office:value-type="{kind}" office:{attr}="{raw}"><text:p>{shown}</text:p>'
            "</table:table-cell>"
        )

    rows = [
        ("kind", ods_text("value")),
        ("time of day", value("time", "time-value", "PT11H12M12S", "11:12:12")),
        ("duration", value("time", "time-value", "PT255H10M10S", "255:10:10")),
        # issue 22, finding 9: milliseconds the cell's format hides are not shown
        ("hidden ms", value("time", "time-value", "PT01H18M42.600S", "01:18:43")),
        ("shown ms", value("time", "time-value", "PT00H00M02.250S", "00:00:02.25")),
        ("seventh", value("float", "value", "0.14285714285714285", "0.142857")),
        ("tiny", value("float", "value", "1.23456789012E-10", "1.23E-10")),
        ("whole", value("float", "value", "1234", "1234")),
        ("date", value("date", "date-value", "2024-12-05", "05/12/24")),
        ("date-time", value("date", "date-value", "2024-12-05T14:30:00", "05/12/24 14:30")),
        ("milliseconds", value("date", "date-value", "2024-12-05T14:30:00.123", "05/12/24 14:30")),
        ("midnight", value("date", "date-value", "2024-12-05T00:00:00", "05/12/24")),
        ("text like a date", ods_text("2024-12-05T14:30:00")),
    ]
    assert cells(ods(tmp_path / "t.ods", ods_rows(rows))) == {
        "time of day": "11:12:12",  # (calamine alone: blank)
        "duration": "255:10:10",
        "hidden ms": "01:18:43",
        "shown ms": "00:00:02.250",
        "seventh": "0.14285714285714285",
        "tiny": "1.23456789012e-10",
        "whole": "1234",
        "date": "2024-12-05",
        "date-time": "2024-12-05 14:30:00",  # (calamine alone: 2024-12-05T14:30:00)
        "milliseconds": "2024-12-05 14:30:00.123",
        "midnight": "2024-12-05",
        "text like a date": "2024-12-05T14:30:00",
    }


def test_ods_time_cells_make_rows_different(tmp_path: Path) -> None:
    # rows that differ only by a time once looked identical (duplicates): each must keep its own time
    time = '<table:table-cell office:value-type="time" office:time-value="{}"><text:p>x</text:p></table:table-cell>'
    rows = [("ref", ods_text("at")), ("A", time.format("PT08H00M00S")), ("A", time.format("PT09H30M00S"))]
    t = read_table(ods(tmp_path / "r.ods", ods_rows(rows)))
    assert t.frame.select("ref", "at").rows() == [("A", "08:00:00"), ("A", "09:30:00")]


def test_ods_too_many_cells_is_refused_in_one_message(tmp_path: Path) -> None:
    # within a sheet's rows and columns, but 100,000 × 16,384 cells: calamine refuses it; said in our words
    rows = (
        f"<table:table-row>{ods_text('a')}{ods_text('b')}</table:table-row>"
        '<table:table-row table:number-rows-repeated="100000">'
        '<table:table-cell table:number-columns-repeated="16384" office:value-type="string">'
        "<text:p>x</text:p></table:table-cell></table:table-row>"
    )
    path = ods(tmp_path / "big.ods", rows)
    with pytest.raises(InputFileError) as err:
        read_table(path)
    assert str(err.value) == (
        f"{path}: is damaged or too large: it asks for 1,638,416,384 cells, more than the 100,000,000 jobimport "
        "reads; open it in Excel or LibreOffice and save it again"
    )


def test_ods_blank_rest_of_a_sheet_is_read_quietly(tmp_path: Path) -> None:
    # empty runs longer than a sheet (the blank rest of it): calamine cuts them and warns about it through
    # Python's logging ("ods column repeat count capped (20000 -> 16382 …)"), which Python would print on stderr
    rows = ods_rows([("ref", ods_text("qty"))])
    rows += (
        f"<table:table-row>{ods_text('A1')}{ods_text('2')}"
        '<table:table-cell table:number-columns-repeated="20000"/></table:table-row>'
        '<table:table-row table:number-rows-repeated="2000000"><table:table-cell/></table:table-row>'
    )
    path = ods(tmp_path / "rest.ods", rows)
    t = read_table(path)
    assert t.frame.select("ref", "qty").rows() == [("A1", "2")]
    # as a user's process meets it (pytest installs logging handlers of its own)
    code = "import sys; from pipeline.read import read_table; print(read_table(sys.argv[1]).frame.height)"
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert (done.stdout, done.stderr) == ("1\n", "")


def test_ods_values_past_a_sheet_s_end_are_refused(tmp_path: Path) -> None:
    # calamine would drop the row below the long empty run (silently but for a line of its own): refused
    rows = ods_rows([("ref", ods_text("qty")), ("A1", ods_text("2"))])
    rows += '<table:table-row table:number-rows-repeated="2000000"><table:table-cell/></table:table-row>'
    rows += ods_rows([("A2", ods_text("3"))])
    path = ods(tmp_path / "past.ods", rows)
    with pytest.raises(InputFileError) as err:
        read_table(path)
    assert str(err.value) == (
        f"{path}: has values below row 1,048,576, more rows than jobimport can read; split the sheet into smaller files"
    )


def test_hostile_ods_is_refused_in_one_message(tmp_path: Path) -> None:
    rows = (
        f"<table:table-row>{ods_text('a')}{ods_text('b')}</table:table-row>"
        '<table:table-row table:number-rows-repeated="999999999">'
        '<table:table-cell table:number-columns-repeated="999999999" office:value-type="string">'
        "<text:p>x</text:p></table:table-cell></table:table-row>"
    )
    path = ods(tmp_path / "hostile.ods", rows)
    with pytest.raises(InputFileError) as err:
        read_table(path)
    assert str(err.value) == (
        f"{path}: is damaged or was not saved by a spreadsheet program: it repeats a row with values 999,999,999 "
        "times, more than a sheet can hold (1,048,576 rows); open it in LibreOffice and save it again"
    )


# --- .xls ----------------------------------------------------------------------------------------------------


def test_xls_cells(tmp_path: Path) -> None:
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Jobs")
    for c, h in enumerate(["kind", "value"]):
        ws.write(0, c, h)
    date_style = xlwt.easyxf(num_format_str="yyyy-mm-dd hh:mm:ss")
    rows: list[tuple[str, object, object]] = [
        ("whole", 1234, None),
        ("half", 2.5, None),
        ("seventh", 1 / 7, None),
        ("tiny", 1.23456789012e-10, None),
        ("negative tiny", -4e-10, None),
        ("boolean", True, None),
        ("text", "00123 • ’quoted’", None),
        ("date-time", datetime.datetime(2024, 12, 5, 14, 30), date_style),
    ]
    for r, (kind, value, style) in enumerate(rows, start=1):
        ws.write(r, 0, kind)
        if style is None:
            ws.write(r, 1, value)
        else:
            ws.write(r, 1, value, style)
    wb.save(str(tmp_path / "x.xls"))
    assert cells(tmp_path / "x.xls") == {
        "whole": "1234",
        "half": "2.5",
        "seventh": "0.14285714285714285",  # (calamine alone: 0.142857143)
        "tiny": "1.23456789012e-10",
        "negative tiny": "-4e-10",
        "boolean": "true",
        "text": "00123 • ’quoted’",
        "date-time": "2024-12-05 14:30:00",
    }


# --- what the payload carries ----------------------------------------------------------------------------------

PAYLOAD_MAPPING = """
[fields.typeId]
column = "Type"
[fields.contactId]
column = "Customer"
[fields.reference]
column = "Ref"
[fields.orderNumber]
column = "PO"
[fields.description]
column = "Notes"
[custom_fields]
"Ratio" = 432632
"Time on site" = 432633
"""


def test_dry_run_payload_carries_the_text_as_shown(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Jobs"
    ws.append(["Type", "Customer", "Ref", "PO", "Notes", "Ratio", "Time on site"])
    ws.append([101, 2001, 100, 42, "first", 1 / 7, datetime.timedelta(hours=255, minutes=10, seconds=10)])
    ws["C2"].number_format = "000000"
    ws["D2"].number_format = '"PO-"0000'
    ws["G2"].number_format = "[h]:mm:ss"
    path = tmp_path / "jobs.xlsx"
    wb.save(path)
    with_values(path, {"F2": "0.14285714285714285"})
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(PAYLOAD_MAPPING, encoding="utf-8")
    reports = tmp_path / "reports"
    result = jobimport(
        "validate", path, "--mapping", mapping, "--report-dir", reports, env=dict(os.environ), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (payloads,) = reports.glob("*/payloads.jsonl")
    (line,) = payloads.read_text(encoding="utf-8").splitlines()
    body = json.loads(line)["payload"]
    assert body["reference"] == "000100"
    assert body["orderNumber"] == "PO-0042"
    assert body["customFields"] == [
        {"definitionId": 432632, "value": "0.14285714285714285"},
        {"definitionId": 432633, "value": "255:10:10"},
    ]


def test_formula_results_and_unusual_attribute_order(tmp_path: Path) -> None:
    path = tmp_path / "f.xlsx"
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet("Jobs")
    ws.write_row(0, 0, ["kind", "value"])
    ws.write_string(1, 0, "computed amount")
    ws.write_formula(1, 1, "=12.3*1.2", None, 14.760000000000002)
    ws.write_string(2, 0, "reordered")
    ws.write_number(2, 1, 1 / 3)
    wb.close()
    with_values(path, {"B2": "14.760000000000002", "B3": "0.33333333333333331"})
    with zipfile.ZipFile(path) as zin:
        items = [(i, zin.read(i.filename)) for i in zin.infolist()]
    with zipfile.ZipFile(path, "w") as zout:
        for info, data in items:
            if info.filename == "xl/worksheets/sheet1.xml":
                assert b'<c r="B3">' in data
                data = data.replace(b'<c r="B3">', b'<c t="n" r="B3">')
            zout.writestr(info, data)
    assert cells(path) == {"computed amount": "14.760000000000002", "reordered": "0.3333333333333333"}


def test_every_cell_across_pieces_of_the_sheet_xml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the sheet XML is read in pieces (8 MB; 16 KB here): cells on both sides of every cut are read as shown
    import pipeline.read.excel as read_excel_module

    monkeypatch.setattr(read_excel_module, "_CHUNK", 16 * 1024)
    path = tmp_path / "many.xlsx"
    wb = xlsxwriter.Workbook(path)
    ws = wb.add_worksheet("Jobs")
    pad, money = wb.add_format({"num_format": "000000"}), wb.add_format({"num_format": "#,##0.00"})
    ws.write_row(0, 0, ["Code", "Amount", "Ratio"])
    for r in range(1, 3001):
        ws.write_number(r, 0, r, pad)
        ws.write_number(r, 1, r / 4, money)
        ws.write_number(r, 2, r / 7)
    wb.close()
    t = read_table(path)
    assert t.frame.get_column("Code").to_list() == [f"{r:06d}" for r in range(1, 3001)]
    assert t.frame.get_column("Amount").to_list() == [str(r / 4).removesuffix(".0") for r in range(1, 3001)]
    # (xlsxwriter stores 16 significant digits: the text is the stored number's, read back exactly)
    ratios = t.frame.get_column("Ratio").to_list()
    assert all(float(text) == float(f"{r / 7:.16g}") for r, text in zip(range(1, 3001), ratios, strict=True))
    assert all(len(text.partition(".")[2]) > 9 for text in ratios if "." in text and float(text) % 1)
    assert t.unrendered == {"Amount": "#,##0.00"}
