"""What drops remember: the folder's `drop-log.jsonl` for ops, and the tenant's `drops.sqlite` for the tool.

- `DropLog` (`FOLDER/drop-log.jsonl`): one JSON line each time a pass handles a file (`"event": "file"`), one
  per pass (`"event": "pass"`), and one per failed notification. Appended and flushed line by line, so a killed
  pass loses at most the line it was writing.
- `DropRecord` (`<state home>/tenants/<identity>/drops.sqlite`): which file contents (sha256) were imported
  for this tenant (an import that ended in `done/` or `attention/`), whatever the folder or the file name, so
  the same export dropped twice is not imported twice; the size and mtime each filed file had when it was filed
  (so a pass finds a file that grew afterwards, its writer having still held it open); and the passes, for
  `jobimport status`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.state import TenantIdentity, state_home, tenant_dir

LOG_NAME = "drop-log.jsonl"
RECORD_NAME = "drops.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS imported (
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    folder TEXT NOT NULL,
    filed TEXT NOT NULL,
    run_id TEXT,
    outcome TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS imported_sha ON imported (sha256);
CREATE TABLE IF NOT EXISTS filed (
    path TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    folder TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    run_id TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS passes (
    folder TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    files INTEGER NOT NULL,
    outcomes TEXT NOT NULL
);
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class DropLog:
    """`FOLDER/drop-log.jsonl`, appended one line at a time."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOG_NAME

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        line = {"time": now_iso(), "event": event, **fields}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return line

    def lines(self) -> Iterator[dict[str, Any]]:
        """Every readable line (a line cut short by a kill is skipped)."""
        if not self.path.is_file():
            return
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for text in handle:
                try:
                    value = json.loads(text)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    yield value


def filed_path(input_path: Path, run_id: str) -> Path | None:
    """Where a dropped file is now, for a run that read it as `FOLDER/processing/NAME` (the path its ledger
    recorded): the drop log beside `processing/` names where that run's file was filed. None: not a drop's
    file, or not filed (yet)."""
    if input_path.parent.name != "processing":
        return None
    folder = input_path.parent.parent
    found: Path | None = None
    for line in DropLog(folder).lines():
        if line.get("event") == "file" and run_id in (line.get("runs") or []) and line.get("path"):
            found = folder / str(line["path"])
    return found if found is not None and found.is_file() else None


@dataclass(frozen=True, slots=True)
class Imported:
    """An earlier import of the same content."""

    name: str
    folder: str
    filed: str
    run_id: str | None
    outcome: str
    at: str


@dataclass(frozen=True, slots=True)
class Filed:
    """A file a pass filed in done/ or attention/, as it was when filed."""

    path: Path
    name: str
    sha256: str
    size: int
    mtime_ns: int
    run_id: str | None
    at: str


#: how long a filed file is watched for growth (a writer that still held it open when it was taken)
WATCH_FILED_DAYS = 7


@dataclass(frozen=True, slots=True)
class PassRecord:
    folder: str
    started_at: str
    finished_at: str
    exit_code: int
    files: int
    outcomes: dict[str, int]


class DropRecord:
    """The tenant's record of imported file contents and of drop passes (SQLite, one small file)."""

    def __init__(self, identity: TenantIdentity, home: Path | None = None) -> None:
        folder = tenant_dir(identity, home)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / RECORD_NAME
        self._db = _connect(self.path)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> DropRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def earlier_import(self, sha256: str) -> Imported | None:
        row = self._db.execute(
            "SELECT name, folder, filed, run_id, outcome, at FROM imported WHERE sha256 = ? ORDER BY at LIMIT 1",
            (sha256,),
        ).fetchone()
        return Imported(*row) if row else None

    def add_import(self, sha256: str, name: str, folder: Path, filed: Path, run_id: str | None, outcome: str) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO imported VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sha256, name, str(folder), str(filed), run_id, outcome, now_iso()),
            )

    def add_filed(
        self, path: Path, name: str, folder: Path, sha256: str, size: int, mtime_ns: int, run_id: str | None
    ) -> None:
        """Remember a filed file with the sha256, size and mtime of the content its import read."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO filed VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (str(path), name, str(folder), sha256, size, mtime_ns, run_id, now_iso()),
            )

    def filed_by_runs(self, run_ids: list[str]) -> list[Path]:
        """The filed files whose last import was one of `run_ids`."""
        marks = ", ".join("?" * len(run_ids))
        rows = self._db.execute(f"SELECT path FROM filed WHERE run_id IN ({marks})", run_ids).fetchall()
        return [Path(p) for (p,) in rows]

    def forget_filed(self, path: Path) -> None:
        with self._db:
            self._db.execute("DELETE FROM filed WHERE path = ?", (str(path),))

    def changed_since_filed(self, folder: Path, days: int = WATCH_FILED_DAYS) -> list[tuple[Filed, int]]:
        """Files of `folder` filed in the last `days` days whose size or mtime is no longer what it was when filed,
        with their size now (a file moved away or deleted since is forgotten)."""
        since = datetime.fromtimestamp(datetime.now(UTC).timestamp() - days * 86400, UTC).isoformat()
        rows = self._db.execute(
            "SELECT path, name, sha256, size, mtime_ns, run_id, at FROM filed WHERE folder = ? AND at >= ? ORDER BY at",
            (str(folder), since),
        ).fetchall()
        changed: list[tuple[Filed, int]] = []
        for path, name, sha256, size, mtime_ns, run_id, at in rows:
            try:
                info = Path(path).stat()
            except OSError:
                self.forget_filed(Path(path))
                continue
            if (info.st_size, info.st_mtime_ns) != (size, mtime_ns):
                changed.append((Filed(Path(path), name, sha256, size, mtime_ns, run_id, at), info.st_size))
        return changed

    def add_pass(self, folder: Path, started_at: str, exit_code: int, outcomes: dict[str, int]) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO passes VALUES (?, ?, ?, ?, ?, ?)",
                (str(folder), started_at, now_iso(), exit_code, sum(outcomes.values()), json.dumps(outcomes)),
            )


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def recent_passes(home: Path | None = None, limit: int = 10) -> list[PassRecord]:
    """The latest drop passes of every tenant in the state home, newest first."""
    root = state_home(home) / "tenants"
    found: list[PassRecord] = []
    for path in sorted(root.glob(f"*/{RECORD_NAME}")) if root.is_dir() else []:
        try:
            db = sqlite3.connect(f"file:{path.as_posix()}?mode=ro", uri=True, timeout=10)
            try:
                rows = db.execute(
                    "SELECT folder, started_at, finished_at, exit_code, files, outcomes FROM passes "
                    "ORDER BY started_at DESC LIMIT ?",
                    (limit,),
                ).fetchall()
            finally:
                db.close()
        except sqlite3.Error:
            continue
        found.extend(PassRecord(f, s, e, int(x), int(n), json.loads(o)) for f, s, e, x, n, o in rows)
    found.sort(key=lambda p: p.started_at, reverse=True)
    return found[:limit]


def passes_table(home: Path | None = None, limit: int = 10) -> str:
    """`jobimport status`'s drop section: one line per pass ("" when there were none)."""
    passes = recent_passes(home, limit)
    if not passes:
        return ""
    lines = [f"{'drop pass started':<30} {'exit':>4}  files  folder"]
    for p in passes:
        shown = ", ".join(f"{n} {o}" for o, n in p.outcomes.items() if n) or "no file"
        lines.append(f"{p.started_at:<30} {p.exit_code:>4}  {shown}  {p.folder}")
    return "\n".join(lines)
