"""The import use case: read → map → validate → plan → (ledger + submit) → reports, with one outcome per row.

`prepare` runs the offline stages (everything a dry run does; pipeline/run/prepare.py); `run_import` adds the
ledger and the API and always ends by writing the reports, whatever stopped the run. The CLI calls these and
renders the result. The run's signal handling is in signals.py, its per-row outcomes are built in outcome.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import structlog

from pipeline import __version__, logs
from pipeline.errors import Interrupted, LedgerUnavailable, RunStopped, SettingsError, StopReason
from pipeline.mapping import source_columns
from pipeline.model import ERROR_SCHEMA, ORIGIN_ROW, REPORT_COLUMNS, ROW, SUCCESS, Status
from pipeline.plan import Plan
from pipeline.report import ReportPaths, ReportWriteError, RunSummary, write_reports
from pipeline.run.outcome import _outcome_errors, _outcomes, _run_rows
from pipeline.run.prepare import Prepared, RunOptions, prepare
from pipeline.run.progress import RunProgress
from pipeline.run.signals import _Signals
from pipeline.run.unstarted import discard_if_unused
from pipeline.settings import Settings, load_settings, shown_url
from pipeline.signoff import corrected_run
from pipeline.state import TenantIdentity, default_ledger_path, normalise_api
from pipeline.submit import PlannedRow, SubmitStats, Submitter
from pipeline.submit.client import ApiClient, ClientOptions
from pipeline.submit.ledger import Ledger, LedgerTarget, is_url, legacy_ledgers, now_iso, shared_ledger_url
from pipeline.submit.outcomes import Outcomes

log = structlog.get_logger(__name__)


@dataclass
class RunResult:
    run_id: str
    report_dir: Path
    summary: RunSummary
    paths: ReportPaths
    counts: dict[str, int]
    exit_code: int
    stop_reason: str | None = None  # the stop's one line, for people
    stop: StopReason | None = None  # why the run stopped, for programs (the drop mode, an orchestrator)


def new_run_id() -> str:
    """Sortable to the millisecond (runs of one second stay in order), plus a random suffix against clashes."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{secrets.token_hex(2)}"


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


def _notes(prepared: Prepared, stats: SubmitStats | None = None, shared_ledger: bool = False) -> list[str]:
    raw = prepared.raw
    notes = []
    if raw.kind == "csv" and raw.encoding not in (None, "utf-8", "utf-8-sig", "ascii"):
        notes.append(f"{raw.source.name} is not UTF-8: it was read as {raw.encoding}.")
    if raw.is_corrections:
        notes.append("The input is a corrections file: its `row` column gives each row's original source row.")
    read = set(source_columns(prepared.mapping)) | set(REPORT_COLUMNS)
    unread = [name for name in raw.columns if name not in read]
    if unread:
        shown = ", ".join(f"'{name}'" for name in unread[:8]) + (
            f" and {len(unread) - 8} more" if len(unread) > 8 else ""
        )
        notes.append(
            f"{len(unread)} column{'s' if len(unread) != 1 else ''} of the file {'are' if len(unread) != 1 else 'is'} "
            f"not in the mapping, so not checked and not sent: {shown}."
        )
    if stats is not None and stats.found_before_send:
        notes.append(
            f"{stats.found_before_send} row(s) were found in BigChange by reference before sending (same job type "
            "and contact): reported already_created with the existing job's id, not sent."
            + (
                ""
                if shared_ledger
                else " This ledger did not create them: if someone else (another person, machine or state folder) "
                "imports into this tenant, share one ledger so that two imports never send the same row at once: "
                "--ledger postgresql://… (README: teams and several machines)."
            )
        )
    if stats is not None and stats.conflicts:
        notes.append(
            f"{stats.conflicts} row(s) have a reference BigChange already uses for a job of another type or contact: "
            "rejected, not sent."
        )
    if prepared.preflight_caught is not None:
        n, refused = prepared.preflight_caught, prepared.preflight_rows or 0
        also = f" ({refused} refused in all, counting rows that failed other checks too)" if refused > n else ""
        notes.append(
            f"Pre-flight against the tenant's reference data{prepared.refdata_when}: {n} row{'s' if n != 1 else ''} "
            f"caught before sending{also} (job type, order number, contact, person or custom field the API would "
            "refuse)."
        )
    if prepared.preflight_note:
        notes.append(prepared.preflight_note)
    return notes


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


