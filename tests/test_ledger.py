"""The ledger on both backends — a real SQLite file and a real PostgreSQL server (tests/conftest.py starts one):
durable states, tenant identity, runs, writes off the event loop, pruning. SQLite-only and PostgreSQL-only cases
follow the shared ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import RunStopped, SettingsError
from pipeline.state import TenantIdentity, default_ledger_path, normalise_api
from pipeline.submit.ledger import KEEP_RUN_ROWS, Ledger, LedgerTarget, Update, adopt, legacy_ledgers
from pipeline.submit.ledger_pg import SCHEMA_VERSION, FolderBusyElsewhere, FolderLock, PgLedger, migrate_sqlite

SANDBOX = TenantIdentity.of("http://127.0.0.1:8765/v1", 1001)
REAL = TenantIdentity.of("https://api.bigchange.com/v1", 1001)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerTarget:
    """Where a ledger lives: a file, or a fresh database on the test's PostgreSQL server."""
    if request.param == "sqlite":
        return tmp_path / "ledger.sqlite"
    return str(request.getfixturevalue("pg_url"))


def test_states_survive_reopening(target: LedgerTarget) -> None:
    path = target
    with Ledger(path, SANDBOX) as ledger:
        ledger.mark_sending([("R-1", "R-1"), ("fp:abc", None)], "run-1")
        ledger.record([Update("R-1", "created", job_id=42)], "run-1")
        ledger.mark_sending([("fp:abc", None)], "run-1")  # sent again: attempts grow
        ledger.record([Update("R-2", "already_created", job_id=7)], "run-1")  # found by a look-up: added
    with Ledger(path, SANDBOX) as ledger:
        rows = ledger.known(["R-1", "fp:abc", "R-2", "nope"])
        assert rows["R-1"].state == "created" and rows["R-1"].job_id == 42
        assert rows["fp:abc"].state == "sending" and rows["fp:abc"].attempts == 2
        assert rows["R-2"].job_id == 7 and "nope" not in rows
        assert [row.key for row in ledger.in_state("sending")] == ["fp:abc"]
        assert rows["R-1"].updated_at.endswith("Z") and rows["R-1"].updated_at[:2] == "20"


def test_sqlite_wal_is_on(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path, SANDBOX).close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_known_asks_only_for_the_keys_given_in_chunks(target: LedgerTarget) -> None:
    with Ledger(target, SANDBOX) as ledger:
        ledger.mark_sending([(f"K{i}", f"K{i}") for i in range(1200)], "r")
        found = ledger.known([f"K{i}" for i in range(0, 1300, 2)])
        assert len(found) == 600 and all(int(k[1:]) % 2 == 0 for k in found)


def test_identity_is_normalised_without_dns() -> None:
    assert normalise_api("HTTPS://API.BigChange.com:443/v1/") == "https://api.bigchange.com/v1"
    assert normalise_api("http://127.0.0.1:80/v1") == "http://127.0.0.1/v1"
    assert normalise_api("http://localhost:8765/v1") != normalise_api("http://127.0.0.1:8765/v1")
    assert TenantIdentity.of("https://x/v1", 1).slug != TenantIdentity.of("https://x/v1", 2).slug


def test_a_ledger_belongs_to_one_api_and_tenant(target: LedgerTarget) -> None:
    path = target
    Ledger(path, SANDBOX).close()
    with pytest.raises(SettingsError) as other_api:
        Ledger(path, REAL)
    message = str(other_api.value)
    assert "http://127.0.0.1:8765/v1 (customer 1001)" in message and "https://api.bigchange.com/v1" in message
    assert ("leave out --ledger" in message or "its own database" in message) and "\n" not in message
    with pytest.raises(SettingsError, match=r"belongs to .*customer 1001.*not to .*customer 2002"):
        Ledger(path, TenantIdentity.of("http://127.0.0.1:8765/v1", 2002))
    assert Ledger.open_existing(path).rows() == {}


def test_not_a_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(SettingsError, match="ledger"):
        Ledger(path, SANDBOX)


