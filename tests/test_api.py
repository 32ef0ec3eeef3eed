"""The Python API (pipeline/api.py) against a real sandbox hosting several tenants (`--customers`): one file
imported, one dropped file handled and filed as a drop pass files it, the stop reason taken from the error's type.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from drops import job_rows, mapping_file, write_csv

from pipeline.api import (
    ImportOptions,
    handle_dropped_file,
    import_file,
    is_retryable,
    settled_drops,
)
from pipeline.drop import DropOptions, Route
from pipeline.errors import SettingsError, StopReason
from pipeline.settings import load_settings

CUSTOMERS = (1001, 1002, 1003)


@pytest.fixture(scope="module")
def several(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from pipeline.sandbox.process import SandboxProcess

    with SandboxProcess(customers=CUSTOMERS) as process:
        yield process


def test_sandbox_hosts_several_tenants_each_with_its_own_jobs(several, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    several.reset()
    mapping = mapping_file(tmp_path / "m")
    rows = job_rows("SAME", 5)
    for customer in (1002, 1003):
        data = write_csv(tmp_path / f"{customer}.csv", rows)
        options = ImportOptions(
            mapping=mapping, report_dir=tmp_path / "r", settings=load_settings(None, several.env(customer))
        )
        result = import_file(data, options)
        assert (result.exit_code, result.counts["created"], result.stop) == (0, 5, None)
        assert result.reports.results_csv.is_file() and result.report_dir.is_dir()
    # the same references in two tenants are two jobs each, not duplicates; the first tenant has none
    assert len(several.jobs(customer_id=1002)) == len(several.jobs(customer_id=1003)) == 5
    assert several.jobs(customer_id=1001) == []
    stats = several.stats()
    assert stats["duplicates"] == [] and stats["jobs_stored"] == 10
    assert stats["customers"]["1002"]["jobs_stored"] == 5
    # again into 1002: nothing sent twice
    again = import_file(
        write_csv(tmp_path / "again.csv", rows),
        ImportOptions(mapping=mapping, report_dir=tmp_path / "r", settings=load_settings(None, several.env(1002))),
    )
    assert again.counts["already_created"] == 5 and len(several.jobs(customer_id=1002)) == 5


def test_a_customer_the_sandbox_does_not_host_is_refused(several) -> None:  # type: ignore[no-untyped-def]
    env = several.env()
    token = httpx.post(
        env["BIGCHANGE_TOKEN_URL"],
        data={
            "grant_type": "client_credentials",
            "client_id": env["BIGCHANGE_CLIENT_ID"],
            "client_secret": env["BIGCHANGE_CLIENT_SECRET"],
        },
        trust_env=False,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    ok = httpx.get(f"{several.base_url}/jobTypes", headers={**headers, "Customer-Id": "1003"}, trust_env=False)
    refused = httpx.get(f"{several.base_url}/jobTypes", headers={**headers, "Customer-Id": "1004"}, trust_env=False)
    assert ok.status_code == 200 and refused.status_code == 403
    assert "may not access customer '1004'" in refused.json()["detail"]


def test_one_dropped_file_is_claimed_imported_and_filed_like_a_pass(several, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    several.reset()
    folder = tmp_path / "drops"
    mapping = mapping_file(tmp_path / "m")
    write_csv(folder / "night.csv", job_rows("NIGHT", 4), age_s=120)
    write_csv(folder / "bad.csv", job_rows("BAD", 2), header=["Nope", "Type"], age_s=120)
    write_csv(folder / "young.csv", job_rows("YOUNG", 2))  # written just now: not settled
    options = DropOptions(folder=folder, routes=[Route(None, mapping)], settings=load_settings(None, several.env(1002)))
    settled = {f.name: f for f in settled_drops(folder, settle_s=60)}
    assert sorted(settled) == ["bad.csv", "night.csv"]

    done = handle_dropped_file(options, "night.csv", settled["night.csv"].sha256)
    assert (done.outcome, done.exit_code, done.counts, done.stop) == ("done", 0, {"created": 4}, None)
    assert done.path is not None and done.path.parent.parent.name == "done" and done.path.is_file()
    assert done.reports is not None and done.reports.summary_json.is_file()
    assert len(several.jobs(customer_id=1002)) == 4

    failed = handle_dropped_file(options, "bad.csv", settled["bad.csv"].sha256)
    assert (failed.outcome, failed.exit_code) == ("failed", 2)
    assert failed.path is not None and failed.path.parent.parent.name == "failed"
    assert "bad.csv" in (failed.reason or "") and "\n" not in (failed.reason or "")

    # the same content dropped again under another name: filed as a duplicate, nothing sent
    write_csv(folder / "night-copy.csv", job_rows("NIGHT", 4), age_s=120)
    copy = handle_dropped_file(options, "night-copy.csv", settled["night.csv"].sha256)
    assert (copy.outcome, copy.exit_code, copy.duplicate_of is not None) == ("done", 0, True)
    assert len(several.jobs(customer_id=1002)) == 4
    # asked again for a file already handled: nothing to do, and why
    gone = handle_dropped_file(options, "night.csv", settled["night.csv"].sha256)
    assert (gone.outcome, gone.exit_code) == ("gone", 0) and "already imported" in (gone.reason or "")


def test_a_file_changed_after_it_was_seen_is_not_taken(several, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "drops"
    path = write_csv(folder / "night.csv", job_rows("CHG", 2), age_s=120)
    options = DropOptions(
        folder=folder, routes=[Route(None, mapping_file(tmp_path / "m"))], settings=load_settings(None, several.env())
    )
    changed = handle_dropped_file(options, "night.csv", "0" * 64)
    assert changed.outcome == "changed" and path.is_file()


def test_an_import_that_meets_the_api_down_says_so_as_a_value(tmp_path: Path) -> None:
    from pipeline.sandbox.process import SandboxProcess

    with SandboxProcess() as gone:
        env = gone.env()
    # the sandbox is stopped: its port refuses connections
    data = write_csv(tmp_path / "x.csv", job_rows("DOWN", 2))
    options = ImportOptions(
        mapping=mapping_file(tmp_path), report_dir=tmp_path / "r", settings=load_settings(None, env)
    )
    result = import_file(data, options)
    assert (result.exit_code, result.stop, result.counts["pending"]) == (3, StopReason.API_DOWN, 2)
    assert is_retryable(result.stop) and not is_retryable(StopReason.CONFIGURATION) and not is_retryable(None)
    assert result.stop_message and "\n" not in result.stop_message
    assert result.reports.results_csv.is_file()


def test_a_ledger_url_that_is_not_postgresql_is_refused_in_one_line(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "x.csv", job_rows("X", 1))
    options = ImportOptions(mapping=mapping_file(tmp_path), ledger_url="sqlite:///x.sqlite", dry_run=True)
    with pytest.raises(SettingsError, match=r"^ledger_url must be a postgresql:// URL"):
        import_file(data, options)


def test_a_shared_ledger_url_is_the_ledger_of_imports_and_of_dropped_files(
    several, tmp_path: Path, pg_url: str
) -> None:  # type: ignore[no-untyped-def]
    """Two state homes (two workers) on one shared ledger: what one imported, the other never sends again."""
    several.reset()
    settings = load_settings(None, several.env(1002))
    mapping = mapping_file(tmp_path / "m")
    data = write_csv(tmp_path / "a.csv", job_rows("SHARED", 4))
    first = import_file(
        data,
        ImportOptions(
            mapping=mapping, report_dir=tmp_path / "r1", settings=settings, state_dir=tmp_path / "h1", ledger_url=pg_url
        ),
    )
    assert (first.exit_code, first.counts["created"]) == (0, 4)
    folder = tmp_path / "drop"
    dropped = write_csv(folder / "again.csv", job_rows("SHARED", 4), age_s=120)
    options = DropOptions(
        folder=folder, routes=[Route("*", mapping)], settle_s=1, settings=settings, state_dir=tmp_path / "h2"
    )
    lookups = several.stats()["requests"].get("GET /v1/jobs", {}).get("200", 0)
    sha = settled_drops(folder, settle_s=1)[0].sha256
    handled = handle_dropped_file(options, "again.csv", sha, ledger_url=pg_url)
    assert handled.outcome == "done", handled
    assert not dropped.exists()
    assert len(several.jobs(customer_id=1002)) == 4 and several.stats()["duplicates"] == []
    # the other worker's state home has no ledger of its own: it knew the rows from the shared one (no look-up)
    assert several.stats()["requests"].get("GET /v1/jobs", {}).get("200", 0) == lookups


def test_the_command_never_imports_dagster() -> None:
    import subprocess
    import sys

    code = "import sys, pipeline.entry, pipeline.cli, pipeline.api; assert 'dagster' not in sys.modules, 'imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_stopped_file_is_resumed_from_processing_even_with_a_new_file_of_its_name(several, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pipeline.run import file_sha256

    several.reset()
    folder = tmp_path / "drops"
    left = write_csv(folder / "processing" / "night.csv", job_rows("LEFT", 3))
    sha = file_sha256(left)
    newer = write_csv(folder / "night.csv", job_rows("NEWER", 2), age_s=120)
    options = DropOptions(
        folder=folder, routes=[Route(None, mapping_file(tmp_path / "m"))], settings=load_settings(None, several.env())
    )
    result = handle_dropped_file(options, "night.csv", sha)
    assert (result.outcome, result.counts) == ("done", {"created": 3})
    assert newer.is_file() and not left.exists()  # the new file is left for its own run
    assert sorted(j["reference"] for j in several.jobs())[:1] == ["LEFT-00001"] and len(several.jobs()) == 3


def test_a_file_filed_in_failed_is_taken_back_when_its_run_is_executed_again(several, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pipeline.run import file_sha256

    several.reset()
    folder = tmp_path / "drops"
    mapping = mapping_file(tmp_path / "m")
    dropped = write_csv(folder / "night.csv", job_rows("BACK", 3), header=["Reference", "Type", "Customer"], age_s=120)
    sha = file_sha256(dropped)
    options = DropOptions(folder=folder, routes=[Route(None, mapping)], settings=load_settings(None, several.env()))
    first = handle_dropped_file(options, "night.csv", sha)
    assert first.outcome == "failed" and "'Ref'" in (first.reason or "")
    # the mapping is fixed (the file's "Reference" column), then the orchestrator's run is executed again
    mapping.write_text(mapping.read_text(encoding="utf-8").replace('column = "Ref"', 'column = "Reference"'))
    mapping.write_text(mapping.read_text(encoding="utf-8").replace('column = "Notes"', 'column = "Type"'))
    mapping.write_text(mapping.read_text(encoding="utf-8").replace('"Access Code" = 432632', ""))
    again = handle_dropped_file(options, "night.csv", sha)
    assert (again.outcome, again.counts) == ("done", {"created": 3}), again.reason
    assert not list((folder / "failed").glob("*/night.csv")) and len(several.jobs()) == 3
