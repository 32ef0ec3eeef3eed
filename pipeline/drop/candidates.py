"""Which files in a drop folder are complete and may be taken.

A candidate is a regular file directly in the folder (no symlink, no sub-folder) with a supported suffix that is
not hidden, not an Excel/LibreOffice lock file (`~$*`, `.~lock.*#`) and not a temporary name (`*.tmp`, `*.part`,
`*.crdownload`, `*.filepart`). A candidate is taken once it has settled:

- in a pass: its mtime is at least `settle` seconds old and neither its size nor its mtime change while the pass
  looks at it (a copy that keeps the source's mtime still grows during the look);
- with --watch: it has not changed (size, mtime) for `settle` seconds of observation (`SettleTracker`);
- with a ready marker: `NAME.ready` or `NAME.done` exists (always honoured, the safe way), or `NAME+SUFFIX` with
  `--ready-marker SUFFIX` (then only marked files are taken), whatever its age: the sender says it is complete.

A file still changing is left alone, without error, for the next look.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.read import CSV_SUFFIXES, EXCEL_SUFFIXES

SUPPORTED_SUFFIXES = CSV_SUFFIXES + EXCEL_SUFFIXES
IGNORED_PATTERNS = ("~$*", ".~lock.*#", "*.tmp", "*.part", "*.crdownload", "*.filepart")
#: markers a sender may write after the file (`jobs.csv.ready`): the file is taken at once, without settling
READY_MARKERS = (".ready", ".done")
_HIDDEN = getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0)


@dataclass(frozen=True, slots=True)
class Seen:
    """What a look at a file saw: enough to tell whether it is still being written."""

    path: Path
    size: int
    mtime_ns: int

    @property
    def age_s(self) -> float:
        return time.time() - self.mtime_ns / 1e9


def is_candidate_name(name: str, ready_marker: str | None = None) -> bool:
    """A name a drop may take: supported suffix, not hidden, not a lock file, a temporary name or a marker."""
    lowered = name.lower()
    if name.startswith(".") or any(fnmatch.fnmatchcase(lowered, p) for p in IGNORED_PATTERNS):
        return False
    if ready_marker and lowered.endswith(ready_marker.lower()):
        return False
    return os.path.splitext(lowered)[1] in SUPPORTED_SUFFIXES


def look(path: Path) -> Seen | None:
    """Size and mtime of a regular file (None: gone, a folder, a symlink, or hidden on Windows)."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or getattr(info, "st_file_attributes", 0) & _HIDDEN:
        return None
    return Seen(path, info.st_size, info.st_mtime_ns)


def scan(folder: Path, ready_marker: str | None = None) -> list[Seen]:
    """Every candidate directly in `folder`, oldest first."""
    found: list[Seen] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        if is_candidate_name(entry.name, ready_marker):
            seen = look(Path(entry.path))
            if seen is not None:
                found.append(seen)
    found.sort(key=lambda s: (s.mtime_ns, s.path.name))
    return found


def marker_of(path: Path, ready_marker: str) -> Path:
    return path.with_name(path.name + ready_marker)


def markers_present(path: Path, ready_marker: str | None = None) -> list[Path]:
    """The ready markers beside `path` (`--ready-marker`'s, else `NAME.ready` / `NAME.done`)."""
    suffixes = (ready_marker,) if ready_marker else READY_MARKERS
    return [m for m in (marker_of(path, s) for s in suffixes) if m.is_file()]


def settled_in_pass(folder: Path, settle_s: float, ready_marker: str | None = None) -> list[Path]:
    """The candidates a pass may take now. Waits a moment (at most 2 s) to see that their size stays put."""
    candidates = scan(folder, ready_marker)
    marked = [s.path for s in candidates if markers_present(s.path, ready_marker)]
    if ready_marker:
        return marked
    old_enough = [s for s in candidates if s.path not in marked and s.age_s >= settle_s]
    if not old_enough:
        return marked
    pause = min(2.0, settle_s / 4)
    if pause > 0:
        time.sleep(pause)
    return marked + [s.path for s in old_enough if look(s.path) == s]


class SettleTracker:
    """For --watch: each candidate's last (size, mtime) and when it last changed, as observed by this process.

    `touch` records a path an event named; `rescan` looks at the whole folder (events can be missed, e.g. on
    network shares); `ready` returns the paths unchanged for `settle_s` seconds (or whose marker exists)."""

    def __init__(self, folder: Path, settle_s: float, ready_marker: str | None = None) -> None:
        self.folder = folder
        self.settle_s = settle_s
        self.ready_marker = ready_marker
        self._last: dict[Path, tuple[Seen, float]] = {}

    def touch(self, path: Path) -> None:
        if path.parent != self.folder or not is_candidate_name(path.name, self.ready_marker):
            for suffix in (self.ready_marker,) if self.ready_marker else READY_MARKERS:
                if path.name.endswith(suffix):
                    self._observe(path.with_name(path.name[: -len(suffix)]))
            return
        self._observe(path)

    def rescan(self) -> None:
        present = {s.path for s in scan(self.folder, self.ready_marker)}
        for gone in set(self._last) - present:
            del self._last[gone]
        for path in present:
            self._observe(path)

    def forget(self, path: Path) -> None:
        self._last.pop(path, None)

    def _observe(self, path: Path) -> Seen | None:
        seen = look(path)
        if seen is None:
            self._last.pop(path, None)
            return None
        previous = self._last.get(path)
        if previous is None or previous[0] != seen:
            self._last[path] = (seen, time.monotonic())
        return seen

    def ready(self) -> list[Path]:
        now = time.monotonic()
        taken: list[Path] = []
        for path in list(self._last):
            if self._observe(path) is None:
                continue
            changed_at = self._last[path][1]
            settled = not self.ready_marker and now - changed_at >= self.settle_s
            if settled or markers_present(path, self.ready_marker):
                taken.append(path)
        return sorted(taken, key=lambda p: (self._last[p][0].mtime_ns, p.name))
