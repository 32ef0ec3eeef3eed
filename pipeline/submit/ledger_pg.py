"""The shared ledger: one PostgreSQL database (or schema) per tenant, for everyone who imports into it.

Same semantics as the embedded file (pipeline/submit/ledger.py): the tenant identity stored and checked on open,
a row durable as `sending` before its request leaves, group commits on a writer thread, pruning of old runs'
rows. What sharing adds:

- **Claims.** `submit_sending` claims its keys for the run in one statement (`INSERT … ON CONFLICT DO UPDATE …
  WHERE <still claimable> RETURNING key`, keys sorted so that batches never deadlock). A key is granted when it is
  new, or in a state that may be sent again (pending, failed, rejected; uncertain only if it was so before this
  run started — the user asked to resend it, rather than another run making it uncertain meanwhile), or already
  this run's `sending`. Everything else is refused and named: another run's `sending` (live or not: an expired
  `sending` row is reconciled by look-up, never re-sent), or a job created meanwhile. An atomic upsert rather
  than `SELECT … FOR UPDATE SKIP LOCKED`: rows that do not exist yet cannot be locked, and most rows of a first
  import do not; both were exactly-once in racing trials, the upsert needs one round trip.
- **Leases.** A run holds its claims under a lease (`leases`, judged with the server's `clock_timestamp()`), taken
  by `start_run` (or the run's first claim) and renewed by a heartbeat thread every third of it; the claim statement
  itself grants nothing once the run's own lease has lapsed (a paused laptop: the fence). A run killed -9 stops
  renewing: once its lease is over, its `sending` rows are returned by `in_state("sending")` and the next run
  reconciles them as today. `close` ends the lease.
- **Connections**: autocommit with explicit transactions (an implicit transaction loses writes on close and
  blocks migrations), `connect_timeout` always set, TCP keepalives, the password never printed. An unknown commit
  outcome (the connection broke during COMMIT) is settled by reconnecting and running the same idempotent batch
  again: a claim this run already holds is granted again.
- **Schema**: numbered migrations applied on open under an advisory transaction lock.
- **Drop folders**: `FolderLock`, a session advisory lock per canonical folder path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psycopg
import structlog
from psycopg import conninfo as pg_conninfo

from pipeline.errors import RunStopped, SettingsError
from pipeline.state import TenantIdentity
from pipeline.submit.ledger import (
    KEEP_RUN_ROWS,
    Ledger,
    LedgerRow,
    LedgerTarget,
    RunRecord,
    Update,
    _resolve,
    now_iso,
    read_identity,
    take_batch,
)

log = structlog.get_logger(__name__)

LEASE_VARIABLE = "JOBIMPORT_LEDGER_LEASE_S"
DEFAULT_LEASE_S = 60.0
CONNECT_TIMEOUT_S = 10
_CHUNK = 5000  # keys per statement


class SharedLedgerError(OSError):
    """The shared ledger could not be read or written during a run (the database went away): handled where a
    ledger file's I/O errors are — the run stops, its reports are still written."""


def _lock_key(text: str) -> int:
    """A signed 64-bit advisory-lock key (sha256: `hashtext` collides)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big", signed=True)


_MIGRATION_LOCK = _lock_key("jobimport ledger schema")

#: ordered migrations: (version, SQL). Never edit one that has shipped: add the next.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
        CREATE TABLE rows (
            key text PRIMARY KEY,
            state text NOT NULL,
            reference text,
            job_id bigint,
            fingerprint text,
            problem text,
            attempts integer NOT NULL DEFAULT 0,
            run_id text,
            updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX rows_sending ON rows (run_id) WHERE state = 'sending';
        CREATE INDEX rows_state ON rows (state);
        CREATE TABLE runs (
            seq bigserial,
            run_id text PRIMARY KEY,
            input text NOT NULL,
            input_sha256 text,
            mapping text NOT NULL,
            started_at text NOT NULL,
            finished_at text,
            exit_code integer,
            summary text,
            host text
        );
        CREATE TABLE run_rows (
            run_id text NOT NULL,
            "row" integer NOT NULL,
            origin_row integer NOT NULL,
            key text,
            status text NOT NULL,
            job_id bigint,
            reference text,
            problem text,
            PRIMARY KEY (run_id, "row")
        );
        CREATE TABLE run_errors (
            run_id text NOT NULL,
            "row" integer NOT NULL,
            field text,
            "column" text,
            "check" text NOT NULL,
            message text NOT NULL
        );
        CREATE INDEX run_errors_run ON run_errors (run_id);
        CREATE TABLE leases (
            run_id text PRIMARY KEY,
            host text NOT NULL,
            pid integer NOT NULL,
            started timestamptz NOT NULL DEFAULT clock_timestamp(),
            lease_until timestamptz NOT NULL
        );
        """,
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


