"""Read workbooks (.xlsx/.xlsm/.xls/.ods) through calamine (fastexcel) with every cell as text.

- Sheets are loaded with `header_row=None, skip_rows=0`, which makes calamine start at the sheet's row 1, so
  frame position i is sheet row i + 1; `available_columns()[j].absolute_index` gives the real column letter.
- Cells: the forms of pipeline/read/cells.py (README "How cells are read"). calamine's text is right for most
  cells; the ones it gets wrong are found apart and their text replaced (`_patch`):
  - .xlsx/.xlsm: one streaming pass over the sheet XML (`_survey`, in a thread while calamine loads the sheet)
    finds numbers stored with more than 9 decimals or an exponent (calamine cuts them: `0.142857143`, `0`,
    `-0`) and numbers whose style has a number format calamine does not apply (styles.xml: padding/literal
    formats, elapsed time, and every date of a 1904 workbook); formats not reproduced keep the number and
    their columns are noted (RawTable.unrendered and a warning);
  - .ods: content.xml is parsed (`_ods_parse`) only when a byte search finds time values (calamine: blank),
    date-times (calamine: with a `T`), long numbers or error cells; repeat counts beyond a sheet's size are
    refused before calamine sees the file (it would print lines of its own, then fail);
  - .xls: a second read of the sheet as floats gives the exact numbers (`_xls_numbers`); number formats are
    not known there (gap).
  Whatever calamine prints itself goes to a scratch file, never to the terminal (`_native_output_hidden`).
- Error cells (#N/A, #REF!, ...) and formulas without a saved result read as null in calamine; for .xlsx/.xlsm
  they are found by a streaming regex scan of the sheet XML, for .ods by a streaming parse of content.xml (the
  cells LibreOffice marks calcext:value-type="error"), and reported as `cell_errors` (check "error_cell").
  Gap: for .xls no such scan is done (its error cells read as blank); formulas whose saved result is a
  placeholder (xlsxwriter writes 0) cannot be told apart.
- Speed: the regex scan runs only when a cheap count finds a cell calamine read as null although it has
  content: the cells with content (`</c>` closing tags) must be exactly as many as the non-null cells calamine
  gave. An error cell or a formula without a saved result has content but reads as null, so either one makes
  the counts differ. (Empty styled cells `<c .../>` have no content and read as null: they count on neither
  side.) Only the chosen sheet is scanned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO
from xml.etree import ElementTree

import fastexcel
import polars as pl

from pipeline.errors import InputFileError
from pipeline.model import CellError, RawTable
from pipeline.read.cells import (
    Format,
    builtin_format,
    classify,
    elapsed_text,
    iso_datetime_text,
    iso_duration_text,
    number_text,
    render_code,
    serial_text,
)
from pipeline.read.finish import blank_candidates, blank_to_null, column_letter, finish_table
from pipeline.read.limits import ReadLimits, check_archive, check_frame_cells, check_sheet_xml, check_text_member

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = b"PK\x03\x04"
#: the first record (BOF) of a worksheet saved by Excel 2.x, 3.0 and 4.0 (BIFF2-4; not in an OLE2 container)
_OLD_BIFF = {b"\x09\x00": "Excel 2.x", b"\x09\x02": "Excel 3.0", b"\x09\x04": "Excel 4.0"}
_CHUNK = 8 * 1024 * 1024

_NS = rb"(?:[A-Za-z_][\w.-]*:)?"
_ERROR_CELL = re.compile(rb"<" + _NS + rb"c\b([^>]*?\bt=\"e\"[^>]*)>(.*?)</" + _NS + rb"c>", re.S)
# A formula followed by no <v> at all, or by an empty self-closing <v/> (openpyxl), then the end of the cell.
# `<v></v>` is taken as a saved empty-text result (Excel with t="str"; xlsxwriter without t).
_FORMULA_NO_VALUE = re.compile(
    rb"<%(ns)sc\b([^>]*?)(?<!/)>\s*<%(ns)sf\b(?:[^>]*/>|[^>]*>[^<]*</%(ns)sf>)\s*(?:<%(ns)sv\s*/>)?\s*</%(ns)sc>"
    % {b"ns": _NS},
    re.S,
)
_REF = re.compile(rb'\br="\$?([A-Z]{1,3})\$?(\d+)"')
_TYPE = re.compile(rb'\bt="([^"]*)"')
_VALUE = re.compile(rb"<" + _NS + rb"v>([^<]*)</" + _NS + rb"v>")

# calamine and fastexcel warn through Python's logging (e.g. "ods row repeat count capped …"): with no handler
# configured, Python prints such warnings on stderr itself. What they say that matters is refused or reported in
# our words (see _ods_survey); the records themselves go nowhere.
for _name in ("calamine", "fastexcel"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False

Finding = tuple[int, int, str, str]  # (0-based column, sheet row, cell reference, what the cell shows)
#: (text cells from sheet row 1, header position, absolute column indices, visible, all cells read, what the
#: pass over the sheet's XML found: see _load_sheet)
Loaded = tuple[pl.DataFrame, int, list[int], bool, bool, "_Survey"]


def read_excel(
    path: Path, *, sheet: str | None = None, header_row: int = 1, limits: ReadLimits | None = None
) -> RawTable:
    """Read one sheet of a workbook as text cells; see read.read_table for the contract. The zip workbooks' limits
    (pipeline/read/limits.py) are checked before calamine opens the file, and each sheet's before it is loaded."""
    limits = limits or ReadLimits()
    _check_signature(path)
    _check_parts(path, limits)
    ods = _ods_survey(path) if path.suffix.lower() == ".ods" else None
    try:
        with _native_output_hidden():
            reader = fastexcel.read_excel(str(path))
        names = list(reader.sheet_names)
    except Exception as exc:
        raise InputFileError(f"{path}: {_open_problem(path, exc)}") from exc
    if not names:
        raise InputFileError(f"{path}: the workbook has no sheets; check the file opens in Excel")
    loaded: Loaded | None = None
    if sheet is not None:
        if sheet not in names:
            listed = ", ".join(f"'{n}'" for n in names)
            raise InputFileError(
                f"{path}: no sheet named '{sheet}'; the sheets are {listed}; "
                "give one of them with --sheet or `sheet` in the mapping's [source]"
            )
        found = _load_sheet(reader, path, sheet, header_row, limits, ods)
        if isinstance(found, str):
            raise InputFileError(f"{path}, sheet '{sheet}': {found}")
        loaded, chosen = found, sheet
    else:
        # "Has data": a header row and at least one data row under it. A visible sheet whose header names two or
        # more columns wins (a Readme of prose in column A does not); then a one-column one; then hidden sheets.
        chosen = names[0]
        fallback: tuple[tuple[int, int], Loaded, str] | None = None
        empty = True
        for name in names:
            found = _load_sheet(reader, path, name, header_row, limits, ods)
            if isinstance(found, str):
                empty = empty and found == _EMPTY
                continue
            empty = False
            frame_, idx_, _, visible_, _, _ = found
            named = sum(v is not None for v in frame_.row(idx_))
            if visible_ and named >= 2:
                loaded, chosen = found, name
                break
            rank = (int(visible_), min(named, 2))
            if fallback is None or rank > fallback[0]:
                fallback = (rank, found, name)
        if loaded is None and fallback is not None:
            _, loaded, chosen = fallback
        if loaded is None and empty:
            raise InputFileError(
                f"{path}: the workbook is empty (no sheet has a cell with a value); "
                "check it is the right file and that it was saved with its data"
            )
        if loaded is None:
            raise InputFileError(
                f"{path}: no sheet has data rows under a header (sheets: {', '.join(repr(n) for n in names)}); "
                "check the file or header_row"
            )
    assert loaded is not None
    frame, header_idx, abs_cols, _, all_read, survey = loaded
    unrendered = survey.unrendered
    suffix = path.suffix.lower()
    findings: list[Finding] = []
    if suffix in (".xlsx", ".xlsm") and not all_read:
        findings = _scan(path, chosen)
    elif suffix == ".ods":
        findings = survey.errors
    where = f"{path}, sheet '{chosen}'"
    headers = [frame.item(header_idx, c) for c in frame.columns]
    body = frame.slice(header_idx + 1)
    rows = pl.int_range(header_idx + 2, header_idx + 2 + body.height, dtype=pl.Int64, eager=True)
    header_of = {col: h.strip() for col, h in zip(abs_cols, headers, strict=True) if h is not None and h.strip()}
    errors = cell_errors(findings, header_of, header_idx + 1, header_idx + 1 + body.height)
    return finish_table(
        body=body,
        headers=headers,
        rows=rows,
        where=where,
        column_labels=[f"column {column_letter(c)}" for c in abs_cols],
        header_at=header_idx + 1,
        source=path,
        kind="excel",
        sheet=chosen,
        cell_errors=errors,
        keep_rows={e.row for e in errors},
        maybe_blank=[],  # blanks are null already (_normalise)
        unrendered={abs_cols.index(c): code for c, code in unrendered.items() if c in abs_cols},
    )


