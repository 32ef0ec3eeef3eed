"""API field errors land on the source cell that fed the field, for that row's payload."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from pipeline.report.field_errors import locate, problem_errors
from pipeline.run import RunOptions, run_import
from pipeline.settings import load_settings


class Columns:
    def source_column(self, field: str) -> str | None:
        return {"contactId": "Customer", "cf:432632": "Access Code", "cf:432633": "Gate Code"}.get(field)


PAYLOAD = {"typeId": 101, "contactId": 1, "customFields": [{"definitionId": 432633}, {"definitionId": 432632}]}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("ContactId", ("contactId", "Customer")),
        ("contactId", ("contactId", "Customer")),
        ("$.ContactId", ("contactId", "Customer")),
        ("CustomFields[0].Value", ("cf:432633", "Gate Code")),  # index 0 of THIS payload is Gate Code
        ("customFields[1].value", ("cf:432632", "Access Code")),
        ("CUSTOMFIELDS[1].DEFINITIONID", ("cf:432632", "Access Code")),
        ("CustomFields[5].Value", (None, None)),  # no such entry
        ("TypeId", ("typeId", None)),  # a field fed by no column (constant or lookup of nothing)
        ("Colour", (None, None)),
    ],
)
def test_locate(key: str, expected: tuple[str | None, str | None]) -> None:
    assert locate(key, PAYLOAD, Columns()) == expected


def test_problem_without_errors_is_one_row_level_error() -> None:
    [error] = problem_errors(7, {"status": 403, "title": "Forbidden", "detail": "no"}, "{}", Columns())
    assert (error.row, error.field, error.column, error.check, error.message) == (
        7,
        None,
        None,
        "api_403",
        "Forbidden: no",
    )


def test_sandbox_422_on_custom_field_value_and_contact_highlights_those_cells(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    sandbox = sandbox_factory()
    source = tmp_path / "jobs.csv"
    rows = [
        ["Ref", "Customer", "Access Code", "Gate Code"],
        ["V-1", "5001", "1234", "G1"],
        ["V-2", "5002", "x" * 550, "G2"],  # our limit is raised to 600: only the sandbox (500) refuses it
        ["V-3", "999999", "1234", "G3"],  # no such contact
    ]
    with source.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[fields.typeId]\nvalue = 101\n[fields.contactId]\ncolumn = "Customer"\n[fields.reference]\ncolumn = "Ref"\n'
        '[custom_fields]\n"Access Code" = 432632\n"Gate Code" = 432633\n[limits]\ncustom_field = 600\n',
        encoding="utf-8",
    )
    result = run_import(
        RunOptions(
            input=source,
            mapping=mapping,
            report_root=tmp_path / "reports",
            settings=load_settings(environ=sandbox.env()),
            preflight=False,  # the sandbox's own 422s are what this test is about
        )
    )
    assert result.counts["created"] == 1 and result.counts["rejected"] == 2
    sheet = openpyxl.load_workbook(result.paths.corrections_xlsx).active
    header = [cell.value for cell in sheet[1]]
    red = {
        (sheet.cell(row=r, column=1).value, header[c - 1])
        for r in range(2, sheet.max_row + 1)
        for c in range(1, len(header) + 1)
        if sheet.cell(row=r, column=c).comment is not None
    }
    assert red == {("V-2", "Access Code"), ("V-3", "Customer")}
    comment = next(
        sheet.cell(row=r, column=header.index("Access Code") + 1).comment
        for r in range(2, sheet.max_row + 1)
        if sheet.cell(row=r, column=1).value == "V-2"
    )
    assert comment is not None and "500" in comment.text