# --- the URL -----------------------------------------------------------------------------------------------------


def parse_url(url: str) -> dict[str, Any]:
    """The connection parameters of a ledger URL; a clear error (never the URL itself: it may hold a password)."""
    try:
        params = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise SettingsError(
            "the ledger URL cannot be read as postgresql://user@host:port/database (check its quoting; a special "
            "character in the password is written percent-encoded, e.g. @ as %40)"
        ) from None
    if "@" in str(params.get("host", "")):
        raise SettingsError(
            "the ledger URL has an unencoded @ in its user or password: write it as %40 (the part after it was "
            "taken for the host name)"
        )
    return params


def display_url(url: str) -> str:
    """The URL as messages show it: user, host, port, database, sslmode — the password never."""
    params = parse_url(url)
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    shown = f"postgresql://{user}{params.get('host', '')}{port}/{params.get('dbname', '')}"
    if params.get("sslmode"):
        shown += f"?sslmode={params['sslmode']}"
    return shown


def _scrub(text: str, params: dict[str, Any]) -> str:
    """An error text with any password it might contain masked (psycopg's never showed one; belt and braces)."""
    for secret in (params.get("password"), os.environ.get("PGPASSWORD")):
        if secret:
            text = text.replace(str(secret), "***")
    return text.strip().splitlines()[0] if text.strip() else text


def connect(url: str, opening: bool = True) -> psycopg.Connection[Any]:
    """A connection in autocommit mode (every group of writes in an explicit transaction), with a connect timeout
    and keepalives unless the URL sets them. Raises RunStopped (exit 3) when unreachable; `opening`: no run has
    sent anything through this ledger yet (else it is a reconnection during a run)."""
    params = parse_url(url)
    extra: dict[str, Any] = {}
    for name, value in (
        ("connect_timeout", CONNECT_TIMEOUT_S),
        ("application_name", "jobimport"),
        ("keepalives", 1),
        ("keepalives_idle", 30),
        ("keepalives_interval", 10),
        ("keepalives_count", 3),
    ):
        if name not in params:
            extra[name] = value
    try:
        return psycopg.connect(url, autocommit=True, **extra)
    except psycopg.OperationalError as exc:
        reason = f"cannot reach the shared ledger {display_url(url)} ({_scrub(str(exc), params)})"
        if not opening:
            raise RunStopped(reason) from None
        raise RunStopped(
            f"{reason}; nothing was sent: check that the database is up and the URL, PGPASSWORD or ~/.pgpass, then "
            "run again"
        ) from None


def _migrate(conn: psycopg.Connection[Any], shown: str) -> None:
    """Bring the schema up to SCHEMA_VERSION (one process at a time: the others wait on the advisory lock). The
    usual case — already up to date — is one read, no lock and no DDL."""
    try:
        found = conn.execute("SELECT max(version) FROM jobimport_schema").fetchone()
        if found and found[0] == SCHEMA_VERSION:
            return
    except psycopg.errors.UndefinedTable:
        pass  # a new database (autocommit: nothing to roll back)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS jobimport_schema "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        found = conn.execute("SELECT coalesce(max(version), 0) FROM jobimport_schema").fetchone()
        current = int(found[0]) if found else 0
        if current > SCHEMA_VERSION:
            raise SettingsError(
                f"the shared ledger {shown} has schema version {current}, written by a newer jobimport (this one "
                f"knows {SCHEMA_VERSION}): upgrade jobimport on this machine"
            )
        for version, sql in MIGRATIONS:
            if version > current:
                conn.execute(sql.encode("utf-8"))
                conn.execute("INSERT INTO jobimport_schema (version) VALUES (%s)", (version,))


