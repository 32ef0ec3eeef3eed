"""The ledger on a real SQLite file: durable states, tenant ownership, runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline.errors import SettingsError
from pipeline.ledger import Ledger, Update


def test_states_survive_reopening_and_wal_is_on(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path, 1001) as ledger:
        ledger.mark_sending([("R-1", "R-1", "fp1"), ("fp:abc", None, "fp2")], "run-1")
        ledger.record([Update("R-1", "created", job_id=42)], "run-1")
        ledger.mark_sending([("fp:abc", None, "fp2")], "run-1")  # sent again: attempts grow
    with Ledger(path, 1001) as ledger:
        rows = ledger.rows()
        assert rows["R-1"].state == "created" and rows["R-1"].job_id == 42
        assert rows["fp:abc"].state == "sending" and rows["fp:abc"].attempts == 2
        assert [key for key, row in ledger.rows().items() if row.state == "sending"] == ["fp:abc"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_ledger_belongs_to_one_tenant(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path, 1001).close()
    with pytest.raises(SettingsError, match="belongs to customer id 1001, not 2002"):
        Ledger(path, 2002)
    assert Ledger.open_existing(path).rows() == {}


def test_not_a_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(SettingsError, match="ledger"):
        Ledger(path, 1001)


def test_runs_and_previous_run(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", 1) as ledger:
        for run in ("r1", "r2"):
            ledger.start_run(run, "/in.csv", "/m.toml", "sha")
            ledger.finish_run(run, {"counts": {}}, 1, iter([(2, 2, "K", "created", 7, "K", None)]), iter([]))
        assert ledger.previous_run("/in.csv", "r2").run_id == "r1"  # type: ignore[union-attr]
        assert ledger.previous_run("/other.csv", "r2") is None
        assert ledger.run_rows("r1") == [(2, 2, "K", "created", 7, "K", None)]
        assert ledger.run("r1").input_sha256 == "sha"  # type: ignore[union-attr]


def test_two_runs_cannot_use_one_ledger_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    first = Ledger(path, 1001)
    with pytest.raises(SettingsError, match="another jobimport run is using the ledger"):
        Ledger(path, 1001)
    assert Ledger.open_existing(path).runs() == []  # readers (status, report) are not blocked
    first.close()
    Ledger(path, 1001).close()  # released with the first run
