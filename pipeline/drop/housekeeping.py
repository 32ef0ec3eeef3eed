"""`--keep-days N`: remove `done/` day folders older than N days, and the report folders of their runs.

Never `attention/`, `failed/`, `processing/`, the ledger, the drop log or the record of imported contents
(pruned files stay known, so dropping the same export again is still recognised). A report folder is removed
only when the drop log says it belongs to a file filed in a removed `done/` day, and only inside the report
folder the pass uses.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from pipeline.drop.filing import DONE
from pipeline.drop.record import DropLog


@dataclass
class Pruned:
    days: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)


def prune(folder: Path, keep_days: int, report_root: Path, log: DropLog, today: date | None = None) -> Pruned:
    pruned = Pruned()
    done_root = folder / DONE
    if not done_root.is_dir():
        return pruned
    oldest_kept = (today or date.today()) - timedelta(days=keep_days)
    old_days: list[Path] = []
    for day in done_root.iterdir():
        try:
            when = date.fromisoformat(day.name)
        except ValueError:
            continue  # not a day folder of ours: leave it
        if day.is_dir() and when < oldest_kept:
            old_days.append(day)
    if not old_days:
        return pruned
    old = {d.resolve() for d in old_days}
    runs: set[str] = set()
    for line in log.lines():
        filed = line.get("path")
        if line.get("event") != "file" or line.get("outcome") != DONE or not filed:
            continue
        if (folder / filed).resolve().parent in old:
            runs.update(r for r in line.get("runs") or [line.get("run_id")] if r)
    root = report_root.resolve()
    for run_id in sorted(runs):
        target = (report_root / run_id).resolve()
        if target.parent == root and target.is_dir():
            shutil.rmtree(target)
            pruned.reports.append(run_id)
    for day in sorted(old_days):
        shutil.rmtree(day)
        pruned.days.append(day.name)
    return pruned
