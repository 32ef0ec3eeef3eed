"""The bundled samples: reproducible from make_samples.py, and read → map → validate → plan gives the intended
outcome for every row (our validation refuses the `invalid` ones; the sandbox's rules refuse the `rejected` ones;
every planned payload is a valid JobCreate of pipeline/sandbox/openapi.yaml)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import jsonschema
import polars as pl
import pytest
import yaml

from pipeline.mapping import apply_mapping, load_mapping
from pipeline.model import ROW
from pipeline.plan import plan_payloads
from pipeline.read import read_table
from pipeline.sandbox.data import load_reference_data
from pipeline.sandbox.rules import Limits, validate_create
from pipeline.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CASES = [("legacy_jobs.csv", "legacy_csv.toml", 60), ("jobs.xlsx", "jobs_xlsx.toml", 40)]


def test_samples_are_reproducible(tmp_path: Path) -> None:
    """Every sample, and the copies inside the package (the demo's workbook and mapping, the users' copy of the
    sandbox data), is what make_samples.py writes: run it and commit when this fails."""
    module = runpy.run_path(str(SAMPLES / "make_samples.py"))
    module["main"](tmp_path, tmp_path / "demo")
    for name in [
        "legacy_jobs.csv",
        "jobs.xlsx",
        "lookups/job_types.csv",
        "lookups/customers.csv",
        "expected_outcomes.json",
        "sandbox_data.json",
    ]:
        assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), name
    for name in ["jobs.xlsx", "jobs_xlsx.toml"]:
        assert (tmp_path / "demo" / name).read_bytes() == (ROOT / "pipeline" / "demo_data" / name).read_bytes(), name
    assert (ROOT / "pipeline" / "demo_data" / "jobs_xlsx.toml").read_bytes() == (
        ROOT / "mappings" / "jobs_xlsx.toml"
    ).read_bytes()


@pytest.fixture(scope="module")
def job_create() -> jsonschema.protocols.Validator:
    doc = yaml.safe_load((ROOT / "pipeline/sandbox/openapi.yaml").read_text(encoding="utf-8"))
    schema = {"$ref": "#/components/schemas/JobCreate", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize(("sample", "mapping_file", "n_rows"), CASES)
def test_sample_outcomes(
    sample: str, mapping_file: str, n_rows: int, job_create: jsonschema.protocols.Validator
) -> None:
    expected = json.loads((SAMPLES / "expected_outcomes.json").read_text(encoding="utf-8"))[sample]
    invalid = {int(r) for r, (outcome, _) in expected.items() if outcome == "invalid"}
    rejected = {int(r) for r, (outcome, _) in expected.items() if outcome == "rejected"}

    mapping = load_mapping(ROOT / "mappings" / mapping_file)
    raw = read_table(
        SAMPLES / sample,
        sheet=mapping.sheet,
        header_row=mapping.header_row,
        encoding=mapping.encoding,
        delimiter=mapping.delimiter,
    )
    assert raw.frame.height == n_rows
    result = validate(apply_mapping(raw, mapping), mapping)
    assert set(result.errors["row"]) == invalid
    planned = plan_payloads(result.frame, mapping, result.valid_mask)
    assert planned.height == n_rows - len(invalid)
    assert planned["key"].is_duplicated().sum() == 0

    data = load_reference_data(SAMPLES / "sandbox_data.json")
    refused = set()
    for row, payload in planned.select(ROW, "payload").iter_rows():
        body = json.loads(payload)
        assert list(job_create.iter_errors(body)) == [], (row, payload)
        if validate_create(body, data, Limits()):
            refused.add(row)
    assert refused == rejected


def test_csv_sample_details() -> None:
    mapping = load_mapping(ROOT / "mappings/legacy_csv.toml")
    raw = read_table(SAMPLES / "legacy_jobs.csv", encoding=mapping.encoding, delimiter=mapping.delimiter)
    frame = apply_mapping(raw, mapping).frame
    by_row = {r[ROW]: r for r in frame.iter_rows(named=True)}
    assert raw.encoding == "cp1252"
    assert "€85" in by_row[4]["description"] and by_row[4]["typeId"] == 101  # " bsv " → BSV → 101
    assert by_row[5]["reference"] == "LEG-J10004"  # blank Legacy Ref → template
    assert by_row[8]["personId"] == by_row[8]["personId"].lower() and by_row[8]["personId"] is not None
    assert by_row[2]["contactId"] == 5001  # "00101"


def test_xlsx_sample_details() -> None:
    mapping = load_mapping(ROOT / "mappings/jobs_xlsx.toml")
    raw = read_table(SAMPLES / "jobs.xlsx", sheet=mapping.sheet)
    frame = apply_mapping(raw, mapping).frame
    first = frame.row(0, named=True)
    assert frame.schema["typeId"] == pl.Int64 and first["typeId"] in (101, 102, 103, 104)
    assert frame.filter(pl.col(ROW) == 5)["orderNumber"].item() == "000123"
    assert raw.frame.filter(pl.col(ROW) == 2)["Scheduled Date"].item().startswith("2024-09-02")
