"""`jobimport drop FOLDER --watch`: a long-running service that takes files as they settle.

It holds the folder's lock for as long as it runs (a timer pass started meanwhile says so and exits 0),
resumes what `processing/` holds, then reacts to file events (watchfiles) and looks at the whole folder every
`--rescan` seconds as well (events can be missed, e.g. on network shares). A file is taken once its size and
mtime have not changed for `--settle` seconds (or its ready marker exists). Each round that handles files is
one pass in the drop log. SIGTERM or Ctrl-C: the import in flight finishes its requests, writes the ledger and
the reports (its file stays in `processing/` when rows were left unsent), and the service exits 0.
"""

from __future__ import annotations

import time
from pathlib import Path

import watchfiles

from pipeline.drop.candidates import SettleTracker
from pipeline.drop.passes import (
    DropOptions,
    DropSession,
    FileOutcome,
    FolderBusy,
    PassResult,
    Say,
    StopFlag,
    absolute,
    check_folder,
    describe_pass,
    lock_folder,
)
from pipeline.drop.record import now_iso

TICK_MS = 500
HOUSEKEEPING_EVERY_S = 3600.0


def watch(options: DropOptions, say: Say = print) -> PassResult:
    check_folder(options.folder)
    options = absolute(options)
    folder = options.folder
    try:
        lock = lock_folder(folder, options.ledger_url)
    except FolderBusy as busy:
        say(f"jobimport drop: another pass is working on {folder} (it holds {busy}); not watching, exiting")
        return PassResult(0, busy=True)
    try:
        with StopFlag() as stop:
            tracker = SettleTracker(folder.resolve(), options.settle_s, options.ready_marker)
            tracker.rescan()
            say(
                f"watching {folder} (settle {options.settle_s:g} s, rescan every {options.rescan_s:g} s); "
                "SIGTERM or Ctrl-C stops"
            )
            _round(options, say, stop, [], strict=True)  # a broken mapping or settings: exit 2 now, not later
            last_housekeeping = time.monotonic()
            last_rescan = float("-inf")  # the first tick looks at the folder once the watcher is running
            changes_seen = watchfiles.watch(
                folder,
                watch_filter=None,
                debounce=200,
                step=50,
                stop_event=stop.event,
                rust_timeout=TICK_MS,
                yield_on_timeout=True,
                recursive=False,
                raise_interrupt=False,
            )
            for changes in changes_seen:
                if stop.requested:
                    break
                for _, changed in changes:
                    tracker.touch(Path(changed).resolve())
                now = time.monotonic()
                retry = False
                if now - last_rescan >= options.rescan_s:
                    tracker.rescan()
                    last_rescan = now
                    retry = True  # a file a stopped import left, or a filed file that grew: try them again
                ready = tracker.ready()
                housekeeping = options.keep_days is not None and now - last_housekeeping >= HOUSEKEEPING_EVERY_S
                if ready or housekeeping or retry:
                    for path in ready:
                        tracker.forget(path)
                    _round(options, say, stop, [folder / p.name for p in ready])
                    last_housekeeping = now if housekeeping else last_housekeeping
                if stop.requested:
                    break
            say(f"stopped watching {folder}")
            return PassResult(0, stopped_by_signal=True)
    finally:
        lock.release()


def _round(options: DropOptions, say: Say, stop: StopFlag, ready: list[Path], strict: bool = False) -> int:
    """One pass inside the service: what processing/ holds first, then the settled files. Settings and mappings
    are read again each time (a fixed .env or mapping is picked up without a restart)."""
    started_at = now_iso()
    try:
        session = DropSession(options, say, stop)
    except Exception as exc:  # a broken mapping or settings: say it and keep watching, files stay where they are
        if strict:
            raise
        say(f"jobimport drop: {exc}; the files stay where they are until this is fixed")
        return getattr(exc, "exit_code", 2)
    files: list[FileOutcome] = []
    try:
        session.housekeeping()
        files, ended = session.run_files(session.leftovers(), resumed=True)
        if not ended:
            grown, ended = session.run_grown()
            files += grown
        if not ended:
            more, _ = session.run_files([p for p in ready if p.exists()])
            files += more
        if not files:
            return 0
        exit_code = max(f.exit_code for f in files)
        session.finish_round(started_at, files, exit_code, watch=True)
        say(describe_pass(files, exit_code, 0, options.folder))
        return exit_code
    finally:
        session.close()
