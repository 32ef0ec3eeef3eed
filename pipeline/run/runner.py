"""The import use case: read → map → validate → plan → (ledger + submit) → reports, with one outcome per row.

`prepare` runs the offline stages (everything a dry run does); `run_import` adds the ledger and the API and
always ends by writing the reports, whatever stopped the run. The CLI calls these and renders the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hashlib
import json
import secrets
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import structlog

from pipeline import __version__, logs
from pipeline.errors import InputFileError, Interrupted, RunStopped, SettingsError
from pipeline.mapping import MappedTable, Mapping, apply_mapping, bind_tenant, load_mapping
from pipeline.model import ERROR_SCHEMA, ORIGIN_ROW, ROW, SUCCESS, CellError, RawTable, Status, errors_frame
from pipeline.plan import Plan, plan
from pipeline.read import CSV_SUFFIXES, read_table
from pipeline.report import ReportPaths, ReportWriteError, RunSummary, write_reports
from pipeline.report.field_errors import problem_errors
from pipeline.run.progress import RunProgress
from pipeline.settings import Settings, load_settings
from pipeline.state import TenantIdentity, default_ledger_path
from pipeline.submit import PlannedRow, SubmitOptions, SubmitStats, Submitter
from pipeline.submit.client import ApiClient, ClientOptions
from pipeline.submit.ledger import Ledger, legacy_ledgers, now_iso
from pipeline.submit.outcomes import Outcomes
from pipeline.tenant.preflight import check_rows, tenant_for
from pipeline.validate import Validation, validate

log = structlog.get_logger(__name__)

OUTCOME_SCHEMA: dict[str, pl.DataType] = {
    ROW: pl.Int64(),
    ORIGIN_ROW: pl.Int64(),
    "status": pl.String(),
    "job_id": pl.Int64(),
    "reference": pl.String(),
    "problem_status": pl.Int64(),
    "problem_title": pl.String(),
    "problem_detail": pl.String(),
    "problem_type": pl.String(),
    "note": pl.String(),
}


@dataclass
class RunOptions:
    input: Path
    mapping: Path
    report_root: Path = Path("reports")
    dry_run: bool = False
    sheet: str | None = None
    header_row: int | None = None
    encoding: str | None = None
    delimiter: str | None = None
    env_file: Path | None = None
    ledger: Path | None = None  # default: the tenant's ledger in the state home
    state_dir: Path | None = None  # default: $JOBIMPORT_HOME, else the user's state folder
    submit: SubmitOptions = field(default_factory=SubmitOptions)
    transport: str = "aiohttp"
    read_timeout_s: float = 30.0
    settings: Settings | None = None  # given directly (demo, tests) instead of the environment
    online: bool = False  # use the tenant's reference data (always when the mapping has "bigchange:" look-ups)
    preflight: bool = True  # check rows against the tenant's rules (real runs: best effort; dry runs: with online)
    refdata_max_age_s: float = 3600.0  # reuse cached reference data younger than this, else fetch it


@dataclass
class Prepared:
    """Everything a dry run knows: the rows, their errors, and the payloads of the valid ones."""

    raw: RawTable
    mapping: Mapping
    mapped: MappedTable
    validation: Validation
    plan: Plan  # ROW, ORIGIN_ROW, key, reference per valid row; payload texts made a slice at a time
    read_s: float
    prepare_s: float
    preflight_caught: int | None = None  # rows the pre-flight against the tenant made invalid (None: no pre-flight)
    preflight_note: str | None = None  # why a real run's pre-flight was skipped
    refdata_when: str = ""  # " (fetched …)": when the reference data used was fetched


@dataclass
class RunResult:
    run_id: str
    report_dir: Path
    summary: RunSummary
    paths: ReportPaths
    counts: dict[str, int]
    exit_code: int
    stop_reason: str | None = None


def new_run_id() -> str:
    """Sortable to the millisecond (runs of one second stay in order), plus a random suffix against clashes."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{secrets.token_hex(2)}"


