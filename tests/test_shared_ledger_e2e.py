"""Everyone who imports into a tenant shares one ledger: the real CLI, several importers at once from different
state homes (as a cron job and an analyst, or two machines, would), a real sandbox that counts creations, a real
PostgreSQL server (tests/conftest.py) — and the embedded default's machine-wide guard."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from drops import drop_env, job_rows, mapping_file, start_drop, write_csv
from jobfiles import latest_run, read_results, run_cli, start_cli, write_jobs


def _args(source: Path, reports: Path, *extra: str) -> list[str]:
    return [
        "run",
        str(source),
        "--no-preflight",
        "--mapping",
        str(source.parent / "mapping.toml"),
        "--report-dir",
        str(reports),
        *extra,
    ]


def _home(tmp_path: Path, name: str, **env: str) -> dict[str, str]:
    return {"JOBIMPORT_HOME": str(tmp_path / name / "state"), **env}


def _creations(sandbox: Any) -> Counter[str]:
    return Counter(job["reference"] for job in sandbox.jobs())


def _finish(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    assert "Traceback" not in err, err
    return process.returncode, out, err


def _statuses(reports: Path) -> dict[str, tuple[str, str]]:
    """reference → (status, note) of the run in `reports`."""
    return {r["reference"]: (r["status"], r.get("note", "")) for r in read_results(latest_run(reports) / "results.csv")}


def test_two_importers_with_different_state_homes_create_each_job_once(
    tmp_path: Path, sandbox_factory: Any, pg_url: str
) -> None:
    """The issue's case: the same 2,000-row file, two state homes, at the same time, look-ups on. With a shared
    ledger every row is created once; the rows one importer skipped say who imports them."""
    sandbox = sandbox_factory(latency_ms=5)
    source = write_jobs(tmp_path / "in", 2000)
    runs = [
        start_cli(
            _args(source, tmp_path / name / "reports"),
            {**sandbox.env(), **_home(tmp_path, name, JOBIMPORT_LEDGER_URL=pg_url)},
            tmp_path,
        )
        for name in ("cron", "analyst")
    ]
    codes = [_finish(run)[0] for run in runs]
    assert set(codes) <= {0, 1}, codes
    created = _creations(sandbox)
    assert len(created) == 2000 and set(created.values()) == {1}  # 2,000 creations, 0 duplicates
    assert sandbox.stats()["duplicates"] == []
    cron, analyst = _statuses(tmp_path / "cron" / "reports"), _statuses(tmp_path / "analyst" / "reports")
    for reference in created:
        pair = {cron[reference][0], analyst[reference][0]}
        assert "created" in pair and pair <= {"created", "already_created", "pending"}, (reference, pair)
    skipped = [note for status, note in [*cron.values(), *analyst.values()] if status == "pending"]
    assert all(note.startswith(("being imported by run", "created meanwhile by run")) for note in skipped)
    # A third importer, from yet another state home: everything is known.
    again = run_cli(_args(source, tmp_path / "third" / "reports"), {**sandbox.env(), **_home(
        tmp_path, "third", JOBIMPORT_LEDGER_URL=pg_url)}, tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert {s for s, _ in _statuses(tmp_path / "third" / "reports").values()} == {"already_created"}


def test_the_embedded_default_lets_one_importer_of_a_machine_send(tmp_path: Path, sandbox_factory: Any) -> None:
    """No shared ledger, two state homes on one machine, the same file at once: one sends, the other is refused
    (exit 2, one line saying who and how to share a ledger) — 0 duplicates."""
    sandbox = sandbox_factory(latency_ms=20)
    source = write_jobs(tmp_path / "in", 400)
    runs = [
        start_cli(_args(source, tmp_path / n / "reports"), {**sandbox.env(), **_home(tmp_path, n)}, tmp_path)
        for n in ("cron", "analyst")
    ]
    results = [_finish(run) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2).strip()
    assert "\n" not in refused and "another jobimport run on this machine is importing into" in refused
    assert "--ledger postgresql://" in refused and "ledger.sqlite" in refused
    assert len(_creations(sandbox)) == 400 and sandbox.stats()["duplicates"] == []


def test_four_importers_on_one_file(tmp_path: Path, sandbox_factory: Any, pg_url: str) -> None:
    sandbox = sandbox_factory(latency_ms=5)
    source = write_jobs(tmp_path / "in", 600)
    names = [f"importer{i}" for i in range(4)]
    runs = [
        start_cli(
            _args(source, tmp_path / n / "reports", "--max-concurrency", "8"),
            {**sandbox.env(), **_home(tmp_path, n, JOBIMPORT_LEDGER_URL=pg_url)},
            tmp_path,
        )
        for n in names
    ]
    assert {_finish(run)[0] for run in runs} <= {0, 1}
    created = _creations(sandbox)
    assert len(created) == 600 and set(created.values()) == {1} and sandbox.stats()["duplicates"] == []
    by_run = [_statuses(tmp_path / n / "reports") for n in names]
    for reference in created:  # each row created by exactly one of the four
        assert sum(statuses[reference][0] == "created" for statuses in by_run) == 1, reference


def test_a_killed_importer_its_lease_and_the_rest_finished_elsewhere(
    tmp_path: Path, sandbox_factory: Any, pg_url: str
) -> None:
    """kill -9 of one importer mid-run while another carries on: while the killed run's lease lasts its rows are
    left alone (pending, 'being imported by run …'); once it has expired, an importer from another state home
    with --no-lookup reconciles them by look-up and finishes the rest: every row created once."""
    sandbox = sandbox_factory(latency_ms=30)
    source = write_jobs(tmp_path / "in", 1200)
    lease = {"JOBIMPORT_LEDGER_URL": pg_url, "JOBIMPORT_LEDGER_LEASE_S": "3"}
    victim = start_cli(
        _args(source, tmp_path / "victim" / "reports", "--max-concurrency", "8"),
        {**sandbox.env(), **_home(tmp_path, "victim", **lease)},
        tmp_path,
    )
    deadline = time.monotonic() + 60
    while len(_creations(sandbox)) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    survivor = start_cli(
        _args(source, tmp_path / "survivor" / "reports", "--max-concurrency", "8"),
        {**sandbox.env(), **_home(tmp_path, "survivor", **lease)},
        tmp_path,
    )
    time.sleep(0.5)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    code, _, err = _finish(survivor)
    assert code in (0, 1), err
    survived = _statuses(tmp_path / "survivor" / "reports")
    held = [note for status, note in survived.values() if status == "pending"]
    assert held and all(
        note.startswith(("being imported by run", "left unanswered by run", "created meanwhile")) for note in held
    )
    time.sleep(3.5)  # the killed run's lease expires
    rest = run_cli(
        _args(source, tmp_path / "rest" / "reports", "--no-lookup"),
        {**sandbox.env(), **_home(tmp_path, "rest", **lease)},
        tmp_path,
    )
    assert rest.returncode == 0, (rest.stdout, rest.stderr)
    assert {s for s, _ in _statuses(tmp_path / "rest" / "reports").values()} <= {"created", "already_created"}
    created = _creations(sandbox)
    assert len(created) == 1200 and set(created.values()) == {1} and sandbox.stats()["duplicates"] == []


def test_two_drop_passes_on_one_shared_folder_from_two_state_homes(
    tmp_path: Path, sandbox_factory: Any, pg_url: str
) -> None:
    """Two machines watching one shared folder: with a shared ledger the folder's lock is an advisory lock in its
    database, so one pass takes the files and the other says the folder is busy; each job is created once."""
    sandbox = sandbox_factory(latency_ms=20)
    mapping = mapping_file(tmp_path / "maps")
    folder = tmp_path / "drop"
    write_csv(folder / "night.csv", job_rows("NIGHT", 300), age_s=600)
    passes = [
        start_drop(
            folder,
            mapping,
            env={**drop_env(sandbox, tmp_path / name), "JOBIMPORT_LEDGER_URL": pg_url},
            cwd=tmp_path,
        )
        for name in ("machine-a", "machine-b")
    ]
    outputs = [_finish(p) for p in passes]
    assert sorted(code for code, _, _ in outputs) == [0, 0], outputs
    busy = [out for _, out, _ in outputs if "another pass is working on" in out]
    assert len(busy) == 1 and "advisory lock in the shared ledger postgresql://postgres@127.0.0.1:" in busy[0]
    assert not (folder / ".jobimport-drop.lock").exists()  # the database's lock, not a file
    created = _creations(sandbox)
    assert len(created) == 300 and set(created.values()) == {1}


def test_moving_a_ledger_in_and_using_it_from_the_command_line(
    tmp_path: Path, sandbox_factory: Any, pg_url: str, postgres_server: Any
) -> None:
    """A person's embedded ledger moves into the team's (count printed, safe to repeat); then `ledger path`,
    `status`, `report` and a rerun all use the shared one, and the password appears nowhere."""
    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", 50)
    mine = _home(tmp_path, "mine")
    first = run_cli(_args(source, tmp_path / "reports"), {**sandbox.env(), **mine}, tmp_path)
    assert first.returncode == 0, first.stderr
    shown = run_cli(["ledger", "path"], {**sandbox.env(), **mine}, tmp_path)
    sqlite_file = shown.stdout.split()[0]
    password = postgres_server.password

    moved = run_cli(["ledger", "migrate", sqlite_file, pg_url], {**sandbox.env(), **mine}, tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert "50 row(s) copied, 0 already there" in moved.stdout and "1 run(s) copied" in moved.stdout
    again = run_cli(["ledger", "migrate", sqlite_file, pg_url], {**sandbox.env(), **mine}, tmp_path)
    assert "0 row(s) copied, 50 already there" in again.stdout and "0 run(s) copied" in again.stdout

    team = _home(tmp_path, "team", JOBIMPORT_LEDGER_URL=pg_url)
    where = run_cli(["ledger", "path"], {**sandbox.env(), **team}, tmp_path)
    assert where.returncode == 0 and where.stdout.startswith("postgresql://postgres@127.0.0.1:")
    status = run_cli(["status"], {**sandbox.env(), **team}, tmp_path)
    run_id = latest_run(tmp_path / "reports").name
    assert status.returncode == 0 and run_id in status.stdout, status.stdout
    rebuilt = run_cli(["report", run_id, "--report-dir", "rebuilt"], {**sandbox.env(), **team}, tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    posts = sum(sandbox.stats()["requests"].get("POST /v1/jobs", {}).values())
    rerun = run_cli(_args(source, tmp_path / "team-reports", "--no-lookup"), {**sandbox.env(), **team}, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert {s for s, _ in _statuses(tmp_path / "team-reports").values()} == {"already_created"}
    assert sum(sandbox.stats()["requests"].get("POST /v1/jobs", {}).values()) == posts
    for done in (moved, where, status, rebuilt, rerun):
        assert password not in done.stdout + done.stderr
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "team-reports").rglob("*") if p.is_file())
    assert password not in logs


def test_an_unreachable_shared_ledger_stops_before_anything_is_sent(tmp_path: Path, sandbox_factory: Any) -> None:
    import socket

    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", 5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://jobimport:s3cret-pass@127.0.0.1:{port}/ledger"
    done = run_cli(_args(source, tmp_path / "reports", "--ledger", url), sandbox.env(), tmp_path)
    assert done.returncode == 3, (done.stdout, done.stderr)
    message = done.stderr.strip()
    assert "\n" not in message and message.startswith("jobimport: cannot reach the shared ledger postgresql://")
    assert "nothing was sent" in message and "s3cret-pass" not in done.stdout + done.stderr
    assert sandbox.jobs() == []


def test_jobs_this_ledger_did_not_create_are_pointed_out_once(tmp_path: Path, sandbox_factory: Any) -> None:
    """An analyst imports a file a cron job (another state folder) already imported: look-before-send finds
    every job; the run says once that someone else imports into this tenant and how to share a ledger."""
    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", 20)
    cron = run_cli(_args(source, tmp_path / "cron"), {**sandbox.env(), **_home(tmp_path, "cron")}, tmp_path)
    assert cron.returncode == 0 and "share one ledger" not in cron.stdout
    analyst = run_cli(_args(source, tmp_path / "analyst"), {**sandbox.env(), **_home(tmp_path, "analyst")}, tmp_path)
    assert analyst.returncode == 0, analyst.stderr
    assert analyst.stdout.count("This ledger did not create them: if someone else") == 1, analyst.stdout
    assert "--ledger postgresql://" in analyst.stdout and len(_creations(sandbox)) == 20


def test_a_ledger_that_is_not_a_file_nor_postgresql_is_one_line(tmp_path: Path, sandbox_factory: Any) -> None:
    sandbox = sandbox_factory()
    source = write_jobs(tmp_path / "in", 3)
    other = run_cli(_args(source, tmp_path / "r", "--ledger", "mysql://u:pw@db/x"), sandbox.env(), tmp_path)
    assert other.returncode == 2 and other.stderr.strip().startswith("jobimport: --ledger mysql://… is not a ledger")
    assert "pw" not in other.stderr
    wrong = run_cli(
        _args(source, tmp_path / "r"), {**sandbox.env(), "JOBIMPORT_LEDGER_URL": "db.example.com"}, tmp_path
    )
    assert wrong.returncode == 2 and "JOBIMPORT_LEDGER_URL must be a postgresql://" in wrong.stderr
    assert "\n" not in wrong.stderr.strip() and sandbox.jobs() == []
