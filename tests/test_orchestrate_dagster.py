"""The Dagster integration in process (build_sensor_context, execute_in_process, an ephemeral instance), against
a real sandbox hosting several tenants. (In-process execution never de-duplicates run keys — only the daemon
does: tests/test_orchestrate_daemon.py shows that with a real `dagster-daemon`.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_tenants import write_tenants
from drops import job_rows, mapping_file, write_csv

from pipeline.errors import UsageError
from pipeline.orchestrate.dagster import FILE_TAG, OP_NAME, TENANT_TAG, build_definitions, tenant_resource
from pipeline.orchestrate.tenants import load_tenants

SECRET = "s3cr3t-for-dagster-tests"
CUSTOMERS = [1001, 1002]


@pytest.fixture(scope="module")
def two_tenants():  # type: ignore[no-untyped-def]
    from pipeline.sandbox.process import SandboxProcess

    with SandboxProcess(customers=tuple(CUSTOMERS), client_secret=_secret()) as process:
        yield process


def _secret() -> Any:
    from pipeline.settings import Secret

    return Secret(SECRET)


@pytest.fixture
def setup(two_tenants, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    two_tenants.reset()
    monkeypatch.setenv("JOBIMPORT_TEST_SECRET", SECRET)
    tenants = write_tenants(tmp_path, two_tenants, CUSTOMERS, mapping_file(tmp_path / "m"), settle_s=60)
    defs = build_definitions(tenants)
    with dg.DagsterInstance.ephemeral() as instance:
        yield defs, instance, tmp_path / "drops"


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, tenant: str) -> list[dg.RunRequest]:
    sensor = defs.resolve_sensor_def(f"drops_{tenant}")
    data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    return list(data.run_requests or [])


def _execute(defs: dg.Definitions, instance: dg.DagsterInstance, tenant: str, request: dg.RunRequest) -> Any:
    job = defs.resolve_job_def(f"import_{tenant}")
    tags = {**(request.tags or {}), "dagster/run_key": request.run_key or ""}
    return job.execute_in_process(run_config=request.run_config, instance=instance, tags=tags, raise_on_error=False)


def test_a_settled_file_gives_one_run_request_keyed_by_its_sha256(setup) -> None:  # type: ignore[no-untyped-def]
    defs, instance, drops = setup
    settled = write_csv(drops / "c1001" / "night.csv", job_rows("N", 3), age_s=120)
    write_csv(drops / "c1001" / "writing.csv", job_rows("W", 3))  # modified just now: still being written
    write_csv(drops / "c1001" / "jobs.csv.part", job_rows("P", 3), age_s=120)  # a temporary name
    requests = _tick(defs, instance, "c1001")
    assert len(requests) == 1
    from pipeline.run import file_sha256

    request = requests[0]
    assert request.run_key == file_sha256(settled)
    assert request.tags[TENANT_TAG] == "c1001" and request.tags[FILE_TAG] == "night.csv"
    assert request.run_config["ops"][OP_NAME]["config"]["name"] == "night.csv"
    assert SECRET not in json.dumps(request.run_config)
    assert _tick(defs, instance, "c1002") == []  # the other tenant's folder is empty


def test_a_run_creates_the_jobs_files_the_file_and_a_second_drop_is_filed_not_imported(setup, two_tenants) -> None:  # type: ignore[no-untyped-def]
    defs, instance, drops = setup
    folder = drops / "c1002"
    write_csv(folder / "night.csv", job_rows("RUN", 5), age_s=120)
    (request,) = _tick(defs, instance, "c1002")
    result = _execute(defs, instance, "c1002", request)
    assert result.success
    assert len(two_tenants.jobs(customer_id=1002)) == 5 and two_tenants.jobs(customer_id=1001) == []
    filed = list((folder / "done").glob("*/night.csv"))
    assert len(filed) == 1 and not (folder / "night.csv").exists()
    metadata = _metadata(result)
    assert metadata["outcome"] == "done" and metadata["exit_code"] == 0 and metadata["rows_created"] == 5
    assert metadata["report_summary_json"].endswith("summary.json")
    assert instance.get_run_by_id(result.run_id).tags["jobimport/outcome"] == "done"

    # the same bytes dropped again under another name: a run that files it as a duplicate, nothing sent
    write_csv(folder / "night-again.csv", job_rows("RUN", 5), age_s=120)
    (again,) = _tick(defs, instance, "c1002")
    assert again.run_key != request.run_key and again.run_key.startswith(request.run_key)
    second = _execute(defs, instance, "c1002", again)
    assert second.success and _metadata(second)["duplicate_of"]["name"] == "night.csv"
    assert len(two_tenants.jobs(customer_id=1002)) == 5
    assert list((folder / "done").glob("*/night-again.csv.duplicate.txt"))
    assert _tick(defs, instance, "c1002") == []


def test_rows_needing_attention_fail_the_run_in_one_line_and_file_it_in_attention(setup, two_tenants) -> None:  # type: ignore[no-untyped-def]
    defs, instance, drops = setup
    folder = drops / "c1001"
    write_csv(folder / "mixed.csv", job_rows("MIX", 4, bad={1: {"Customer": "999999"}}), age_s=120)
    (request,) = _tick(defs, instance, "c1001")
    result = _execute(defs, instance, "c1001", request)
    assert not result.success
    failure = _failure(result)
    assert "rows need attention" in failure.description and "\n" not in failure.description
    assert list((folder / "attention").glob("*/mixed.corrections.xlsx"))
    assert len(two_tenants.jobs(customer_id=1001)) == 3
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE


def test_a_bad_file_fails_the_run_once_without_retries(setup) -> None:  # type: ignore[no-untyped-def]
    defs, instance, drops = setup
    folder = drops / "c1001"
    write_csv(folder / "renamed.csv", job_rows("BAD", 2), header=["Reference", "Type"], age_s=120)
    (request,) = _tick(defs, instance, "c1001")
    result = _execute(defs, instance, "c1001", request)
    assert not result.success
    assert "could not be imported" in _failure(result).description
    assert list((folder / "failed").glob("*/renamed.csv.error.txt"))
    starts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    restarts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
    assert len(starts) == 1 and restarts == []


def test_the_api_down_is_retried_then_fails_with_the_file_kept_in_processing(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pipeline.sandbox.process import SandboxProcess

    monkeypatch.setenv("JOBIMPORT_TEST_SECRET", SECRET)
    with SandboxProcess(client_secret=_secret()) as gone:
        tenants = write_tenants(
            tmp_path, gone, [1001], mapping_file(tmp_path / "m"), settle_s=60, extra={1001: {"api_retries": 1}}
        )
    # the sandbox is stopped now: its port refuses connections, the API is down
    defs = build_definitions(tenants)
    write_csv(tmp_path / "drops" / "c1001" / "night.csv", job_rows("DOWN", 2), age_s=120)
    with dg.DagsterInstance.ephemeral() as instance:
        (request,) = _tick(defs, instance, "c1001")
        result = _execute(defs, instance, "c1001", request)
    assert not result.success
    restarts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
    assert len(restarts) == 1
    assert "stays in processing/" in _failure(result).description
    assert (tmp_path / "drops" / "c1001" / "processing" / "night.csv").is_file()


def test_secrets_reach_the_run_through_envvar_only_and_never_the_event_log(setup) -> None:  # type: ignore[no-untyped-def]
    defs, instance, drops = setup
    write_csv(drops / "c1001" / "night.csv", job_rows("SEC", 2), age_s=120)
    (request,) = _tick(defs, instance, "c1001")
    result = _execute(defs, instance, "c1001", request)
    assert result.success
    run = instance.get_run_by_id(result.run_id)
    stored = json.dumps(run.run_config) + json.dumps(run.tags)
    stored += "".join(str(entry) for entry in instance.all_logs(result.run_id))
    assert SECRET not in stored
    resource = tenant_resource(load_tenants(drops.parent / "tenants.toml")[0])
    assert "client_secret" not in repr(resource) and SECRET not in repr(resource)
    assert SECRET not in repr(resource.process_config_and_initialize())
    assert resource.process_config_and_initialize().client_secret == SECRET  # resolved when the run starts


def test_a_tenants_file_with_a_mistake_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text('[[tenant]]\nname = "a"\nfolder = "x"\nmapping = "m.toml"\nschedule = "daily"\n', encoding="utf-8")
    with pytest.raises(UsageError, match="unknown key 'schedule'"):
        load_tenants(path)
    path.write_text('[[tenant]]\nname = "a"\nfolder = "x"\nmapping = "m.toml"\nledger_url = "sqlite:///x"\n')
    with pytest.raises(UsageError, match=r"ledger_url must be a postgresql:// URL"):
        load_tenants(path)


def _metadata(result: Any) -> dict[str, Any]:
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_OUTPUT:
            return {k: getattr(v, "value", v) for k, v in event.step_output_data.metadata.items()}
    raise AssertionError("no output event")


def _failure(result: Any) -> Any:
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            return event.step_failure_data.user_failure_data
    raise AssertionError("no step failure")


def test_envvar_is_required_when_the_run_starts(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    defs, instance, drops = setup
    write_csv(drops / "c1002" / "night.csv", job_rows("ENV", 1), age_s=120)
    (request,) = _tick(defs, instance, "c1002")
    monkeypatch.delenv("JOBIMPORT_TEST_SECRET")
    with pytest.raises(dg.DagsterInvalidConfigError, match='variable "JOBIMPORT_TEST_SECRET" which is not set'):
        _execute(defs, instance, "c1002", request)
    assert (drops / "c1002" / "night.csv").is_file()  # not claimed: the run could not start


def test_a_tenant_with_a_shared_ledger_url_imports_through_it(two_tenants, tmp_path, monkeypatch, pg_url) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("JOBIMPORT_TEST_SECRET", SECRET)
    extra = {1002: {"ledger_url": pg_url, "local_ledger": False}}
    tenants = write_tenants(tmp_path, two_tenants, [1002], mapping_file(tmp_path / "m"), settle_s=60, extra=extra)
    defs = build_definitions(tenants)
    dropped = write_csv(tmp_path / "drops" / "c1002" / "night.csv", job_rows("PG", 2), age_s=120)
    with dg.DagsterInstance.ephemeral() as instance:
        (request,) = _tick(defs, instance, "c1002")
        result = _execute(defs, instance, "c1002", request)
    assert result.success
    assert not dropped.exists()
    import psycopg

    with psycopg.connect(pg_url) as db:  # the rows are in the shared ledger, not in a file of the worker's
        states = dict(db.execute("select key, state from rows").fetchall())
    assert sorted(states.values()) == ["created", "created"]
