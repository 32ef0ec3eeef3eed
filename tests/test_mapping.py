"""load_mapping (pinned error messages) and apply_mapping (transforms, lookups, template, cell errors)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import MappingError
from pipeline.mapping import Mapping, apply_mapping, load_mapping
from pipeline.model import ERROR_SCHEMA, ORIGIN_ROW, ROW, CellError, RawTable

BASE = """
[fields.typeId]
column = "Type"
[fields.contactId]
column = "Customer"
"""


def write(tmp_path: Path, text: str, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def raw_table(columns: dict[str, list[str | None]], rows: list[int] | None = None) -> RawTable:
    n = len(next(iter(columns.values())))
    numbers = rows or list(range(2, n + 2))
    frame = pl.DataFrame(columns, schema={c: pl.String for c in columns}).with_columns(
        pl.Series(ROW, numbers, dtype=pl.Int64), pl.Series(ORIGIN_ROW, numbers, dtype=pl.Int64)
    )
    return RawTable(frame=frame, columns=list(columns), source=Path("jobs.csv"), kind="csv")


def mapping_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as exc:
        load_mapping(path)
    return str(exc.value).replace(str(path), "M")


# --- load_mapping: messages pinned --------------------------------------------------------------------------


def test_unknown_api_field_lists_valid_ones(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, BASE + '[fields.typeID]\ncolumn = "X"\n') == (
        "M: [fields.typeID] is not a field of POST /v1/jobs (did you mean 'typeId'?); valid fields: typeId, "
        "contactId, plannedDuration, reference, description, personId, orderNumber (custom fields go under "
        "[custom_fields])"
    )


def test_unknown_field_key_is_a_typo(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, BASE + '[fields.description]\ncolum = "Notes"\n') == (
        "M: [fields.description] unknown key 'colum' (did you mean 'column'?); allowed keys: column, value, "
        "default, parse, unit, lookup, by, trim, template"
    )


def test_unknown_section(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, BASE + "[lookup.x]\nfile = 'a.csv'\n") == (
        "M: unknown section '[lookup]' (did you mean 'lookups'?); allowed sections: source, fields, "
        "custom_fields, lookups, limits"
    )


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, '[fields.typeId]\ncolumn = "Type\n') == (
        "M: not valid TOML: Illegal character '\\n' (at line 2, column 15); fix the syntax there"
    )


def test_missing_required_field(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, '[fields.typeId]\ncolumn = "Type"\n') == (
        "M: [fields.contactId] is missing; every job needs contactId (a column or a constant value)"
    )


def test_bad_parse_for_field(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, BASE + '[fields.plannedDuration]\ncolumn = "D"\nparse = "uuid"\n') == (
        "M: [fields.plannedDuration] parse = 'uuid' is not allowed for plannedDuration; use one of: duration, integer"
    )


def test_undefined_lookup(tmp_path: Path) -> None:
    text = '[fields.typeId]\ncolumn = "T"\nlookup = "job_type"\n[fields.contactId]\nvalue = 5001\n'
    text += "[lookups.job_types]\nvalues = {SVC = 101}\n"
    assert mapping_error(tmp_path, text) == (
        "M: [fields.typeId] lookup 'job_type' is not defined (did you mean 'job_types'?); add a [lookups.job_type] "
        "section or fix the name"
    )


def test_bad_constant_uses_the_analyst_message(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, '[fields.typeId]\nvalue = "12.5"\n[fields.contactId]\nvalue = 5001\n') == (
        "M: [fields.typeId] value '12.5' is not a whole number; job type ids are whole numbers like 101"
    )


def test_column_and_value_together(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, BASE.replace('column = "Type"', 'column = "Type"\nvalue = 101')) == (
        "M: [fields.typeId] has both 'column' and 'value'; keep one (value is a constant for every row)"
    )


def test_duplicate_custom_field_id(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, BASE + '[custom_fields]\n"A" = 432632\n"B" = {definition_id = 432632}\n') == (
        'M: [custom_fields] definition id 432632 is mapped twice ("A" and "B"); keep one'
    )


def test_lookup_file_missing(tmp_path: Path) -> None:
    text = BASE.replace('column = "Type"', 'column = "Type"\nlookup = "jt"') + '[lookups.jt]\nfile = "nope.csv"\n'
    msg = mapping_error(tmp_path, text)
    assert (
        msg == f"M: [lookups.jt] file '{tmp_path / 'nope.csv'}' does not exist; paths are relative to the mapping file"
    )


def test_lookup_with_non_integer_id_for_an_int_field(tmp_path: Path) -> None:
    (tmp_path / "jt.csv").write_text("code,id\nSVC,101\nREP,1O2\n", encoding="utf-8")
    text = BASE.replace('column = "Type"', 'column = "Type"\nlookup = "jt"') + '[lookups.jt]\nfile = "jt.csv"\n'
    assert mapping_error(tmp_path, text) == (
        f"M: [fields.typeId] lookup 'jt' ({tmp_path / 'jt.csv'}) has id '1O2', which is not valid for typeId "
        "(job type ids are whole numbers like 101); fix the lookup"
    )


def test_template_without_placeholder(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, BASE + '[fields.reference]\ntemplate = "LEG"\n') == (
        "M: [fields.reference] template 'LEG' has no placeholder, so every row would get the same reference; "
        "add one like {row} or {Job No}"
    )


def test_limits_unknown_key(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, BASE + "[limits]\nreferences = 20\n") == (
        "M: [limits] unknown key 'references' (did you mean 'reference'?); allowed keys: reference, description, "
        "custom_field, order_number"
    )


def test_loads_a_full_mapping(tmp_path: Path) -> None:
    (tmp_path / "jt.csv").write_text("legacy,name,bc_id\nSVC,Service,101\n", encoding="utf-8")
    path = write(
        tmp_path,
        """
