"""A drop pass: lock the folder, resume what a stopped pass left in `processing/`, take the settled files, import
each one, file it by its outcome, log it, tell someone.

Filing by outcome (one file at a time, oldest first):

| the import…                                               | the file goes to          | exit |
|-----------------------------------------------------------|---------------------------|------|
| created or already created every row                      | `done/YYYY-MM-DD/`        | 0    |
| has no data rows (header only: an empty night)            | `done/YYYY-MM-DD/`        | 0    |
| content already imported for this tenant (any file name)  | `done/…` + `.duplicate.txt` | 0  |
| left rows needing attention                               | `attention/…` + corrections | 1  |
| kept changing while it was imported (MAX_READS imports)   | `attention/…` + `.changing.txt` | 1 |
| could not read it / headers do not match / no route       | `failed/…` + `.error.txt` | 2    |
| was stopped (API down, credentials refused, SIGTERM)      | stays in `processing/`    | 3    |
| could not start for a settings or ledger problem          | stays in `processing/`    | 2    |

A stopped file ends the pass (the next files would meet the same API); the next pass resumes it first and the
ledger keeps every row exactly once. The settings and the mappings are checked before any file is touched.

Nothing is filed that changed under the import: the file's size and sha256 are taken before it is read and again
after; if they differ, it is imported again (the ledger makes that exact: rows already created are not sent)
until they hold still, at most MAX_READS times. And a filed file whose writer still held it open may grow in
done/ or attention/: each pass compares the files it filed in the last days with the size and mtime the drop
record holds, and imports the new rows of one that changed (once it has settled), saying so.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from pipeline.drop import filing
from pipeline.drop.candidates import is_candidate_name, look, markers_present, scan, settled_in_pass
from pipeline.drop.housekeeping import prune
from pipeline.drop.notify import Notifier, message_text
from pipeline.drop.record import DropLog, DropRecord, now_iso
from pipeline.errors import InputFileError, JobImportError, MappingError, NoDataRows, RunStopped, StopReason, UsageError
from pipeline.mapping import load_mapping, source_columns
from pipeline.run import file_sha256
from pipeline.state import TenantIdentity
from pipeline.submit.ledger import shared_ledger_url

if TYPE_CHECKING:
    from pipeline.run import RunResult
    from pipeline.settings import Settings
    from pipeline.submit.ledger_pg import FolderLock

LOCK_NAME = ".jobimport-drop.lock"
#: imports of one file that kept changing while it was read, before it is filed to attention/
MAX_READS = 3
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Route:
    """Files whose name matches `pattern` (a glob, case-insensitive; None: every file) use `mapping`."""

    pattern: str | None
    mapping: Path

    @classmethod
    def parse(cls, text: str) -> Route:
        """`mappings/jobs.toml` (every file) or `'jobs_*.csv=mappings/legacy.toml'`."""
        pattern, sep, mapping = text.partition("=")
        if not sep:
            return cls(None, Path(text))
        if not pattern.strip() or not mapping.strip():
            raise UsageError(f"--mapping {text!r}: expected PATTERN=MAPPING, e.g. 'jobs_*.csv=mappings/jobs.toml'")
        return cls(pattern.strip(), Path(mapping.strip()))

    def matches(self, name: str) -> bool:
        return self.pattern is None or fnmatch.fnmatchcase(name.lower(), self.pattern.lower())


@dataclass
class DropOptions:
    folder: Path
    routes: list[Route]
    report_root: Path | None = None  # default FOLDER/reports
    env_file: Path | None = None
    settle_s: float = 60.0
    ready_marker: str | None = None
    keep_days: int | None = None
    notifier: Notifier = field(default_factory=Notifier)
    max_concurrency: int = 32
    max_attempts: int = 6
    timeout_s: float = 30.0
    state_dir: Path | None = None  # the state home (None: JOBIMPORT_HOME, else the user's state folder)
    rescan_s: float = 30.0  # --watch: look at the whole folder this often, events or not
    settings: Settings | None = None  # given directly (the Python API, an orchestrator) instead of env_file
    ledger_url: str | None = None  # the tenant's shared ledger (postgresql://…); None: $JOBIMPORT_LEDGER_URL, if set

    @property
    def reports(self) -> Path:
        return self.report_root if self.report_root is not None else self.folder / "reports"


@dataclass
class FileOutcome:
    """What a pass did with one file: one line of the drop log."""

    name: str
    outcome: str  # done / attention / failed / processing
    exit_code: int
    path: Path  # where the file is now
    sha256: str | None = None
    size: int | None = None
    rows: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None
    runs: list[str] = field(default_factory=list)
    reports: Path | None = None
    reason: str | None = None
    duplicate_of: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    companions: list[Path] = field(default_factory=list)
    mapping: Path | None = None
    mtime_ns: int | None = None  # its mtime when its sha256 was taken
    interrupted: bool = False  # a SIGTERM/SIGINT stopped its import
    stops_round: bool = False  # the next files would meet the same problem (API down, settings, ledger in use)


@dataclass
class PassResult:
    exit_code: int
    files: list[FileOutcome] = field(default_factory=list)
    busy: bool = False
    stopped_by_signal: bool = False


class StopFlag:
    """SIGINT/SIGTERM between files: finish the current file, take no other. (During an import the runner's
    own handler takes over: it finishes the requests in flight and writes the ledger and the reports.)"""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._saved.items():
            signal.signal(sig, previous)

    def _handle(self, signum: int, frame: object) -> None:
        if not self.event.is_set():
            print(f"jobimport drop: {signal.Signals(signum).name}: finishing, taking no new file", file=sys.stderr)
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()


class FolderBusy(Exception):
    """Another pass (or a --watch service) holds the folder's lock."""