def test_runs_and_previous_run(target: LedgerTarget) -> None:
    with Ledger(target, SANDBOX) as ledger:
        for run in ("r1", "r2"):
            ledger.start_run(run, "/in.csv", "/m.toml", "sha")
            ledger.finish_run(run, {"counts": {}}, 1, iter([(2, 2, "K", "created", 7, "K", None)]), iter([]))
        assert ledger.previous_run("/in.csv", "r2").run_id == "r1"  # type: ignore[union-attr]
        assert ledger.previous_run("/other.csv", "r2") is None
        assert ledger.run_rows("r1") == [(2, 2, "K", "created", 7, "K", None)]
        assert ledger.run("r1").input_sha256 == "sha"  # type: ignore[union-attr]


def test_old_runs_keep_their_summary_but_not_their_rows(target: LedgerTarget) -> None:
    """A ledger grows with its jobs, not its history: per-row outcomes are kept for the latest runs only (and the
    latest run of each input), summaries for all."""
    with Ledger(target, SANDBOX) as ledger:
        runs = [f"r{i:03d}" for i in range(KEEP_RUN_ROWS + 5)]
        for number, run in enumerate(runs):
            ledger.start_run(run, "/first.csv" if number == 0 else "/daily.csv", "/m.toml")
            ledger.finish_run(run, {"counts": {}}, 0, iter([(2, 2, run, "created", 1, run, None)]), iter([]))
        kept = [run for run in runs if ledger.has_run_rows(run)]
        assert kept == [runs[0], *runs[-KEEP_RUN_ROWS:]]
        assert len(ledger.runs(100)) == len(runs)


def test_two_runs_cannot_use_one_ledger_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    first = Ledger(path, SANDBOX)
    with pytest.raises(SettingsError, match="another jobimport run is using the ledger"):
        Ledger(path, SANDBOX)
    assert Ledger.open_existing(path).runs() == []  # readers (status, report) are not blocked
    first.close()
    Ledger(path, SANDBOX).close()  # released with the first run


def _legacy_ledger(path: Path, customer: int) -> None:
    """A ledger as the previous version wrote it: customer id only, no API."""
    with Ledger(path, SANDBOX) as ledger:
        ledger.mark_sending([("R-1", "R-1")], "old")
        ledger.record([Update("R-1", "created", job_id=5)], "old")
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key = 'api'")
    db.execute("UPDATE meta SET value = ? WHERE key = 'customer_id'", (str(customer),))
    db.commit()
    db.close()


def test_an_old_ledger_is_never_used_silently_and_can_be_adopted(tmp_path: Path) -> None:
    old = tmp_path / "reports" / "ledger-1001.sqlite"
    old.parent.mkdir()
    _legacy_ledger(old, 1001)
    _legacy_ledger(tmp_path / "reports" / "ledger-2002.sqlite", 2002)
    assert legacy_ledgers(tmp_path / "reports", 1001) == [old]
    with pytest.raises(SettingsError, match=r"earlier jobimport .*jobimport ledger adopt"):
        Ledger(old, SANDBOX)
    target = default_ledger_path(SANDBOX, tmp_path / "home")
    renamed = adopt(old, SANDBOX, target)
    assert not old.exists() and renamed.name == "ledger-1001.sqlite.adopted"
    with Ledger(target, SANDBOX) as ledger:
        assert ledger.known(["R-1"])["R-1"].job_id == 5
    with pytest.raises(SettingsError, match="customer 2002's ledger, not customer 1001's"):
        adopt(tmp_path / "reports" / "ledger-2002.sqlite", SANDBOX, tmp_path / "other.sqlite")


