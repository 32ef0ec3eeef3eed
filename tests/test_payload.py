"""plan_payloads: the JSON equals json.dumps of the same dict, absent fields omitted, keys and fingerprints; on the
frames polars really hands it (many chunks, sliced, long rows, empty rows)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.mapping import Mapping, load_mapping
from pipeline.model import API_FIELDS, INT_FIELDS, ORIGIN_ROW, ROW
from pipeline.plan import plan, plan_payloads

MAPPING = """
[fields.typeId]
column = "T"
[fields.contactId]
column = "C"
[fields.plannedDuration]
column = "D"
[fields.reference]
column = "R"
[fields.description]
column = "N"
[fields.personId]
column = "P"
[fields.orderNumber]
column = "O"
[custom_fields]
"Gate" = 432633
"Access" = 432632
"""
CF = ("cf:432633", "cf:432632")
TRICKY = [
    'quote " and backslash \\ and slash /',
    "line\nbreak\r\ttab",
    "control \x00\x01\x1f\x7f \x08\x0c",
    "unicode é € 😀 \u2028 \u2029 \ufeff",
    "</script> & <b>",
]


def make_mapping(tmp_path: Path) -> Mapping:
    (tmp_path / "m.toml").write_text(MAPPING, encoding="utf-8")
    return load_mapping(tmp_path / "m.toml")


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = {ROW: pl.Int64, ORIGIN_ROW: pl.Int64}
    schema |= {f: (pl.Int64 if f in INT_FIELDS else pl.String) for f in API_FIELDS}
    schema |= {c: pl.String for c in CF}
    full = [{**dict.fromkeys(schema), ROW: i + 2, ORIGIN_ROW: i + 2, **r} for i, r in enumerate(rows)]
    return pl.DataFrame(full, schema=schema)


def expected_body(row: dict[str, Any]) -> dict[str, Any]:
    body = {f: row[f] for f in API_FIELDS if row.get(f) is not None}
    custom = [{"definitionId": int(c[3:]), "value": row[c]} for c in CF if row.get(c) is not None]
    if custom:
        body["customFields"] = custom
    return body


def dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def test_tricky_strings_encode_exactly_like_json_dumps(tmp_path: Path) -> None:
    m = make_mapping(tmp_path)
    rows = [
        {"typeId": 101, "contactId": 5001, "reference": s, "description": s, "orderNumber": s, CF[0]: s} for s in TRICKY
    ]
    planned = plan_payloads(frame(rows), m)
    for row, payload in zip(rows, planned["payload"], strict=True):
        assert payload == dumps(expected_body(row))
        assert json.loads(payload) == expected_body(row)


def test_absent_fields_are_omitted_and_custom_fields_keep_mapping_order(tmp_path: Path) -> None:
    m = make_mapping(tmp_path)
    rows = [
        {"typeId": 101, "contactId": 5001, "reference": "R1", CF[1]: "A1", CF[0]: "G1"},
        {"typeId": 102, "contactId": 5002, "plannedDuration": 0, "reference": "R2"},
        {"typeId": 2**62, "contactId": 5003, "reference": "R3", CF[1]: "only access"},
    ]
    planned = plan_payloads(frame(rows), m)
    assert planned["payload"].to_list() == [
        '{"typeId":101,"contactId":5001,"reference":"R1","customFields":[{"definitionId":432633,"value":"G1"},'
        '{"definitionId":432632,"value":"A1"}]}',
        '{"typeId":102,"contactId":5002,"plannedDuration":0,"reference":"R2"}',
        '{"typeId":4611686018427387904,"contactId":5003,"reference":"R3","customFields":[{"definitionId":432632,'
        '"value":"only access"}]}',
    ]
    assert planned.columns == [ROW, ORIGIN_ROW, "key", "reference", "payload"]
    assert planned["key"].to_list() == ["R1", "R2", "R3"]


def test_key_is_a_fingerprint_without_reference(tmp_path: Path) -> None:
    m = make_mapping(tmp_path)
    rows = [
        {"typeId": 101, "contactId": 5001, "description": "é"},
        {"typeId": 101, "contactId": 5001, "reference": "R"},
    ]
    planned = plan_payloads(frame(rows), m)
    payload = planned["payload"][0]
    assert planned["key"].to_list() == ["fp:" + hashlib.sha256(payload.encode("utf-8")).hexdigest(), "R"]
    assert planned["reference"].to_list() == [None, "R"]
    assert planned.schema["key"] == pl.String and planned.schema["reference"] == pl.String


def test_no_rows(tmp_path: Path) -> None:
    planned = plan_payloads(frame([]), make_mapping(tmp_path))
    assert planned.height == 0
    assert planned.columns == [ROW, ORIGIN_ROW, "key", "reference", "payload"]


@pytest.fixture(scope="module")
def module_mapping(tmp_path_factory: pytest.TempPathFactory) -> Mapping:
    return make_mapping(tmp_path_factory.mktemp("payload"))


texts = st.one_of(st.none(), st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30))


@settings(max_examples=200, deadline=None)
@given(
    type_id=st.integers(min_value=1, max_value=2**63 - 1),
    duration=st.one_of(st.none(), st.integers(min_value=0, max_value=2**31 - 1)),
    ref=texts,
    desc=texts,
    gate=texts,
    access=texts,
)
def test_payload_equals_json_dumps(
    module_mapping: Mapping,
    type_id: int,
    duration: int | None,
    ref: str | None,
    desc: str | None,
    gate: str | None,
    access: str | None,
) -> None:
    row = {"typeId": type_id, "contactId": 5001, "plannedDuration": duration, "reference": ref, "description": desc}
    row |= {CF[0]: gate, CF[1]: access}
    (payload,) = plan_payloads(frame([row]), module_mapping)["payload"].to_list()
    assert payload == dumps(expected_body(row))
    assert json.loads(payload) == expected_body(row)


def test_row_without_type_id_omits_it(tmp_path: Path) -> None:
    # (plan_payloads gets valid rows, which always have one; a frame without it takes the general path)
    m = make_mapping(tmp_path)
    rows = [
        {"typeId": None, "contactId": 5001, "reference": "R1", CF[0]: "G1"},
        {"typeId": 101, "contactId": 5002, "description": 'say "hi"', CF[1]: "A\n2"},
    ]
    planned = plan_payloads(frame(rows), m)
    assert planned["payload"].to_list() == [dumps(expected_body(r)) for r in rows]


def test_one_custom_field_mapped(tmp_path: Path) -> None:
    (tmp_path / "one.toml").write_text(
        MAPPING.split("[custom_fields]")[0] + '[custom_fields]\n"Gate" = 432633\n', encoding="utf-8"
    )
    m = load_mapping(tmp_path / "one.toml")
    rows = [{"typeId": 101, "contactId": 5001, CF[0]: g} for g in ("G1", None, 'G"2')]
    planned = plan_payloads(frame(rows).drop(CF[1]), m)
    expected = [{"typeId": 101, "contactId": 5001} for _ in rows]
    expected[0]["customFields"] = [{"definitionId": 432633, "value": "G1"}]
    expected[2]["customFields"] = [{"definitionId": 432633, "value": 'G"2'}]
    assert planned["payload"].to_list() == [dumps(e) for e in expected]


rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "typeId": st.integers(min_value=1, max_value=2**63 - 1),
            "contactId": st.integers(min_value=1, max_value=2**63 - 1),
            "plannedDuration": st.one_of(st.none(), st.integers(min_value=0, max_value=2**31 - 1)),
            "reference": texts,
            "description": texts,
            "personId": st.one_of(st.none(), st.just("3e893453-fc5d-5d21-9f4a-5ba330146a90")),
            "orderNumber": texts,
            CF[0]: texts,
            CF[1]: st.one_of(st.none(), st.sampled_from(["A1", "", " ", 'q"', "\\", "\t"])),
        }
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy)
def test_payloads_of_several_rows_equal_json_dumps(module_mapping: Mapping, rows: list[dict[str, Any]]) -> None:
    # several rows: columns with and without nulls, needing escapes or not, side by side (each takes its own path)
    planned = plan_payloads(frame(rows), module_mapping)
    assert planned["payload"].to_list() == [dumps(expected_body(r)) for r in rows]


def test_planning_kept_rows_equals_planning_those_rows(tmp_path: Path) -> None:
    m = make_mapping(tmp_path)
    rows = [{"typeId": 100 + i, "contactId": 5001, "reference": f"R{i}" if i % 2 else None} for i in range(6)]
    whole = frame(rows)
    keep = pl.Series([False, True, True, False, False, True])
    assert plan_payloads(whole, m, keep).equals(plan_payloads(whole.filter(keep), m))
    assert plan_payloads(whole, m, keep)[ROW].to_list() == [3, 4, 7]
    assert plan_payloads(whole, m, pl.Series([False] * 6)).height == 0


def job_frame(n: int, *, offset: int = 0, description: pl.Expr | None = None) -> pl.DataFrame:
    """n rows of every API field and both custom fields, with nulls, escapes and non-ASCII text spread about."""
    i = pl.int_range(offset, offset + n, dtype=pl.Int64)
    notes = pl.lit(pl.Series(['say "hi"', "a\\b", "line\nbreak", "é€😀", "tab\there", "\x01", None]))
    text = {f: pl.String for f in API_FIELDS if f not in INT_FIELDS}
    return pl.select(
        (i + 2).alias(ROW),
        (i + 2).alias(ORIGIN_ROW),
        (i + 1).alias("typeId"),
        pl.when(i % 5 == 0).then(None).otherwise(-i).alias("contactId"),  # (any Int64: the plan does not judge)
        pl.when(i % 3 == 0).then(None).otherwise(i % 1000).alias("plannedDuration"),
        pl.when(i % 4 == 1).then(None).otherwise("REF-" + i.cast(pl.String)).alias("reference"),
        (description if description is not None else notes.gather(i % 7)).alias("description"),
        pl.lit(None, dtype=pl.String).alias("personId"),
        pl.when(i % 2 == 0).then("PO" + i.cast(pl.String)).alias("orderNumber"),
        pl.when(i % 3 == 1).then("G" + i.cast(pl.String)).alias(CF[0]),
        pl.when(i % 7 < 3).then(pl.lit("x" * 13)).alias(CF[1]),
    ).cast(text)


def expected_payloads(frame: pl.DataFrame) -> list[str]:
    """json.dumps of each row's body, row by row in Python: what the query must write."""
    return [dumps(expected_body(row)) for row in frame.to_dicts()]