def prepare(options: RunOptions) -> Prepared:
    """Read, map, validate and plan. Raises InputFileError / MappingError (exit 2) for unusable input."""
    mapping = load_mapping(options.mapping)
    settings = options.settings or (lambda: load_settings(options.env_file))
    best_effort = options.preflight and not options.dry_run
    source, skipped = tenant_for(
        mapping, online=options.online, best_effort=best_effort, settings=settings, max_age_s=options.refdata_max_age_s
    )
    mapping = bind_tenant(mapping, source) if source is not None else mapping
    suffix = Path(options.input).suffix.lower()
    if options.sheet is not None and suffix in CSV_SUFFIXES:  # (a mapping's sheet is for its workbooks: ignored)
        raise InputFileError(
            f"{options.input}: --sheet '{options.sheet}' names a workbook sheet, but this is a {suffix} file "
            "(one table, no sheets); leave --sheet out"
        )
    started = time.perf_counter()
    raw = read_table(
        options.input,
        sheet=options.sheet or mapping.sheet,
        header_row=options.header_row or mapping.header_row,
        encoding=options.encoding or mapping.encoding,
        delimiter=options.delimiter or mapping.delimiter,
    )
    for warning in raw.warnings:  # (e.g. the workbook is open in Excel; number formats not reproduced)
        print(f"jobimport: warning: {warning}", file=sys.stderr)
    if raw.is_corrections and raw.kind == "csv":
        raw = restore_neutralised(raw)
    read_s = time.perf_counter() - started
    mapped = apply_mapping(raw, mapping)
    validation = validate(mapped, mapping)
    checked = check_rows(validation, mapping, source) if source is not None and options.preflight else None
    validation = checked.validation if checked is not None else validation
    planned = plan(validation.frame, mapping, validation.valid_mask)
    caught = checked.caught if checked is not None else None
    when = f" (fetched {source.data.fetched_at_iso})" if source is not None else ""
    return Prepared(
        raw, mapping, mapped, validation, planned, read_s, time.perf_counter() - started, caught, skipped, when
    )


def restore_neutralised(raw: RawTable) -> RawTable:
    """Our corrections.csv prefixes risky cells with an apostrophe; reading it back removes exactly that."""
    from pipeline.report.cellsafety import restore_csv_cell

    frame = raw.frame.with_columns(
        pl.col(name).map_elements(restore_csv_cell, return_dtype=pl.String) for name in raw.columns
    )
    return RawTable(  # (not `trimmed`: a restored cell can start with a tab again)
        frame=frame,
        columns=raw.columns,
        source=raw.source,
        kind=raw.kind,
        sheet=raw.sheet,
        encoding=raw.encoding,
        delimiter=raw.delimiter,
        is_corrections=raw.is_corrections,
        cell_errors=raw.cell_errors,
        unrendered=raw.unrendered,
        warnings=raw.warnings,
    )


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep what the read and plan left in memory out of the garbage collector's full passes while requests are
    in flight: each full pass walks every live object and holds the event loop meanwhile (measured: up to 90 ms
    stalls on a 1M-row run). Unfrozen afterwards, so a long-lived `drop --watch` process can still collect it."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_payloads(path: Path, planned: Plan) -> None:
    """payloads.jsonl: one line per valid row, {"row", "key", "payload"} with the payload exactly as sent; made and
    written a slice at a time, so the lines are never all in memory at once."""
    # pl.format would read the literal braces as column names: build the line by concatenation.
    line = pl.concat_str(
        pl.lit('{"row":'),
        pl.col(ORIGIN_ROW).cast(pl.String),
        pl.lit(',"key":'),
        _json_string(pl.col("key")),
        pl.lit(',"payload":'),
        pl.col("payload"),
        pl.lit("}\n"),
    )
    with path.open("w", encoding="utf-8", newline="") as handle:
        for offset in range(0, planned.height, PLAN_SLICE * 64):
            handle.write("".join(planned.with_payloads(offset, PLAN_SLICE * 64).select(line).to_series()))