@contextlib.contextmanager
def _native_output_hidden() -> Iterator[None]:
    """Lines the native code would print itself (to the process's stderr, not through Python's logging: e.g. a
    panic's message) go to a scratch file instead: what matters comes back as an exception, worded by us."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (e.g. a service): nothing to protect
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _check_signature(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(8)
    suffix = path.suffix.lower()
    if head[:2] in _OLD_BIFF and head[2:4] in (b"\x04\x00", b"\x06\x00", b"\x08\x00"):  # (whatever its name)
        raise InputFileError(
            f"{path}: is an {_OLD_BIFF[head[:2]]} file (from before 1995), a format jobimport does not support; "
            "open it in Excel or LibreOffice and save it as .xlsx"
        )
    if suffix in (".xlsx", ".xlsm", ".ods"):
        if head.startswith(_OLE2):
            if suffix == ".ods":
                raise InputFileError(
                    f"{path}: is not an OpenDocument file (it is an old Excel file); rename it to .xls"
                )
            raise InputFileError(
                f"{path}: is encrypted (password protected) or is an old .xls file renamed to {path.suffix}; "
                "remove the password in Excel (File > Info > Protect Workbook) or save it as .xlsx, then try again"
            )
        if not head.startswith(_ZIP) or not zipfile.is_zipfile(path):
            raise InputFileError(
                f"{path}: is not a valid {path.suffix} workbook (the file is damaged or is another kind of file); "
                "open it in Excel and save it as .xlsx"
            )
    elif suffix == ".xls" and not head.startswith(_OLE2) and not head.startswith(_ZIP):
        raise InputFileError(
            f"{path}: is not a valid .xls workbook (the file is damaged or is another kind of file); "
            "open it in Excel and save it as .xlsx"
        )


def _check_parts(path: Path, limits: ReadLimits) -> None:
    """A zip workbook's directory (sizes, ratios), then its parts read whole before any sheet: the shared strings
    of an .xlsx/.xlsm, the content of an .ods (pipeline/read/limits.py)."""
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".xlsm", ".ods"):
        return
    check_archive(path, limits)
    with zipfile.ZipFile(path) as zf:
        if suffix == ".ods":
            check_text_member(zf, "content.xml", path, limits, "content")
            return
        for member in zf.namelist():
            if member.lower().endswith("sharedstrings.xml"):
                check_text_member(zf, member, path, limits, "shared strings")


def _open_problem(path: Path, exc: Exception) -> str:
    text = " ".join(str(exc).split())
    low = text.lower()
    if "password" in low or "encrypt" in low:
        return "is encrypted (password protected); remove the password in Excel and try again"
    cells = re.search(r"cell limit exceeded \((\d+) cells requested, max (\d+)\)", low)
    if cells:
        return (
            f"is damaged or too large: it asks for {int(cells.group(1)):,} cells, more than the "
            f"{int(cells.group(2)):,} jobimport reads; open it in Excel or LibreOffice and save it again"
        )
    if "unsupported" in low or "biff" in low:
        return "is in an old Excel format jobimport does not support; open it in Excel and save it as .xlsx"
    # calamine's own words, without its context lines (which repeat the path) and never cut inside a word
    detail = re.sub(r"^calamine error: ", "", text.split(" Context:")[0], flags=re.I)
    if len(detail) > 160:
        detail = detail[:160].rsplit(" ", 1)[0] + " …"
    return f"cannot be opened as a workbook ({detail}); open it in Excel and save it as .xlsx"


_EMPTY = "is empty (no cell has a value); check it is the right file and sheet, and that it was saved with its data"


def _load_sheet(
    reader: fastexcel.ExcelReader,
    path: Path,
    name: str,
    header_row: int,
    limits: ReadLimits,
    ods: _OdsFacts | None = None,
) -> Loaded | str:
    """(text from sheet row 1, header position, absolute columns, visible, all cells read, survey), or, when the
    sheet has no header with a data row under it, why not (a sentence for a message).

    "All cells read" (.xlsx/.xlsm): the cells with content in the sheet XML are exactly the non-null cells
    calamine gave, so none is an error cell or a formula without a saved result (see the module docstring). The
    XML is counted in a thread while calamine loads the sheet (zlib and calamine release the GIL); the same pass
    finds the cells whose text calamine gets wrong (`_survey`; .ods: `_ods_cells`; .xls: `_xls_numbers`).
    Before calamine loads an .xlsx/.xlsm sheet, its XML is checked against `limits` (rows, columns, cells)."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        with zipfile.ZipFile(path) as zf:
            member = _sheet_member(zf, name)
            if member is not None:
                check_sheet_xml(zf, member, path, name, limits)
    with ThreadPoolExecutor(max_workers=1) as pool:
        surveyed = None
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            surveyed = pool.submit(_survey, path, name)
        elif ods is not None and (ods.errors or ods.values):
            surveyed = pool.submit(_ods_cells, path, name)
        try:
            with _native_output_hidden():
                sheet = reader.load_sheet(name, header_row=None, skip_rows=0, dtypes="string")
                frame = sheet.to_polars()
            abs_cols = [c.absolute_index for c in sheet.available_columns()]
            visible = str(sheet.visible).lower().rsplit(".", 1)[-1] == "visible"
        except Exception as exc:
            detail = " ".join(str(exc).split())[:160]
            raise InputFileError(
                f"{path}, sheet '{name}': cannot be read ({detail}); check the sheet in Excel"
            ) from exc
        if frame.width == 0:
            return _EMPTY
        check_frame_cells(frame.height, frame.width, f"{path}, sheet '{name}'", limits)
        values = frame.height * frame.width - sum(frame.null_count().row(0))
        survey = surveyed.result() if surveyed is not None else _Survey()
        if path.suffix.lower() == ".xls":
            survey.fixes = _xls_numbers(reader, name, frame, abs_cols)
        all_read = survey.closed == values
    frame = _normalise(_patch(frame, abs_cols, survey.fixes))
    blank = frame.select(pl.all_horizontal(pl.all().is_null()).alias("b")).get_column("b")
    filled = (~blank).arg_true()
    if filled.len() == 0:
        return _EMPTY
    candidates = (~blank.slice(header_row - 1)).arg_true()
    if candidates.len() == 0:
        return (
            f"has nothing at or below row {header_row} (the header row asked for): its last row with a value is "
            f"row {int(filled[-1]) + 1}; give the right header row (--header-row or the mapping's [source])"
        )
    if candidates.len() < 2:  # a header and at least one data row
        return (
            f"has headers (row {header_row + int(candidates[0])}) but no data rows under them; "
            "check the file, the sheet and header_row"
        )
    return frame, header_row - 1 + int(candidates[0]), abs_cols, visible, all_read, survey