def test_many_chunks_misaligned_and_sliced_columns(module_mapping: Mapping) -> None:
    pieces = [job_frame(n, offset=o) for n, o in ((7, 0), (1, 7), (0, 8), (30, 8), (5, 38))]
    whole = pl.concat(pieces, rechunk=False)
    # re-chunk some columns differently, and slice: chunks start at an offset inside their buffers
    whole = whole.with_columns(pl.concat([whole["reference"].slice(0, 20), whole["reference"].slice(20)]).rechunk())
    whole = whole.slice(3, 35)
    assert whole["typeId"].n_chunks() > 1 and whole["reference"].n_chunks() == 1
    payloads = plan_payloads(whole, module_mapping)["payload"].to_list()
    assert payloads == expected_payloads(whole)
    assert json.loads(payloads[0])["typeId"] == 4


def test_kept_rows_of_many_chunks_equal_those_rows_planned(module_mapping: Mapping) -> None:
    whole = pl.concat([job_frame(n, offset=o) for n, o in ((5, 0), (0, 5), (9, 5), (1, 14), (6, 15))], rechunk=False)
    for picks in ([0, 1, 4, 5, 13, 14, 15, 20], [20], [], list(range(21))):
        keep = pl.Series([i in picks for i in range(whole.height)])
        planned = plan_payloads(whole, module_mapping, keep)
        assert planned["payload"].to_list() == expected_payloads(whole.filter(keep))
        assert planned[ROW].to_list() == [p + 2 for p in picks]


