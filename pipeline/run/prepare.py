"""The offline stages of a run: read → map → (pre-flight) → validate → plan, everything a dry run does.

`prepare` takes a run's options (`RunOptions`, which also carry what the runner needs to send) and returns what a
dry run knows (`Prepared`); `run_import` (pipeline/run/runner.py) adds the ledger, the API and the reports.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.console import one_line
from pipeline.errors import InputFileError
from pipeline.mapping import MappedTable, Mapping, apply_mapping, bind_tenant, load_mapping
from pipeline.model import RawTable
from pipeline.plan import Plan, plan
from pipeline.read import CSV_SUFFIXES, read_table
from pipeline.settings import Settings, load_settings
from pipeline.signoff import corrected_run
from pipeline.submit import SubmitOptions
from pipeline.tenant.preflight import check_rows, tenant_for
from pipeline.validate import Validation, validate


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
    ledger: Path | str | None = (
        None  # a file or a postgresql:// URL; default: $JOBIMPORT_LEDGER_URL, else the tenant's file
    )
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
    preflight_rows: int | None = None  # rows the pre-flight refused (also those that failed other checks)


def prepare(options: RunOptions, checkpoint: Callable[[], None] = lambda: None) -> Prepared:
    """Read, map, validate and plan. Raises InputFileError / MappingError (exit 2) for unusable input.
    `checkpoint` is called between the stages (a Ctrl-C noted meanwhile ends the run there)."""
    mapping = load_mapping(options.mapping)
    settings = (
        options.settings.with_timeout(options.read_timeout_s)
        if options.settings
        else (lambda: load_settings(options.env_file).with_timeout(options.read_timeout_s))
    )
    best_effort = options.preflight and not options.dry_run
    fetch = _Background(
        lambda: tenant_for(
            mapping,
            online=options.online,
            best_effort=best_effort,
            settings=settings,
            max_age_s=options.refdata_max_age_s,
            home=options.state_dir,  # the reference data is cached beside the ledger: the demo's stays the demo's
        )
    )
    if mapping.tenant_fields:  # the mapping looks values up in the reference data: needed before mapping
        source, skipped = fetch.result()
        mapping = bind_tenant(mapping, source) if source is not None else mapping
    suffix = Path(options.input).suffix.lower()
    if options.sheet is not None and suffix in CSV_SUFFIXES:  # (a mapping's sheet is for its workbooks: ignored)
        raise InputFileError(
            f"{options.input}: --sheet '{options.sheet}' names a workbook sheet, but this is a {suffix} file "
            "(one table, no sheets); leave --sheet out"
        )
    fetch.start()  # (if the mapping did not need it already) fetched while the file is read and checked
    started = time.perf_counter()
    raw = read_table(
        options.input,
        sheet=options.sheet or mapping.sheet,
        header_row=options.header_row or mapping.header_row,
        encoding=options.encoding or mapping.encoding,
        delimiter=options.delimiter or mapping.delimiter,
        limits=mapping.read_limits,
    )
    for warning in raw.warnings:  # (e.g. the workbook is open in Excel; number formats not reproduced)
        print(f"jobimport: warning: {one_line(warning)}", file=sys.stderr)
    if not raw.is_corrections and (parent := corrected_run(options.input)) is not None:
        print(
            f"jobimport: warning: {one_line(options.input.name)} is a corrections file of run {parent} without its "
            "'row' column: results point at the rows of this file, not the original's; put the column back to keep "
            "the link",
            file=sys.stderr,
        )
    if raw.is_corrections and raw.kind == "csv":
        raw = restore_neutralised(raw)
    read_s = time.perf_counter() - started
    checkpoint()
    mapped = apply_mapping(raw, mapping)
    checkpoint()
    validation = validate(mapped, mapping)
    checkpoint()
    source, skipped = fetch.result()  # (already there when the mapping needed it to map)
    checked = check_rows(validation, mapping, source) if source is not None and options.preflight else None
    validation = checked.validation if checked is not None else validation
    planned = plan(validation.frame, mapping, validation.valid_mask)
    checkpoint()
    caught = checked.caught if checked is not None else None
    when = f" (fetched {source.data.fetched_at_iso})" if source is not None else ""
    return Prepared(
        raw,
        mapping,
        mapped,
        validation,
        planned,
        read_s,
        time.perf_counter() - started,
        caught,
        skipped,
        when,
        preflight_rows=checked.rows if checked is not None else None,
    )


class _Background:
    """A call run in a daemon thread (`start`), or here when its result is asked for first (`result`): the
    tenant's reference data (a token and a few pages, 0.1-1 s against a real API) is fetched while the file is
    read, mapped and validated. Daemon: a run that stops on a bad input file does not wait for the fetch."""

    def __init__(self, call: Callable[[], tuple[Any, str | None]]) -> None:
        self._call = call
        self._thread: threading.Thread | None = None
        self._value: tuple[Any, str | None] | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def start(self) -> None:
        if self._thread is not None or self._value is not None or self._error is not None:
            return  # running, or already done
        self._thread = threading.Thread(target=self._run, name="jobimport-refdata", daemon=True)
        self._thread.start()

    def result(self) -> tuple[Any, str | None]:
        """The call's value (raising what it raised); run here if `start` was not called. Asked again: the same."""
        if self._thread is None and self._value is None and self._error is None:
            self._run()
        elif self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def restore_neutralised(raw: RawTable) -> RawTable:
    """Our corrections.csv prefixes risky cells with an apostrophe; reading it back removes exactly that."""
    from pipeline.report.cellsafety import restore_csv_cell

    frame = raw.frame.with_columns(
        pl.col(name).map_elements(restore_csv_cell, return_dtype=pl.String) for name in raw.columns
    )
    return dataclasses.replace(raw, frame=frame)  # (not `trimmed`: a restored cell can start with a tab again)