def _xls_numbers(
    reader: fastexcel.ExcelReader, name: str, frame: pl.DataFrame, abs_cols: list[int]
) -> list[tuple[int, int, str]]:
    """(.xls) The numbers calamine's text cuts to 9 decimals (or writes out past 10^16), from a second read of the
    sheet as floats (exact; other cells null there): where the text does not read back as that float."""
    try:
        with _native_output_hidden():
            floats = reader.load_sheet(name, header_row=None, skip_rows=0, dtypes="float").to_polars()
    except Exception:  # (the text read succeeded: keep it)
        return []
    if floats.shape != frame.shape:
        return []
    fixes: list[tuple[int, int, str]] = []
    for j, (text, number) in enumerate(zip(frame.iter_columns(), floats.iter_columns(), strict=True)):
        as_number = text.cast(pl.Float64, strict=False)
        wrong = number.is_not_null() & as_number.is_not_null() & ((as_number != number) | (number.abs() >= 1e16))
        for i in wrong.fill_null(False).arg_true().to_list():
            fixes.append((abs_cols[j], i + 1, number_text(float(number[i]))))
    return fixes


def _patch(frame: pl.DataFrame, abs_cols: list[int], fixes: list[tuple[int, int, str]]) -> pl.DataFrame:
    """`frame` (sheet row r at position r - 1) with the text of `fixes` (absolute column, sheet row, text)."""
    if not fixes:
        return frame
    position = {c: j for j, c in enumerate(abs_cols)}
    height = frame.height
    by_column: dict[int, tuple[list[int], list[str]]] = {}
    for col, row, text in fixes:
        j = position.get(col)
        if j is not None and 0 < row <= height:
            rows, texts = by_column.setdefault(j, ([], []))
            rows.append(row - 1)
            texts.append(text)
    columns = []
    for j, (rows, texts) in by_column.items():
        column = frame.get_column(frame.columns[j]).clone()
        column.scatter(rows, pl.Series(texts, dtype=pl.String))
        columns.append(column)
    return frame.with_columns(columns) if columns else frame