def _lease_seconds() -> float:
    text = os.environ.get(LEASE_VARIABLE, "").strip()
    try:
        seconds = float(text) if text else DEFAULT_LEASE_S
    except ValueError:
        seconds = -1.0
    if not 0.5 <= seconds <= 3600:
        raise SettingsError(f"{LEASE_VARIABLE} must be a number of seconds from 0.5 to 3600, not {text!r}")
    return seconds


def _iso(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


_ROW_COLUMNS = f"r.key, r.state, r.reference, r.job_id, r.fingerprint, r.problem, r.attempts, {_iso('r.updated_at')}"
_RUN_COLUMNS = "run_id, input, mapping, started_at, finished_at, exit_code, summary, input_sha256"
_FINAL = ("created", "already_created")


def _row(found: tuple[Any, ...]) -> LedgerRow:
    key, state, reference, job_id, fingerprint, problem, attempts, updated_at = found
    return LedgerRow(
        key, state, reference, job_id, fingerprint, json.loads(problem) if problem else None, attempts, updated_at
    )


def _run_record(found: tuple[Any, ...]) -> RunRecord:
    r, i, m, s, f, e, x, h = found
    return RunRecord(r, i, m, s, f, e, json.loads(x) if x else None, h)


_Op = Callable[[psycopg.Connection[Any]], Any]
_Item = tuple[_Op, Future[Any], bool, bool]  # (operation, its future, replayable, atomic: one write statement)


class _Writer(threading.Thread):
    """Owns the write connection: runs every queued operation in one transaction (a group commit), then resolves
    their futures with what each returned. A broken connection (the commit's outcome unknown) is replaced and the
    batch run once more: every operation is an idempotent upsert, re-reading what the first attempt did."""

    def __init__(self, ledger: PgLedger) -> None:
        super().__init__(name="jobimport-ledger-writer", daemon=True)
        self.ledger = ledger
        self.conn: psycopg.Connection[Any] | None = None  # connected by the thread, while the opener reads
        self.connected = threading.Event()
        self.error: BaseException | None = None
        self.jobs: queue.Queue[_Item | None] = queue.Queue()

    def ready(self) -> None:
        """Wait for the thread's connection; raise what connecting raised."""
        self.connected.wait()
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        try:
            self.conn = connect(self.ledger.url)
        except BaseException as exc:
            self.error = exc
            return
        finally:
            self.connected.set()
        while True:
            batch, stop = take_batch(self.jobs)
            if batch:
                self._commit(batch)
            if stop:
                break
        if self.conn is not None:
            self.conn.close()

    def _once(self, batch: list[_Item]) -> list[Any]:
        assert self.conn is not None
        if len(batch) == 1 and batch[0][3]:  # one statement: atomic and durable by itself (autocommit)
            return [batch[0][0](self.conn)]
        with self.conn.transaction():
            return [op(self.conn) for op, _, _, _ in batch]

    def _commit(self, batch: list[_Item]) -> None:
        try:
            try:
                results = self._once(batch)
            except (psycopg.OperationalError, psycopg.errors.DeadlockDetected) as exc:
                if not all(replayable for _, _, replayable, _ in batch):
                    raise
                log.warning("ledger_commit_retried", error=type(exc).__name__)
                if self.conn is None or self.conn.broken or self.conn.closed:
                    self.conn = connect(self.ledger.url, opening=False)
                results = self._once(batch)
        except Exception as exc:
            error: Exception = exc
            if isinstance(exc, (psycopg.Error, RunStopped)):
                error = SharedLedgerError(_scrub(str(exc), self.ledger.params))
            for _, future, _, _ in batch:
                _resolve(future, error)
            return
        for (_, future, _, _), result in zip(batch, results, strict=True):
            _resolve(future, None, result)


class _Heartbeat(threading.Thread):
    """Renews this ledger's leases every third of a lease; a lease found lapsed is marked lost (claims refused)."""

    def __init__(self, ledger: PgLedger) -> None:
        super().__init__(name="jobimport-ledger-lease", daemon=True)
        self.ledger = ledger
        self.stopped = threading.Event()
        self.conn: psycopg.Connection[Any] | None = None

    def run(self) -> None:
        while not self.stopped.wait(self.ledger.lease_s / 3):
            runs = self.ledger.leased()
            if not runs:
                continue
            try:
                if self.conn is None or self.conn.closed or self.conn.broken:
                    self.conn = connect(self.ledger.url, opening=False)
                kept = {
                    row[0]
                    for row in self.conn.execute(
                        "UPDATE leases SET lease_until = clock_timestamp() + make_interval(secs => %s) "
                        "WHERE run_id = ANY(%s) AND lease_until > clock_timestamp() RETURNING run_id",
                        (self.ledger.lease_s, runs),
                    )
                }
                for lost in set(runs) - kept:
                    self.ledger.lose(lost)
            except (psycopg.Error, RunStopped) as exc:
                log.warning("ledger_lease_not_renewed", error=type(exc).__name__)
        if self.conn is not None:
            self.conn.close()


class PgLedger(Ledger):
    """A shared ledger in PostgreSQL. `PgLedger(url, identity)`, or `Ledger(url, identity)`."""

    def __init__(self, url: LedgerTarget, identity: TenantIdentity, exclusive: bool = True) -> None:
        self.url = str(url)
        self.params = parse_url(self.url)
        self.path = display_url(self.url)  # what messages name: never the password
        self.identity = identity
        self.lease_s = _lease_seconds()
        self.host = socket.gethostname()
        self._leases: dict[str, bool] = {}  # run id → lease still held
        self._lease_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer: _Writer | None = None
        self._heartbeat: _Heartbeat | None = None
        self._reader = connect(self.url)
        try:
            if exclusive:  # its connection is made meanwhile
                self._writer = _Writer(self)
                self._writer.start()
            _migrate(self._reader, self.path)
            self._check_identity(identity)
            if self._writer is not None:
                self._writer.ready()
                self._heartbeat = _Heartbeat(self)
                self._heartbeat.start()
        except psycopg.Error as exc:
            self.close()
            raise RunStopped(
                f"cannot use the shared ledger {self.path} ({_scrub(str(exc), self.params)}); nothing was sent: "
                "check that the role may create tables in that database, then run again"
            ) from None
        except BaseException:
            self.close()
            raise

    @classmethod
    def open_existing(cls, target: LedgerTarget) -> Ledger:
        return cls(target, TenantIdentity("", 0), exclusive=False)

    def _check_identity(self, identity: TenantIdentity) -> None:
        meta = dict(self._reader.execute("SELECT key, value FROM meta").fetchall())
        if "customer_id" not in meta:
            if not identity.api:
                raise SettingsError(f"the shared ledger {self.path} holds no tenant yet: no run has used it")
            with self._reader.transaction():
                self._reader.execute(
                    "INSERT INTO meta VALUES ('customer_id', %s), ('api', %s), ('schema', %s) ON CONFLICT DO NOTHING",
                    (str(identity.customer_id), identity.api, str(SCHEMA_VERSION)),
                )
            meta = dict(self._reader.execute("SELECT key, value FROM meta").fetchall())  # another may have won
        if not identity.api:
            return
        if meta["api"] != identity.api or meta["customer_id"] != str(identity.customer_id):
            owner = TenantIdentity(meta["api"], int(meta["customer_id"]))
            raise SettingsError(
                f"the shared ledger {self.path} belongs to {owner}, not to {identity}: a ledger is never used for "
                "another API or tenant; give each tenant its own database (or schema: "
                "?options=-csearch_path%3Dname in the URL), or check BIGCHANGE_BASE_URL and BIGCHANGE_CUSTOMER_ID"
            )

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stopped.set()
            self._heartbeat.join()
            self._heartbeat = None
        if self._writer is not None:
            runs = self.leased(everything=True)
            if runs:  # the run is over: its leftover `sending` rows are for the next run to reconcile
                self._writer.jobs.put(
                    (lambda c: c.execute("DELETE FROM leases WHERE run_id = ANY(%s)", (runs,)), Future(), True, True)
                )
            self._writer.jobs.put(None)
            self._writer.join()
            self._writer = None
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.close()

    # --- leases ------------------------------------------------------------------------------------------------

    def leased(self, everything: bool = False) -> list[str]:
        with self._lease_lock:
            return [run for run, held in self._leases.items() if held or everything]

    def lose(self, run_id: str) -> None:
        with self._lease_lock:
            self._leases[run_id] = False
        log.warning("ledger_lease_lost", run_id=run_id)

    def _take_lease(self, conn: psycopg.Connection[Any], run_id: str) -> bool:
        """Take or renew the run's lease; False when it had lapsed (another run may be reconciling its rows)."""
        with self._lease_lock:
            if self._leases.get(run_id) is False:
                return False
            self._leases[run_id] = True
        found = conn.execute(
            "INSERT INTO leases (run_id, host, pid, lease_until) "
            "VALUES (%s, %s, %s, clock_timestamp() + make_interval(secs => %s)) "
            "ON CONFLICT (run_id) DO UPDATE SET lease_until = excluded.lease_until "
            "WHERE leases.lease_until > clock_timestamp() RETURNING run_id",
            (run_id, self.host, os.getpid(), self.lease_s),
        ).fetchone()
        if found is None:
            self.lose(run_id)
            return False
        return True

    # --- plumbing ----------------------------------------------------------------------------------------------

    def _write(self, op: _Op, replayable: bool = True, atomic: bool = False) -> Future[Any]:
        """Queue `op` for the writer (`atomic`: it makes one write statement, so alone it needs no transaction)."""
        future: Future[Any] = Future()
        if self._writer is None:
            future.set_exception(RuntimeError("the ledger is closed (or open for reading only)"))
        else:
            self._writer.jobs.put((op, future, replayable, atomic))
        return future

    def _read(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._read_lock:
            try:
                try:
                    return self._reader.execute(sql, params).fetchall()
                except psycopg.OperationalError:
                    if not (self._reader.broken or self._reader.closed):
                        raise
                    self._reader = connect(self.url, opening=False)  # the server restarted: one more try
                    return self._reader.execute(sql, params).fetchall()
            except (psycopg.Error, RunStopped) as exc:
                raise SharedLedgerError(_scrub(str(exc), self.params)) from None

    # --- rows --------------------------------------------------------------------------------------------------

    def known(self, keys: Iterable[str]) -> dict[str, LedgerRow]:
        wanted = list(keys)
        result: dict[str, LedgerRow] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            for found in self._read(f"SELECT {_ROW_COLUMNS} FROM rows r WHERE r.key = ANY(%s)", (chunk,)):
                result[found[0]] = _row(found)
        return result

    def in_state(self, state: str) -> list[LedgerRow]:
        """Rows in one state; `sending` rows under a live lease are another run's, not left over: left out."""
        found = self._read(
            f"SELECT {_ROW_COLUMNS} FROM rows r WHERE r.state = %s AND NOT (r.state = 'sending' AND EXISTS "
            "(SELECT 1 FROM leases l WHERE l.run_id = r.run_id AND l.lease_until > clock_timestamp())) "
            "ORDER BY r.key",
            (state,),
        )
        return [_row(r) for r in found]

    def rows(self) -> dict[str, LedgerRow]:
        return {r[0]: _row(r) for r in self._read(f"SELECT {_ROW_COLUMNS} FROM rows r")}

    def submit_sending(self, items: Iterable[tuple[str, str | None]], run_id: str) -> Future[dict[str, str]]:
        wanted = dict(sorted(dict(items).items()))  # sorted: two runs' batches never wait on each other in a circle

        lapsed = f"not sent: run {run_id}'s lease on the shared ledger lapsed (paused, or the database lost)"

        def claim(conn: psycopg.Connection[Any]) -> dict[str, str]:
            if not wanted:
                return {}
            with self._lease_lock:
                held = self._leases.get(run_id)
            if held is False or (held is None and not self._take_lease(conn, run_id)):
                return dict.fromkeys(wanted, lapsed)
            keys, refs = list(wanted), list(wanted.values())
            granted: set[str] = set()
            for start in range(0, len(keys), _CHUNK):
                granted.update(
                    row[0]
                    for row in conn.execute(
                        "INSERT INTO rows AS r (key, state, reference, attempts, run_id, updated_at) "
                        "SELECT k, 'sending', ref, 1, %(run)s, clock_timestamp() "
                        "FROM unnest(%(keys)s::text[], %(refs)s::text[]) AS t(k, ref) "
                        # the fence: nothing is claimed once this run's lease is over (renewed by the heartbeat)
                        "WHERE EXISTS (SELECT 1 FROM leases WHERE run_id = %(run)s "
                        "AND lease_until > clock_timestamp()) ORDER BY k "
                        "ON CONFLICT (key) DO UPDATE SET state = 'sending', reference = excluded.reference, "
                        "attempts = r.attempts + 1, run_id = excluded.run_id, problem = NULL, "
                        "updated_at = excluded.updated_at "
                        "WHERE (r.state = 'sending' AND r.run_id = excluded.run_id) "
                        "OR r.state IN ('pending', 'failed', 'rejected') "
                        "OR (r.state = 'uncertain' AND r.updated_at < "
                        "(SELECT started FROM leases WHERE run_id = excluded.run_id)) "
                        "RETURNING r.key",
                        {"run": run_id, "keys": keys[start : start + _CHUNK], "refs": refs[start : start + _CHUNK]},
                    )
                )
            refused = [key for key in keys if key not in granted]
            if not refused:
                return {}
            if not granted and not self._lease_live(conn, run_id):
                self.lose(run_id)
                return dict.fromkeys(wanted, lapsed)
            return self._holders(conn, refused)

        return self._write(claim, atomic=len(wanted) <= _CHUNK)

    def _lease_live(self, conn: psycopg.Connection[Any], run_id: str) -> bool:
        found = conn.execute(
            "SELECT lease_until > clock_timestamp() FROM leases WHERE run_id = %s", (run_id,)
        ).fetchone()
        return bool(found and found[0])

    def _holders(self, conn: psycopg.Connection[Any], keys: list[str]) -> dict[str, str]:
        """Why each refused key was refused, for its `note`."""
        notes: dict[str, str] = {}
        for key, state, run, host, live in conn.execute(
            "SELECT r.key, r.state, r.run_id, l.host, l.lease_until > clock_timestamp() "
            "FROM rows r LEFT JOIN leases l ON l.run_id = r.run_id WHERE r.key = ANY(%s)",
            (keys,),
        ):
            where = f" on host {host}" if host else ""
            if state == "sending" and live:
                notes[key] = f"being imported by run {run}{where}"
            elif state == "sending":
                notes[key] = f"left unanswered by run {run}{where}; the next run looks it up before sending"
            elif state in _FINAL:
                notes[key] = f"created meanwhile by run {run}{where}"
            else:
                notes[key] = f"marked {state} meanwhile by run {run}{where}; run again to settle it"
        for key in keys:  # never fewer notes than refusals: a key without one would be sent
            notes.setdefault(key, "claimed by another run")
        return notes

    def submit_record(self, updates: Iterable[Update], run_id: str) -> Future[Any]:
        latest = {u.key: u for u in updates}  # one statement may not touch a row twice: the last update wins
        ordered = [latest[k] for k in sorted(latest)]

        def record(conn: psycopg.Connection[Any]) -> None:
            for start in range(0, len(ordered), _CHUNK):
                part = ordered[start : start + _CHUNK]
                conn.execute(
                    "INSERT INTO rows AS r (key, state, job_id, fingerprint, problem, run_id, updated_at) "
                    "SELECT k, s, j, f, p, %(run)s, clock_timestamp() FROM unnest(%(k)s::text[], %(s)s::text[], "
                    "%(j)s::bigint[], %(f)s::text[], %(p)s::text[]) AS t(k, s, j, f, p) ORDER BY k "
                    "ON CONFLICT (key) DO UPDATE SET state = excluded.state, "
                    "job_id = COALESCE(excluded.job_id, r.job_id), "
                    "fingerprint = COALESCE(excluded.fingerprint, r.fingerprint), problem = excluded.problem, "
                    "run_id = excluded.run_id, updated_at = excluded.updated_at "
                    # a job created is never turned back into something to send, and another live run's claim is
                    # never undone (e.g. by a take-back of a row whose claim was refused)
                    "WHERE excluded.state IN ('created', 'already_created') OR (r.state NOT IN ('created', "
                    "'already_created') AND NOT (r.state = 'sending' AND r.run_id IS DISTINCT FROM excluded.run_id "
                    "AND EXISTS (SELECT 1 FROM leases l WHERE l.run_id = r.run_id "
                    "AND l.lease_until > clock_timestamp())))",
                    {
                        "run": run_id,
                        "k": [u.key for u in part],
                        "s": [u.state for u in part],
                        "j": [u.job_id for u in part],
                        "f": [u.fingerprint for u in part],
                        "p": [json.dumps(u.problem) if u.problem else None for u in part],
                    },
                )

        return self._write(record, atomic=len(ordered) <= _CHUNK)

    def flush(self) -> None:
        self._write(lambda conn: None, atomic=True).result()

    # --- runs --------------------------------------------------------------------------------------------------

    def start_run(self, run_id: str, input_path: str, mapping_path: str, input_sha256: str | None = None) -> None:
        def start(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "INSERT INTO runs (run_id, input, input_sha256, mapping, started_at, host) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING",
                (run_id, input_path, input_sha256, mapping_path, now_iso(), self.host),
            )
            self._take_lease(conn, run_id)

        self._write(start).result()

    def finish_run(
        self,
        run_id: str,
        summary: dict[str, Any],
        exit_code: int,
        outcomes: Iterator[tuple[int, int, str | None, str, int | None, str | None, str | None]],
        errors: Iterator[tuple[int, str | None, str | None, str, str]],
    ) -> None:
        kept = (
            "SELECT run_id FROM (SELECT run_id FROM runs ORDER BY started_at DESC, seq DESC "
            f"LIMIT {KEEP_RUN_ROWS}) latest "
            "UNION SELECT (SELECT r2.run_id FROM runs r2 WHERE r2.input = r1.input AND r2.finished_at IS NOT NULL "
            "ORDER BY r2.started_at DESC, r2.seq DESC LIMIT 1) FROM runs r1"
        )

        def finish(conn: psycopg.Connection[Any]) -> None:
            conn.execute("DELETE FROM run_rows WHERE run_id = %s", (run_id,))
            conn.execute("DELETE FROM run_errors WHERE run_id = %s", (run_id,))
            with conn.cursor() as cur:
                columns = 'run_id, "row", origin_row, key, status, job_id, reference, problem'
                with cur.copy(f"COPY run_rows ({columns}) FROM STDIN") as copy:  # streamed: never a list
                    for outcome in outcomes:
                        copy.write_row((run_id, *outcome))
                columns = 'run_id, "row", field, "column", "check", message'
                with cur.copy(f"COPY run_errors ({columns}) FROM STDIN") as copy:
                    for error in errors:
                        copy.write_row((run_id, *error))
            conn.execute(
                "UPDATE runs SET finished_at = %s, exit_code = %s, summary = %s WHERE run_id = %s",
                (now_iso(), exit_code, json.dumps(summary), run_id),
            )
            for table in ("run_rows", "run_errors"):
                conn.execute(f"DELETE FROM {table} WHERE run_id NOT IN ({kept})")

        self._write(finish, replayable=False).result()  # the iterators cannot be read twice

    def has_run_rows(self, run_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM run_rows WHERE run_id = %s LIMIT 1", (run_id,)))

    def runs(self, limit: int = 20) -> list[RunRecord]:
        found = self._read(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started_at DESC, run_id DESC LIMIT %s", (limit,))
        return [_run_record(r) for r in found]

    def run(self, run_id: str) -> RunRecord | None:
        found = self._read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = %s", (run_id,))
        return _run_record(found[0]) if found else None

    def previous_run(self, input_path: str, before_run_id: str) -> RunRecord | None:
        found = self._read(
            "SELECT run_id FROM runs WHERE input = %s AND run_id <> %s AND finished_at IS NOT NULL "
            "AND started_at <= (SELECT started_at FROM runs WHERE run_id = %s) "
            "ORDER BY started_at DESC, seq DESC LIMIT 1",
            (input_path, before_run_id, before_run_id),
        )
        return self.run(found[0][0]) if found else None

    def run_rows(self, run_id: str) -> list[tuple[int, int, str | None, str, int | None, str | None, str | None]]:
        return self._read(
            'SELECT "row", origin_row, key, status, job_id, reference, problem FROM run_rows '
            'WHERE run_id = %s ORDER BY "row"',
            (run_id,),
        )

    def run_errors(self, run_id: str) -> list[tuple[int, str | None, str | None, str, str]]:
        return self._read(
            'SELECT "row", field, "column", "check", message FROM run_errors WHERE run_id = %s ORDER BY "row"',
            (run_id,),
        )


# --- moving an embedded ledger in ---------------------------------------------------------------------------------


def migrate_sqlite(sqlite_path: Path, url: str) -> tuple[TenantIdentity, int, int, int]:
    """`jobimport ledger migrate FILE URL`: copy an embedded ledger's rows and runs into a shared one of the same
    tenant. Idempotent: a key or run the shared ledger already has is kept as it is there. Returns (identity,
    rows copied, rows already there, runs copied)."""
    import sqlite3

    api, customer = read_identity(sqlite_path)
    if api is None:
        raise SettingsError(
            f"{sqlite_path} was written by an earlier jobimport and does not say which API it belongs to: adopt it "
            "first (`jobimport ledger adopt`), then migrate the adopted ledger"
        )
    identity = TenantIdentity(api, customer or 0)
    source = sqlite3.connect(f"file:{sqlite_path.as_posix()}?mode=ro", uri=True)
    target = PgLedger(url, identity, exclusive=False)  # checks (or records) the tenant identity
    copied = present = runs_copied = 0
    try:
        conn = target._reader
        with conn.transaction():
            rows = source.execute(
                "SELECT key, state, reference, job_id, fingerprint, problem, attempts, run_id, updated_at FROM rows"
            )
            while part := rows.fetchmany(_CHUNK):
                columns = list(zip(*part, strict=True))
                found = conn.execute(
                    "INSERT INTO rows (key, state, reference, job_id, fingerprint, problem, attempts, run_id, "
                    "updated_at) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], "
                    "%s::text[], %s::int[], %s::text[], %s::timestamptz[]) ON CONFLICT (key) DO NOTHING "
                    "RETURNING 1",
                    [list(c) for c in columns],
                ).fetchall()
                copied += len(found)
                present += len(part) - len(found)
            have = {r[0] for r in conn.execute("SELECT run_id FROM runs")}
            runs = source.execute(
                "SELECT run_id, input, input_sha256, mapping, started_at, finished_at, exit_code, summary FROM runs "
                "ORDER BY started_at, rowid"
            ).fetchall()
            for run in runs:
                if run[0] in have:
                    continue
                runs_copied += 1
                conn.execute(
                    "INSERT INTO runs (run_id, input, input_sha256, mapping, started_at, finished_at, exit_code, "
                    "summary) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    run,
                )
                with conn.cursor() as cur:
                    with cur.copy(
                        'COPY run_rows (run_id, "row", origin_row, key, status, job_id, reference, problem) FROM STDIN'
                    ) as copy:
                        for row in source.execute(
                            "SELECT run_id, row, origin_row, key, status, job_id, reference, problem FROM run_rows "
                            "WHERE run_id = ?",
                            (run[0],),
                        ):
                            copy.write_row(row)
                    with cur.copy('COPY run_errors (run_id, "row", field, "column", "check", message) FROM STDIN') as c:
                        for row in source.execute(
                            'SELECT run_id, row, field, "column", "check", message FROM run_errors WHERE run_id = ?',
                            (run[0],),
                        ):
                            c.write_row(row)
    except psycopg.Error as exc:
        raise RunStopped(
            f"could not copy {sqlite_path} into {target.path} ({_scrub(str(exc), target.params)}); nothing was "
            "copied (one transaction): run it again"
        ) from None
    finally:
        source.close()
        target.close()
    return identity, copied, present, runs_copied


# --- drop folders -------------------------------------------------------------------------------------------------


def canonical_folder(folder: Path) -> str:
    """The same text for every spelling of one folder (trailing separator, `..`, case on Windows)."""
    text = str(folder.expanduser().resolve()).rstrip("/\\") or "/"
    return text.lower() if sys.platform == "win32" else text


class FolderBusyElsewhere(Exception):
    """Another process (on any machine sharing the ledger) holds the folder's advisory lock."""


class FolderLock:
    """One drop pass at a time per folder, across machines: a session advisory lock on the shared ledger's
    database, held on its own connection for as long as the pass runs (a killed holder's session ends with it)."""

    def __init__(self, url: str, folder: Path) -> None:
        self.key = _lock_key(f"jobimport drop folder\n{canonical_folder(folder)}")
        self.conn: psycopg.Connection[Any] | None = connect(url)
        found = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if not (found and found[0]):
            self.conn.close()
            self.conn = None
            raise FolderBusyElsewhere(display_url(url))

    def release(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):  # the session ends below, and the lock with it
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self.conn.close()
            self.conn = None
