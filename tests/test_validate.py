"""validate: pandera checks per cell mapped to spreadsheet rows, duplicates, merged mapping errors, env guard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from pipeline.mapping import MappedTable, Mapping, load_mapping
from pipeline.model import API_FIELDS, ERROR_SCHEMA, INT_FIELDS, ORIGIN_ROW, ROW, errors_frame
from pipeline.validate import validate

MAPPING = """
[fields.typeId]
column = "Type"
[fields.contactId]
column = "Customer"
[fields.plannedDuration]
column = "Dur"
[fields.reference]
column = "Ref"
[fields.description]
column = "Notes"
[fields.personId]
column = "Person"
[custom_fields]
"Gate" = {definition_id = 432633, required = true}
[limits]
description = 10
custom_field = 5
"""

UID = "3e893453-fc5d-5d21-9f4a-5ba330146a90"


def make_mapping(tmp_path: Path) -> Mapping:
    path = tmp_path / "m.toml"
    path.write_text(MAPPING, encoding="utf-8")
    return load_mapping(path)


def mapped(rows: list[dict[str, object]], errors: pl.DataFrame | None = None) -> MappedTable:
    """A job frame like apply_mapping gives; rows default to a valid job. ROW numbers are 10, 20, 30…"""
    base: dict[str, object] = {"typeId": 101, "contactId": 5001, "cf:432633": "G1"}
    full = [{**{f: None for f in API_FIELDS}, **base, **r} for r in rows]
    schema = {f: (pl.Int64 if f in INT_FIELDS else pl.String) for f in API_FIELDS} | {"cf:432633": pl.String}
    frame = pl.DataFrame(full, schema=schema)
    numbers = [10 * (i + 1) for i in range(len(rows))]
    frame = frame.select(
        pl.Series(ROW, numbers, dtype=pl.Int64), pl.Series(ORIGIN_ROW, numbers, dtype=pl.Int64), *frame.columns
    )
    return MappedTable(frame=frame, errors=errors if errors is not None else errors_frame())


def test_every_failing_cell_of_every_row(tmp_path: Path) -> None:
    m = make_mapping(tmp_path)
    table = mapped(
        [
            {"reference": "A"},
            {"typeId": 0, "contactId": None, "plannedDuration": 2_147_483_648, "reference": "B"},
            {"personId": "nope", "description": "x" * 11, "cf:432633": None, "reference": "C"},
            {"description": "😀" * 5 + "a", "cf:432633": "123456", "reference": "D"},
        ]
    )
    result = validate(table, m)
    assert result.errors.schema == pl.Schema(ERROR_SCHEMA)
    assert result.errors.rows() == [
        (20, "typeId", "Type", "positive", "'0' is not a valid job type id; ids are whole numbers above 0 like 101"),
        (20, "contactId", "Customer", "required", "customer (contact) is blank; it is required, fill in 'Customer'"),
        (
            20,
            "plannedDuration",
            "Dur",
            "range",
            "2147483648 minutes is out of range; a planned duration is 0 to 2147483647 minutes",
        ),
        (30, "description", "Notes", "max_length", "description is 11 characters long; the limit is 10, shorten it"),
        (
            30,
            "personId",
            "Person",
            "uuid",
            "'nope' is not a person id; person ids are uuids like 3e893453-fc5d-5d21-9f4a-5ba330146a90 (copy it "
            "from the contact's persons in BigChange)",
        ),
        (30, "cf:432633", "Gate", "required", "'Gate' is blank; the mapping makes it required, fill it in"),
        # UTF-16 length, as the API counts: 5 emoji + 1 = 11
        (40, "description", "Notes", "max_length", "description is 11 characters long; the limit is 10, shorten it"),
        (40, "cf:432633", "Gate", "max_length", "'Gate' is 6 characters long; the limit is 5, shorten it"),
    ]
    assert result.valid[ROW].to_list() == [10]
    assert result.valid.columns == table.frame.columns


def test_duplicate_references_name_the_other_rows(tmp_path: Path) -> None:
    m = make_mapping(tmp_path)
    refs = ["R1", "r1", "R2", "X", "R1", "R1", "R1", "R1", "R1", "R1"]
    result = validate(mapped([{"reference": r, "description": str(i)} for i, r in enumerate(refs)]), m)
    by_row = {r: msg for r, _, _, _, msg in result.errors.rows()}
    assert set(by_row) == {10, 20, 50, 60, 70, 80, 90, 100}
    assert by_row[10] == (
        "reference 'R1' is also used by row(s) 20, 50, 60, 70, 80 and 2 more; references must be unique in the "
        "file, change or remove the duplicates"
    )
    assert by_row[20].startswith("reference 'r1' is also used by row(s) 10, 50, 60, 70, 80 and 2 more")
    assert result.valid[ROW].to_list() == [30, 40]
    assert set(result.errors["check"]) == {"duplicate_reference"}


def test_identical_rows_without_reference_are_invalid(tmp_path: Path) -> None:
    m = make_mapping(tmp_path)
    rows: list[dict[str, object]] = [
        {"description": "same"},
        {"description": "same"},
        {"description": "other"},
        {"description": "same", "reference": "R"},  # has a reference: distinguishable
    ]
    result = validate(mapped(rows), m)
    assert result.errors.rows() == [
        (
            10,
            "reference",
            "Ref",
            "duplicate_job",
            "same job as row(s) 20 and no reference, so the import could not tell them apart; add a reference to "
            "each row (or remove the duplicate)",
        ),
        (
            20,
            "reference",
            "Ref",
            "duplicate_job",
            "same job as row(s) 10 and no reference, so the import could not tell them apart; add a reference to "
            "each row (or remove the duplicate)",
        ),
    ]
    assert result.valid[ROW].to_list() == [30, 40]


def test_mapping_errors_are_merged_without_a_second_required(tmp_path: Path) -> None:
    m = make_mapping(tmp_path)
    conversion = errors_frame()
    conversion = pl.DataFrame(
        [(20, "typeId", "Type", "integer", "'12.5' is not a whole number")], schema=ERROR_SCHEMA, orient="row"
    )
    result = validate(mapped([{"reference": "A"}, {"typeId": None, "reference": "B"}], conversion), m)
    assert result.errors.rows() == [(20, "typeId", "Type", "integer", "'12.5' is not a whole number")]
    assert result.valid[ROW].to_list() == [10]


def test_no_error_gives_all_rows(tmp_path: Path) -> None:
    m = make_mapping(tmp_path)
    result = validate(mapped([{"reference": "A", "personId": UID}, {"reference": "B"}]), m)
    assert result.errors.height == 0
    assert result.valid.equals(mapped([{"reference": "A", "personId": UID}, {"reference": "B"}]).frame)


GUARD_SCRIPT = """
import sys
from pathlib import Path
import polars as pl
from pipeline.mapping import MappedTable, load_mapping
from pipeline.model import ORIGIN_ROW, ROW, errors_frame
from pipeline.validate import validate
m = load_mapping(Path(sys.argv[1]))
frame = pl.DataFrame({ROW: [2], ORIGIN_ROW: [2], "typeId": [-1], "contactId": [None], "plannedDuration": [None],
    "reference": ["R"], "description": [None], "personId": ["bad"], "orderNumber": [None], "cf:432633": ["G"]},
    schema={ROW: pl.Int64, ORIGIN_ROW: pl.Int64, "typeId": pl.Int64, "contactId": pl.Int64,
    "plannedDuration": pl.Int64, "reference": pl.String, "description": pl.String, "personId": pl.String,
    "orderNumber": pl.String, "cf:432633": pl.String})