def _json_string(expr: pl.Expr) -> pl.Expr:
    return pl.struct(expr.alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}")


#: planned rows handed to the submitter per slice (the only per-row objects a run holds at a time)
PLAN_SLICE = 1024


def planned_batches(planned: Plan, size: int = PLAN_SLICE) -> Iterator[list[PlannedRow]]:
    """The plan as slices of PlannedRow (index = position in the plan, where its outcome is kept), each slice's
    payload texts made when the slice is reached."""
    for offset in range(0, planned.height, size):
        chunk = planned.with_payloads(offset, size).select(ROW, "key", "reference", "payload")
        yield [PlannedRow(offset + i, *values) for i, values in enumerate(chunk.iter_rows())]


def _outcomes(prepared: Prepared, outcomes: Outcomes | None, dry_run: bool) -> pl.DataFrame:
    """One outcome per source row, in source order."""
    base = prepared.mapped.frame.select(ROW, ORIGIN_ROW, "reference")
    planned = prepared.plan.rows.select(ROW)
    if outcomes is not None:
        planned = pl.concat([planned, outcomes.frame()], how="horizontal")
    else:
        status = Status.VALID if dry_run else Status.PENDING
        planned = planned.with_columns(pl.lit(str(status)).alias("status"))
    frame = base.join(planned, on=ROW, how="left", maintain_order="left")
    frame = frame.with_columns(pl.col("status").fill_null(str(Status.INVALID)))
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in OUTCOME_SCHEMA.items()
    )


def _notes(prepared: Prepared, stats: SubmitStats | None = None) -> list[str]:
    raw = prepared.raw
    notes = []
    if raw.kind == "csv" and raw.encoding not in (None, "utf-8", "utf-8-sig", "ascii"):
        notes.append(f"{raw.source.name} is not UTF-8: it was read as {raw.encoding}.")
    if raw.is_corrections:
        notes.append("The input is a corrections file: its `row` column gives each row's original source row.")
    if stats is not None and stats.found_before_send:
        notes.append(
            f"{stats.found_before_send} row(s) were found in BigChange by reference before sending (same job type "
            "and contact): reported already_created with the existing job's id, not sent."
        )
    if stats is not None and stats.conflicts:
        notes.append(
            f"{stats.conflicts} row(s) have a reference BigChange already uses for a job of another type or contact: "
            "rejected, not sent."
        )
    if prepared.preflight_caught is not None:
        n = prepared.preflight_caught
        notes.append(
            f"Pre-flight against the tenant's reference data{prepared.refdata_when}: {n} row{'s' if n != 1 else ''} "
            "caught before sending (job type, order number, contact, person or custom field the API would refuse)."
        )
    if prepared.preflight_note:
        notes.append(prepared.preflight_note)
    return notes


#: What a row-level message says for sent rows that did not end created, when the problem gives no detail.
NEXT_STEP = {
    Status.PENDING: "not sent: the run stopped before this row; run the same command again to send it",
    Status.FAILED: "the API kept failing for this row (retry budget spent); run again to send it",
    Status.UNCERTAIN: "sent, but the answer was lost; check in BigChange whether the job exists",
}