def _normalise(frame: pl.DataFrame) -> pl.DataFrame:
    """Blank → null; pure dates without the 00:00:00; time-only cells without calamine's 1899-12-31 date.

    Only columns that hold such values are rewritten (found with cheap prefix/suffix tests)."""
    cols = frame.columns
    # one pass for what both rewrites need: each column's smallest and largest text (see blank_to_null) and
    # whether it holds a date at midnight or a time-only cell
    ends = frame.select(
        *(pl.col(c).min().alias(f"lo{i}") for i, c in enumerate(cols)),
        *(pl.col(c).max().alias(f"hi{i}") for i, c in enumerate(cols)),
        *(pl.col(c).str.ends_with(" 00:00:00").any().alias(f"d{i}") for i, c in enumerate(cols)),
        *(pl.col(c).str.starts_with("1899-12-31 ").any().alias(f"t{i}") for i, c in enumerate(cols)),
    ).row(0)
    n = len(cols)
    frame = blank_to_null(frame, cols, maybe_blank=blank_candidates(cols, ends[:n], ends[n : 2 * n]))
    flags = ends[2 * n :]
    fixes = []
    for i, c in enumerate(cols):
        expr = pl.col(c)
        if flags[i]:
            expr = expr.str.replace(r"^(\d{4}-\d{2}-\d{2}) 00:00:00$", "${1}")
        if flags[len(cols) + i]:
            expr = expr.str.replace(r"^1899-12-31 (\d{2}:\d{2}:\d{2}(?:\.\d+)?)$", "${1}")
        if flags[i] or flags[len(cols) + i]:
            fixes.append(expr)
    return frame.with_columns(fixes) if fixes else frame