[source]
encoding = "cp1252"
delimiter = ";"
header_row = 2
[fields.typeId]
column = "Type"
lookup = "jt"
default = "svc"
[fields.contactId]
value = 5001
[fields.reference]
column = "Ref"
template = "LEG-{Job No}"
[custom_fields]
"Access Code" = 432632
"Gate Code" = { definition_id = 432633, required = true }
[lookups.jt]
file = "jt.csv"
key_column = "legacy"
id_column = "bc_id"
[limits]
description = 200
""",
    )
    m = load_mapping(path)
    assert (m.encoding, m.delimiter, m.header_row, m.sheet) == ("cp1252", ";", 2, None)
    assert m.source_column("typeId") == "Type"
    assert m.source_column("contactId") is None
    assert m.fields["contactId"].value == 5001
    assert m.source_column("cf:432633") == "Gate Code"
    assert m.custom_field_column(432632) == "Access Code"
    assert m.custom_field_column(1) is None
    assert m.limits.description == 200 and m.limits.reference == 40
    assert m.lookups["jt"].table == {"svc": "101"}
    assert m.template_columns() == ["Job No"]


# --- apply_mapping ----------------------------------------------------------------------------------------------


def mapping_for(tmp_path: Path, text: str) -> Mapping:
    return load_mapping(write(tmp_path, text))


def test_unknown_column_names_closest_headers(tmp_path: Path) -> None:
    m = mapping_for(tmp_path, BASE.replace('"Type"', '"Job Typ"'))
    raw = raw_table({"Job Type": ["1"], "Job No": ["1"], "Customer": ["5001"]})
    with pytest.raises(MappingError) as exc:
        apply_mapping(raw, m)
    assert str(exc.value) == (
        f"{m.path}: [fields.typeId] column 'Job Typ' is not a header of jobs.csv; closest headers: 'Job Type', "
        "'Job No'; fix the mapping or the file"
    )


def test_types_and_transforms(tmp_path: Path) -> None:
    m = mapping_for(
        tmp_path,
        BASE
        + """
