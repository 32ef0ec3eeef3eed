"""The import use case and its runs: read → map → validate → plan → (ledger + submit) → reports, one outcome per row.

Modules:

- `runner`: `run_import`, the whole import (called by the CLI, the demo and the drop mode);
- `prepare`: `prepare`, the offline stages (everything a dry run does), and the run's options;
- `outcome`: one outcome per source row (the outcome frame, the API-side errors, the ledger's rows);
- `signals`: SIGINT/SIGTERM during a run;
- `progress`: what a person sees while a run goes.

(Past runs — `status`, `report RUN_ID`, `ledger adopt` — are pipeline/history.py.)
"""

from pipeline.run.prepare import Prepared, RunOptions, prepare
from pipeline.run.runner import RunResult, file_sha256, run_import

__all__ = ["Prepared", "RunOptions", "RunResult", "file_sha256", "prepare", "run_import"]