def test_a_cancelled_wait_never_kills_the_writer(tmp_path: Path) -> None:
    """A stop cancels the run's wait for a write (asyncio then cancels the future): the write still happens and
    the writer thread lives on for the writes that follow (it once died there, and the run hung)."""
    path = tmp_path / "l.sqlite"
    with Ledger(path, SANDBOX) as ledger:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the writer waits on this lock: the cancel surely comes first
        future = ledger.submit_sending([("R-1", "R-1")], "r")
        assert future.cancel()
        blocker.execute("COMMIT")
        blocker.close()
        ledger.record([Update("R-2", "created", job_id=2)], "r")  # would hang if the writer had died
        assert set(ledger.known(["R-1", "R-2"])) <= {"R-1", "R-2"} and "R-2" in ledger.known(["R-2"])


def test_a_commit_that_fails_keeps_its_own_error_when_the_rollback_fails_too() -> None:
    """SQLITE_FULL at COMMIT, then a ROLLBACK that fails as well (SQLite had already rolled back): the write's
    future carries SQLITE_FULL, which says what to do, not the rollback's error."""
    import sqlite3
    from concurrent.futures import Future

    from pipeline.submit.ledger import _Writer

    class FullDisk:
        def execute(self, sql: str) -> None:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("database or disk is full")
            if sql == "ROLLBACK":
                raise sqlite3.OperationalError("cannot rollback - no transaction is active")

        def executemany(self, sql: str, params: object) -> None:
            pass

    future: Future[None] = Future()
    _Writer(FullDisk())._commit([([("INSERT", [])], future)])  # type: ignore[arg-type]
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        future.result()


# --- the embedded ledger's machine-wide guard ----------------------------------------------------------------------


def test_two_state_folders_of_one_machine_never_send_to_one_tenant_at_once(tmp_path: Path) -> None:
    """A cron job and an analyst, each with their own state folder: the second is refused, naming the first and
    how to share a ledger; readers and other tenants are not blocked; the lock goes with the first run."""
    first = Ledger(tmp_path / "cron" / "ledger.sqlite", SANDBOX)
    with pytest.raises(SettingsError) as refused:
        Ledger(tmp_path / "analyst" / "ledger.sqlite", SANDBOX)
    message = str(refused.value)
    assert "another jobimport run on this machine is importing into http://127.0.0.1:8765/v1" in message
    assert str(tmp_path / "cron" / "ledger.sqlite") in message and "--ledger postgresql://" in message
    assert "\n" not in message
    Ledger(tmp_path / "analyst" / "real.sqlite", REAL).close()  # another tenant: not blocked
    assert Ledger.open_existing(tmp_path / "cron" / "ledger.sqlite").runs() == []
    first.close()
    Ledger(tmp_path / "analyst" / "ledger.sqlite", SANDBOX).close()


# --- PostgreSQL: claims, leases, connections, schema, migrate, drop folders ---------------------------------------


def _pg(url: str, identity: TenantIdentity = SANDBOX) -> PgLedger:
    ledger = Ledger(url, identity)
    assert isinstance(ledger, PgLedger)
    return ledger


def test_a_key_claimed_by_a_live_run_is_refused_with_who_holds_it(pg_url: str) -> None:
    with _pg(pg_url) as a, _pg(pg_url) as b:
        a.start_run("run-a", "/in.csv", "/m.toml")
        assert a.mark_sending([("K1", "K1"), ("K2", None)], "run-a") == {}
        refused = b.mark_sending([("K2", None), ("K1", "K1"), ("K3", "K3")], "run-b")
        assert set(refused) == {"K1", "K2"} and refused["K1"].startswith("being imported by run run-a on host ")
        assert b.in_state("sending") == []  # a live run's claims are not left over
        a.record([Update("K1", "created", job_id=9)], "run-a")
        assert b.mark_sending([("K1", "K1")], "run-b") == {
            "K1": refused["K1"].replace("being imported", "created meanwhile")
        }
        b.record([Update("K1", "pending")], "run-b")  # a created job is never turned back into one to send
        assert b.known(["K1"])["K1"].state == "created"
        b.record([Update("K2", "pending")], "run-b")  # nor a live run's claim undone by another run
        assert b.known(["K2"])["K2"].state == "sending"
        a.record([Update("K2", "failed")], "run-a")
        assert b.mark_sending([("K2", None)], "run-b") == {}  # a failed row may be sent again, by one run