def resolve_ledger(options: RunOptions, settings: Settings) -> tuple[TenantIdentity, LedgerTarget]:
    """The tenant identity of a run and its ledger: --ledger (a file or a postgresql:// URL), else
    $JOBIMPORT_LEDGER_URL (a shared ledger), else the tenant's own file. A ledger an earlier version left in the
    report folder is never used silently: the run refuses, naming it and how to adopt it."""
    identity = TenantIdentity.of(settings.base_url, settings.customer_id)
    if options.ledger is not None:
        return identity, options.ledger
    shared = shared_ledger_url()
    if shared is not None:
        return identity, shared
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
    signals = _Signals()
    signals.arm()  # from here to the last report a signal is noted, and acted on where it is safe
    ledger: Ledger | None = None
    ledger_path: Path | str | None = None
    fresh_folder: Path | None = None  # the tenant folder this run creates (removed again if nothing is sent)
    try:
        settings = None if options.dry_run else (options.settings or load_settings(options.env_file))
        settings = settings.with_timeout(options.read_timeout_s) if settings is not None else None
        if settings is not None:
            identity, target = resolve_ledger(options, settings)
            if (
                isinstance(target, Path)
                and target == default_ledger_path(identity, options.state_dir)
                and not target.parent.exists()
            ):
                fresh_folder = target.parent
            ledger = Ledger(target, identity)
            ledger_path = ledger.path  # what messages name: the file, or the URL with its password masked
        signals.checkpoint()
        prepared = prepare(options, signals.checkpoint)
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
        if ledger is not None:
            ledger.close()
        if fresh_folder is not None and isinstance(ledger_path, Path):
            discard_if_unused(fresh_folder, ledger_path)
        logs.close()
        structlog.contextvars.clear_contextvars()
        signals.disarm()  # last: a signal during the ledger's final commit is noted, not obeyed


def _run(
    options: RunOptions,
    prepared: Prepared,
    settings: Settings | None,
    ledger: Ledger | None,
    ledger_path: Path | str | None,
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
        try:
            signals.checkpoint()  # the last moment a signal ends the run with nothing recorded
        except Interrupted:
            with contextlib.suppress(OSError):
                report_dir.rmdir()  # (still empty) nothing happened: leave nothing behind
            raise
        logs.configure(report_dir / "run.log.jsonl")
        structlog.contextvars.bind_contextvars(run_id=run_id)
        ledger.start_run(run_id, input_key, str(options.mapping.resolve()), file_sha256(options.input))
        log.info(
            "run_started",
            input=input_key,
            rows=prepared.raw.frame.height,
            valid=prepared.plan.height,
            ledger=str(ledger_path),
            base_url=shown_url(settings.base_url),
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
        api=normalise_api(settings.base_url) if settings else None,  # (normalised: no credentials, no query)
        corrects_run=corrected_run(options.input) if prepared.raw.is_corrections else None,
        header_row=options.header_row or prepared.mapping.header_row,
        max_concurrency=None if options.dry_run else options.submit.max_concurrency,
        peak_concurrency=stats.max_concurrency_seen or None,
        latency_p50_ms=stats.latency.percentile(50),
        latency_p95_ms=stats.latency.percentile(95),
        tool_version=__version__,
        notes=_notes(prepared, stats, shared_ledger=is_url(str(ledger_path))),
    )
    try:
        previous = _previous(ledger, input_key, run_id)
    except (OSError, sqlite3.Error) as exc:  # the ledger went away: the reports come, without "since the last run"
        log.warning("previous_run_unread", error=str(exc))
        previous = None
    try:
        paths = write_reports(report_dir, summary, prepared.raw, frame, errors, previous, prepared.mapping.sheet)
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
            if isinstance(stopped, LedgerUnavailable):  # already the run's stop, said once: the reports are there
                log.error("run_not_recorded", error=str(exc))
                return RunResult(
                    run_id, report_dir, summary, paths, counts, exit_code, stats.stop_reason, stopped.reason
                )
            raise RunStopped(
                f"the reports are in {report_dir}, but the run could not be recorded in the ledger {ledger_path} "
                f"({exc}): `status` will not list it; every row sent is in the ledger or looked up by the next run"
            ) from None
        log.info("run_finished", exit_code=exit_code, counts=counts, stop_reason=stats.stop_reason)
    stop = stopped.reason if stopped is not None else None
    return RunResult(run_id, report_dir, summary, paths, counts, exit_code, stats.stop_reason, stop)


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
