"""Nightly file drops: `jobimport drop FOLDER --mapping M [--watch]`.

Complete files only (settled, or announced by a ready marker), claimed into `processing/` before they are read,
imported, then filed by outcome into `done/`, `attention/` or `failed/` day folders with their companions; the
same content is never imported twice for a tenant; `FOLDER/drop-log.jsonl` records every file and pass; a
webhook or a command is told about files that need someone. Modules:

- `candidates`: which files may be taken (ignore rules, settling, ready markers);
- `filing`: claim and file without overwriting;
- `record`: the drop log and the tenant's record of imported contents and passes (`recent_passes`);
- `notify`: webhook and command notifications;
- `housekeeping`: `--keep-days` pruning of `done/`;
- `passes`: one pass (`run_pass`), and the import call (`DropSession._import`, where RunOptions is built);
- `watch`: the long-running `--watch` service.
"""

from pipeline.drop.notify import Notifier
from pipeline.drop.passes import DropOptions, FileOutcome, PassResult, Route, run_pass
from pipeline.drop.record import PassRecord, filed_path, passes_table, recent_passes
from pipeline.drop.watch import watch

__all__ = [
    "DropOptions",
    "FileOutcome",
    "Notifier",
    "PassRecord",
    "PassResult",
    "Route",
    "filed_path",
    "passes_table",
    "recent_passes",
    "run_pass",
    "watch",
]