[fields.plannedDuration]
column = "Dur"
[fields.personId]
column = "Person"
[fields.description]
column = "Notes"
trim = false
[custom_fields]
"Access" = 432632
""",
    )
    raw = raw_table(
        {
            "Type": [" 101 ", "1,234", "101.0"],
            "Customer": ["5001", "5002", "5003"],
            "Dur": ["1h30", "45 min", None],
            "Person": ["{3E893453-FC5D-5D21-9F4A-5BA330146A90}", None, "3e893453fc5d5d219f4a5ba330146a90"],
            "Notes": ["  keep spaces ", None, "x"],
            "Access": ["  ", " 12 ", None],
        }
    )
    out = apply_mapping(raw, m)
    assert out.errors.height == 0
    assert out.frame.schema == pl.Schema(
        {
            ROW: pl.Int64,
            ORIGIN_ROW: pl.Int64,
            "typeId": pl.Int64,
            "contactId": pl.Int64,
            "plannedDuration": pl.Int64,
            "reference": pl.String,
            "description": pl.String,
            "personId": pl.String,
            "orderNumber": pl.String,
            "cf:432632": pl.String,
        }
    )
    assert out.frame["typeId"].to_list() == [101, 1234, 101]
    assert out.frame["plannedDuration"].to_list() == [90, 45, None]
    uid = "3e893453-fc5d-5d21-9f4a-5ba330146a90"
    assert out.frame["personId"].to_list() == [uid, None, uid]
    assert out.frame["description"].to_list() == ["  keep spaces ", None, "x"]
    assert out.frame["cf:432632"].to_list() == [None, "12", None]


def test_conversion_errors_are_cell_errors(tmp_path: Path) -> None:
    m = mapping_for(tmp_path, BASE + '[fields.plannedDuration]\ncolumn = "Dur"\n')
    raw = raw_table(
        {"Type": ["12.5", "1.23457E+11", "101"], "Customer": ["abc", "5001", "5001"], "Dur": ["-30", "1.5", "x"]},
        rows=[2, 5, 9],
    )
    out = apply_mapping(raw, m)
    assert out.errors.schema == pl.Schema(ERROR_SCHEMA)
    got = sorted(out.errors.iter_rows())
    assert got == [
        (2, "contactId", "Customer", "integer", "'abc' is not a whole number; contact ids are whole numbers like 5001"),
        (2, "plannedDuration", "Dur", "duration", "'-30' is negative; a planned duration is 0 minutes or more"),
        (2, "typeId", "Type", "integer", "'12.5' is not a whole number; job type ids are whole numbers like 101"),
        (
            5,
            "plannedDuration",
            "Dur",
            "duration",
            "'1.5' has no unit (hours or minutes?) and neither has its column; add unit = \"minutes\" or "
            'unit = "hours" to the mapping, or write 90m or 1.5h',
        ),
        (
            5,
            "typeId",
            "Type",
            "integer",
            "'1.23457E+11' is in scientific notation, so the spreadsheet has already rounded it; format the column "
            "as a plain number or text and export again",
        ),
        (
            9,
            "plannedDuration",
            "Dur",
            "duration",
            "'x' is not a duration; write minutes (90), h:mm (1:30) or hours (1h30, 1.5h)",
        ),
    ]


def test_lookup_is_case_and_space_insensitive_and_miss_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "jt.csv").write_text("code,id\nSVC 01,101\n007,102\n", encoding="utf-8")
    m = mapping_for(
        tmp_path, BASE.replace('column = "Type"', 'column = "Type"\nlookup = "jt"') + '[lookups.jt]\nfile = "jt.csv"\n'
    )
    raw = raw_table({"Type": ["svc01", " Svc 01 ", "007", "7", None], "Customer": ["1"] * 5})
    out = apply_mapping(raw, m)
    assert out.frame["typeId"].to_list() == [101, 101, 102, None, None]
    assert out.errors.rows() == [
        (
            5,
            "typeId",
            "Type",
            "lookup",
            f"'7' is not in lookup 'jt' ({tmp_path / 'jt.csv'}); add the code to that file or correct the cell",
        )
    ]


def test_default_and_constant(tmp_path: Path) -> None:
    text = '[fields.typeId]\ncolumn = "Type"\ndefault = "103"\n[fields.contactId]\nvalue = "5,001"\n'
    m = mapping_for(tmp_path, text)
    out = apply_mapping(raw_table({"Type": [None, "101"]}), m)
    assert out.frame.select("typeId", "contactId").rows() == [(103, 5001), (101, 5001)]


def test_reference_template_uses_origin_row_and_columns(tmp_path: Path) -> None:
    m = mapping_for(tmp_path, BASE + '[fields.reference]\ncolumn = "Ref"\ntemplate = "LEG-{Job No}-{row}"\n')
    raw = raw_table(
        {"Type": ["1"] * 3, "Customer": ["1"] * 3, "Ref": ["R1", None, None], "Job No": [" J1 ", "J2", None]}
    )
    raw.frame = raw.frame.with_columns(pl.Series(ORIGIN_ROW, [10, 20, 30], dtype=pl.Int64))
    out = apply_mapping(raw, m)
    assert out.frame["reference"].to_list() == ["R1", "LEG-J2-20", None]
    assert out.errors.rows() == [
        (
            4,
            "reference",
            "Ref",
            "template",
            "no reference: the column 'Ref' is blank and the template 'LEG-{Job No}-{row}' needs 'Job No', which "
            "is blank here; fill it in",
        )
    ]


def test_raw_cell_errors_of_mapped_columns_only(tmp_path: Path) -> None:
    m = mapping_for(tmp_path, BASE + '[custom_fields]\n"Gate" = 432633\n')
    raw = raw_table({"Type": ["101", "101"], "Customer": [None, "5001"], "Gate": ["1", None], "Other": [None, None]})
    raw.cell_errors = [
        CellError(2, None, "Customer", "error_cell", "C2 shows #N/A"),
        CellError(3, None, "Gate", "error_cell", "D3 shows #REF!"),
        CellError(3, None, "Other", "error_cell", "E3 shows #N/A"),
    ]
    out = apply_mapping(raw, m)
    assert out.errors.rows() == [
        (2, "contactId", "Customer", "error_cell", "C2 shows #N/A"),
        (3, "cf:432633", "Gate", "error_cell", "D3 shows #REF!"),
    ]


def test_person_ids_in_every_form(tmp_path: Path) -> None:
    m = mapping_for(tmp_path, BASE + '[fields.personId]\ncolumn = "Person"\n')
    uid = "3e893453-fc5d-5d21-9f4a-5ba330146a90"
    people = [uid, uid.upper(), "{" + uid + "}", "urn:uuid:" + uid.replace("-", ""), " " + uid, "nope", None, uid]
    raw = raw_table({"Type": ["101"] * len(people), "Customer": ["5001"] * len(people), "Person": people})
    out = apply_mapping(raw, m)
    assert out.frame["personId"].to_list() == [uid, uid, uid, uid, uid, None, None, uid]
    assert [(r, f, c) for r, f, _, c, _ in out.errors.rows()] == [(7, "personId", "uuid")]


def test_errors_of_one_row_come_in_field_order(tmp_path: Path) -> None:
    m = mapping_for(
        tmp_path,
        BASE + '[fields.reference]\ncolumn = "Ref"\ntemplate = "LEG-{No}"\n[fields.personId]\ncolumn = "Person"\n',
    )
    raw = raw_table({"Type": ["x"], "Customer": ["5001"], "Ref": [None], "No": [None], "Person": ["nope"]})
    out = apply_mapping(raw, m)
    assert [(f, c) for _, f, _, c, _ in out.errors.rows()] == [
        ("typeId", "integer"),
        ("reference", "template"),
        ("personId", "uuid"),
    ]


# --- duration units (issue 22, finding 1) ---------------------------------------------------------------------


def _durations(tmp_path: Path, header: str, cells: list[str], unit: str | None) -> tuple[list[object], list[str]]:
    extra = f'unit = "{unit}"\n' if unit else ""
    m = mapping_for(tmp_path, BASE + f'[fields.plannedDuration]\ncolumn = "{header}"\n{extra}')
    raw = raw_table({"Type": ["101"] * len(cells), "Customer": ["5001"] * len(cells), header: cells})
    out = apply_mapping(raw, m)
    return out.frame["plannedDuration"].to_list(), out.errors["message"].to_list()


def test_an_hours_column_is_read_in_hours(tmp_path: Path) -> None:
    """The first week's finding: 'Hours' with 1 and 2 became 1 and 2 minutes. Now the header names the unit."""
    values, errors = _durations(tmp_path, "Hours", ["1", "2", "1.5", "90m", "1:30"], None)
    assert values == [60, 120, 90, 90, 90]
    assert errors == []


