"""Exactly once wherever it runs from: the ledger belongs to a tenant (API + customer id) and lives in the state
home; BigChange is asked by reference before a row is first sent. Two real sandboxes on 127.0.0.1, the real CLI."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from tests.jobfiles import latest_run, read_results, run_cli, write_jobs

ROWS = 30


def _args(source: Path, *extra: str) -> list[str]:
    return ["run", str(source), "--mapping", str(source.parent / "mapping.toml"), *extra]


def _creations(sandbox: Any) -> Counter[str]:
    return Counter(job["reference"] for job in sandbox.jobs())


def _posts(sandbox: Any) -> int:
    return sum(sandbox.stats()["requests"].get("POST /v1/jobs", {}).values())


def _ledger_of(env: dict[str, str], tmp_path: Path) -> Path:
    shown = run_cli(["ledger", "path"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    return Path(shown.stdout.split()[0])


def test_rehearsal_then_real_run_never_share_a_ledger(tmp_path: Path, sandbox_factory: Any) -> None:
    rehearsal, real = sandbox_factory(), sandbox_factory()  # same customer id (1001), two APIs
    assert rehearsal.env()["BIGCHANGE_CUSTOMER_ID"] == real.env()["BIGCHANGE_CUSTOMER_ID"]
    source = write_jobs(tmp_path / "in", ROWS)

    first = run_cli(_args(source, "--report-dir", "rep"), rehearsal.env(), tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(_creations(rehearsal)) == ROWS

    # The real run, same report folder: every valid row is created on the real tenant.
    second = run_cli(_args(source, "--report-dir", "rep"), real.env(), tmp_path)
    assert second.returncode == 0, second.stderr
    assert _creations(real) == Counter({f"E2E-{i:05d}": 1 for i in range(1, ROWS + 1)})
    results = read_results(latest_run(tmp_path / "rep") / "results.csv")
    assert {r["status"] for r in results} == {"created"}
    real_ids = {job["reference"]: str(job["id"]) for job in real.jobs()}
    assert all(r["job_id"] == real_ids[r["reference"]] for r in results)  # never the rehearsal's ids

    # The default report folder, another working directory: the real tenant's ledger still knows every row.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    posts = _posts(real)
    third = run_cli(_args(source), real.env(), elsewhere)
    assert third.returncode == 0, third.stderr
    assert _posts(real) == posts
    assert {r["status"] for r in read_results(latest_run(elsewhere / "reports") / "results.csv")} == {"already_created"}

    # The rehearsal sandbox again: its own ledger, nothing sent.
    posts = _posts(rehearsal)
    again = run_cli(_args(source, "--report-dir", "rep"), rehearsal.env(), tmp_path)
    assert again.returncode == 0, again.stderr
    assert _posts(rehearsal) == posts
    assert sum(_creations(rehearsal).values()) == ROWS and sum(_creations(real).values()) == ROWS

    # Naming the rehearsal's ledger for the real tenant: refused in one line, exit 2.
    wrong = run_cli(_args(source, "--ledger", str(_ledger_of(rehearsal.env(), tmp_path))), real.env(), tmp_path)
    assert wrong.returncode == 2
    message = wrong.stderr.strip()
    assert "\n" not in message and message.startswith("jobimport: the ledger ")
    assert rehearsal.base_url in message and real.base_url in message and "leave out --ledger" in message


def test_no_reference_created_twice_whatever_the_ledger_knows(
    tmp_path: Path, sandbox_factory: Any, sandbox_api: Any
) -> None:
    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", ROWS)
    api = sandbox_api(sandbox)
    # Jobs someone created by hand beforehand, with the file's references: two the same, one of another type.
    made = {}
    for ref, type_id in (("E2E-00003", 101), ("E2E-00007", 101), ("E2E-00011", 102)):
        body = {"typeId": type_id, "contactId": 5003 if ref == "E2E-00003" else 5007, "reference": ref}
        answer = api.post_job({**body, "orderNumber": "PO-1"} if type_id == 102 else body)
        assert answer.status_code == 201, answer.text
        made[ref] = str(answer.json()["id"])
    # E2E-00007's contact is 5007 in the file (5001 + 6): the same job. E2E-00003's file contact is 5003: same.

    first = run_cli(_args(source, "--report-dir", "one"), sandbox.env(), tmp_path)
    assert first.returncode == 1, first.stderr  # the conflict needs attention
    rows = {r["reference"]: r for r in read_results(latest_run(tmp_path / "one") / "results.csv")}
    for ref in ("E2E-00003", "E2E-00007"):
        assert rows[ref]["status"] == "already_created" and rows[ref]["job_id"] == made[ref]
        assert rows[ref]["note"] == "found in BigChange"
    conflict = rows["E2E-00011"]
    assert conflict["status"] == "rejected" and made["E2E-00011"] in conflict["problem_detail"]
    assert "job type 102" in conflict["problem_detail"]
    assert sum(1 for r in rows.values() if r["status"] == "created") == ROWS - 3

    # Another report folder, another working directory, then with the ledger deleted: nothing created twice.
    other = tmp_path / "other-cwd"
    other.mkdir()
    second = run_cli(_args(source, "--report-dir", str(tmp_path / "two")), sandbox.env(), other)
    assert second.returncode == 1, second.stderr
    ledger = _ledger_of(sandbox.env(), tmp_path)
    for leftover in ledger.parent.glob("ledger.sqlite*"):
        leftover.unlink()
    third = run_cli(_args(source, "--report-dir", str(tmp_path / "three")), sandbox.env(), other)
    assert third.returncode == 1, third.stderr
    rows = {r["reference"]: r for r in read_results(latest_run(tmp_path / "three") / "results.csv")}
    created = {job["reference"]: str(job["id"]) for job in sandbox.jobs()}
    assert all(
        r["status"] == "already_created" and r["job_id"] == created[ref]
        for ref, r in rows.items()
        if ref != "E2E-00011"
    )
    assert rows["E2E-00011"]["status"] == "rejected"
    assert _creations(sandbox).most_common(1)[0][1] == 1, "a reference was created twice"
    assert "found in BigChange" in (latest_run(tmp_path / "three") / "summary.json").read_text(encoding="utf-8")


def test_no_lookup_trusts_the_ledger_alone(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", 5)
    done = run_cli(_args(source, "--no-lookup"), sandbox.env(), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "GET /v1/jobs" not in sandbox.stats()["requests"]
    again = run_cli(_args(source), sandbox.env(), tmp_path)
    assert again.returncode == 0
    assert "GET /v1/jobs" not in sandbox.stats()["requests"], "rows the ledger knows are not looked up"


def test_an_old_ledger_in_the_report_folder_is_named_and_adopted(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", 4)
    first = run_cli(_args(source, "--no-lookup"), sandbox.env(), tmp_path)
    assert first.returncode == 0
    # Make it look like the previous version's: in the report folder, no API recorded.
    import sqlite3

    ledger = _ledger_of(sandbox.env(), tmp_path)
    old = tmp_path / "reports" / "ledger-1001.sqlite"
    shutil.copy(ledger, old)
    for leftover in ledger.parent.glob("ledger.sqlite*"):
        leftover.unlink()
    db = sqlite3.connect(old)
    db.execute("DELETE FROM meta WHERE key = 'api'")
    db.commit()
    db.close()

    refused = run_cli(_args(source, "--no-lookup"), sandbox.env(), tmp_path)
    assert refused.returncode == 2
    line = refused.stderr.strip()
    assert "\n" not in line and str(old.relative_to(tmp_path)) in line and "jobimport ledger adopt" in line

    adopted = run_cli(["ledger", "adopt", str(old)], sandbox.env(), tmp_path)
    assert adopted.returncode == 0, adopted.stderr
    posts = _posts(sandbox)
    rerun = run_cli(_args(source, "--no-lookup"), sandbox.env(), tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert _posts(sandbox) == posts  # the adopted ledger knew every row
    status = run_cli(["status"], sandbox.env(), tmp_path)
    assert status.returncode == 0 and status.stdout.count("4 already_created") >= 1


def test_reports_that_cannot_be_written_after_sending_exit_3_and_can_be_rebuilt(
    tmp_path: Path, sandbox_factory: Any, monkeypatch: Any
) -> None:
    """Jobs were sent, then the disk filled up: not 'could not start' (2) but stopped (3), every outcome in the
    ledger, and `jobimport report RUN_ID` writes the reports once there is room."""
    import pipeline.run.runner as runner
    from pipeline.cli import main
    from pipeline.report import ReportWriteError
    from pipeline.settings import load_settings

    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", 6)

    def disk_full(*args: Any, **kw: Any) -> Any:
        raise ReportWriteError("Cannot write the report file results.csv: No space left on device.")

    writer = runner.write_reports
    monkeypatch.setattr(runner, "write_reports", disk_full)
    options = runner.RunOptions(
        input=source,
        mapping=source.parent / "mapping.toml",
        report_root=tmp_path / "reports",
        settings=load_settings(environ=sandbox.env()),
    )
    try:
        runner.run_import(options)
    except runner.ReportsNotWritten as exc:
        stopped = exc
    else:
        raise AssertionError("a report that cannot be written must not pass silently")
    assert stopped.exit_code == 3 and "No space left" in str(stopped) and "jobimport report" in str(stopped)
    assert len(_creations(sandbox)) == 6
    run_id = str(stopped).rsplit("jobimport report ", 1)[1].split("`")[0]
    monkeypatch.setattr(runner, "write_reports", writer)  # room again
    assert main(["report", run_id, "--report-dir", str(tmp_path / "rebuilt")]) == 0
    rows = read_results(tmp_path / "rebuilt" / run_id / "results.csv")
    assert [r["status"] for r in rows] == ["created"] * 6


def test_a_run_that_cannot_send_finds_out_before_reading_or_writing_anything(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    from pipeline.state import TenantIdentity
    from pipeline.submit.ledger import Ledger

    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", 3)
    # Settings first: a missing setting is reported even when the input is unreadable too.
    missing = run_cli(
        ["run", str(tmp_path / "nope.csv"), "--mapping", str(source.parent / "mapping.toml")],
        {"BIGCHANGE_BASE_URL": ""},
        tmp_path,
    )
    assert missing.returncode == 2 and "missing settings: BIGCHANGE_BASE_URL" in missing.stderr
    # The ledger's lock before the report folder: a second run on a busy ledger leaves no empty report folder.
    env = sandbox.env()
    identity = TenantIdentity.of(env["BIGCHANGE_BASE_URL"], int(env["BIGCHANGE_CUSTOMER_ID"]))
    with Ledger(_ledger_of(env, tmp_path), identity):
        busy = run_cli(_args(source, "--report-dir", str(tmp_path / "busy")), env, tmp_path)
    assert busy.returncode == 2 and "another jobimport run is using the ledger" in busy.stderr
    assert not (tmp_path / "busy").exists()


def test_a_rerun_that_waits_out_the_lookup_grace_says_so(tmp_path: Path, sandbox_factory: Any) -> None:
    """Rows a killed run left `sending` moments ago are looked up only once the grace (--timeout) is over: the
    rerun says what it waits for, how many rows and how long, instead of a progress bar that looks stuck."""
    from pipeline.state import TenantIdentity
    from pipeline.submit.ledger import Ledger

    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", 4)
    env = sandbox.env()
    identity = TenantIdentity.of(env["BIGCHANGE_BASE_URL"], int(env["BIGCHANGE_CUSTOMER_ID"]))
    with Ledger(_ledger_of(env, tmp_path), identity) as ledger:  # as a run killed just now leaves it
        ledger.mark_sending([("E2E-00001", "E2E-00001"), ("E2E-00002", "E2E-00002")], "killed-run")
    done = run_cli(_args(source, "--timeout", "10"), env, tmp_path)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("waiting")]
    assert len(said) == 1, done.stderr
    assert "before looking up 2 row(s) an interrupted run left unanswered" in said[0]
    seconds = int(said[0].split()[1])
    assert 1 <= seconds <= 10
    assert len(_creations(sandbox)) == 4