def _sheet_member(zf: zipfile.ZipFile, sheet: str) -> str | None:
    """Zip member holding `sheet`'s XML, from workbook.xml and its relationships."""
    try:
        book = ElementTree.fromstring(zf.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        return None
    rid = None
    for el in book.iter():
        if el.tag.rsplit("}", 1)[-1] == "sheet" and el.get("name") == sheet:
            rid = next((v for k, v in el.attrib.items() if k.rsplit("}", 1)[-1] == "id"), None)
    for el in rels.iter():
        if el.get("Id") == rid and rid is not None:
            target = el.get("Target", "")
            member = target.lstrip("/") if target.startswith("/") else str(PurePosixPath("xl") / target)
            return member if member in zf.namelist() else None
    return None


def _chunks(zf: zipfile.ZipFile, member: str) -> Iterator[bytes]:
    """The sheet XML in pieces that each end after a `</row>` (cells never straddle two pieces)."""
    tail = b""
    with zf.open(member) as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            buf = tail + chunk
            idx = buf.rfind(b"row>")  # end of a </row> (or a <row> start tag): a boundary between cells
            if idx < 0:
                tail = buf
                continue
            cut = idx + 4
            yield buf[:cut]
            tail = buf[cut:]
    if tail:
        yield tail


def _scan(path: Path, sheet: str) -> list[Finding]:
    """Error cells and formulas without a saved result in the sheet XML (streamed, regex only where needed)."""
    found: list[Finding] = []
    with zipfile.ZipFile(path) as zf:
        member = _sheet_member(zf, sheet)
        if member is None:
            return found
        for piece in _chunks(zf, member):
            if b't="e"' in piece:
                for m in _ERROR_CELL.finditer(piece):
                    value = _VALUE.search(m.group(2))
                    shown = value.group(1).decode("utf-8", "replace") if value else "an error"
                    _add(found, m.group(1), f"shows {shown} in Excel")
            if b"f>" in piece or b'si="' in piece:
                for m in _FORMULA_NO_VALUE.finditer(piece):
                    kind = _TYPE.search(m.group(1))
                    if kind and kind.group(1) in (b"str", b"inlineStr", b"e"):
                        continue  # an empty text result is a saved value; errors are reported above
                    _add(found, m.group(1), "has a formula with no saved result in Excel")
    return found


_ODS_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_ODS_VALUE_TYPE = "{urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0}value-type"
_ODS_CELLS = (_ODS_TABLE + "table-cell", _ODS_TABLE + "covered-table-cell")
_ODS_MAX_REPEAT = 1_048_576  # (a sheet's rows; a repeat beyond it is the empty rest of the sheet)


@dataclass(frozen=True)
class _OdsFacts:
    """What a byte search of an .ods file's content.xml finds (0.05 s per 100,000 rows; a parse takes 2.1 s)."""

    errors: bool  # some cell is marked value-type="error" (calamine reads those as blank)
    values: bool  # some cell's text calamine does not give as shown (time values, date-times, long numbers)


_ODS_REPEATED = re.compile(rb'number-(rows|columns)-repeated="(\d+)"')
#: the largest sheet calamine reads (and Excel's); a longer run of repeated rows or cells is cut to it
_ODS_LIMITS = {b"rows": 1_048_576, b"columns": 16_384}
_ODS_VALUES = re.compile(rb'(?:time-value="|date-value="[^"T]*T|office:value="(?:-?\d*\.\d{10}|-?[\d.]+[eE]))')


def _ods_survey(path: Path) -> _OdsFacts:
    """Search content.xml's bytes: refuse what calamine would cut silently (it cuts a run of repeated rows or
    cells to the sheet's size, printing a line of its own, and drops what lies beyond): a row or cell with values
    repeated past the sheet's end, or values below an empty run that went past it. (An empty run past the end
    is the blank rest of a sheet: fine.) And tell whether a parse of the sheet is needed at all."""
    errors = values = False
    tail = b""
    at = 0  # offset in content.xml of the current piece
    past_end: int | None = None  # offset where an empty run of rows went past the sheet's end (in this table)
    limit = _ODS_LIMITS[b"rows"]
    try:
        with zipfile.ZipFile(path) as zf, zf.open("content.xml") as xml:
            while chunk := xml.read(_CHUNK):
                piece = tail + chunk
                errors = errors or b'value-type="error"' in piece
                values = values or _ODS_VALUES.search(piece) is not None
                for m in _ODS_REPEATED.finditer(piece):
                    what, count = m.group(1), int(m.group(2))
                    if count <= _ODS_LIMITS[what]:
                        continue
                    if _ods_run_has_values(piece, m.end(), what):
                        name = what.decode()[:-1]
                        raise InputFileError(
                            f"{path}: is damaged or was not saved by a spreadsheet program: it repeats a {name} with "
                            f"values {count:,} times, more than a sheet can hold ({_ODS_LIMITS[what]:,} {name}s); "
                            "open it in LibreOffice and save it again"
                        )
                    if what == b"rows" and past_end is None:
                        past_end = at + m.end()
                if past_end is not None:
                    start = max(past_end - at, 0)
                    run_end = piece.find(b"table-row>", start)
                    table_end = piece.find(b"</table:table>", start)
                    value = _ODS_A_VALUE.search(piece, run_end) if run_end >= 0 else None
                    if value is not None and (table_end < 0 or value.start() < table_end):
                        raise InputFileError(
                            f"{path}: has values below row {limit:,}, more rows than jobimport can read; "
                            "split the sheet into smaller files"
                        )
                    if table_end >= 0 and run_end >= 0:
                        past_end = None  # (the next table starts afresh)
                tail = piece[-_ODS_TAIL:]
                at += len(piece) - len(tail)
    except (KeyError, zipfile.BadZipFile, OSError):
        pass  # (calamine says what is wrong with it)
    return _OdsFacts(errors, values)


_ODS_A_VALUE = re.compile(rb"value-type=|<text:p[ >]")
_ODS_TAIL = 64 * 1024  # (a repeated element is looked at whole: one that straddles two pieces is seen again)


def _ods_run_has_values(piece: bytes, start: int, what: bytes) -> bool:
    """Whether the repeated row (what=b"rows") or cell starting before `start` holds a value; False when its end
    is not in `piece` yet (it is looked at again with the next piece)."""
    tag_end = piece.find(b">", start)
    if tag_end > 0 and piece[tag_end - 1 : tag_end] == b"/":
        return False  # <table:table-row .../>, <table:table-cell .../>: empty
    end = piece.find(b"table-row>" if what == b"rows" else b"table-cell>", start)
    if end < 0:
        return False
    run = piece[start:end]
    return b"value-type=" in run or b"<text:p" in run or b"formula=" in run


def _ods_cells(path: Path, sheet: str) -> _Survey:
    """Error cells, and the text of the cells calamine does not give as shown, of an .ods sheet."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open("content.xml") as xml:
            return _ods_parse(xml, sheet)
    except InputFileError as exc:
        raise InputFileError(f"{path}, {exc}") from exc


_ODS_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_ODS_MAX_CELLS = 1_000_000  # (a run of repeated cells with a value beyond this is not a real sheet's)


def _ods_parse(xml: IO[bytes], sheet: str) -> _Survey:
    """`sheet` in content.xml, parsed as a stream: error cells, and the text of time values (`PT11H12M12S` →
    `11:12:12`), date-times (one form: a space, no `T`) and numbers calamine cuts to 9 decimals. Rows and columns
    are counted as they come (a run of rows or cells is one element with a repeat count)."""
    survey = _Survey()
    found = survey.errors
    in_sheet = False
    row = col = 0  # the current row (1-based, once started) and the next cell's 0-based column
    repeat_rows = 1
    for event, el in ElementTree.iterparse(xml, events=("start", "end")):
        if el.tag == _ODS_TABLE + "table":
            if event == "start" and not in_sheet:
                in_sheet = el.get(_ODS_TABLE + "name") == sheet
            elif event == "end" and in_sheet:
                break
            continue
        if not in_sheet:
            if event == "end" and el.tag == _ODS_TABLE + "table-row":
                el.clear()
            continue
        if el.tag == _ODS_TABLE + "table-row":
            if event == "start":
                row, col = row + 1, 0
                repeat_rows = min(int(el.get(_ODS_TABLE + "number-rows-repeated", "1")), _ODS_MAX_REPEAT)
            else:
                row += repeat_rows - 1
                el.clear()
        elif el.tag in _ODS_CELLS and event == "end":
            repeat = min(int(el.get(_ODS_TABLE + "number-columns-repeated", "1")), _ODS_MAX_REPEAT)
            kind = el.get(_ODS_OFFICE + "value-type")
            text = None
            if el.get(_ODS_VALUE_TYPE) == "error":
                shown = "".join(el.itertext()).strip() or "an error"
                text = f"shows {shown} in the workbook"
            elif kind == "time":
                text = iso_duration_text(el.get(_ODS_OFFICE + "time-value", ""), "".join(el.itertext()))
            elif kind == "date" and "T" in el.get(_ODS_OFFICE + "date-value", ""):
                text = iso_datetime_text(el.get(_ODS_OFFICE + "date-value", ""))
            elif kind in ("float", "percentage", "currency"):
                raw = el.get(_ODS_OFFICE + "value", "")
                if "e" in raw.lower() or len(raw.partition(".")[2]) > 9:
                    with contextlib.suppress(ValueError):
                        text = number_text(float(raw))
            if text is not None:
                if repeat_rows * repeat > _ODS_MAX_CELLS:
                    raise InputFileError(
                        f"sheet '{sheet}' repeats one cell {repeat_rows * repeat:,} times; "
                        "open the file in LibreOffice and save it again"
                    )
                error = el.get(_ODS_VALUE_TYPE) == "error"
                for r in range(row, row + repeat_rows):
                    for c in range(col, col + repeat):
                        if error:
                            found.append((c, r, f"{column_letter(c)}{r}", text))
                        else:
                            survey.fixes.append((c, r, text))
            col += repeat
    return survey


@dataclass
class _Survey:
    """What one streaming pass over a sheet's XML finds (run in a thread while calamine loads the sheet)."""

    closed: int | None = None  # cells with content (`</c>`); None when they cannot be counted this way
    fixes: list[tuple[int, int, str]] = field(default_factory=list)  # (0-based column, sheet row, text)
    unrendered: dict[int, str] = field(default_factory=dict)  # 0-based column → a number format not reproduced
    errors: list[Finding] = field(default_factory=list)  # (.ods) error cells


@dataclass(frozen=True)
class _Styles:
    """The workbook facts the survey needs: each cell style's number format, and the date system."""

    formats: list[Format]
    date1904: bool

    def special(self) -> dict[int, Format]:
        """The styles whose numbers calamine does not show as the format does (dates only in 1904 workbooks)."""
        kinds = {"elapsed", "code", "other"} | ({"date"} if self.date1904 else set())
        return {i: f for i, f in enumerate(self.formats) if f.kind in kinds}


def _styles(zf: zipfile.ZipFile) -> _Styles:
    """Cell styles' number formats (styles.xml) and the date system (workbook.xml `date1904`: "1" or "true")."""
    date1904 = False
    try:
        for el in ElementTree.fromstring(zf.read("xl/workbook.xml")).iter():
            if el.tag.rsplit("}", 1)[-1] == "workbookPr":
                date1904 = el.get("date1904", "").strip().lower() in ("1", "true")
    except (KeyError, ElementTree.ParseError):
        pass
    formats: list[Format] = []
    try:
        styles = ElementTree.fromstring(zf.read("xl/styles.xml"))
    except (KeyError, ElementTree.ParseError):
        return _Styles(formats, date1904)
    custom: dict[int, str] = {}
    for el in styles.iter():
        if el.tag.rsplit("}", 1)[-1] == "numFmt" and (el.get("numFmtId") or "").isdigit():
            custom[int(el.get("numFmtId", "0"))] = el.get("formatCode", "")
    for el in styles:
        if el.tag.rsplit("}", 1)[-1] != "cellXfs":
            continue
        for xf in el:
            raw = xf.get("numFmtId", "0")
            fmt_id = int(raw) if raw.isdigit() else 0
            code = custom.get(fmt_id) or builtin_format(fmt_id) or "General"
            formats.append(classify(code))
    return _Styles(formats, date1904)


def _survey(path: Path, sheet: str) -> _Survey:
    """One pass over the sheet XML: the cells with content (see _load_sheet), and the text of the cells calamine
    does not show as a person saw them: numbers it would cut to 9 decimals, and numbers with a number format it
    does not apply (padding and literal text, elapsed time, dates of a 1904 workbook). Numbers whose format is not
    reproduced here keep their value and their column is noted (`unrendered`)."""
    survey = _Survey()
    with zipfile.ZipFile(path) as zf:
        member = _sheet_member(zf, sheet)
        if member is None:
            return survey
        styles = _styles(zf)
        special = styles.special()
        dates = {i for i, f in enumerate(styles.formats) if f.kind == "date"}  # (calamine shows those)
        # (numbers in a format not reproduced keep their value: only the long ones need a fix, found there)
        skip = {k for k, f in special.items() if f.kind != "other"} | dates
        closed = 0
        ns = b""
        long_number: re.Pattern[bytes] | None = None
        styled: re.Pattern[bytes] | None = None
        cells = _Cells(b"")
        for i, piece in enumerate(_chunks(zf, member)):
            if i == 0:
                root = re.search(rb"<(?:([A-Za-z_][\w.-]*):)?worksheet[\s>]", piece[:4096])
                if root is None:
                    return survey
                ns = root.group(1) + b":" if root.group(1) else b""
                cells = _Cells(ns)
                long_number = re.compile(
                    rb"<%sv>(-?\d*\.\d{10,}(?:[eE][-+]?\d+)?|-?[\d.]+[eE][-+]?\d+)</" % re.escape(ns)
                )
                styled = _styled_pattern(special, ns)
            elif i == 1 and any(f.kind == "other" for f in special.values()):
                # the columns of formats not reproduced are noted from the first piece (~18,000 rows) only: their
                # values need no fix (a long one is found by long_numbers), and a money column formatted
                # `#,##0.00` would otherwise cost ~1 µs a cell for the note alone
                styled = _styled_pattern({k: f for k, f in special.items() if f.kind != "other"}, ns)
            closed += piece.count(b"</%sc>" % ns)
            if styled is not None:
                cells.styled(piece, styled, special, styles.date1904, survey)
            assert long_number is not None
            # (~0.07 s of CPU per 1M cells, in this thread; measured cheaper than any pre-search for "E-", "e+"…,
            # which costs ~0.04 s each on text with many e's)
            cells.long_numbers(piece, long_number, skip, survey.fixes)
        survey.closed = closed if not ns else None
    return survey


_ATTR_R = re.compile(rb'\br="\$?([A-Z]{1,3})\$?(\d+)"')
_ATTR_S = re.compile(rb'\bs="(\d+)"')


def _column_index(letters: bytes) -> int:
    """0-based column of a cell reference's letters: b"A" → 0, b"AA" → 26."""
    col = 0
    for ch in letters:
        col = col * 26 + (ch - 64)
    return col - 1


class _Cells:
    """The cells of the sheet XML whose text calamine gets wrong (patterns made once per namespace prefix)."""

    def __init__(self, ns: bytes) -> None:
        self.open = b"<" + ns + b"c "
        self.close = b"</" + ns + b"c>"
        self.columns: dict[bytes, int] = {}
        self.head = re.compile(rb'<%sc (?:r="([A-Z]{1,3})(\d+)")?([^>]*)>' % re.escape(ns))

    def long_numbers(
        self, piece: bytes, pattern: re.Pattern[bytes], skip_styles: set[int], fixes: list[tuple[int, int, str]]
    ) -> None:
        """The numbers of `piece` that calamine would cut (values matching `pattern`), as fixes; not those of text
        cells nor of cells whose style is in `skip_styles` (dates, formats handled apart). Kept lean: a column of
        computed amounts (`14.760000000000002`) puts every cell of it here."""
        open_, close, head, columns = self.open, self.close, self.head, self.columns
        texts: dict[bytes, str] = {}  # (computed amounts repeat: 14.760000000000002)
        for m in pattern.finditer(piece):
            pos = m.start()
            h = head.match(piece, piece.rfind(open_, 0, pos))
            if h is None or piece.find(close, h.end(), pos) >= 0:
                continue
            attrs = h.group(3)
            if b't="' in attrs and b't="n"' not in attrs:
                continue
            letters, row = h.group(1), h.group(2)
            if letters is None:  # (attributes in another order)
                ref = _ATTR_R.search(attrs)
                if ref is None:
                    continue
                letters, row = ref.group(1), ref.group(2)
            if b's="' in attrs:
                style = _ATTR_S.search(attrs)
                if style is not None and int(style.group(1)) in skip_styles:
                    continue
            col = columns.get(letters)
            if col is None:
                col = columns[letters] = _column_index(letters)
            raw = m.group(1)
            text = texts.get(raw)
            if text is None:
                try:
                    text = texts[raw] = number_text(float(raw))
                except ValueError:
                    continue
            fixes.append((col, int(row), text))

    def styled(
        self, piece: bytes, pattern: re.Pattern[bytes], special: dict[int, Format], date1904: bool, survey: _Survey
    ) -> None:
        """The text of the number cells of `piece` whose style (`special`) has a format calamine does not apply.
        `pattern` matches from a cell's style attribute to its value (group 1: style, 2: the attributes after it,
        3: the value). Kept lean: a padded or formatted column puts every cell of it here."""
        open_, columns, fixes, unrendered = self.open, self.columns, survey.fixes, survey.unrendered
        shown: dict[tuple[bytes, bytes], str | None] = {}  # (style, value) → text (None: not reproduced)
        for m in pattern.finditer(piece):
            style, after, raw = m.group(1, 2, 3)
            pos = m.start()
            start = piece.rfind(b"<", 0, pos)
            if not piece.startswith(open_, start):
                continue  # not a cell's start tag (e.g. a row's)
            before = piece[start:pos]
            if (b't="' in after or b't="' in before) and b't="n"' not in before + after:
                continue  # text, boolean, error, shared string index
            ref = _ATTR_R.search(before) or _ATTR_R.search(after)
            if ref is None:
                continue
            letters = ref.group(1)
            col = columns.get(letters)
            if col is None:
                col = columns[letters] = _column_index(letters)
            fmt = special[int(style)]
            if fmt.kind == "other":
                unrendered.setdefault(col, fmt.code)  # (the value: kept; a long one is fixed by long_numbers)
                continue
            key = (style, raw)
            if key in shown:
                text = shown[key]
            else:
                try:
                    text = shown[key] = _styled_text(float(raw), fmt, date1904)
                except ValueError:
                    continue
            if text is None:
                unrendered.setdefault(col, fmt.code)
                text = number_text(float(raw))
            fixes.append((col, int(ref.group(2)), text))


def _styled_pattern(special: dict[int, Format], ns: bytes) -> re.Pattern[bytes] | None:
    """From a cell's style attribute (one of `special`) to its value: group 1 the style, 2 the attributes after
    it, 3 the value text; None without such styles."""
    if not special:
        return None
    return re.compile(
        rb' s="(%(ids)s)"([^>]*)>'
        rb"(?:<%(ns)sf\b[^>]*/>|<%(ns)sf\b[^>]*>[^<]*</%(ns)sf>)?<%(ns)sv>([^<]*)</"
        % {b"ids": b"|".join(str(k).encode() for k in sorted(special)), b"ns": re.escape(ns)}
    )


def _styled_text(value: float, fmt: Format, date1904: bool) -> str | None:
    """The text of a number in a format calamine does not apply; None when it is not reproduced."""
    if fmt.kind == "date":
        return serial_text(value, date1904)
    if fmt.kind == "elapsed":
        return elapsed_text(value, fmt.code)
    return render_code(value, fmt.code) if fmt.kind == "code" else None


def _add(found: list[Finding], attrs: bytes, what: str) -> None:
    ref = _REF.search(attrs)
    if not ref:
        return
    letters, row = ref.group(1).decode(), int(ref.group(2))
    col = 0
    for ch in letters:
        col = col * 26 + (ord(ch) - 64)
    found.append((col - 1, row, f"{letters}{row}", what))


def cell_errors(findings: list[Finding], header_of: dict[int, str], first: int, last: int) -> list[CellError]:
    """CellErrors for findings in data rows first+1..last of columns that have a header."""
    errors = [
        CellError(
            row=row,
            field=None,
            column=header_of[col],
            check="error_cell",
            message=f"Column '{header_of[col]}' (cell {ref}) {what}; fix the formula or type the value",
        )
        for col, row, ref, what in findings
        if col in header_of and first < row <= last
    ]
    errors.sort(key=lambda e: (e.row, e.message))
    return errors
