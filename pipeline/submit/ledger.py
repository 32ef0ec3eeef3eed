"""The ledger: a durable record of every row's key, state, job id and problem — the source of truth for reruns.

The API has no idempotency key, so this file (with the look-up by reference before a first send) is what stops
duplicates. A row's key is its reference (or a payload fingerprint when it has none). States: pending → sending →
created | rejected | failed | uncertain (and already_created when a look-up found the job). A row is made durable
as `sending` before its request leaves; a run that dies leaves such rows `sending`, and the next run looks them
up by reference before sending anything.

A ledger belongs to one tenant identity (the API's normalised base URL and the customer id, `pipeline.state`):
written into it when created, checked on every open; it is never used for another. It lives in the tenant's
folder of the state home, whatever the working directory. WAL mode with synchronous=FULL: a committed state
survives a killed process and a power cut. Every write goes through one writer thread in batched transactions
(`submit_*` return a future that is done once the write is durable), so a commit never blocks the event loop;
reads use their own connection and only ever ask for the keys of the file at hand.

Two backends behind one interface (`Ledger`): the embedded SQLite file (`SqliteLedger`, the default: nothing to set
up for one person) and a PostgreSQL database shared by everyone who imports into the tenant (`PgLedger`, in
pipeline/submit/ledger_pg.py, imported only when a `postgresql://` URL is given). `Ledger(target, identity)` (or
`open_ledger`) opens the one the target names, as `pathlib.Path` picks its flavour. A shared ledger hands out
claims: `submit_sending` resolves to the keys another live run holds (refused, not to be sent); an embedded
ledger never refuses, because a machine-wide lock per tenant lets one run on the machine send at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from pipeline.errors import SettingsError
from pipeline.state import TenantIdentity

SCHEMA_VERSION = "2"
#: per-row outcomes of runs are kept for this many latest runs (and the latest run of every input file);
#: older runs keep their summary only, so a ledger grows with its tenant's jobs, not with its history.
KEEP_RUN_ROWS = 20
_READ_CHUNK = 500  # keys per `IN (...)` query (SQLite allows 32,766 variables; small chunks keep each fast)

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
    """A state change for one key (`fingerprint`: kept with a rejection, to tell a changed row from the same)."""

    key: str
    state: str
    job_id: int | None = None
    problem: dict[str, Any] | None = None
    fingerprint: str | None = None


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


LedgerTarget = Path | str  # a SQLite file, or a postgresql:// URL
#: the environment variable that names a shared ledger when --ledger is not given
LEDGER_URL_VARIABLE = "JOBIMPORT_LEDGER_URL"
#: where the machine-wide locks of embedded ledgers live (default: a folder every user of the machine can write)
LOCK_DIR_VARIABLE = "JOBIMPORT_LOCK_DIR"


def is_url(target: LedgerTarget | None) -> bool:
    """Whether a --ledger value names a PostgreSQL ledger rather than a file."""
    return isinstance(target, str) and target.split("://", 1)[0].lower() in ("postgresql", "postgres")


def as_target(value: str | Path) -> LedgerTarget:
    """A --ledger value as given on the command line: a URL (any scheme://) stays text, anything else is a path."""
    return str(value) if "://" in str(value) else Path(value)


def shared_ledger_url() -> str | None:
    """$JOBIMPORT_LEDGER_URL when set (a postgresql:// URL), else None."""
    value = os.environ.get(LEDGER_URL_VARIABLE, "").strip()
    if not value:
        return None
    if not is_url(value):
        raise SettingsError(
            f"{LEDGER_URL_VARIABLE} must be a postgresql://user@host/database URL (it starts with "
            f"{value.split(':', 1)[0][:20]!r}); unset it to use this machine's own ledger file"
        )
    return value


class Ledger:
    """What every backend offers (the engine, the runner, `status` and `report` use only this).

    `Ledger(target, identity, exclusive=True)` opens the backend the target names: a path → `SqliteLedger`, a
    `postgresql://` URL → `PgLedger`. `exclusive`: a ledger a run sends from (readers — `status`, `report` —
    pass False). `path`: what messages name (the file, or the URL with its password masked).
    """

    path: Any
    identity: TenantIdentity

    def __new__(cls, *args: Any, **kwargs: Any) -> Ledger:
        """`Ledger(target, identity, exclusive=True)` → the backend `target` names; a subclass is itself."""
        if cls is Ledger:
            cls = _backend(args[0] if args else kwargs["target"])
        return object.__new__(cls)

    @classmethod
    def open_existing(cls, target: LedgerTarget) -> Ledger:
        """Open a ledger for reading runs, whatever its tenant (for `report` and `status`)."""
        if is_url(target):
            from pipeline.submit.ledger_pg import PgLedger

            return PgLedger.open_existing(target)
        return SqliteLedger.open_existing(target)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError

    # rows
    def known(self, keys: Iterable[str]) -> dict[str, LedgerRow]:
        raise NotImplementedError

    def in_state(self, state: str) -> list[LedgerRow]:
        """Rows in one state. `sending` leaves out rows whose claim another live run still holds."""
        raise NotImplementedError

    def rows(self) -> dict[str, LedgerRow]:
        raise NotImplementedError

    def submit_sending(self, items: Iterable[tuple[str, str | None]], run_id: str) -> Future[dict[str, str]]:
        """Claim (key, reference) rows for this run as `sending`; the future is done once that is durable and
        holds the keys refused (another live run holds them, or settled them meanwhile) → a note saying by whom.
        Send only the rows granted, only then."""
        raise NotImplementedError

    def submit_record(self, updates: Iterable[Update], run_id: str) -> Future[Any]:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def mark_sending(self, items: Iterable[tuple[str, str | None]], run_id: str) -> dict[str, str]:
        """`submit_sending`, waiting until it is durable; the keys refused."""
        return self.submit_sending(items, run_id).result()

    def record(self, updates: Iterable[Update], run_id: str) -> None:
        """`submit_record`, waiting until it is durable."""
        self.submit_record(updates, run_id).result()

    # runs
    def start_run(self, run_id: str, input_path: str, mapping_path: str, input_sha256: str | None = None) -> None:
        raise NotImplementedError

    def finish_run(
        self,
        run_id: str,
        summary: dict[str, Any],
        exit_code: int,
        outcomes: Iterator[tuple[int, int, str | None, str, int | None, str | None, str | None]],
        errors: Iterator[tuple[int, str | None, str | None, str, str]],
    ) -> None:
        raise NotImplementedError

    def has_run_rows(self, run_id: str) -> bool:
        raise NotImplementedError

    def runs(self, limit: int = 20) -> list[RunRecord]:
        raise NotImplementedError

    def run(self, run_id: str) -> RunRecord | None:
        raise NotImplementedError

    def previous_run(self, input_path: str, before_run_id: str) -> RunRecord | None:
        raise NotImplementedError

    def run_rows(self, run_id: str) -> list[tuple[int, int, str | None, str, int | None, str | None, str | None]]:
        raise NotImplementedError

    def run_errors(self, run_id: str) -> list[tuple[int, str | None, str | None, str, str]]:
        raise NotImplementedError


def _backend(target: LedgerTarget) -> type[Ledger]:
    if is_url(target):
        from pipeline.submit.ledger_pg import PgLedger  # psycopg is imported only for a shared ledger

        return PgLedger
    if isinstance(target, str) and "://" in target:
        raise SettingsError(
            f"--ledger {target.split('://', 1)[0]}://… is not a ledger this version knows: give a file or a "
            "postgresql://user@host/database URL"
        )
    return SqliteLedger


def open_ledger(target: LedgerTarget, identity: TenantIdentity, exclusive: bool = True) -> Ledger:
    """The ledger `target` names (a file or a postgresql:// URL), opened for `identity`."""
    return Ledger(target, identity, exclusive)


# --- the machine-wide guard of embedded ledgers ------------------------------------------------------------------


def machine_lock_dir() -> Path:
    """A folder every user of this machine can write: the guard must see runs of other state folders and of other
    accounts (a cron job and an analyst). Windows: %ProgramData% (machine-wide; %TEMP% is per user)."""
    explicit = os.environ.get(LOCK_DIR_VARIABLE, "").strip()
    if explicit:
        return Path(explicit)
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA") or r"C:\ProgramData") / "jobimport" / "locks"
    return Path("/tmp/jobimport-locks")  # not tempfile.gettempdir(): on macOS that is per user


class TenantGuard:
    """Held while an embedded ledger sends: one run per tenant on this machine, whatever its state folder."""

    def __init__(self, identity: TenantIdentity, ledger_path: Path) -> None:
        folder = machine_lock_dir()
        try:
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                if sys.platform != "win32":
                    folder.chmod(0o1777)  # every account may add its lock, none may take another's away
        except OSError as exc:
            raise SettingsError(
                f"cannot create {folder} for the machine-wide lock of {identity} ({exc.strerror or exc}); "
                f"set {LOCK_DIR_VARIABLE} to a folder every user of this machine can write"
            ) from None
        self.note = folder / f"tenant-{identity.slug}.holder"
        self.lock = FileLock(folder / f"tenant-{identity.slug}.lock", mode=0o666)
        try:
            self.lock.acquire(timeout=0)
        except (Timeout, PermissionError):  # PermissionError: held by another account (Windows keeps it private)
            holder = ""
            with contextlib.suppress(OSError):
                holder = self.note.read_text(encoding="utf-8").strip()
            raise SettingsError(
                f"another jobimport run on this machine is importing into {identity}"
                + (f" ({holder})" if holder else "")
                + "; wait for it to finish (two ledgers sending to one tenant at once would create jobs twice), or "
                "let everyone who imports into this tenant share one ledger: --ledger postgresql://… (README: "
                "teams and several machines)"
            ) from None
        except OSError as exc:
            raise SettingsError(
                f"cannot take the machine-wide lock of {identity} in {folder} ({exc.strerror or exc}); set "
                f"{LOCK_DIR_VARIABLE} to a folder every user of this machine can write"
            ) from None
        with contextlib.suppress(OSError):  # only the message of a refused run names the holder
            fd = os.open(self.note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            with contextlib.suppress(OSError):
                os.chmod(self.note, 0o666)  # whoever runs next on this machine may overwrite it
            with os.fdopen(fd, "w", encoding="utf-8") as note:
                note.write(f"ledger {ledger_path}, process {os.getpid()}")

    def release(self) -> None:
        self.lock.release()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=10000")
    return db


def read_identity(path: Path) -> tuple[str | None, int | None]:
    """(api, customer id) recorded in a ledger file; api is None for a ledger of an earlier version."""
    if not path.is_file():
        raise SettingsError(f"no ledger at {path}; give the right file with --ledger")
    db = sqlite3.connect(f"file:{path.as_posix()}?mode=ro", uri=True)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise SettingsError(f"{path} is not a jobimport ledger ({exc}); give the right file with --ledger") from None
    finally:
        db.close()
    if "customer_id" not in meta:
        raise SettingsError(f"{path} is not a jobimport ledger (no tenant recorded); check --ledger")
    return meta.get("api"), int(meta["customer_id"])


_Job = tuple[str, Iterable[Any]]  # (sql, parameters for executemany)


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back after a failure, keeping the failure: when the disk is full (or SQLite already rolled back by
    itself), ROLLBACK fails too, and raising its error would hide SQLITE_FULL — the one that says what to do."""
    with contextlib.suppress(sqlite3.Error):
        db.execute("ROLLBACK")


def _resolve(future: Future[Any], error: BaseException | None, result: Any = None) -> None:
    """Settle a write's future. A waiter that gave up (a cancelled await) may have cancelled it: the write happened
    all the same, and the writer thread must not die of it."""
    if future.cancelled():
        return
    try:
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
    except InvalidStateError:
        pass


T = TypeVar("T")


def take_batch(jobs: queue.Queue[T | None]) -> tuple[list[T], bool]:
    """(a writer thread) Wait for the next write, then take every write queued meanwhile, to commit them together
    (group commit). Returns them and whether the None that closes the queue was met."""
    item = jobs.get()
    if item is None:
        return [], True
    batch = [item]
    while True:
        try:
            more = jobs.get_nowait()
        except queue.Empty:
            return batch, False
        if more is None:
            return batch, True
        batch.append(more)


class _Writer(threading.Thread):
    """Owns the write connection: takes every queued write, commits them together, then resolves their futures."""

    def __init__(self, db: sqlite3.Connection) -> None:
        super().__init__(name="jobimport-ledger-writer", daemon=True)
        self.db = db
        self.jobs: queue.Queue[tuple[list[_Job], Future[None]] | None] = queue.Queue()

    def run(self) -> None:
        while True:
            batch, stop = take_batch(self.jobs)
            if batch:
                self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[list[_Job], Future[None]]]) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for jobs, _ in batch:
                    for sql, params in jobs:
                        self.db.executemany(sql, params)
                self.db.execute("COMMIT")
            except BaseException:
                _rollback(self.db)  # never leave a transaction open behind a failed commit
                raise
        except Exception as exc:
            for _, future in batch:
                _resolve(future, exc)
            return
        for _, future in batch:
            _resolve(future, None)


class SqliteLedger(Ledger):
    """The embedded ledger: a SQLite file. Open with `Ledger(path, identity)`; close with `.close()` or use as a
    context manager."""

    def __init__(self, path: LedgerTarget, identity: TenantIdentity, exclusive: bool = True) -> None:
        """`exclusive`: hold the ledger's lock file, and the machine-wide lock of its tenant, for as long as this
        object is open, so two runs can never send from one ledger at once (both would see the same rows as
        unsent), nor two ledgers of one machine to one tenant. Readers pass False."""
        path = Path(path)
        self.path = path
        self.identity = identity
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock: FileLock | None = None
        self._guard: TenantGuard | None = None
        if exclusive:
            self._lock = FileLock(f"{path}.lock")
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                self._lock = None
                raise SettingsError(
                    f"another jobimport run is using the ledger {path}; wait for it to finish (two runs on one "
                    "ledger could create jobs twice)"
                ) from None
            if identity.api:
                try:
                    self._guard = TenantGuard(identity, path)
                except SettingsError:
                    self._release_lock()
                    raise
        self._read_lock = threading.Lock()
        self._writer: _Writer | None = None
        try:
            self._db = _connect(path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._reader = _connect(path)
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise SettingsError(
                f"cannot open the ledger {path}: {exc}; give another path with --ledger or restore the file"
            ) from None
        try:
            self._claim(identity)
        except SettingsError:
            self.close()
            raise
        self._writer = _Writer(self._db)
        self._writer.start()

    @classmethod
    def open_existing(cls, target: LedgerTarget) -> Ledger:
        """Open a ledger for reading runs, whatever its tenant (for `report` and `status`)."""
        api, customer_id = read_identity(Path(target))
        return SqliteLedger(Path(target), TenantIdentity(api or "", customer_id or 0), exclusive=False)

    def _claim(self, identity: TenantIdentity) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if "customer_id" not in meta:
            with self._tx():
                self._db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [("customer_id", str(identity.customer_id)), ("api", identity.api), ("schema", SCHEMA_VERSION)],
                )
            return
        if not identity.api:  # a reader (status, report): whatever is recorded
            return
        recorded_api = meta.get("api")
        if recorded_api is None:
            raise SettingsError(
                f"the ledger {self.path} was written by an earlier jobimport and does not say which API it belongs "
                f"to (customer {meta['customer_id']}); if it belongs to {identity}, adopt it with "
                f"`jobimport ledger adopt {self.path}`, otherwise leave out --ledger"
            )
        if recorded_api != identity.api or meta["customer_id"] != str(identity.customer_id):
            owner = TenantIdentity(recorded_api, int(meta["customer_id"]))
            raise SettingsError(
                f"the ledger {self.path} belongs to {owner}, not to {identity}: a ledger is never used for another "
                "API or tenant; leave out --ledger to use this tenant's own ledger, or check BIGCHANGE_BASE_URL "
                "and BIGCHANGE_CUSTOMER_ID"
            )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.jobs.put(None)
            self._writer.join()
            self._writer = None
        for name in ("_reader", "_db"):
            db = getattr(self, name, None)
            if db is not None:
                db.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._guard is not None:
            self._guard.release()
            self._guard = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, *rest: object) -> None:
            if exc_type:
                _rollback(self.db)
                return
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error:
                _rollback(self.db)  # never leave a transaction open behind a failed commit
                raise

    def _tx(self) -> SqliteLedger._Tx:
        return SqliteLedger._Tx(self._db)

    def _write(self, jobs: list[_Job]) -> Future[None]:
        future: Future[None] = Future()
        if self._writer is None:
            future.set_exception(RuntimeError("the ledger is closed"))
        else:
            self._writer.jobs.put((jobs, future))
        return future

    def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._read_lock:
            return fn(self._reader)

    # --- rows --------------------------------------------------------------------------------------------------

    _ROW_COLUMNS = "key, state, reference, job_id, fingerprint, problem, attempts, updated_at"

    @staticmethod
    def _row(found: tuple[Any, ...]) -> LedgerRow:
        key, state, reference, job_id, fingerprint, problem, attempts, updated_at = found
        return LedgerRow(
            key, state, reference, job_id, fingerprint, json.loads(problem) if problem else None, attempts, updated_at
        )

    def known(self, keys: Iterable[str]) -> dict[str, LedgerRow]:
        """The ledger rows of these keys (only those that exist): a rerun's cost is its file's, not the ledger's."""
        wanted = list(keys)

        def query(db: sqlite3.Connection) -> dict[str, LedgerRow]:
            result: dict[str, LedgerRow] = {}
            for start in range(0, len(wanted), _READ_CHUNK):
                chunk = wanted[start : start + _READ_CHUNK]
                marks = ",".join("?" * len(chunk))
                for found in db.execute(f"SELECT {self._ROW_COLUMNS} FROM rows WHERE key IN ({marks})", chunk):
                    result[found[0]] = self._row(found)
            return result

        return self._read(query)

    def in_state(self, state: str) -> list[LedgerRow]:
        """Rows in one state (through the state index: `sending` rows an interrupted run left)."""
        rows = self._read(
            lambda db: db.execute(f"SELECT {self._ROW_COLUMNS} FROM rows WHERE state = ?", (state,)).fetchall()
        )
        return [self._row(r) for r in rows]

    def rows(self) -> dict[str, LedgerRow]:
        """Every ledger row of this tenant, by key (tests and tools only: a run asks for its keys with `known`)."""
        found = self._read(lambda db: db.execute(f"SELECT {self._ROW_COLUMNS} FROM rows").fetchall())
        return {r[0]: self._row(r) for r in found}

    def submit_sending(self, items: Iterable[tuple[str, str | None]], run_id: str) -> Future[dict[str, str]]:
        """Queue (key, reference) rows as `sending`; the future is done once that is durable (send only then).
        Nothing is ever refused: the machine-wide guard lets one run send to the tenant at a time."""
        stamp = now_iso()
        sql = (
            "INSERT INTO rows (key, state, reference, attempts, run_id, updated_at) "
            "VALUES (?, 'sending', ?, 1, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET state='sending', reference=excluded.reference, "
            "attempts=rows.attempts+1, run_id=excluded.run_id, problem=NULL, updated_at=excluded.updated_at"
        )
        durable = self._write([(sql, [(key, ref, run_id, stamp) for key, ref in items])])
        refused: Future[dict[str, str]] = Future()  # nothing refused, once durable

        def settle(done: Future[None]) -> None:
            error = done.exception() if not done.cancelled() else None
            _resolve(refused, error, {} if error is None else None)

        durable.add_done_callback(settle)
        return refused

    def submit_record(self, updates: Iterable[Update], run_id: str) -> Future[Any]:
        """Queue final (or intermediate) states; a row the ledger does not hold yet is added."""
        stamp = now_iso()
        sql = (
            "INSERT INTO rows (key, state, job_id, fingerprint, problem, run_id, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET state=excluded.state, job_id=COALESCE(excluded.job_id, rows.job_id), "
            "fingerprint=COALESCE(excluded.fingerprint, rows.fingerprint), problem=excluded.problem, "
            "run_id=excluded.run_id, updated_at=excluded.updated_at"
        )
        params = [
            (u.key, u.state, u.job_id, u.fingerprint, json.dumps(u.problem) if u.problem else None, run_id, stamp)
            for u in updates
        ]
        return self._write([(sql, params)])

    def flush(self) -> None:
        """Wait until every write queued so far is durable (raises what the last of them raised)."""
        self._write([]).result()

    # --- runs --------------------------------------------------------------------------------------------------

    def start_run(self, run_id: str, input_path: str, mapping_path: str, input_sha256: str | None = None) -> None:
        sql = "INSERT INTO runs (run_id, input, input_sha256, mapping, started_at) VALUES (?, ?, ?, ?, ?)"
        self._write([(sql, [(run_id, input_path, input_sha256, mapping_path, now_iso())])]).result()

    def finish_run(
        self,
        run_id: str,
        summary: dict[str, Any],
        exit_code: int,
        outcomes: Iterator[tuple[int, int, str | None, str, int | None, str | None, str | None]],
        errors: Iterator[tuple[int, str | None, str | None, str, str]],
    ) -> None:
        """Store the run's per-row outcomes (row, origin_row, key, status, job_id, reference, problem JSON) and
        errors (row, field, column, check, message), so its reports can be rebuilt and the next run compared; then
        drop the per-row outcomes of old runs (KEEP_RUN_ROWS), keeping every run's summary."""
        jobs: list[_Job] = [
            ("DELETE FROM run_rows WHERE run_id = ?", [(run_id,)]),
            ("DELETE FROM run_errors WHERE run_id = ?", [(run_id,)]),
            (
                "INSERT INTO run_rows (run_id, row, origin_row, key, status, job_id, reference, problem) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ((run_id, *o) for o in outcomes),  # streamed to the writer: never a list of every row
            ),
            (
                'INSERT INTO run_errors (run_id, row, field, "column", "check", message) VALUES (?, ?, ?, ?, ?, ?)',
                ((run_id, *e) for e in errors),
            ),
            (
                "UPDATE runs SET finished_at=?, exit_code=?, summary=? WHERE run_id=?",
                [(now_iso(), exit_code, json.dumps(summary), run_id)],
            ),
        ]
        kept = (
            f"SELECT run_id FROM (SELECT run_id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT {KEEP_RUN_ROWS}) "
            "UNION SELECT (SELECT r2.run_id FROM runs r2 WHERE r2.input = r1.input AND r2.finished_at IS NOT NULL "
            "ORDER BY r2.started_at DESC, r2.rowid DESC LIMIT 1) FROM runs r1"
        )
        for table in ("run_rows", "run_errors"):
            jobs.append((f"DELETE FROM {table} WHERE run_id NOT IN ({kept})", [()]))
        self._write(jobs).result()

    def has_run_rows(self, run_id: str) -> bool:
        found = self._read(lambda db: db.execute("SELECT 1 FROM run_rows WHERE run_id = ? LIMIT 1", (run_id,)))
        return found.fetchone() is not None

    _RUN_COLUMNS = "run_id, input, mapping, started_at, finished_at, exit_code, summary, input_sha256"

    def runs(self, limit: int = 20) -> list[RunRecord]:
        cursor = self._read(
            lambda db: db.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?", (limit,)
            ).fetchall()
        )
        return [RunRecord(r, i, m, s, f, e, json.loads(x) if x else None, h) for r, i, m, s, f, e, x, h in cursor]

    def run(self, run_id: str) -> RunRecord | None:
        found = self._read(
            lambda db: db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        )
        if found is None:
            return None
        r, i, m, s, f, e, x, h = found
        return RunRecord(r, i, m, s, f, e, json.loads(x) if x else None, h)

    def previous_run(self, input_path: str, before_run_id: str) -> RunRecord | None:
        """The latest finished run of the same input file before `before_run_id`."""
        row = self._read(
            lambda db: db.execute(
                "SELECT run_id FROM runs WHERE input = ? AND run_id <> ? AND finished_at IS NOT NULL "
                "AND started_at <= (SELECT started_at FROM runs WHERE run_id = ?) "
                "ORDER BY started_at DESC, rowid DESC LIMIT 1",
                (input_path, before_run_id, before_run_id),
            ).fetchone()
        )
        return self.run(row[0]) if row else None

    def run_rows(self, run_id: str) -> list[tuple[int, int, str | None, str, int | None, str | None, str | None]]:
        return self._read(
            lambda db: db.execute(
                "SELECT row, origin_row, key, status, job_id, reference, problem FROM run_rows "
                "WHERE run_id = ? ORDER BY row",
                (run_id,),
            ).fetchall()
        )

    def run_errors(self, run_id: str) -> list[tuple[int, str | None, str | None, str, str]]:
        return self._read(
            lambda db: db.execute(
                'SELECT row, field, "column", "check", message FROM run_errors WHERE run_id = ? ORDER BY row',
                (run_id,),
            ).fetchall()
        )


# --- ledgers of earlier versions (kept in a report folder, with no API recorded) ---------------------------------


def legacy_ledgers(folder: Path, customer_id: int) -> list[Path]:
    """Ledgers an earlier version left in a report folder for this customer id (they record no API)."""
    found = []
    for path in sorted(folder.glob("ledger-*.sqlite")) if folder.is_dir() else []:
        try:
            api, customer = read_identity(path)
        except SettingsError:
            continue
        if api is None and customer == customer_id:
            found.append(path)
    return found


def adopt(legacy: Path, identity: TenantIdentity, target: Path) -> Path:
    """Make an earlier version's ledger the ledger of `identity`: copied to `target` with the identity written
    into it; the old file is renamed `*.adopted` so that it is never read again. Returns the new name of the old
    file."""
    api, customer = read_identity(legacy)
    if api is not None:
        raise SettingsError(f"{legacy} already belongs to {TenantIdentity(api, customer or 0)}; nothing to adopt")
    if customer != identity.customer_id:
        raise SettingsError(
            f"{legacy} is customer {customer}'s ledger, not customer {identity.customer_id}'s; set "
            "BIGCHANGE_CUSTOMER_ID to its tenant before adopting it"
        )
    if target.exists():
        raise SettingsError(
            f"{identity} already has a ledger at {target}; two ledgers cannot be merged: move that one away first "
            "if the old one should replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{legacy.as_posix()}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
        copy.execute("INSERT OR REPLACE INTO meta VALUES ('api', ?)", (identity.api,))
        copy.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        copy.commit()
    finally:
        copy.close()
        source.close()
    renamed = legacy.with_name(legacy.name + ".adopted")
    legacy.replace(renamed)
    for extra in ("-wal", "-shm"):
        Path(f"{legacy}{extra}").unlink(missing_ok=True)
    return renamed
