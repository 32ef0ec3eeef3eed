"""Past runs: `jobimport status` lists them from the ledgers, `jobimport report RUN_ID` rebuilds their reports.

A rebuild re-reads the run's input file with its mapping (the ledger stores outcomes, not the user's cells) and
refuses when the file no longer has the rows the run saw.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.errors import InputFileError, SettingsError
from pipeline.mapping import load_mapping
from pipeline.model import ERROR_SCHEMA, ORIGIN_ROW, ROW, Status
from pipeline.read import read_table
from pipeline.report import ReportPaths, RunSummary, write_reports
from pipeline.report.summary import api_label
from pipeline.run.outcome import OUTCOME_SCHEMA
from pipeline.run.prepare import restore_neutralised
from pipeline.run.runner import file_sha256
from pipeline.run.unstarted import never_started
from pipeline.settings import load_settings
from pipeline.state import TenantIdentity, default_ledger_path, known_ledgers, state_home
from pipeline.submit.ledger import (
    LEDGER_URL_VARIABLE,
    Ledger,
    LedgerTarget,
    RunRecord,
    adopt,
    is_url,
    shared_ledger_url,
)


@dataclass
class Rebuilt:
    report_dir: Path
    paths: ReportPaths


def ledgers(report_root: Path, explicit: LedgerTarget | None, state_dir: Path | None = None) -> list[LedgerTarget]:
    """--ledger, else the shared ledger ($JOBIMPORT_LEDGER_URL) and every tenant's ledger in the state home, plus
    ledgers of earlier versions in the report folder (read only: their runs can still be listed and rebuilt)."""
    if explicit is not None:
        return [explicit]
    shared = shared_ledger_url()
    found: list[LedgerTarget] = [shared] if shared else []
    found += known_ledgers(state_dir) + sorted(report_root.glob("ledger-*.sqlite"))
    if not found:
        raise SettingsError(
            f"no ledger in {state_home(state_dir)} (nor in {report_root}): no run has sent anything yet; give one "
            "with --ledger or --state-dir"
        )
    return found


def ledger_path(env_file: Path | None, state_dir: Path | None) -> tuple[TenantIdentity, Path]:
    """The configured tenant's identity and ledger file."""
    settings = load_settings(env_file)
    identity = TenantIdentity.of(settings.base_url, settings.customer_id)
    return identity, default_ledger_path(identity, state_dir)


def shown_ledger(env_file: Path | None, state_dir: Path | None) -> str:
    """`jobimport ledger path`: the shared ledger when $JOBIMPORT_LEDGER_URL names one (its password masked),
    else the tenant's file."""
    identity, path = ledger_path(env_file, state_dir)
    shared = shared_ledger_url()
    if shared is not None:
        from pipeline.submit.ledger_pg import display_url

        return f"{display_url(shared)} (shared, from ${LEDGER_URL_VARIABLE})  [{identity}]"
    return f"{path}{'' if path.exists() else ' (not created yet)'}  [{identity}]"


def migrate_ledger(sqlite_file: Path, url: str) -> str:
    """`jobimport ledger migrate FILE URL`: one line saying what was copied."""
    from pipeline.submit.ledger_pg import display_url, migrate_sqlite

    if not is_url(url):
        raise SettingsError(f"{url!r} is not a postgresql://user@host/database URL; give the shared ledger's URL")
    identity, copied, present, runs = migrate_sqlite(sqlite_file, url)
    return (
        f"{sqlite_file} → {display_url(url)} [{identity}]: {copied} row(s) copied, {present} already there (kept as "
        f"they were), {runs} run(s) copied"
    )


def adopt_ledger(legacy: Path, env_file: Path | None, state_dir: Path | None) -> tuple[TenantIdentity, Path, Path]:
    """`jobimport ledger adopt FILE`: an earlier version's ledger becomes the configured tenant's."""
    identity, target = ledger_path(env_file, state_dir)
    renamed = adopt(legacy, identity, target)
    return identity, target, renamed


def recent_runs(
    report_root: Path, explicit: LedgerTarget | None, limit: int, state_dir: Path | None = None, show_all: bool = False
) -> str:
    """A table of the latest runs of every ledger, newest first; every heading stands over its column. Runs that
    never started (stopped before their first request) are hidden unless `show_all`, and counted below."""
    records: list[tuple[RunRecord, str]] = []
    for path in ledgers(report_root, explicit, state_dir):
        with Ledger.open_existing(path) as ledger:
            target = short_target(ledger.identity.api or None, ledger.identity.customer_id)
            records.extend((record, target) for record in ledger.runs(limit if show_all else limit * 5))
    records.sort(key=lambda r: r[0].started_at, reverse=True)
    unstarted = [r for r, _ in records if never_started(r.summary, r.exit_code)]
    if not show_all:
        records = [(r, t) for r, t in records if not never_started(r.summary, r.exit_code)]
    rows = []
    for record, target in records[:limit]:
        counts = (record.summary or {}).get("counts") or {}
        shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "-"
        if never_started(record.summary, record.exit_code):
            shown = f"never started ({shown})"
        exit_code = "-" if record.exit_code is None else str(record.exit_code)
        source = _where_now(record.input, record.run_id)
        rows.append((record.run_id, record.finished_at or "(did not finish)", exit_code, target, shown, source))
    headings = ("run id", "finished", "exit", "target", "counts", "input")
    widths = [max([len(headings[i])] + [len(row[i]) for row in rows]) for i in range(5)]

    def line(cells: tuple[str, ...]) -> str:
        run_id, finished, exit_code, target, shown, source = cells
        return (
            f"{run_id:<{widths[0]}}  {finished:<{widths[1]}}  {exit_code:>{widths[2]}}  {target:<{widths[3]}}  "
            f"{shown:<{widths[4]}}  {source}"
        )

    lines = [line(headings)] + [line(row) for row in rows]
    if not rows:
        lines.append("(no runs yet)")
    if unstarted and not show_all:
        n = len(unstarted)
        lines.append(
            f"({n} run{'s' if n > 1 else ''} that never started (stopped before the first request) not shown: --all)"
        )
    return "\n".join(lines)


