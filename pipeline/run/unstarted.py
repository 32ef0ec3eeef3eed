"""Runs that never started: stopped before their first request (a wrong base path, a DNS failure, a customer id
the API refuses, a bad mapping). They leave no tenant folder behind, and `status` hides them unless `--all`.

A tenant folder this run created (it did not exist before) is removed again when its ledger holds no row (nothing
was ever marked `sending`, so nothing can be forgotten by removing it) and no run that ran (a run whose rows were
all invalid did run: exit 1, kept).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from pipeline.model import SUCCESS


def never_started(summary: dict[str, Any] | None, exit_code: int | None) -> bool:
    """A finished run that was stopped (exit 3) before sending anything and created nothing."""
    if summary is None or exit_code != 3:
        return False
    counts = summary.get("counts") or {}
    return not summary.get("rows_sent") and not any(counts.get(str(s)) for s in SUCCESS)


def _ledger_is_empty(path: Path) -> bool:
    if not path.is_file():
        return True
    try:
        db = sqlite3.connect(f"file:{path.as_posix()}?mode=ro", uri=True, timeout=5)
        try:
            used = db.execute(
                "SELECT EXISTS (SELECT 1 FROM rows) OR EXISTS (SELECT 1 FROM runs WHERE exit_code IS NOT NULL "
                "AND exit_code <> 3)"
            ).fetchone()[0]
            return not used
        finally:
            db.close()
    except sqlite3.Error:
        return False


def discard_if_unused(folder: Path, ledger: Path) -> bool:
    """Remove `folder` (a tenant folder created by this run) when its ledger holds no row and no run that was not
    stopped (exit 3) or could not start; True when removed."""
    if not folder.is_dir() or not _ledger_is_empty(ledger):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return not folder.exists()
