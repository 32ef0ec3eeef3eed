"""Claiming and filing dropped files: rename into `processing/` before reading, then into a dated outcome folder.

Every move is a rename inside the drop folder (atomic on one file system) and never overwrites: on a name clash
the file gets a suffix (`jobs.csv` → `jobs-2.csv`). Only one pass works on a folder at a time (the folder lock),
so checking for a clash and renaming cannot race with another pass.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

PROCESSING = "processing"
DONE = "done"
ATTENTION = "attention"
FAILED = "failed"
OUTCOMES = (DONE, ATTENTION, FAILED)


def free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/<stem>-2<suffix>`, `-3`, … when that is taken."""
    candidate = folder / name
    stem, suffix = os.path.splitext(name)
    n = 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = folder / f"{stem}-{n}{suffix}"
    return candidate


def move(path: Path, folder: Path) -> Path:
    """Rename `path` into `folder` (created if needed) without overwriting anything; returns the new path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = free_name(folder, path.name)
    os.rename(path, target)  # on Windows rename refuses to overwrite; free_name makes sure it never has to
    return target


def claim(path: Path, drop_folder: Path) -> Path:
    """Take a settled file: move it into `processing/` before anything reads it."""
    return move(path, drop_folder / PROCESSING)


def day_folder(drop_folder: Path, outcome: str, day: date | None = None) -> Path:
    return drop_folder / outcome / (day or date.today()).isoformat()


def file_to(path: Path, drop_folder: Path, outcome: str, day: date | None = None) -> Path:
    """Move a claimed file into `<outcome>/YYYY-MM-DD/` (a file already there stays as it is)."""
    target = day_folder(drop_folder, outcome, day)
    if path.parent == target:
        return path
    return move(path, target)


def note_beside(filed: Path, suffix: str, text: str) -> Path:
    """`<name><suffix>` next to a filed file (e.g. `jobs.csv.error.txt`), holding `text`."""
    target = free_name(filed.parent, filed.name + suffix)
    target.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    return target


def copy_beside(filed: Path, name: str, source: Path) -> Path:
    """A copy of `source` named `name` next to a filed file (e.g. `jobs.corrections.xlsx`)."""
    target = free_name(filed.parent, name)
    shutil.copyfile(source, target)
    return target