def lock_folder(folder: Path, ledger_url: str | None = None) -> FileLock | FolderLock:
    """The folder's lock, held (raises FolderBusy if another process holds it). With a shared ledger (`ledger_url`,
    else $JOBIMPORT_LEDGER_URL): an advisory lock in its database per canonical folder path, so that passes on
    several machines watching one shared folder exclude each other; else a lock file in the folder."""
    shared = ledger_url or shared_ledger_url()
    if shared is not None:
        from pipeline.submit.ledger_pg import FolderBusyElsewhere, FolderLock

        try:
            return FolderLock(shared, folder)
        except FolderBusyElsewhere as busy:
            raise FolderBusy(f"the folder's advisory lock in the shared ledger {busy}") from None
    lock = FileLock(folder / LOCK_NAME)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FolderBusy(str(folder / LOCK_NAME)) from None
    return lock


def check_folder(folder: Path) -> None:
    if not folder.exists():
        raise UsageError(f"{folder}: drop folder not found; create it or check the path")
    if not folder.is_dir():
        raise UsageError(f"{folder}: is a file, not a folder; give the folder files are dropped into")


class DropSession:
    """Everything one pass (or one round of --watch) needs, checked before any file is touched."""

    def __init__(self, options: DropOptions, say: Say, stop: StopFlag) -> None:
        from pipeline.mapping import load_mapping
        from pipeline.settings import load_settings

        self.options = options
        self.folder = options.folder
        self.say = say
        self.stop = stop
        self.log = DropLog(self.folder)
        if not options.routes:
            raise UsageError("drop needs at least one --mapping (FILE, or PATTERN=FILE to route by file name)")
        for route in options.routes:
            load_mapping(route.mapping)  # a broken mapping stops the pass before any file is claimed
        self.settings: Settings = options.settings or load_settings(options.env_file)
        self.identity = TenantIdentity.of(self.settings.base_url, self.settings.customer_id)
        self.record = DropRecord(self.identity, options.state_dir)

    def close(self) -> None:
        self.record.close()

    # --- one file ----------------------------------------------------------------------------------------------

    def take(self, path: Path) -> FileOutcome | None:
        """Claim a settled file (consuming its ready marker) and handle it. None: it could not be moved (gone,
        or still open by its writer on Windows) and is left for the next pass."""
        name = path.name
        markers = markers_present(path, self.options.ready_marker)
        try:
            claimed = filing.claim(path, self.folder)
        except OSError as exc:
            self.say(f"  {name}: cannot be moved into processing/ yet ({exc.strerror or exc}); left for the next pass")
            return None
        for marker in markers:
            marker.unlink(missing_ok=True)
        return self.handle(claimed, name, [])

    def grown(self) -> list[tuple[Path, str, str]]:
        """Files this folder's passes filed (done/, attention/) that changed since, and have settled again: their
        path, name and what changed ("10 rows, 312 bytes → 624 bytes")."""
        found = []
        for filed, size in self.record.changed_since_filed(self.folder):
            seen = look(filed.path)
            if seen is None or seen.age_s < self.options.settle_s:
                continue  # still being written: a later pass
            found.append((filed.path, filed.name, f"{filed.size} → {size} bytes"))
        return found

    def run_grown(self) -> tuple[list[FileOutcome], bool]:
        """Import the new rows of filed files that grew after they were filed (their writer still had them open)."""
        done: list[FileOutcome] = []
        for path, name, change in self.grown():
            if self.stop.requested:
                return done, True
            self.say(
                f"  {name} changed after it was filed in {self._rel(path.parent)} ({change}): importing it again; "
                "only its new rows are sent"
            )
            outcome = self.handle(path, name, [], grown=change)
            done.append(outcome)
            if outcome.stops_round or outcome.interrupted:
                return done, True
        return done, False

    def resume(self, path: Path) -> FileOutcome:
        """A file an earlier pass left in processing/: import it again (the ledger knows what was sent)."""
        rel = self._rel(path)
        name, runs = path.name, []
        sha256 = file_sha256(path)
        for line in self.log.lines():  # the last line an earlier pass wrote for this very file, if any
            if line.get("event") == "file" and line.get("path") == rel and line.get("sha256") == sha256:
                name = str(line.get("name") or name)
                runs = [r for r in line.get("runs") or [] if r]
        self.say(f"  resuming {rel} (left by an earlier pass)")
        return self.handle(path, name, runs)

    def handle(self, path: Path, name: str, earlier_runs: list[str], grown: str | None = None) -> FileOutcome:
        try:
            outcome = self._handle(path, name, earlier_runs)
            if grown is not None and outcome.outcome != filing.PROCESSING:
                outcome.reason = f"changed after it was filed ({grown}); its new rows were imported" + (
                    f"; {outcome.reason}" if outcome.reason else ""
                )
        except Exception as exc:  # a bug: keep the file where a pass resumes it, say so, go on with the others
            reason = (
                f"unexpected error {type(exc).__name__}: {exc}; the file stays in processing/ and the next pass "
                "tries again; please report it"
            )
            outcome = FileOutcome(name, filing.PROCESSING, 2, path, reason=reason, runs=earlier_runs)
        self._log_file(outcome)
        self._tell(outcome)
        self.say("  " + describe(outcome, self.folder))
        return outcome

    def _handle(self, path: Path, name: str, earlier_runs: list[str]) -> FileOutcome:
        route = next((r for r in self.options.routes if r.matches(name)), None)
        if route is None:
            patterns = ", ".join(str(r.pattern) for r in self.options.routes)
            return self._failed(
                path,
                name,
                f"{name}: no --mapping route matches this file name (routes: {patterns}); rename the file "
                "or add a route, then drop it again",
            )
        sha256, size, mtime_ns = fingerprint(path)
        base: dict[str, Any] = {
            "sha256": sha256,
            "size": size,
            "mtime_ns": mtime_ns,
            "mapping": route.mapping,
            "runs": list(earlier_runs),
        }
        earlier = self.record.earlier_import(sha256)
        if earlier is not None:
            filed = filing.file_to(path, self.folder, filing.DONE)
            note = (
                f"{name} was not imported again: the same content (sha256 {sha256}) was imported from "
                f"{earlier.name} at {earlier.at} (run {earlier.run_id}, filed as {earlier.filed})"
            )
            companion = filing.note_beside(filed, ".duplicate.txt", note)
            duplicate = {"name": earlier.name, "run_id": earlier.run_id, "at": earlier.at, "filed": earlier.filed}
            return FileOutcome(
                name, filing.DONE, 0, filed, reason=note, duplicate_of=duplicate, companions=[companion], **base
            )
        try:
            result, stable = self._import_until_stable(path, name, route.mapping, base)
        except NoDataRows as exc:
            missing = [c for c in source_columns(load_mapping(route.mapping)) if exc.columns and c not in exc.columns]
            if missing:  # an empty night all the same, but the export changed: it would fail on the first row
                listed = ", ".join(f"'{c}'" for c in missing)
                reason = f"{name}: no data rows, and its headers no longer match the mapping: missing {listed}"
                return self._failed(path, name, reason, base)
            return self._empty_night(path, name, base)
        except (InputFileError, MappingError) as exc:
            if _no_data_rows(exc):
                return self._empty_night(path, name, base)
            return self._failed(path, name, str(exc).replace(str(path), name), base)
        except RunStopped as exc:
            reason = f"{exc}; the file stays in processing/ and the next pass resumes it"
            return FileOutcome(name, filing.PROCESSING, exc.exit_code, path, reason=reason, stops_round=True, **base)
        except JobImportError as exc:  # settings, ledger in use or of another tenant: not the file's fault
            reason = f"{exc}; the file stays in processing/ and the next pass resumes it"
            return FileOutcome(name, filing.PROCESSING, exc.exit_code, path, reason=reason, stops_round=True, **base)
        return self._imported(path, name, result, base, stable)

    def _import_until_stable(
        self, path: Path, name: str, mapping: Path, base: dict[str, Any]
    ) -> tuple[RunResult, bool]:
        """Import `path` until its size and sha256 after the import are those it had before (at most MAX_READS
        times; each import after the first sends only the rows the ledger has not seen). `base` is updated to the
        content last read; returns the last result and whether the file held still."""
        for attempt in range(1, MAX_READS + 1):
            result = self._import(path, mapping)
            sha256, size, mtime_ns = fingerprint(path)
            if (sha256, size) == (base["sha256"], base["size"]):
                return result, True
            self.say(
                f"  {name} changed while it was imported ({base['size']} → {size} bytes, import {attempt} of at most "
                f"{MAX_READS}){'; importing it again: only new rows are sent' if attempt < MAX_READS else ''}"
            )
            if result.exit_code not in (0, 1) or attempt == MAX_READS:
                return result, False  # `base` stays what was known before this read: the rest shows as a change
            base.update(sha256=sha256, size=size, mtime_ns=mtime_ns)
            base["runs"].append(result.run_id)
        raise AssertionError("unreachable")

    def _import(self, path: Path, mapping: Path) -> RunResult:
        """The one place a drop calls the import: RunOptions is built here. The ledger and this drop's record of
        imported contents live in the same state home (`state_dir`)."""
        from pipeline.run import RunOptions, run_import
        from pipeline.submit import SubmitOptions

        options = self.options
        return run_import(
            RunOptions(
                input=path,
                mapping=mapping,
                report_root=options.reports,
                settings=self.settings,
                ledger=options.ledger_url,  # (None: the run's own rule, $JOBIMPORT_LEDGER_URL else the tenant's file)
                state_dir=options.state_dir,
                read_timeout_s=options.timeout_s,
                submit=SubmitOptions(max_concurrency=options.max_concurrency, max_attempts=options.max_attempts),
            )
        )

    def _imported(
        self, path: Path, name: str, result: RunResult, base: dict[str, Any], stable: bool = True
    ) -> FileOutcome:
        counts = {s: n for s, n in result.counts.items() if n}
        runs = [*base.pop("runs"), result.run_id]
        common: dict[str, Any] = dict(
            interrupted=_interrupted(result),
            rows=sum(counts.values()),
            counts=counts,
            run_id=result.run_id,
            runs=runs,
            reports=result.report_dir,
            problems=_problems(result.report_dir),
            **base,
        )
        if result.exit_code == 0 and stable:
            filed = filing.file_to(path, self.folder, filing.DONE)
            self.record.add_import(base["sha256"], name, self.folder, filed, result.run_id, filing.DONE)
            self._filed(filed, name, base, result.run_id)
            if result.summary.corrects_run is not None:
                self._close_attention(filed, name)
            return FileOutcome(name, filing.DONE, 0, filed, **common)
        if result.exit_code in (0, 1):
            filed = filing.file_to(path, self.folder, filing.ATTENTION)
            self.record.add_import(base["sha256"], name, self.folder, filed, result.run_id, filing.ATTENTION)
            self._filed(filed, name, base, result.run_id)
            companions = []
            for source in (result.paths.corrections_xlsx, result.paths.corrections_csv):
                if source is not None and source.is_file():
                    companions.append(filing.copy_beside(filed, f"{filed.stem}.corrections{source.suffix}", source))
            if not stable:
                reason = (
                    f"{name} was still changing after {MAX_READS} imports (its writer had not finished); the rows "
                    "read so far were imported; once it holds still for --settle, a pass imports the rest (rows "
                    "already created are not sent again). A sender that writes NAME.ready when done avoids this"
                )
                companions.append(filing.note_beside(filed, ".changing.txt", reason))
                common["reason"] = reason
            return FileOutcome(name, filing.ATTENTION, 1, filed, companions=companions, **common)
        stopped = result.stop_reason or "the run was stopped"
        reason = f"{stopped}; the file stays in processing/ and the next pass resumes it"
        return FileOutcome(name, filing.PROCESSING, result.exit_code, path, reason=reason, stops_round=True, **common)

    def _close_attention(self, corrections: Path, name: str) -> None:
        """A corrections file was imported whole: when that leaves no open row in its original file (every round
        counted, `jobimport status FILE`), the original moves from attention/ to done/, with its companions."""
        from pipeline.signoff import sign_off
        from pipeline.state import default_ledger_path

        signed = sign_off(corrections, [default_ledger_path(self.identity, self.options.state_dir)])
        if not signed.done:
            return
        attention = self.folder / filing.ATTENTION
        for path in self.record.filed_by_runs([r.run_id for r in signed.rounds]):
            if attention not in path.parents or not path.is_file():
                continue
            companions = [p for p in path.parent.glob(f"{path.stem}.corrections.*") if p.is_file()]
            moved = filing.file_to(path, self.folder, filing.DONE)
            for companion in companions:
                filing.move(companion, moved.parent)
            self.record.forget_filed(path)
            self.record.add_filed(moved, moved.name, self.folder, *_recorded(moved))
            line = (
                f"  {moved.name}: its last open rows were imported (from {name}): "
                f"{self._rel(path)} -> {self._rel(moved)}; {signed.verdict}"
            )
            self.say(line)
            self.log.write("closed", name=moved.name, path=self._rel(moved), was=self._rel(path), by=name)

    def _filed(self, filed: Path, name: str, base: dict[str, Any], run_id: str | None) -> None:
        """Remember a filed file as it was read (not as it is now: bytes its writer added since must show)."""
        self.record.add_filed(filed, name, self.folder, base["sha256"], base["size"], base["mtime_ns"], run_id)

    def _empty_night(self, path: Path, name: str, base: dict[str, Any]) -> FileOutcome:
        filed = filing.file_to(path, self.folder, filing.DONE)
        self._filed(filed, name, base, None)  # its writer may not have finished
        reason = f"{name} has headers but no data rows: nothing to import"
        return FileOutcome(name, filing.DONE, 0, filed, rows=0, reason=reason, **base)

    def _failed(self, path: Path, name: str, reason: str, base: dict[str, Any] | None = None) -> FileOutcome:
        filed = filing.file_to(path, self.folder, filing.FAILED)
        if base is not None:  # a file cut short by a writer that had not finished: tried again when it grows
            self._filed(filed, name, base, None)
        companion = filing.note_beside(filed, ".error.txt", reason)
        return FileOutcome(name, filing.FAILED, 2, filed, reason=reason, companions=[companion], **(base or {}))

    # --- record and tell ---------------------------------------------------------------------------------------

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.folder).as_posix()
        except ValueError:
            return str(path)

    def _log_file(self, o: FileOutcome) -> None:
        self.log.write(
            "file",
            name=o.name,
            sha256=o.sha256,
            size=o.size,
            rows=o.rows,
            counts=o.counts,
            exit_code=o.exit_code,
            run_id=o.run_id,
            runs=o.runs,
            reports=str(o.reports) if o.reports else None,
            outcome=o.outcome,
            path=self._rel(o.path),
            mapping=str(o.mapping) if o.mapping else None,
            reason=o.reason,
            duplicate_of=o.duplicate_of,
            companions=[self._rel(c) for c in o.companions],
        )

    def _tell(self, o: FileOutcome) -> None:
        notifier = self.options.notifier
        if not notifier.wanted(o.outcome) or o.interrupted:
            return
        if o.outcome == filing.PROCESSING and len(o.runs) > 1:
            return  # told when it first stopped; a resumed file that stops again (API still down) is not news
        message: dict[str, Any] = {
            "folder": str(self.folder),
            "file": o.name,
            "outcome": o.outcome,
            "exit_code": o.exit_code,
            "rows": o.rows,
            "counts": o.counts,
            "run_id": o.run_id,
            "reports": str(o.reports) if o.reports else None,
            "filed_to": str(o.path),
            "problems": o.problems,
            "reason": o.reason,
            "duplicate_of": o.duplicate_of,
            "sha256": o.sha256,
        }
        message["text"] = message_text(message)

        def failed(target: str, why: str) -> None:
            self.say(f"  jobimport drop: could not notify {target} about {o.name} (tried twice): {why}")
            self.log.write("notify_failed", name=o.name, target=target, reason=why)

        notifier.send(message, failed)

    # --- a round: what is in processing/, then what settled ---------------------------------------------------

    def run_files(self, paths: list[Path], resumed: bool = False) -> tuple[list[FileOutcome], bool]:
        """Handle files in order; stops after a stopped file (API down, interrupted) or a stop signal.
        Returns the outcomes and whether the round ended early."""
        done: list[FileOutcome] = []
        for path in paths:
            if self.stop.requested:
                return done, True
            outcome = self.resume(path) if resumed else self.take(path)
            if outcome is None:
                continue
            done.append(outcome)
            if outcome.interrupted:
                self.stop.event.set()
            if outcome.stops_round or outcome.interrupted:
                return done, True
        return done, False

    def leftovers(self) -> list[Path]:
        return [s.path for s in scan(self.folder / filing.PROCESSING) if is_candidate_name(s.path.name)]

    def housekeeping(self) -> None:
        if self.options.keep_days is None:
            return
        pruned = prune(self.folder, self.options.keep_days, self.options.reports, self.log)
        if pruned.days:
            self.say(
                f"  removed done/ days older than {self.options.keep_days} days: {', '.join(pruned.days)} "
                f"(and {len(pruned.reports)} report folders)"
            )
            self.log.write("pruned", days=pruned.days, reports=pruned.reports, keep_days=self.options.keep_days)

    def finish_round(self, started_at: str, files: list[FileOutcome], exit_code: int, **extra: Any) -> None:
        outcomes: dict[str, int] = {}
        for f in files:
            outcomes[f.outcome] = outcomes.get(f.outcome, 0) + 1
        self.log.write("pass", started_at=started_at, files=len(files), outcomes=outcomes, exit_code=exit_code, **extra)
        if files or exit_code:
            self.record.add_pass(self.folder, started_at, exit_code, outcomes)


