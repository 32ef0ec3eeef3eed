"""The report stage: one run's outcomes and source rows → the files users open.

Modules:

- `results`: `write_reports`, the entry point, and the files written: results.csv, corrections.csv, summary.json;
- `summary`: what the summaries say (`RunSummary`, counts, errors by kind and column, changes since the last run);
- `workbook`: corrections.xlsx;
- `html`: summary.html (its page shell is the package data `templates/summary.html`);
- `cellsafety`: every cell a spreadsheet program may open made safe (formula injection, controls, length);
- `field_errors`: the API's field errors located on the source cells that fed them.
"""

from pipeline.report.results import (
    RESULT_COLUMNS,
    ReportWriteError,
    corrections_frame,
    errors_by_row,
    offending_cells,
    write_reports,
)
from pipeline.report.summary import CountedItem, ReportPaths, RunSummary, SummaryStats

__all__ = [
    "RESULT_COLUMNS",
    "CountedItem",
    "ReportPaths",
    "ReportWriteError",
    "RunSummary",
    "SummaryStats",
    "corrections_frame",
    "errors_by_row",
    "offending_cells",
    "write_reports",
]