def test_racing_runs_claim_every_key_exactly_once(pg_url: str) -> None:
    """Four runs claim the same 2,000 keys in different orders, 64 at a time: every key granted once, no
    deadlock (claims are sorted)."""
    import random
    import threading

    keys = [f"R-{i:05d}" for i in range(2000)]
    ledgers = [_pg(pg_url) for _ in range(4)]
    granted: list[list[str]] = [[] for _ in ledgers]

    def claim(n: int) -> None:
        mine = keys[:]
        random.Random(n).shuffle(mine)
        for start in range(0, len(mine), 64):
            part = mine[start : start + 64]
            refused = ledgers[n].mark_sending([(k, k) for k in part], f"run-{n}")
            granted[n].extend(k for k in part if k not in refused)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for ledger in ledgers:
        ledger.close()
    every = [k for g in granted for k in g]
    assert sorted(every) == keys and all(granted)


def test_a_killed_runs_claims_expire_and_are_reconciled_never_resent(pg_url: str) -> None:
    """kill -9 of a run holding claims: while its lease runs, its rows are its own; then `in_state("sending")`
    returns them for the next run to look up, and claiming them is still refused (never re-sent blindly)."""
    import subprocess
    import sys
    import time

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pipeline.submit.ledger import Ledger\n"
            "from pipeline.state import TenantIdentity\n"
            "l = Ledger(sys.argv[1], TenantIdentity.of('http://127.0.0.1:8765/v1', 1001))\n"
            "l.start_run('doomed', '/in.csv', '/m.toml')\n"
            "l.mark_sending([('K1', 'K1'), ('fp:2', None)], 'doomed')\n"
            "print('claimed', flush=True)\n"
            "time.sleep(60)\n",
            pg_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "JOBIMPORT_LEDGER_LEASE_S": "1.5"},
    )
    assert child.stdout is not None
    assert any(line.strip() == "claimed" for line in child.stdout)  # (a structlog line may come first)
    with _pg(pg_url) as next_run:
        assert next_run.in_state("sending") == []  # alive: renewing its lease
        child.kill()
        child.wait()
        deadline = time.monotonic() + 10
        while not next_run.in_state("sending") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [r.key for r in next_run.in_state("sending")] == ["K1", "fp:2"]
        refused = next_run.mark_sending([("K1", "K1")], "next")
        assert refused["K1"].startswith("left unanswered by run doomed") and "looks it up" in refused["K1"]
        next_run.record([Update("K1", "already_created", job_id=4), Update("fp:2", "uncertain")], "next")
        assert next_run.in_state("sending") == []


