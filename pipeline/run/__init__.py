"""The import use case and its runs: read → map → validate → plan → (ledger + submit) → reports, one outcome per row.

Modules:

- `runner`: `prepare` (everything a dry run does) and `run_import` (the whole import), called by the CLI, the demo
  and the drop mode;
- `progress`: what a person sees while a run goes;
- `history`: past runs (`jobimport status`, `jobimport report RUN_ID`, `jobimport ledger adopt`).
"""

from pipeline.run.runner import Prepared, RunOptions, RunResult, file_sha256, prepare, run_import

__all__ = ["Prepared", "RunOptions", "RunResult", "file_sha256", "prepare", "run_import"]
