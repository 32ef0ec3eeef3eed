"""The ledger on a real SQLite file: durable states, tenant identity, runs, writes off the event loop, pruning."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline.errors import SettingsError
from pipeline.state import TenantIdentity, default_ledger_path, normalise_api
from pipeline.submit.ledger import KEEP_RUN_ROWS, Ledger, Update, adopt, legacy_ledgers

SANDBOX = TenantIdentity.of("http://127.0.0.1:8765/v1", 1001)
REAL = TenantIdentity.of("https://api.bigchange.com/v1", 1001)


def test_states_survive_reopening_and_wal_is_on(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
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
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_known_asks_only_for_the_keys_given_in_chunks(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", SANDBOX) as ledger:
        ledger.mark_sending([(f"K{i}", f"K{i}") for i in range(1200)], "r")
        found = ledger.known([f"K{i}" for i in range(0, 1300, 2)])
        assert len(found) == 600 and all(int(k[1:]) % 2 == 0 for k in found)


def test_identity_is_normalised_without_dns() -> None:
    assert normalise_api("HTTPS://API.BigChange.com:443/v1/") == "https://api.bigchange.com/v1"
    assert normalise_api("http://127.0.0.1:80/v1") == "http://127.0.0.1/v1"
    assert normalise_api("http://localhost:8765/v1") != normalise_api("http://127.0.0.1:8765/v1")
    assert TenantIdentity.of("https://x/v1", 1).slug != TenantIdentity.of("https://x/v1", 2).slug


def test_a_ledger_belongs_to_one_api_and_tenant(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path, SANDBOX).close()
    with pytest.raises(SettingsError) as other_api:
        Ledger(path, REAL)
    message = str(other_api.value)
    assert "http://127.0.0.1:8765/v1 (customer 1001)" in message and "https://api.bigchange.com/v1" in message
    assert "leave out --ledger" in message and "\n" not in message
    with pytest.raises(SettingsError, match=r"belongs to .*customer 1001.*not to .*customer 2002"):
        Ledger(path, TenantIdentity.of("http://127.0.0.1:8765/v1", 2002))
    assert Ledger.open_existing(path).rows() == {}


def test_not_a_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(SettingsError, match="ledger"):
        Ledger(path, SANDBOX)


def test_runs_and_previous_run(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", SANDBOX) as ledger:
        for run in ("r1", "r2"):
            ledger.start_run(run, "/in.csv", "/m.toml", "sha")
            ledger.finish_run(run, {"counts": {}}, 1, iter([(2, 2, "K", "created", 7, "K", None)]), iter([]))
        assert ledger.previous_run("/in.csv", "r2").run_id == "r1"  # type: ignore[union-attr]
        assert ledger.previous_run("/other.csv", "r2") is None
        assert ledger.run_rows("r1") == [(2, 2, "K", "created", 7, "K", None)]
        assert ledger.run("r1").input_sha256 == "sha"  # type: ignore[union-attr]


def test_old_runs_keep_their_summary_but_not_their_rows(tmp_path: Path) -> None:
    """A ledger grows with its jobs, not its history: per-row outcomes are kept for the latest runs only (and the
    latest run of each input), summaries for all."""
    with Ledger(tmp_path / "l.sqlite", SANDBOX) as ledger:
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
