"""The Python API: what the command line, the drop mode and an orchestrator call. Typed options in, typed results
out; nothing is printed (a drop pass reports its lines through the `say` callback it is given) and nothing here
knows about argparse.

    from pipeline.api import ImportOptions, import_file
    result = import_file(Path("jobs.xlsx"), ImportOptions(mapping=Path("mappings/jobs.toml")))
    result.exit_code, result.counts["created"], result.stop, result.reports.results_csv

- `import_file`: one file → `ImportResult` (counts per status, exit code, why it stopped, report paths). Raises
  a `JobImportError` (exit 2) when the run cannot start: unreadable input, bad mapping, bad settings.
- `run_drop_pass`: one pass over a drop folder (`jobimport drop FOLDER`), → `PassResult`.
- `settled_drops`: the files of a drop folder a pass would take now, with their sha256 (what a sensor yields).
- `is_retryable`: whether a stop (`StopReason`, pipeline/errors.py) may simply be tried again later;
- `handle_dropped_file`: claim one dropped file (found by name and sha256), import it and file it into
  done/attention/failed exactly as a drop pass does → `DroppedFileResult`.

Exit codes are DESIGN.md's: 0 every row created or already created; 1 some rows need attention; 2 could not
start (or, for a dropped file, filed in failed/); 3 stopped (the file stays in processing/).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import JobImportError, RunStopped, SettingsError, StopReason

if TYPE_CHECKING:
    from collections.abc import Callable

    from filelock import FileLock

    from pipeline.drop import DropOptions, PassResult
    from pipeline.drop.passes import FileOutcome
    from pipeline.report import ReportPaths, RunSummary
    from pipeline.run import RunOptions, RunResult
    from pipeline.settings import Settings
    from pipeline.submit.ledger_pg import FolderLock


# --- why a run stopped ---------------------------------------------------------------------------------------

#: stops after which the same file, tried again later, can succeed without a person changing anything
RETRYABLE_STOPS = frozenset({StopReason.API_DOWN, StopReason.INTERRUPTED, StopReason.LEDGER})


def is_retryable(stop: StopReason | None) -> bool:
    """Whether a run stopped for this reason may simply be tried again later (an orchestrator's retry)."""
    return stop in RETRYABLE_STOPS


# --- one file ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportOptions:
    """How to import one file. Settings come from `settings`, else the environment and `env_file`."""

    mapping: Path
    report_dir: Path = Path("reports")
    dry_run: bool = False
    sheet: str | None = None
    header_row: int | None = None
    encoding: str | None = None
    delimiter: str | None = None
    env_file: Path | None = None
    settings: Settings | None = None
    ledger: Path | None = None  # a ledger file (default: the tenant's own, in the state home)
    ledger_url: str | None = None  # the tenant's shared ledger, postgresql://… (wins over `ledger`)
    state_dir: Path | None = None  # the state home (default: $JOBIMPORT_HOME, else the user's state folder)
    max_concurrency: int = 32
    max_attempts: int = 6
    timeout_s: float = 30.0
    resend_uncertain: bool = False
    resend_rejected: bool = False
    lookup_before_send: bool = True
    online: bool = False
    preflight: bool = True
    refdata_max_age_s: float = 3600.0
    transport: str = "aiohttp"


@dataclass(frozen=True)
class ImportResult:
    """What an import did. `counts` has every status (zero included); `summary` is what summary.json holds."""

    run_id: str
    exit_code: int
    counts: dict[str, int]
    stop: StopReason | None
    stop_message: str | None
    report_dir: Path
    reports: ReportPaths
    summary: RunSummary

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


def _shared_ledger(ledger_url: str | None) -> str | None:
    """The one place a shared ledger URL is taken: only a postgresql:// URL is a shared ledger (anything else is
    refused in one line, so a run never falls back to its machine's own ledger when its tenant has a shared one)."""
    if ledger_url and not ledger_url.startswith(("postgresql://", "postgres://")):
        raise SettingsError("ledger_url must be a postgresql:// URL (the tenant's shared ledger)")
    return ledger_url or None


def _ledger(options: ImportOptions) -> Path | str | None:
    return _shared_ledger(options.ledger_url) or options.ledger


def run_options(input_path: Path, options: ImportOptions) -> RunOptions:
    """The runner's options for one file (pipeline/run)."""
    from pipeline.run import RunOptions
    from pipeline.submit import SubmitOptions

    return RunOptions(
        input=input_path,
        mapping=options.mapping,
        report_root=options.report_dir,
        dry_run=options.dry_run,
        sheet=options.sheet,
        header_row=options.header_row,
        encoding=options.encoding,
        delimiter=options.delimiter,
        env_file=options.env_file,
        ledger=_ledger(options),
        state_dir=options.state_dir,
        transport=options.transport,
        read_timeout_s=options.timeout_s,
        settings=options.settings,
        online=options.online,
        preflight=options.preflight,
        refdata_max_age_s=options.refdata_max_age_s,
        submit=SubmitOptions(
            max_concurrency=options.max_concurrency,
            max_attempts=options.max_attempts,
            resend_uncertain=options.resend_uncertain,
            resend_rejected=options.resend_rejected,
            lookup_before_send=options.lookup_before_send,
        ),
    )


def result_of(run: RunResult) -> ImportResult:
    return ImportResult(
        run_id=run.run_id,
        exit_code=run.exit_code,
        counts=dict(run.counts),
        stop=run.stop if run.exit_code == 3 else None,
        stop_message=run.stop_reason,
        report_dir=run.report_dir,
        reports=run.paths,
        summary=run.summary,
    )


def import_file(input_path: Path, options: ImportOptions) -> ImportResult:
    """Import one file (or validate it: `dry_run`). Reports are written whatever stopped the run. Raises
    JobImportError (exit 2) when the run cannot start, RunStopped (exit 3) when the reports could not be written."""
    from pipeline.run import run_import

    return result_of(run_import(run_options(input_path, options)))


# --- drops -----------------------------------------------------------------------------------------------------


def _quiet(line: str) -> None:
    """The default `say` of the drop functions: the API prints nothing."""


def run_drop_pass(options: DropOptions, say: Callable[[str], None] = _quiet, watch: bool = False) -> PassResult:
    """One pass over a drop folder (`watch`: keep running, as `drop --watch`). Each line a person would read goes
    to `say`. Raises JobImportError (exit 2) when it cannot start: a missing folder, a broken mapping, settings."""
    from pipeline.drop import run_pass
    from pipeline.drop import watch as watch_folder

    return (watch_folder if watch else run_pass)(options, say)


@dataclass(frozen=True)
class SettledFile:
    """A dropped file a pass would take now: complete by the drop's rules (`--settle`, `--ready-marker`)."""

    path: Path
    name: str
    size: int
    mtime_ns: int
    sha256: str


_HASHES: dict[tuple[str, int, int], str] = {}


def settled_drops(folder: Path, settle_s: float = 60.0, ready_marker: str | None = None) -> list[SettledFile]:
    """The files directly in `folder` that have settled, oldest first, each with its sha256 (cached by path,
    size and mtime, so a folder that keeps a file for days does not hash it at every look). Same rules as a pass:
    old enough and unchanged while looked at (waits at most 2 s when some file is old enough), or announced by
    its ready marker. A file that changes while it is hashed is left for the next look."""
    from pipeline.drop.candidates import look, settled_in_pass
    from pipeline.run import file_sha256

    found = []
    for path in settled_in_pass(folder, settle_s, ready_marker):
        before = look(path)
        if before is None:
            continue
        key = (str(path), before.size, before.mtime_ns)
        digest = _HASHES.get(key)
        if digest is None:
            try:
                digest = file_sha256(path)
            except OSError:
                continue
            if look(path) != before:
                continue
            if len(_HASHES) > 10_000:
                _HASHES.clear()
            _HASHES[key] = digest
        found.append(SettledFile(path, path.name, before.size, before.mtime_ns, digest))
    return found


class FolderInUse(JobImportError):
    """Another pass or run holds the drop folder's lock: the file is untouched; try again in a moment."""

    exit_code = 3
    retryable = True


@dataclass(frozen=True)
class DroppedFileResult:
    """What became of one dropped file. `outcome`: done / attention / failed / processing (stopped: resumed by the
    next pass or run), or `gone` (not in the folder, processing/ or failed/ any more) / `changed` (its content is
    no longer the sha256 asked for: the new content is another file to the drop)."""

    name: str
    sha256: str
    outcome: str
    exit_code: int
    path: Path | None  # where the file is now
    reason: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    rows: int | None = None
    run_id: str | None = None
    report_dir: Path | None = None
    reports: ReportPaths | None = None
    duplicate_of: dict[str, Any] | None = None
    companions: list[Path] = field(default_factory=list)
    stop: StopReason | None = None


def handle_dropped_file(
    options: DropOptions,
    name: str,
    sha256: str,
    say: Callable[[str], None] = _quiet,
    lock_wait_s: float = 30.0,
    ledger_url: str | None = None,
) -> DroppedFileResult:
    """Claim the file `name` of the drop folder if its content is still `sha256`, import it, and file it exactly
    as a drop pass does (done/, attention/ + corrections, failed/ + .error.txt, a duplicate of content already
    imported → done/ + .duplicate.txt; stopped → stays in processing/), with its drop-log line and notification.

    A file with that sha256 already in processing/ (a stopped earlier attempt) is resumed; one in failed/ (a
    re-executed orchestrator run after the mapping was fixed) is taken back and imported again. Holds the
    folder's lock meanwhile (waits up to `lock_wait_s`, then raises FolderInUse). Raises JobImportError (exit 2)
    for a missing folder, a broken mapping or missing settings, before any file is touched. `ledger_url`: the
    tenant's shared ledger (postgresql://…): the import's ledger, and the folder's lock is then also an advisory
    lock in it, so that workers on several machines never take the same file."""
    from pipeline.drop import filing
    from pipeline.drop.candidates import look
    from pipeline.drop.passes import absolute, check_folder

    shared = _shared_ledger(ledger_url)
    check_folder(options.folder)
    options = absolute(dataclasses.replace(options, ledger_url=shared or options.ledger_url))
    folder = options.folder
    lock = _lock(folder, options.ledger_url, lock_wait_s)
    try:
        session = _Session(options, say)
        try:
            dropped = folder / name
            present = look(dropped) is not None
            if present and _sha256(dropped) == sha256:
                return session.result(session.take(dropped), name, sha256)
            left = _with_sha(folder / filing.PROCESSING, sha256)
            if left is not None:
                return session.result(session.resume(left), name, sha256)
            failed = _with_sha_in_days(folder / filing.FAILED, sha256)
            if failed is not None:
                say(f"  {name}: taking {failed.relative_to(folder).as_posix()} back from failed/ to import it again")
                return session.result(session.handle(filing.claim(failed, folder), name, []), name, sha256)
            if present:
                reason = (
                    f"{name} changed after it was seen (its content is no longer sha256 {sha256}): not taken; "
                    "its new content is a new file to the drop"
                )
                return DroppedFileResult(name, sha256, "changed", 0, dropped, reason=reason)
            earlier = session.record.earlier_import(sha256)
            reason = (
                f"{name} (sha256 {sha256}) was already imported from {earlier.name} (run {earlier.run_id}, "
                f"filed as {earlier.filed})"
                if earlier is not None
                else f"{name} (sha256 {sha256}) is no longer in {folder}, processing/ or failed/: nothing to import"
            )
            return DroppedFileResult(name, sha256, "gone", 0 if earlier is not None else 2, None, reason=reason)
        finally:
            session.close()
    finally:
        lock.release()


def _lock(folder: Path, ledger_url: str | None, wait_s: float) -> FileLock | FolderLock:
    """The drop folder's lock (an advisory lock in the shared ledger when there is one, else its lock file),
    waited for up to `wait_s`; FolderInUse after that."""
    from pipeline.drop.passes import FolderBusy, lock_folder

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return lock_folder(folder, ledger_url)
        except FolderBusy as busy:
            if time.monotonic() >= deadline:
                raise FolderInUse(
                    f"{folder}: another drop pass or run holds its lock ({busy}) for more than {wait_s:g} s; try again "
                    "later"
                ) from None
        time.sleep(0.25)


def _sha256(path: Path) -> str:
    from pipeline.run import file_sha256

    return file_sha256(path)


def _with_sha(folder: Path, sha256: str) -> Path | None:
    from pipeline.drop.candidates import is_candidate_name, scan

    for seen in scan(folder):
        if is_candidate_name(seen.path.name) and _sha256(seen.path) == sha256:
            return seen.path
    return None


def _with_sha_in_days(outcome_folder: Path, sha256: str) -> Path | None:
    if not outcome_folder.is_dir():
        return None
    for day in sorted((d for d in outcome_folder.iterdir() if d.is_dir()), reverse=True):
        found = _with_sha(day, sha256)
        if found is not None:
            return found
    return None


class _Session:
    """A drop session (pipeline/drop/passes.py) that keeps what stopped its import, for the typed result."""

    def __init__(self, options: DropOptions, say: Callable[[str], None]) -> None:
        from pipeline.drop.passes import DropSession, StopFlag

        api = self

        class Session(DropSession):
            def _import(self, path: Path, mapping: Path) -> RunResult:
                try:
                    run = super()._import(path, mapping)
                except RunStopped as exc:
                    api.stopped = exc
                    raise
                api.run = run
                return run

        self.run: RunResult | None = None
        self.stopped: RunStopped | None = None
        self._session = Session(options, say, StopFlag())  # no signal handlers of its own: the runner's only
        self.record = self._session.record
        self.take = self._session.take
        self.resume = self._session.resume
        self.handle = self._session.handle

    def close(self) -> None:
        self._session.close()

    def result(self, outcome: FileOutcome | None, name: str, sha256: str) -> DroppedFileResult:
        if outcome is None:
            raise FolderInUse(f"{name}: cannot be moved into processing/ yet (still open by its writer?)")
        run = self.run
        stop = self.stopped.reason if self.stopped is not None else (run.stop if run is not None else None)
        return DroppedFileResult(
            name=outcome.name,
            sha256=outcome.sha256 or sha256,
            outcome=outcome.outcome,
            exit_code=outcome.exit_code,
            path=outcome.path,
            reason=outcome.reason,
            counts=dict(outcome.counts),
            rows=outcome.rows,
            run_id=outcome.run_id,
            report_dir=outcome.reports,
            reports=run.paths if run is not None else None,
            duplicate_of=outcome.duplicate_of,
            companions=list(outcome.companions),
            stop=stop if outcome.exit_code == 3 else None,
        )