result = validate(MappedTable(frame, errors_frame()), m)
print(",".join(result.errors["check"].to_list()), result.valid.height)
"""


def test_pandera_environment_cannot_switch_validation_off(tmp_path: Path) -> None:
    m = make_mapping(tmp_path)
    env = {**os.environ, "PANDERA_VALIDATION_ENABLED": "False", "PANDERA_VALIDATION_DEPTH": "SCHEMA_ONLY"}
    out = subprocess.run(
        [sys.executable, "-c", GUARD_SCRIPT, str(m.path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.split() == ["positive,required,uuid", "0"]


def test_long_in_bytes_but_within_the_limit_in_characters(tmp_path: Path) -> None:
    # The first pass flags text longer than the limit in UTF-8 bytes; pandera then counts UTF-16 units.
    m = make_mapping(tmp_path)
    rows: list[dict[str, object]] = [
        {"reference": "A", "description": "é" * 10, "cf:432633": "€€€€€"},  # 20 and 15 bytes, 10 and 5 units
        {"reference": "B", "description": "é" * 11},
    ]
    result = validate(mapped(rows), m)
    assert [(r, f, c) for r, f, _, c, _ in result.errors.rows()] == [(20, "description", "max_length")]
    assert result.valid[ROW].to_list() == [10]


def test_duplicates_among_many_rows(tmp_path: Path) -> None:
    m = make_mapping(tmp_path)
    rows: list[dict[str, object]] = [{"reference": f"R{i}", "description": str(i)} for i in range(3000)]
    rows[2500]["reference"] = "r7"  # same reference as row 80, other case
    for i in (100, 200, 300):  # no reference: two identical jobs and a different one
        rows[i] = {"reference": None, "description": "same" if i != 300 else "other"}
    result = validate(mapped(rows), m)
    assert [(r, c) for r, _, _, c, _ in result.errors.rows()] == [
        (80, "duplicate_reference"),
        (1010, "duplicate_job"),
        (2010, "duplicate_job"),
        (25010, "duplicate_reference"),
    ]
    assert result.valid.height == 2996


def test_a_new_rule_is_one_definition(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 22: every rule was written twice (a pandera check and a polars superset) plus its message and label
    elsewhere. Now one `Rule` is enough: the pandera schema, the first pass over every row and the message all come
    from it. (Here added from outside by wrapping `_rules`; in the code it is one line in `_rules`.)"""
    from pipeline import validate as module
    from pipeline.mapping.parsers import text_of

    original = module._rules

    def with_new_rule(mapping: Mapping):  # type: ignore[no-untyped-def]
        nullable, rules = original(mapping)
        rule = module.Rule(
            "reference",
            "no_spaces",
            ~pl.col("reference").str.contains(" "),
            lambda v: text_of("reference '", v, "' has a space; references are one word"),
        )
        return nullable, [*rules, rule]

    monkeypatch.setattr(module, "_rules", with_new_rule)
    result = validate(mapped([{"reference": "A 1"}, {"reference": "B2"}]), make_mapping(tmp_path))
    assert result.errors.rows() == [
        (10, "reference", "Ref", "no_spaces", "reference 'A 1' has a space; references are one word")
    ]
    assert result.valid_mask.to_list() == [False, True]
