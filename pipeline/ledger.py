"""The ledger: a durable SQLite record of every row's key, state, job id and problem — the source of truth for reruns.

The API has no idempotency key, so this file is what stops duplicates. A row's key is its reference (or a payload
fingerprint when it has none). States: pending → sending → created | rejected | failed | uncertain (and
already_created when a reconciliation found the job). A row is made durable as `sending` (in small batches)
before its request leaves; a run that dies leaves such rows `sending`, and the next run looks them up by
reference before sending anything.

One ledger belongs to one customer id (tenant): opening it for another tenant is refused. WAL mode with
synchronous=FULL: a committed state survives a killed process and a power cut.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import SettingsError

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reference TEXT,
    job_id INTEGER,
    fingerprint TEXT,
    problem TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rows_state ON rows(state);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    input TEXT NOT NULL,
    input_sha256 TEXT,
    mapping TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    exit_code INTEGER,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS run_rows (
    run_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    origin_row INTEGER NOT NULL,
    key TEXT,
    status TEXT NOT NULL,
    job_id INTEGER,
    reference TEXT,
    problem TEXT,
    PRIMARY KEY (run_id, row)
);
CREATE TABLE IF NOT EXISTS run_errors (
    run_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    field TEXT,
    "column" TEXT,
    "check" TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS run_errors_run ON run_errors(run_id);
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class LedgerRow:
    key: str
    state: str
    reference: str | None
    job_id: int | None
    fingerprint: str | None
    problem: dict[str, Any] | None
    attempts: int
    updated_at: str = ""


@dataclass(frozen=True, slots=True)
class Update:
    """A state change for one key."""

    key: str
    state: str
    job_id: int | None = None
    problem: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    input: str
    mapping: str
    started_at: str
    finished_at: str | None
    exit_code: int | None
    summary: dict[str, Any] | None
    input_sha256: str | None = None


def default_ledger_path(report_root: Path, customer_id: int) -> Path:
    return report_root / f"ledger-{customer_id}.sqlite"


class Ledger:
    """Open with `Ledger(path, customer_id)`; close with `.close()` or use as a context manager."""

    def __init__(self, path: Path, customer_id: int, exclusive: bool = True) -> None:
        """`exclusive`: hold the ledger's lock file for as long as this object is open, so two runs can never
        send from one ledger at once (both would see the same rows as unsent). Readers pass False."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        if exclusive:
            self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                raise SettingsError(
                    f"another jobimport run is using the ledger {path}; wait for it to finish (two runs on one "
                    "ledger could create jobs twice), or give a different tenant's ledger with --ledger"
                ) from None
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise SettingsError(
                f"cannot open the ledger {path}: {exc}; give another path with --ledger or restore the file"
            ) from None
        try:
            self._claim(customer_id)
        except SettingsError:
            self.close()
            raise

    @classmethod
    def open_existing(cls, path: Path) -> Ledger:
        """Open a ledger for reading runs, whatever its tenant (for `report` and `status`)."""
        if not path.is_file():
            raise SettingsError(f"no ledger at {path}; give the right file with --ledger")
        db = sqlite3.connect(path)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'customer_id'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise SettingsError(
                f"{path} is not a jobimport ledger ({exc}); give the right file with --ledger"
            ) from None
        finally:
            db.close()
        if row is None:
            raise SettingsError(f"{path} is not a jobimport ledger (no tenant recorded); check --ledger")
        return cls(path, int(row[0]), exclusive=False)

    def _claim(self, customer_id: int) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'customer_id'").fetchone()
        if row is None:
            with self._tx():
                self._db.execute("INSERT INTO meta VALUES ('customer_id', ?)", (str(customer_id),))
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != str(customer_id):
            raise SettingsError(
                f"the ledger {self.path} belongs to customer id {row[0]}, not {customer_id}; "
                "use that tenant's ledger (--ledger) or check BIGCHANGE_CUSTOMER_ID"
            )

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, *rest: object) -> None:
            if exc_type:
                self.db.execute("ROLLBACK")
                return
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error:
                self.db.execute("ROLLBACK")  # never leave a transaction open behind a failed commit
                raise

    def _tx(self) -> Ledger._Tx:
        return Ledger._Tx(self._db)

    # --- rows --------------------------------------------------------------------------------------------------

    def rows(self) -> dict[str, LedgerRow]:
        """Every ledger row of this tenant, by key."""
        result: dict[str, LedgerRow] = {}
        cursor = self._db.execute(
            "SELECT key, state, reference, job_id, fingerprint, problem, attempts, updated_at FROM rows"
        )
        for key, state, reference, job_id, fingerprint, problem, attempts, updated_at in cursor:
            result[key] = LedgerRow(
                key,
                state,
                reference,
                job_id,
                fingerprint,
                json.loads(problem) if problem else None,
                attempts,
                updated_at,
            )
        return result

    def mark_sending(self, items: Iterable[tuple[str, str | None, str]], run_id: str) -> None:
        """Make (key, reference, fingerprint) rows durable as `sending`, in one transaction, before they leave."""
        stamp = now_iso()
        with self._tx():
            self._db.executemany(
                "INSERT INTO rows (key, state, reference, fingerprint, attempts, run_id, updated_at) "
                "VALUES (?, 'sending', ?, ?, 1, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET state='sending', reference=excluded.reference, "
                "fingerprint=excluded.fingerprint, attempts=rows.attempts+1, run_id=excluded.run_id, "
                "problem=NULL, updated_at=excluded.updated_at",
                [(key, ref, fp, run_id, stamp) for key, ref, fp in items],
            )

    def record(self, updates: Iterable[Update], run_id: str) -> None:
        """Write final (or intermediate) states in one transaction."""
        stamp = now_iso()
        with self._tx():
            self._db.executemany(
                "UPDATE rows SET state=?, job_id=COALESCE(?, job_id), problem=?, run_id=?, updated_at=? WHERE key=?",
                [
                    (u.state, u.job_id, json.dumps(u.problem) if u.problem else None, run_id, stamp, u.key)
                    for u in updates
                ],
            )

    # --- runs --------------------------------------------------------------------------------------------------

    def start_run(self, run_id: str, input_path: str, mapping_path: str, input_sha256: str | None = None) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO runs (run_id, input, input_sha256, mapping, started_at) VALUES (?, ?, ?, ?, ?)",
                (run_id, input_path, input_sha256, mapping_path, now_iso()),
            )

    def finish_run(
        self,
        run_id: str,
        summary: dict[str, Any],
        exit_code: int,
        outcomes: Iterator[tuple[int, int, str | None, str, int | None, str | None, str | None]],
        errors: Iterator[tuple[int, str | None, str | None, str, str]],
    ) -> None:
        """Store the run's per-row outcomes (row, origin_row, key, status, job_id, reference, problem JSON) and
        errors (row, field, column, check, message), so its reports can be rebuilt and the next run compared."""
        with self._tx():
            self._db.execute("DELETE FROM run_rows WHERE run_id = ?", (run_id,))
            self._db.execute("DELETE FROM run_errors WHERE run_id = ?", (run_id,))
            self._db.executemany(
                "INSERT INTO run_rows (run_id, row, origin_row, key, status, job_id, reference, problem) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ((run_id, *o) for o in outcomes),
            )
            self._db.executemany(
                'INSERT INTO run_errors (run_id, row, field, "column", "check", message) VALUES (?, ?, ?, ?, ?, ?)',
                ((run_id, *e) for e in errors),
            )
            self._db.execute(
                "UPDATE runs SET finished_at=?, exit_code=?, summary=? WHERE run_id=?",
                (now_iso(), exit_code, json.dumps(summary), run_id),
            )

    _RUN_COLUMNS = "run_id, input, mapping, started_at, finished_at, exit_code, summary, input_sha256"

    def runs(self, limit: int = 20) -> list[RunRecord]:
        cursor = self._db.execute(
            f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?", (limit,)
        )
        return [RunRecord(r, i, m, s, f, e, json.loads(x) if x else None, h) for r, i, m, s, f, e, x, h in cursor]

    def run(self, run_id: str) -> RunRecord | None:
        found = self._db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if found is None:
            return None
        r, i, m, s, f, e, x, h = found
        return RunRecord(r, i, m, s, f, e, json.loads(x) if x else None, h)

    def previous_run(self, input_path: str, before_run_id: str) -> RunRecord | None:
        """The latest finished run of the same input file before `before_run_id`."""
        row = self._db.execute(
            "SELECT run_id FROM runs WHERE input = ? AND run_id <> ? AND finished_at IS NOT NULL "
            "AND started_at <= (SELECT started_at FROM runs WHERE run_id = ?) "
            "ORDER BY started_at DESC LIMIT 1",
            (input_path, before_run_id, before_run_id),
        ).fetchone()
        return self.run(row[0]) if row else None

    def run_rows(self, run_id: str) -> list[tuple[int, int, str | None, str, int | None, str | None, str | None]]:
        return self._db.execute(
            "SELECT row, origin_row, key, status, job_id, reference, problem FROM run_rows "
            "WHERE run_id = ? ORDER BY row",
            (run_id,),
        ).fetchall()

    def run_errors(self, run_id: str) -> list[tuple[int, str | None, str | None, str, str]]:
        return self._db.execute(
            'SELECT row, field, "column", "check", message FROM run_errors WHERE run_id = ? ORDER BY row',
            (run_id,),
        ).fetchall()
