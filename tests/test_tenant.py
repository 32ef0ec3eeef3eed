"""The tenant's reference data against the sandbox on 127.0.0.1: pull (every page, concurrently, cached per tenant
identity, exported as look-up files), look-ups by code or name against the tenant, and the pre-flight that
catches what the API would refuse — on a generated 1,200-row legacy export whose refusals the sandbox's own
rules decide."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import MappingError
from pipeline.mapping import load_mapping
from pipeline.mapping.lookups import load_lookup
from pipeline.sandbox.data import DEFAULT_DATA, generate_reference_data
from pipeline.sandbox.process import SandboxProcess
from pipeline.settings import load_settings
from pipeline.tenant import TenantSource, cache_path, export_csv, load, pull
from tests.jobfiles import latest_run, read_results, run_cli
from tests.tenantfiles import export_mapping, write_export


def _gets(sandbox: SandboxProcess, path: str) -> int:
    return sum(sandbox.stats()["requests"].get(f"GET /v1/{path}", {}).values())


@pytest.fixture
def big_tenant(tmp_path: Path, sandbox_factory: Callable[..., SandboxProcess]) -> SandboxProcess:
    data = tmp_path / "tenant.json"
    data.write_text(json.dumps(generate_reference_data(2_500, 6_000, seed=3)), encoding="utf-8")
    return sandbox_factory(data=data)


def test_pull_fetches_every_page_caches_and_reuses(big_tenant: SandboxProcess, tmp_path: Path) -> None:
    settings = load_settings(None, environ=big_tenant.env())
    home = tmp_path / "home"
    data, stats = pull(settings, all_persons=True, home=home, concurrency=4)
    assert (len(data.job_types), len(data.contacts), len(data.persons)) == (5, 2_520, 6_040)
    assert len({p["id"] for p in data.persons}) == 6_040  # no page twice, none missing
    assert stats.pages["/contacts"] >= 3 and stats.pages["/persons"] >= 7
    # page 1 alone, then a window of 4: at most 3 requests past the end of each list
    assert stats.requests <= 1 + 3 + 3 + 7 + 3 + 3
    cached = load(data.identity, home)
    assert cached is not None and cached.persons_scope is None and len(cached.contacts) == 2_520
    assert json.loads(cache_path(data.identity, home).read_text(encoding="utf-8"))["fetched_at"].endswith("+00:00")

    before = _gets(big_tenant, "contacts") + _gets(big_tenant, "persons")
    source = TenantSource(settings, max_age_s=3600, home=home)
    assert not source.pulled and source.persons_of([5001, 100_001]) is source.data
    assert _gets(big_tenant, "contacts") + _gets(big_tenant, "persons") == before  # a young cache: no request
    assert TenantSource(settings, max_age_s=0, home=home).pulled  # too old: fetched again


def test_persons_fetched_for_the_contacts_used_and_merged(big_tenant: SandboxProcess, tmp_path: Path) -> None:
    settings = load_settings(None, environ=big_tenant.env())
    source = TenantSource(settings, max_age_s=0, home=tmp_path)
    assert source.data.persons == [] and _gets(big_tenant, "persons") == 0
    ids = list(range(100_001, 100_121))  # 120 contacts: three filters of ≤ 50
    data = source.persons_of(ids)
    assert {p["contactId"] for p in data.persons} == set(ids) and _gets(big_tenant, "persons") == 3
    data = source.persons_of([*ids[:10], 5001])  # only 5001 is new
    assert _gets(big_tenant, "persons") == 4 and {5001, *ids} <= set(data.persons_scope or ())
    assert load(source.identity, tmp_path) is not None and 5001 in (load(source.identity, tmp_path).persons_scope or ())  # type: ignore[union-attr]


def test_export_writes_lookup_files(sandbox: SandboxProcess, tmp_path: Path) -> None:
    data, _ = pull(load_settings(None, environ=sandbox.env()), all_persons=True, home=tmp_path)
    written = export_csv(data, tmp_path / "export")
    assert written["job_types.csv"][1:] == (5, 0) and written["contacts.csv"][1:] == (20, 0)
    contacts = load_lookup("c", {"file": "export/contacts.csv"}, tmp_path / "m.toml")
    assert contacts.table["c00007"] == "5007"
    types = load_lookup("t", {"file": "export/job_types.csv"}, tmp_path / "m.toml")
    assert types.table["boilerservice"] == "101"
    # the sample tenant's persons share emails across contacts: a file look-up cannot hold those…
    assert written["persons.csv"][1:] == (0, 40)
    # …so every person is also in persons_all.csv, for reading (it wrote 0 rows in all before)
    path, count, _ = written["persons_all.csv"]
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert count == len(rows) == 40 and {r["contactId"] for r in rows} and all(r["email"] for r in rows)


def test_1200_row_export_preflight_catches_what_the_sandbox_refuses(
    sandbox_factory: Callable[..., SandboxProcess], tmp_path: Path
) -> None:
    sandbox = sandbox_factory()
    export = write_export(tmp_path, rows=1200)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(export_mapping(export), encoding="utf-8")
    refused = export.refused_by_sandbox()
    kinds = Counter(export.mistakes[r] for r in refused)
    assert kinds == Counter({"custom_field": 83, "order_number": 6, "person_contact": 3, "archived": 2}), kinds
    offline = {r for r, k in export.mistakes.items() if k == "offline"}
    env = {**sandbox.env(), "JOBIMPORT_HOME": str(tmp_path / "home")}

    done = run_cli(["validate", export.path, "-m", mapping, "--online", "--report-dir", tmp_path / "v"], env, tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"{len(refused)} rows caught before sending" in done.stdout, done.stdout
    results = {int(r["row"]): r for r in read_results(latest_run(tmp_path / "v") / "results.csv")}
    invalid = {row for row, r in results.items() if r["status"] == "invalid"}
    assert invalid == set(refused) | offline  # every refusal caught, and nothing else
    column = {"custom_field": "Access Code", "order_number": "PO Number", "archived": "Job Type"}
    column["person_contact"] = "Contact Person"
    for row in refused:
        kind = export.mistakes[row]
        assert results[row]["errors"].startswith(f"{column[kind]}: "), (row, kind, results[row]["errors"])
    assert "does not belong to job type 104 ('Installation')" in results[min(refused)]["errors"]

    done = run_cli(["run", export.path, "-m", mapping, "--report-dir", tmp_path / "r"], env, tmp_path)
    assert done.returncode == 1, done.stderr
    stats = sandbox.stats()
    assert stats["requests"]["POST /v1/jobs"] == {"201": 1200 - len(refused) - len(offline)}  # not one 422
    summary = json.loads((latest_run(tmp_path / "r") / "summary.json").read_text(encoding="utf-8"))
    assert any(f"{len(refused)} rows caught before sending" in note for note in summary["notes"])

    # --no-preflight: the same rows go to the API, which refuses them
    sandbox.reset()
    done = run_cli(
        [
            "run",
            export.path,
            "-m",
            mapping,
            "--no-preflight",
            "--report-dir",
            tmp_path / "n",
            "--ledger",
            tmp_path / "l",
        ],
        env,
        tmp_path,
    )
    assert sandbox.stats()["requests"]["POST /v1/jobs"].get("422") == len(refused)


def _lookup_tenant(tmp_path: Path) -> Path:
    doc = json.loads(DEFAULT_DATA.read_text(encoding="utf-8"))
    doc["contacts"] += [
        {"id": 6001, "reference": "AC-N", "name": "Acme  housing"},  # the same name as 5001, other spacing/case
        {"id": 6002, "reference": "GF-2", "name": "Greenfield Parish Council"},
    ]
    doc["persons"] += [
        {
            "id": "11111111-2222-4333-8444-555555555555",
            "contactId": 6002,
            "forename": "Alice",
            "surname": "Smith",
            "email": "alice.smith@example.com",
        },
    ]
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


LOOKUP_ROWS = """Ref,Customer,Type,Email
L-1,Brightside Lettings,boiler  SERVICE,Chloe.Evans@example.com
L-2,Acme Housing,Boiler Service,
L-3,Brightsde Lettings,Annual Inspection,
L-4,Greenfield Parish Council,Emergency Repairs,ALICE.SMITH@example.com
L-5,Greenfield Council,Annual Inspection,chloe.evans@example.com
L-6,greenfield council,Installation,alice.smith@example.com
"""


def test_lookups_against_the_tenant(sandbox_factory: Callable[..., SandboxProcess], tmp_path: Path) -> None:
    sandbox = sandbox_factory(data=_lookup_tenant(tmp_path))
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(LOOKUP_ROWS, encoding="utf-8")
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        """
[fields.reference]
column = "Ref"
[fields.contactId]
column = "Customer"
lookup = "bigchange:contacts"
by = "name"
[fields.typeId]
column = "Type"
lookup = "bigchange:jobTypes"
[fields.personId]
column = "Email"
lookup = "bigchange:persons"
by = "email"
[fields.orderNumber]
value = "PO-1"
""",
        encoding="utf-8",
    )
    env = {**sandbox.env(), "JOBIMPORT_HOME": str(tmp_path / "home")}
    done = run_cli(["validate", jobs, "-m", mapping, "--report-dir", tmp_path / "v"], env, tmp_path)
    assert done.returncode == 1, done.stderr
    rows = {r["Ref"]: r for r in read_results(latest_run(tmp_path / "v") / "results.csv")}
    payloads = {
        json.loads(line)["row"]: json.loads(line)["payload"]
        for line in (latest_run(tmp_path / "v") / "payloads.jsonl").read_text(encoding="utf-8").splitlines()
    }
    # by name, case- and space-insensitive; job type by name; person by email within the row's contact
    assert rows["L-1"]["status"] == "valid" and rows["L-5"]["status"] == "valid"
    assert payloads[2] == {
        "typeId": 101,
        "contactId": 5002,
        "reference": "L-1",
        "personId": "827b5340-3e82-5965-8c0c-263940a07ba4",
        "orderNumber": "PO-1",
    }
    assert (payloads[6]["contactId"], payloads[6]["personId"]) == (5007, "02b440f4-2ec9-5cea-b487-71ffdebf6f67")
    # two contacts named "Acme Housing" (one spelt "Acme  housing"): never a guess, both listed with their ids
    assert "Customer: 'Acme Housing' matches more than one of the tenant's contacts by name" in rows["L-2"]["errors"]
    assert (
        "(id 5001, reference 'C00001')" in rows["L-2"]["errors"]
        and "(id 6001, reference 'AC-N')" in (rows["L-2"]["errors"])
    )
    # near misses: the closest existing values
    assert (
        "'Brightsde Lettings' is not one of the tenant's contacts by name; closest: 'Brightside Lettings'"
        in (rows["L-3"]["errors"])
    )
    assert (
        "Type: 'Emergency Repairs' is not one of the tenant's job types by name; closest: 'Emergency Repair'"
        in (rows["L-4"]["errors"])
    )
    # the person of contact 6002 is found there, though contacts 5001 and 5006 have persons with that email
    assert "Email" not in rows["L-4"]["errors"]
    assert "Email: 'alice.smith@example.com' is not the email of a person of contact 5007" in rows["L-6"]["errors"]


def test_tenant_lookup_mapping_errors(tmp_path: Path) -> None:
    def load(text: str) -> str:
        path = tmp_path / "m.toml"
        base = (
            "" if "[fields.contactId]" in text else "[fields.contactId]\nvalue = 5001\n[fields.typeId]\nvalue = 101\n"
        )
        path.write_text(base + text, encoding="utf-8")
        with pytest.raises(MappingError) as caught:
            load_mapping(path)
        return str(caught.value)

    assert "gives contactId ids; use it under [fields.contactId]" in load(
        '[fields.reference]\ncolumn = "R"\nlookup = "bigchange:contacts"\n'
    )
    assert "by = 'email' is not possible for bigchange:contacts; use one of: reference, name" in load(
        '[fields.contactId]\ncolumn = "C"\nlookup = "bigchange:contacts"\nby = "email"\n'
    )
    assert "(did you mean 'bigchange:contacts'?)" in load(
        '[fields.personId]\ncolumn = "P"\nlookup = "bigchange:contact"\n'
    )
    assert "'by' is for look-ups against the tenant" in load('[fields.personId]\ncolumn = "P"\nby = "email"\n')
    assert "job_types must be a list of job type ids" in load(
        '[custom_fields]\n"A" = { definition_id = 1, job_types = 101 }\n'
    )


def test_tenant_lookup_without_settings_is_one_line(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("Customer,Type\nC00001,101\n", encoding="utf-8")
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        '[fields.contactId]\ncolumn = "Customer"\nlookup = "bigchange:contacts"\n[fields.typeId]\ncolumn = "Type"\n',
        encoding="utf-8",
    )
    env: dict[str, Any] = {f"BIGCHANGE_{k}": "" for k in ("BASE_URL", "CLIENT_ID", "CLIENT_SECRET", "CUSTOMER_ID")}
    done = run_cli(["validate", jobs, "-m", mapping, "--report-dir", tmp_path], env, tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "BIGCHANGE_" in done.stderr


def test_run_preflight_is_best_effort(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """Reference data refused (another tenant: 403): the pre-flight is skipped with a note saying why, and the
    run stops on the same refusal its usual way (exit 3, reports written, rows pending)."""
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("Ref,Type,Customer\nB-1,101,5001\n", encoding="utf-8")
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        '[fields.reference]\ncolumn = "Ref"\n[fields.typeId]\ncolumn = "Type"\n'
        '[fields.contactId]\ncolumn = "Customer"\n',
        encoding="utf-8",
    )
    env = {**sandbox.env(), "BIGCHANGE_CUSTOMER_ID": "999", "JOBIMPORT_HOME": str(tmp_path / "home")}
    done = run_cli(["run", jobs, "-m", mapping, "--report-dir", tmp_path / "r"], env, tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "jobimport: stopped:" in done.stderr
    summary = json.loads((latest_run(tmp_path / "r") / "summary.json").read_text(encoding="utf-8"))
    skipped = [n for n in summary["notes"] if n.startswith("Pre-flight skipped")]
    assert skipped and "403" in skipped[0], summary["notes"]
    assert summary["counts"]["pending"] == 1


def test_near_miss_among_25000_contacts_is_quick_and_as_close_as_difflib_over_all() -> None:
    import difflib
    import time

    from pipeline.mapping.lookups import closest, tenant_lookup

    contacts = generate_reference_data(25_000, 0)["contacts"]
    lookup = tenant_lookup("bigchange:contacts", "reference", contacts)
    misses = ["G0123456", "g 12345", "GO1234S", "C0O007"]
    assert not any("".join(m.lower().split()) in lookup.table for m in misses)
    started = time.perf_counter()
    found = [lookup.miss(m) for m in misses]
    assert time.perf_counter() - started < 2.0  # the trigram index: not difflib over 25,000 keys per miss
    for miss, (check, message) in zip(misses, found, strict=True):
        key = "".join(miss.lower().split())
        best = difflib.get_close_matches(key, list(lookup.shown), n=1, cutoff=0.6)
        ratio = difflib.SequenceMatcher(None, key, best[0]).ratio()
        shown = closest(key, lookup.shown, lookup.grams, n=1)
        first = shown.split("'")[1].lower()
        assert check == "lookup" and difflib.SequenceMatcher(None, key, first).ratio() == ratio, (miss, message)