def _outcome_errors(prepared: Prepared, outcomes: Outcomes | None) -> pl.DataFrame:
    """Errors from the API side: a rejected row's field errors located on the source cells that fed them, and
    one row-level message saying what to do for failed, uncertain and pending rows."""
    if outcomes is None:
        return errors_frame()
    found: list[CellError] = []
    rows = prepared.plan.rows.get_column(ROW)
    attention = list(outcomes.indices({Status.REJECTED, *NEXT_STEP}))
    rejected = [index for index in attention if outcomes.status(index) == Status.REJECTED]
    payload_text = dict(zip(rejected, prepared.plan.payloads_at(rejected), strict=True))
    for index in attention:
        row = rows[index]
        result = outcomes.get(index)
        problem = result.problem or {}
        if result.status == Status.REJECTED:
            found.extend(problem_errors(row, problem, payload_text[index], prepared.mapping))
        else:
            detail = problem.get("detail") or problem.get("title")
            message = f"{detail}; {NEXT_STEP[result.status]}" if result.status == Status.FAILED and detail else None
            found.append(CellError(row, None, None, str(result.status), message or detail or NEXT_STEP[result.status]))
    return errors_frame(found)


class _Signals:
    """SIGINT/SIGTERM for the whole run, from the ledger's opening to the last report: while requests go out
    they stop new sends (a second one abandons the requests in flight); before and after, they are noted and
    the run finishes writing its ledger and reports. One handler for all of it, so there is no gap in which a
    signal falls back to its default and kills the run without its reports."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._saved: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._submitter: Submitter | None = None
        self._say: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
        self.count = 0
        self.first: str | None = None

    def arm(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handle)

    def disarm(self) -> None:
        for sig, previous in self._saved.items():
            signal.signal(sig, previous)
        self._saved.clear()

    def attach(self, loop: asyncio.AbstractEventLoop, submitter: Submitter, say: Callable[[str], None]) -> None:
        self._loop, self._submitter, self._say = loop, submitter, say
        if self.first is not None:  # a signal came while the run was getting ready: send nothing
            self._stop(self.first, hurry=False)

    def detach(self) -> None:
        self._loop = self._submitter = None
        self._say = lambda text: print(text, file=sys.stderr)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        self.first = self.first or name
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._stop, name, self.count > 1)  # safe from a signal handler
        else:
            print(f"jobimport: {name}: finishing the ledger and the reports first…", file=sys.stderr)

    def _stop(self, name: str, hurry: bool) -> None:
        if self._submitter is None:
            return
        if not hurry:
            self._say(f"{name}: finishing the requests in flight (interrupt again to stop at once)…")
        self._submitter.stop(
            Interrupted(
                f"interrupted by {name}: no new rows sent; rows not sent are pending and the next run continues"
            ),
            hurry=hurry,
        )


def _exit_code(counts: dict[str, int], stopped: RunStopped | None, dry_run: bool) -> int:
    good = {Status.VALID} if dry_run else SUCCESS
    if all(status in good for status, n in counts.items() if n):
        return 0  # even if a stop came late, every row got where it should
    return stopped.exit_code if stopped is not None else 1


def _previous(ledger: Ledger | None, input_path: str, run_id: str) -> pl.DataFrame | None:
    if ledger is None:
        return None
    record = ledger.previous_run(input_path, run_id)
    if record is None:
        return None
    rows = ledger.run_rows(record.run_id)
    return pl.DataFrame(
        {ORIGIN_ROW: [r[1] for r in rows], "status": [r[3] for r in rows]},
        schema={ORIGIN_ROW: pl.Int64(), "status": pl.String()},
    )


class ReportsNotWritten(RunStopped):
    """Jobs were sent but a report could not be written: exit 3, every row's state is safe in the ledger."""


def resolve_ledger(options: RunOptions, settings: Settings) -> tuple[TenantIdentity, Path]:
    """The tenant identity of a run and its ledger file. A ledger an earlier version left in the report folder is
    never used silently: the run refuses, naming it and how to adopt it."""
    identity = TenantIdentity.of(settings.base_url, settings.customer_id)
    if options.ledger is not None:
        return identity, options.ledger
    path = default_ledger_path(identity, options.state_dir)
    if not path.exists():
        for legacy in legacy_ledgers(options.report_root, settings.customer_id):
            raise SettingsError(
                f"{legacy} is a ledger of an earlier jobimport (customer {settings.customer_id}, API not recorded); "
                f"ledgers now live in {path.parent}: if it was {identity}'s, adopt it with `jobimport ledger adopt "
                f"{legacy}`, otherwise rename or move it away, then run again"
            )
    return identity, path