def test_a_unit_in_the_mapping_reads_plain_numbers(tmp_path: Path) -> None:
    assert _durations(tmp_path, "Duration", ["1", "1.5", "2h"], "hours") == ([60, 90, 120], [])
    values, errors = _durations(tmp_path, "Duration", ["90", "1.5", "2h"], "minutes")
    assert values == [90, None, 120]
    assert errors == ["'1.5' is not a whole number of minutes (the column is in minutes); write 90 or 1:30"]


def test_plain_numbers_without_any_unit_are_refused(tmp_path: Path) -> None:
    values, errors = _durations(tmp_path, "Duration", ["1", "90m"], None)
    assert values == [None, 90]
    assert errors == [
        "'1' has no unit (hours or minutes?) and neither has its column; add unit = \"minutes\" or "
        'unit = "hours" to the mapping, or write 90m or 1.5h'
    ]


def test_a_unit_that_contradicts_the_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as err:
        _durations(tmp_path, "Duration (h)", ["1"], "minutes")
    assert str(err.value).split(": ", 1)[1] == (
        "[fields.plannedDuration] unit = \"minutes\" but the column 'Duration (h)' says hours; "
        "fix the unit (or the header) so that both say the same"
    )


def test_unit_is_checked_when_the_mapping_loads(tmp_path: Path) -> None:
    assert mapping_error(tmp_path, BASE + '[fields.plannedDuration]\ncolumn = "D"\nunit = "days"\n') == (
        'M: [fields.plannedDuration] unit = \'days\' is not a unit; use unit = "minutes" or unit = "hours" '
        "(the unit of the column's plain numbers)"
    )
    assert mapping_error(
        tmp_path, BASE + '[fields.plannedDuration]\ncolumn = "D"\nparse = "integer"\nunit = "hours"\n'
    ) == ('M: [fields.plannedDuration] unit is for durations only (parse = "duration"); remove it')
    assert mapping_error(tmp_path, BASE + '[fields.plannedDuration]\nvalue = "90"\n').startswith(
        "M: [fields.plannedDuration] value '90' has no unit (hours or minutes?)"
    )


def test_a_duration_custom_field_is_sent_in_minutes(tmp_path: Path) -> None:
    m = mapping_for(
        tmp_path,
        BASE + '[custom_fields]\n"Travel (hrs)" = { definition_id = 432640, parse = "duration" }\n',
    )
    raw = raw_table({"Type": ["101"] * 3, "Customer": ["5001"] * 3, "Travel (hrs)": ["0.5", "1h", "soon"]})
    out = apply_mapping(raw, m)
    assert out.frame["cf:432640"].to_list() == ["30", "60", None]
    assert out.errors.select("column", "check", "message").rows() == [
        ("Travel (hrs)", "duration", "'soon' is not a duration; write minutes (90), h:mm (1:30) or hours (1h30, 1.5h)")
    ]