def test_a_run_whose_lease_lapsed_claims_nothing(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A paused run (laptop lid) finds its lease over: another run may be reconciling its rows, so it claims
    nothing more."""
    import time

    monkeypatch.setenv("JOBIMPORT_LEDGER_LEASE_S", "0.5")
    with _pg(pg_url) as paused:
        assert paused._heartbeat is not None
        paused._heartbeat.stopped.set()  # the pause: nothing renews
        paused.start_run("paused", "/in.csv", "/m.toml")
        time.sleep(0.8)
        refused = paused.mark_sending([("K1", "K1")], "paused")
        assert "lease on the shared ledger lapsed" in refused["K1"]
        assert paused.known(["K1"]) == {}


def test_uncertain_rows_are_resent_only_if_they_were_uncertain_before_the_run(pg_url: str) -> None:
    with _pg(pg_url) as earlier:
        earlier.record([Update("OLD", "uncertain")], "earlier")
    with _pg(pg_url) as run, _pg(pg_url) as other:
        run.start_run("now", "/in.csv", "/m.toml")
        other.record([Update("NEW", "uncertain")], "other")  # another run made it uncertain meanwhile
        refused = run.mark_sending([("OLD", "OLD"), ("NEW", "NEW")], "now")
        assert list(refused) == ["NEW"] and "marked uncertain meanwhile by run other" in refused["NEW"]


def test_a_broken_connection_is_replaced_and_the_write_kept(pg_url: str, postgres_server: Any) -> None:
    """The server drops every connection (a restart, a failover): the next write reconnects and runs its batch
    again; the next read too."""
    import psycopg

    with _pg(pg_url) as ledger:
        ledger.mark_sending([("K1", "K1")], "r")
        with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'jobimport' "
                "AND datname = %s",
                (pg_url.rsplit("/", 1)[1],),
            )
        ledger.record([Update("K1", "created", job_id=3)], "r")
        assert ledger.known(["K1"])["K1"].job_id == 3


def test_the_schema_is_migrated_once_when_many_open_a_fresh_database(pg_url: str) -> None:
    import threading

    import psycopg

    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            Ledger(pg_url, SANDBOX, exclusive=False).close()
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM jobimport_schema").fetchall() == [(SCHEMA_VERSION,)]
        conn.execute("INSERT INTO jobimport_schema (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(SettingsError, match=r"schema version 2, written by a newer jobimport .* upgrade jobimport"):
        Ledger(pg_url, SANDBOX)


def test_the_password_is_never_shown_and_an_unreachable_database_stops_before_sending(
    pg_url: str, postgres_server: Any
) -> None:
    import socket
    import time

    password = postgres_server.password
    with _pg(pg_url) as ledger:
        assert password not in str(ledger.path) and str(ledger.path).startswith("postgresql://postgres@127.0.0.1:")
    wrong = pg_url.replace(password, "not-the-password")
    with pytest.raises(RunStopped) as refused:
        Ledger(wrong, SANDBOX)
    assert refused.value.exit_code == 3 and "not-the-password" not in str(refused.value)
    assert "nothing was sent" in str(refused.value) and "\n" not in str(refused.value)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RunStopped, match=r"cannot reach the shared ledger postgresql://postgres@127.0.0.1:\d+/"):
        Ledger(f"postgresql://postgres:{password}@127.0.0.1:{free}/x", SANDBOX)
    assert time.monotonic() - started < 5
    with pytest.raises(SettingsError, match="unencoded @") as at_sign:
        Ledger(f"postgresql://postgres:se@cret@127.0.0.1:{free}/x", SANDBOX)
    assert "cret" not in str(at_sign.value)


def test_an_embedded_ledger_moves_into_a_shared_one_once(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path, SANDBOX) as ledger:
        ledger.mark_sending([(f"K{i}", f"K{i}") for i in range(1200)], "old")
        ledger.record([Update(f"K{i}", "created", job_id=i) for i in range(1200)], "old")
        ledger.start_run("old", "/in.csv", "/m.toml")
        ledger.finish_run("old", {"counts": {}}, 0, iter([(2, 2, "K0", "created", 0, "K0", None)]), iter([]))
    with _pg(pg_url) as shared:
        shared.record([Update("K0", "created", job_id=0), Update("OTHER", "created", job_id=99)], "team")
    assert migrate_sqlite(path, pg_url)[1:] == (1199, 1, 1)
    assert migrate_sqlite(path, pg_url)[1:] == (0, 1200, 0)  # idempotent
    with _pg(pg_url) as shared:
        assert shared.known(["K1199"])["K1199"].job_id == 1199 and len(shared.rows()) == 1201
        assert shared.run_rows("old") == [(2, 2, "K0", "created", 0, "K0", None)]
    other = tmp_path / "other.sqlite"
    Ledger(other, REAL).close()
    with pytest.raises(SettingsError, match=r"belongs to .*8765.*not to https://api.bigchange.com"):
        migrate_sqlite(other, pg_url)


def test_one_drop_pass_per_folder_across_machines(tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "drop").mkdir()
    held = FolderLock(pg_url, tmp_path / "drop")
    with pytest.raises(FolderBusyElsewhere):
        FolderLock(pg_url, Path(f"{tmp_path}/drop/"))  # the same folder, spelt differently
    FolderLock(pg_url, tmp_path).release()  # another folder: free
    held.release()
    FolderLock(pg_url, tmp_path / "drop" / ".." / "drop").release()