def absolute(options: DropOptions) -> DropOptions:
    """The options with absolute paths, so the drop log and notifications name files wherever they are read."""
    return dataclasses.replace(
        options,
        folder=options.folder.expanduser().resolve(),
        routes=[Route(r.pattern, r.mapping.expanduser().resolve()) for r in options.routes],
        report_root=options.report_root.expanduser().resolve() if options.report_root else None,
    )


def run_pass(options: DropOptions, say: Say = print) -> PassResult:
    """One pass over the folder (for cron and systemd timers). Raises JobImportError (exit 2) when it cannot
    start: a missing folder, a broken mapping, missing settings."""
    check_folder(options.folder)
    options = absolute(options)
    folder = options.folder
    try:
        lock = lock_folder(folder, options.ledger_url)
    except FolderBusy as busy:
        say(f"jobimport drop: another pass is working on {folder} (it holds {busy}); nothing to do, exiting")
        return PassResult(0, busy=True)
    started_at = now_iso()
    try:
        with StopFlag() as stop:
            try:
                session = DropSession(options, say, stop)
            except JobImportError as exc:
                DropLog(folder).write("pass", started_at=started_at, files=0, exit_code=exc.exit_code, error=str(exc))
                raise
            try:
                session.housekeeping()
                files, ended = session.run_files(session.leftovers(), resumed=True)
                if not ended and not stop.requested:
                    grown, ended = session.run_grown()
                    files += grown
                if not ended and not stop.requested:
                    taken = settled_in_pass(folder, options.settle_s, options.ready_marker)
                    more, ended = session.run_files(taken)
                    files += more
                exit_code = max((f.exit_code for f in files), default=0)
                if stop.requested and not files:
                    exit_code = 3
                session.finish_round(started_at, files, exit_code)
                waiting = len(scan(folder, options.ready_marker))
                say(describe_pass(files, exit_code, waiting, folder, options.ready_marker))
                return PassResult(exit_code, files, stopped_by_signal=stop.requested)
            finally:
                session.close()
    finally:
        lock.release()