def test_long_rows(module_mapping: Mapping) -> None:
    big = pl.when(pl.int_range(0, 30) % 10 == 0).then(pl.lit("é" * 4_500_000)).otherwise(pl.lit('"q"' * 350_000))
    frame_ = job_frame(30, description=big)
    assert plan_payloads(frame_, module_mapping)["payload"].to_list() == expected_payloads(frame_)


def test_rows_can_be_empty(module_mapping: Mapping) -> None:
    frame_ = job_frame(3).with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in ["reference", "description"])
    frame_ = frame_.with_columns(
        pl.Series("typeId", [7, None, None]),
        pl.lit(None, dtype=pl.Int64).alias("contactId"),
        pl.lit(None, dtype=pl.Int64).alias("plannedDuration"),
        pl.lit(None, dtype=pl.String).alias("orderNumber"),
        pl.lit(None, dtype=pl.String).alias(CF[0]),
        pl.Series(CF[1], [None, None, "v"]),
    )
    assert plan_payloads(frame_, module_mapping)["payload"].to_list() == [
        '{"typeId":7}',
        "{}",
        '{"customFields":[{"definitionId":432632,"value":"v"}]}',
    ]


def test_int64_extremes(module_mapping: Mapping) -> None:
    values = [0, -1, 2**63 - 1, -(2**63)]
    rows = [{"typeId": v, "contactId": v, "plannedDuration": v, "reference": f"R{i}"} for i, v in enumerate(values)]
    assert plan_payloads(frame(rows), module_mapping)["payload"].to_list() == [dumps(expected_body(r)) for r in rows]


def test_a_plan_makes_the_same_payloads_a_slice_at_a_time(tmp_path: Path) -> None:
    """A run makes payload texts per slice (never all at once): the same text, key and order as the whole plan,
    whatever the slicing, including a slice where no cell needs escaping next to one where some do."""
    m = make_mapping(tmp_path)
    rows = [
        {"typeId": 100 + i, "contactId": 5001, "reference": f"R{i}" if i % 3 else None, "description": text}
        for i, text in enumerate(["plain", 'a "quoted" one', None, "back\\slash", "x", "tab\there", "y"])
    ]
    whole = plan_payloads(frame(rows), m)
    planned = plan(frame(rows), m)
    for size in (1, 2, 3, 7, 10):
        pieces = [planned.with_payloads(offset, size) for offset in range(0, planned.height, size)]
        assert pl.concat(pieces).equals(whole), size
    assert planned.payloads_at([5, 0, 3]).to_list() == [whole["payload"][i] for i in (5, 0, 3)]
    assert planned.rows.columns == [ROW, ORIGIN_ROW, "key", "reference"]  # no payload held