def run_import(options: RunOptions, on_prepared: Callable[[Prepared], None] | None = None) -> RunResult:
    """The whole import (or a dry run). Settings and the ledger's lock come before the file is read (a run that
    cannot send finds out at once); reports are written even when the run is stopped."""
    started_at = now_iso()
    started = time.perf_counter()
    settings = None if options.dry_run else options.settings or load_settings(options.env_file)
    ledger: Ledger | None = None
    ledger_path: Path | None = None
    if settings is not None:
        _, ledger_path = resolve_ledger(options, settings)
        ledger = Ledger(ledger_path, TenantIdentity.of(settings.base_url, settings.customer_id))
    signals = _Signals()
    try:
        prepared = prepare(options)
        if on_prepared is not None:
            on_prepared(prepared)
        run_id = new_run_id()
        report_dir = options.report_root / run_id
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportWriteError(
                f"cannot create the report folder {report_dir}: {exc.strerror or exc}; choose another --report-dir"
            ) from None
        return _run(options, prepared, settings, ledger, ledger_path, run_id, report_dir, started, started_at, signals)
    finally:
        signals.disarm()
        if ledger is not None:
            ledger.close()
        logs.close()
        structlog.contextvars.clear_contextvars()


def _run(
    options: RunOptions,
    prepared: Prepared,
    settings: Settings | None,
    ledger: Ledger | None,
    ledger_path: Path | None,
    run_id: str,
    report_dir: Path,
    started: float,
    started_at: str,
    signals: _Signals,
) -> RunResult:
    input_key = str(options.input.resolve())
    stats = SubmitStats()
    outcomes: Outcomes | None = None
    stopped: RunStopped | None = None
    if options.dry_run or ledger is None or settings is None:
        logs.configure(None)
        write_payloads(report_dir / "payloads.jsonl", prepared.plan)
    else:
        signals.arm()
        logs.configure(report_dir / "run.log.jsonl")
        structlog.contextvars.bind_contextvars(run_id=run_id)
        ledger.start_run(run_id, input_key, str(options.mapping.resolve()), file_sha256(options.input))
        log.info(
            "run_started",
            input=input_key,
            rows=prepared.raw.frame.height,
            valid=prepared.plan.height,
            ledger=str(ledger_path),
            base_url=settings.base_url,
        )
        options.submit.timeout_grace_s = options.read_timeout_s
        with _frozen_heap():
            outcomes, stats, stopped = asyncio.run(_submit(prepared.plan, settings, ledger, run_id, options, signals))
    frame = _outcomes(prepared, outcomes, options.dry_run)
    own_errors = prepared.validation.errors.select(pl.col(n).cast(d) for n, d in ERROR_SCHEMA.items())
    errors = pl.concat([own_errors, _outcome_errors(prepared, outcomes)], how="vertical").sort(
        "row", maintain_order=True
    )
    counts = {str(s): 0 for s in Status}
    for status, n in frame.group_by("status").len().iter_rows():
        counts[status] = n
    exit_code = _exit_code(counts, stopped, options.dry_run)
    duration = time.perf_counter() - started
    summary = RunSummary(
        run_id=run_id,
        input=str(options.input),
        mapping=str(options.mapping),
        sheet=prepared.raw.sheet,
        encoding=prepared.raw.encoding,
        delimiter=prepared.raw.delimiter,
        dry_run=options.dry_run,
        started_at=started_at,
        finished_at=now_iso(),
        duration_s=round(duration, 3),
        rows_sent=stats.sent,
        throughput_rows_per_s=round(stats.sent / duration, 1) if duration > 0 else 0.0,
        retries=stats.retries,
        http_429=stats.http_429,
        http_5xx=stats.http_5xx,
        reconciled=stats.reconciled_found + stats.reconciled_absent,
        stop_reason=stats.stop_reason,
        exit_code=exit_code,
        customer_id=settings.customer_id if settings else None,
        header_row=options.header_row or prepared.mapping.header_row,
        max_concurrency=None if options.dry_run else options.submit.max_concurrency,
        peak_concurrency=stats.max_concurrency_seen or None,
        latency_p50_ms=stats.latency.percentile(50),
        latency_p95_ms=stats.latency.percentile(95),
        tool_version=__version__,
        notes=_notes(prepared, stats),
    )
    previous = _previous(ledger, input_key, run_id)
    try:
        paths = write_reports(report_dir, summary, prepared.raw, frame, errors, previous)
    except ReportWriteError as exc:
        if ledger is None:
            raise
        document = {**dataclasses.asdict(summary), "exit_code": 3, "counts": counts, "report_error": str(exc)}
        ledger.finish_run(run_id, document, 3, _run_rows(frame, prepared), errors.iter_rows())
        raise ReportsNotWritten(
            f"{exc} Every row's outcome is safe in the ledger: free the space or fix the folder, then "
            f"`jobimport report {run_id}` writes the reports"
        ) from None
    if ledger is not None:
        try:
            ledger.finish_run(
                run_id,
                json.loads((report_dir / "summary.json").read_text(encoding="utf-8")),
                exit_code,
                _run_rows(frame, prepared),
                errors.iter_rows(),
            )
        except (OSError, sqlite3.Error) as exc:
            raise RunStopped(
                f"the reports are in {report_dir}, but the run could not be recorded in the ledger {ledger_path} "
                f"({exc}): `status` will not list it; every row sent is in the ledger or looked up by the next run"
            ) from None
        log.info("run_finished", exit_code=exit_code, counts=counts, stop_reason=stats.stop_reason)
    return RunResult(run_id, report_dir, summary, paths, counts, exit_code, stats.stop_reason)