def describe(o: FileOutcome, folder: Path) -> str:
    """One line for a handled file."""
    try:
        where = o.path.relative_to(folder).as_posix()
    except ValueError:
        where = str(o.path)
    counts = ", ".join(f"{n} {s}" for s, n in o.counts.items()) or (f"{o.rows} rows" if o.rows is not None else "")
    parts = [f"{o.name} -> {where}", f"exit {o.exit_code}"]  # ASCII: a Windows log file may be cp1252
    if counts:
        parts.insert(1, counts)
    if o.run_id:
        parts.append(f"run {o.run_id}")
    if o.duplicate_of:
        parts.insert(1, "duplicate")
    line = ", ".join(parts)
    if o.reason:
        line += f"\n    {o.reason}"
    corrections = [c for c in o.companions if ".corrections." in c.name]
    if corrections and o.outcome == filing.ATTENTION:
        fix = corrections[0].name
        line += f"\n    fix the rows in {fix} beside it and drop it back in; reports: {o.reports}"
    return line


def describe_pass(
    files: list[FileOutcome], exit_code: int, waiting: int, folder: Path, ready_marker: str | None = None
) -> str:
    outcomes: dict[str, int] = {}
    for f in files:
        outcomes[f.outcome] = outcomes.get(f.outcome, 0) + 1
    shown = ", ".join(f"{n} {o}" for o, n in outcomes.items()) or "no file ready"
    why = f"no NAME{ready_marker} marker yet" if ready_marker else "not settled yet: see --settle"
    later = f"; {waiting} left for a later pass ({why})" if waiting else ""
    return f"drop pass on {folder}: {shown}{later}; exit {exit_code}"


def fingerprint(path: Path) -> tuple[str, int, int]:
    """sha256, size and mtime of a file; the stat comes first, so a write during the hashing shows later."""
    info = path.stat()
    return file_sha256(path), info.st_size, info.st_mtime_ns


def _recorded(path: Path) -> tuple[str, int, int, None]:
    sha256, size, mtime_ns = fingerprint(path)
    return sha256, size, mtime_ns, None


def _interrupted(result: RunResult) -> bool:
    """SIGTERM/SIGINT reached the import (the runner's own handler took it): the pass takes no other file."""
    return result.stop is StopReason.INTERRUPTED


def _no_data_rows(exc: JobImportError) -> bool:
    return isinstance(exc, NoDataRows)


def _problems(report_dir: Path, limit: int = 5) -> list[str]:
    """The top messages of a run's summary.json, as `Column: message (N rows)`."""
    try:
        doc = json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found = []
    for item in (doc.get("errors") or {}).get("top_messages") or []:
        column = f"{item['column']}: " if item.get("column") else ""
        found.append(f"{column}{item.get('message')} ({item.get('count')} rows)")
    for item in doc.get("api_problems") or []:
        found.append(f"{item.get('problem')} ({item.get('count')} rows)")
    return found[:limit]
