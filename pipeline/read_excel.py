"""Read workbooks (.xlsx/.xlsm/.xls/.ods) through calamine (fastexcel) with every cell as text.

- Sheets are loaded with `header_row=None, skip_rows=0`, which makes calamine start at the sheet's row 1, so
  frame position i is sheet row i + 1; `available_columns()[j].absolute_index` gives the real column letter.
- Cells: text as typed (leading zeros kept); integer-valued numbers as `1234`; dates as `2024-01-01`;
  date-times as `2024-01-01 09:30:00` (space, no `T`); time-only cells as `09:30:00`; booleans `true`/`false`.
  A number shown as `00123` only through a number format reads as `123` (the zeros are not in the file).
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

import re
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import IO
from xml.etree import ElementTree

import fastexcel
import polars as pl

from pipeline.errors import InputFileError
from pipeline.model import CellError, RawTable
from pipeline.read import blank_candidates, blank_to_null, column_letter, finish_table

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = b"PK\x03\x04"
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

Finding = tuple[int, int, str, str]  # (0-based column, sheet row, cell reference, what the cell shows)
#: (text cells from sheet row 1, header position, absolute column indices, visible, all cells read: see _load_sheet)
Loaded = tuple[pl.DataFrame, int, list[int], bool, bool]


def read_excel(path: Path, *, sheet: str | None = None, header_row: int = 1) -> RawTable:
    """Read one sheet of a workbook as text cells; see read.read_table for the contract."""
    _check_signature(path)
    try:
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
        found = _load_sheet(reader, path, sheet, header_row)
        if found is None:
            raise InputFileError(
                f"{path}, sheet '{sheet}': has headers but no data rows; check the sheet and header_row"
            )
        loaded, chosen = found, sheet
    else:
        # "Has data": a header row and at least one data row under it. A visible sheet whose header names two or
        # more columns wins (a Readme of prose in column A does not); then a one-column one; then hidden sheets.
        chosen = names[0]
        fallback: tuple[tuple[int, int], Loaded, str] | None = None
        for name in names:
            found = _load_sheet(reader, path, name, header_row)
            if found is None:
                continue
            frame_, idx_, _, visible_, _ = found
            named = sum(v is not None for v in frame_.row(idx_))
            if visible_ and named >= 2:
                loaded, chosen = found, name
                break
            rank = (int(visible_), min(named, 2))
            if fallback is None or rank > fallback[0]:
                fallback = (rank, found, name)
        if loaded is None and fallback is not None:
            _, loaded, chosen = fallback
        if loaded is None:
            raise InputFileError(
                f"{path}: no sheet has data rows under a header (sheets: {', '.join(repr(n) for n in names)}); "
                "check the file or header_row"
            )
    assert loaded is not None
    frame, header_idx, abs_cols, _, all_read = loaded
    suffix = path.suffix.lower()
    findings: list[Finding] = []
    if suffix in (".xlsx", ".xlsm") and not all_read:
        findings = _scan(path, chosen)
    elif suffix == ".ods":
        findings = _ods_errors(path, chosen)
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
        source=path,
        kind="excel",
        sheet=chosen,
        cell_errors=errors,
        keep_rows={e.row for e in errors},
        maybe_blank=[],  # blanks are null already (_normalise)
    )


def _check_signature(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(8)
    suffix = path.suffix.lower()
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


def _open_problem(path: Path, exc: Exception) -> str:
    text = " ".join(str(exc).split())
    low = text.lower()
    if "password" in low or "encrypt" in low:
        return "is encrypted (password protected); remove the password in Excel and try again"
    return f"cannot be opened as a workbook ({text[:160]}); open it in Excel and save it as .xlsx"


def _load_sheet(reader: fastexcel.ExcelReader, path: Path, name: str, header_row: int) -> Loaded | None:
    """(text from sheet row 1, header position, absolute columns, visible, all cells read), or None without data.

    "All cells read" (.xlsx/.xlsm): the cells with content in the sheet XML are exactly the non-null cells
    calamine gave, so none is an error cell or a formula without a saved result (see the module docstring). The
    XML is counted in a thread while calamine loads the sheet (zlib and calamine release the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        closed = pool.submit(_closed_cells, path, name) if path.suffix.lower() in (".xlsx", ".xlsm") else None
        try:
            sheet = reader.load_sheet(name, header_row=None, skip_rows=0, dtypes="string")
            frame = sheet.to_polars()
            abs_cols = [c.absolute_index for c in sheet.available_columns()]
            visible = str(sheet.visible).lower().rsplit(".", 1)[-1] == "visible"
        except Exception as exc:
            detail = " ".join(str(exc).split())[:160]
            raise InputFileError(
                f"{path}, sheet '{name}': cannot be read ({detail}); check the sheet in Excel"
            ) from exc
        if frame.width == 0 or frame.height <= header_row - 1:
            return None
        values = frame.height * frame.width - sum(frame.null_count().row(0))
        all_read = closed is not None and closed.result() == values
    frame = _normalise(frame)
    blank = frame.select(pl.all_horizontal(pl.all().is_null()).alias("b")).get_column("b")
    candidates = (~blank.slice(header_row - 1)).arg_true()
    if candidates.len() < 2:  # a header and at least one data row
        return None
    return frame, header_row - 1 + int(candidates[0]), abs_cols, visible, all_read


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


def _ods_errors(path: Path, sheet: str) -> list[Finding]:
    """Error cells of an .ods sheet: calamine reads them as blank."""
    with zipfile.ZipFile(path) as zf:
        if not _has_ods_errors(zf):  # (100,000 rows × 8 cells: 0.05 s to search the bytes, 2.1 s to parse them)
            return []
        with zf.open("content.xml") as xml:
            return _ods_error_cells(xml, sheet)


def _ods_error_cells(xml: IO[bytes], sheet: str) -> list[Finding]:
    """The error cells of `sheet` in content.xml, parsed as a stream. Rows and columns are counted as they come
    (an empty run of rows or cells is one element with a repeat count)."""
    found: list[Finding] = []
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
            if el.get(_ODS_VALUE_TYPE) == "error":
                shown = "".join(el.itertext()).strip() or "an error"
                for r in range(row, row + repeat_rows):
                    for c in range(col, col + repeat):
                        found.append((c, r, f"{column_letter(c)}{r}", f"shows {shown} in the workbook"))
            col += repeat
    return found


def _has_ods_errors(zf: zipfile.ZipFile) -> bool:
    """Whether content.xml has any cell marked value-type="error" (in any sheet)."""
    mark = b'value-type="error"'
    tail = b""
    with zf.open("content.xml") as xml:
        while chunk := xml.read(_CHUNK):
            if mark in tail + chunk[: len(mark)] or mark in chunk:
                return True
            tail = chunk[-len(mark) :]
    return False


def _closed_cells(path: Path, sheet: str) -> int | None:
    """The number of cells with content (`</c>` closing tags) in the sheet XML; None when it cannot be counted
    this way (no such sheet part, or a namespace prefix on the root element: its cells would close `</x:c>`)."""
    with zipfile.ZipFile(path) as zf:
        member = _sheet_member(zf, sheet)
        if member is None:
            return None
        closed = 0
        for i, piece in enumerate(_chunks(zf, member)):
            if i == 0 and not re.search(rb"<worksheet[\s>]", piece[:4096]):
                return None
            closed += piece.count(b"</c>")
    return closed


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