def _run_rows(outcomes: pl.DataFrame, prepared: Prepared) -> Iterator[tuple[Any, ...]]:
    """(row, origin_row, key, status, job_id, reference, problem JSON) per source row, for the ledger."""
    keys = prepared.plan.rows.select(ROW, "key")
    frame = outcomes.join(keys, on=ROW, how="left", maintain_order="left")
    columns = ("problem_status", "problem_title", "problem_detail", "problem_type")
    for row, origin, key, status, job_id, reference, p_status, title, detail, p_type, note in frame.select(
        ROW, ORIGIN_ROW, "key", "status", "job_id", "reference", *columns, "note"
    ).iter_rows():
        problem: dict[str, Any] = {}
        if p_status is not None or title is not None or detail is not None or p_type is not None:
            problem = {"status": p_status, "title": title, "detail": detail, "type": p_type}
        if note:
            problem["note"] = note
        yield (row, origin, key, status, job_id, reference, json.dumps(problem) if problem else None)


async def _submit(
    planned: Plan,
    settings: Settings,
    ledger: Ledger,
    run_id: str,
    options: RunOptions,
    signals: _Signals,
) -> tuple[Outcomes, SubmitStats, RunStopped | None]:
    client_options = ClientOptions(
        transport=options.transport,
        max_connections=max(1, options.submit.max_concurrency),
        read_timeout_s=options.read_timeout_s,
    )
    async with ApiClient(settings, client_options) as client:
        with RunProgress(planned.height) as progress:
            submitter = Submitter(client, ledger, run_id, options.submit, progress.advance, progress.console.print)
            signals.attach(asyncio.get_running_loop(), submitter, progress.console.print)
            try:
                outcomes = await submitter.run(planned_batches(planned), planned.height)
            finally:
                signals.detach()
    return outcomes, submitter.stats, submitter.stop_error