def short_target(api: str | None, customer_id: int | None) -> str:
    """`sandbox 127.0.0.1:8765/v1 #1001`, `API api.bigchange.com/v1 #1001`: the API and customer of a ledger."""
    if not api:
        return f"(API not recorded) #{customer_id}" if customer_id is not None else "-"
    return f"{api_label(api)} {api.split('://', 1)[-1]} #{customer_id}"


def _where_now(input_path: str, run_id: str) -> str:
    """The run's input; for a dropped file read in processing/, where the drop filed it since."""
    path = Path(input_path)
    if path.parent.name == "processing" and not path.exists():
        from pipeline.drop import filed_path

        moved = filed_path(path, run_id)
        if moved is not None:
            return str(moved)
    return input_path


def rebuild_reports(
    run_id: str, report_root: Path, explicit: LedgerTarget | None, state_dir: Path | None = None
) -> Rebuilt:
    for path in ledgers(report_root, explicit, state_dir):
        with Ledger.open_existing(path) as ledger:
            record = ledger.run(run_id)
            if record is None:
                continue
            if record.summary is None:
                raise SettingsError(f"run {run_id} did not finish, so it has no outcomes to report; run again")
            if not ledger.has_run_rows(run_id):
                raise SettingsError(
                    f"run {run_id} is older than the latest runs whose row outcomes the ledger keeps; its summary "
                    "is in `jobimport status`, its reports in the report folder it wrote"
                )
            rows = ledger.run_rows(run_id)
            errors = ledger.run_errors(run_id)
            previous = ledger.previous_run(record.input, run_id)
            previous_rows = ledger.run_rows(previous.run_id) if previous else None
        source = Path(record.input)
        if not source.is_file():  # a dropped file was read in processing/, then filed by its outcome
            from pipeline.drop import filed_path

            source = filed_path(source, run_id) or source
        if record.input_sha256 and source.is_file() and file_sha256(source) != record.input_sha256:
            raise InputFileError(
                f"{source} has changed since run {run_id} (its content differs), so its cells would not match "
                "that run's outcomes; restore the file as it was to rebuild this run's reports"
            )
        return _rebuild(run_id, report_root, str(source), record.mapping, record.summary, rows, errors, previous_rows)
    raise SettingsError(f"no run {run_id} in any ledger; `jobimport status` lists the runs")


def _rebuild(
    run_id: str,
    report_root: Path,
    input_path: str,
    mapping_path: str,
    summary_doc: dict[str, object],
    rows: list[tuple[int, int, str | None, str, int | None, str | None, str | None]],
    errors: list[tuple[int, str | None, str | None, str, str]],
    previous_rows: list[tuple[int, int, str | None, str, int | None, str | None, str | None]] | None,
) -> Rebuilt:
    mapping = load_mapping(Path(mapping_path))
    raw = read_table(
        Path(input_path),
        sheet=summary_doc.get("sheet") or mapping.sheet,  # type: ignore[arg-type]
        header_row=int(summary_doc.get("header_row") or mapping.header_row),  # type: ignore[call-overload]
        encoding=summary_doc.get("encoding") or mapping.encoding,  # type: ignore[arg-type]
        delimiter=summary_doc.get("delimiter") or mapping.delimiter,  # type: ignore[arg-type]
        limits=mapping.read_limits,
    )
    if raw.is_corrections and raw.kind == "csv":
        raw = restore_neutralised(raw)
    if raw.frame[ROW].to_list() != [r[0] for r in rows]:
        raise InputFileError(
            f"{input_path} no longer has the rows run {run_id} imported (it was changed or replaced); "
            "restore that file to rebuild this run's reports"
        )
    problems = [json.loads(r[6]) if r[6] else {} for r in rows]
    outcomes = pl.DataFrame(
        {
            ROW: [r[0] for r in rows],
            ORIGIN_ROW: [r[1] for r in rows],
            "status": [r[3] for r in rows],
            "job_id": [r[4] for r in rows],
            "reference": [r[5] for r in rows],
            "problem_status": [p.get("status") for p in problems],
            "problem_title": [p.get("title") for p in problems],
            "problem_detail": [p.get("detail") for p in problems],
            "problem_type": [p.get("type") for p in problems],
            "note": [p.get("note") for p in problems],
        },
        schema=OUTCOME_SCHEMA,
        strict=False,
    )
    error_frame = pl.DataFrame(errors, schema=ERROR_SCHEMA, orient="row")
    previous = None
    if previous_rows is not None:
        previous = pl.DataFrame(
            {ORIGIN_ROW: [r[1] for r in previous_rows], "status": [r[3] for r in previous_rows]},
            schema={ORIGIN_ROW: pl.Int64(), "status": pl.String()},
        )
    known = {f.name for f in dataclasses.fields(RunSummary)}
    summary = RunSummary(**{k: v for k, v in summary_doc.items() if k in known})  # type: ignore[arg-type]
    report_dir = report_root / run_id
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = write_reports(report_dir, summary, raw, outcomes, error_frame, previous, mapping.sheet)
    assert all(status in {str(s) for s in Status} for status in outcomes["status"].to_list())
    return Rebuilt(report_dir, paths)
