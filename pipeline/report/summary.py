"""The report stage's summaries: what the run did and what its outcomes add up to, for summary.json and summary.html.

`RunSummary` (filled in by the caller) and `ReportPaths` (the files written) describe the run; `summary_stats`
counts the outcomes per status, the errors by kind and by column, the top messages and API problems, and
`compare_runs` what changed since the previous run of the same input; `summary_document` is summary.json's content
(summary.html is rendered from the same pieces by pipeline/report/html.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from pipeline.model import NEEDS_ATTENTION, ORIGIN_ROW, ROW, SUCCESS, RawTable, Status

#: Label used in reports for errors that belong to a whole row rather than one column.
WHOLE_ROW = "(whole row)"
#: How many example row numbers to show per message.
EXAMPLE_ROWS = 5
#: How many messages / API problems to list.
TOP = 10


@dataclass
class RunSummary:
    """What the run did, filled in by the caller; counts per status are computed from the outcomes."""

    run_id: str
    input: str
    mapping: str
    sheet: str | None
    encoding: str | None
    delimiter: str | None
    dry_run: bool
    started_at: str  # ISO 8601, UTC
    finished_at: str  # ISO 8601, UTC
    duration_s: float
    rows_sent: int
    throughput_rows_per_s: float
    retries: int
    http_429: int
    http_5xx: int
    reconciled: int
    stop_reason: str | None
    exit_code: int
    customer_id: int | None
    tool_version: str | None = None
    max_concurrency: int | None = None  # the ceiling (--max-concurrency)
    peak_concurrency: int | None = None  # the highest the adaptive limit reached
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    notes: list[str] = field(default_factory=list)  # things the user should know (encoding fallback, ...)
    header_row: int = 1  # the input's header row: corrections files put their headers on the same row
    api: str | None = None  # the API the run went to: its base URL (scheme, host, port, path only); None: dry run
    corrects_run: str | None = None  # a corrections file's input: the run that wrote it (pipeline/signoff.py)

    @property
    def target(self) -> str:
        """Where the run went, in words: `sandbox http://127.0.0.1:8765/v1, customer 1001`."""
        return describe_target(self.api, self.customer_id)


def api_label(api: str | None) -> str:
    """ "sandbox" for an API on this machine (only the local sandbox can be: real APIs are https elsewhere), else
    "API"."""
    host = (urlsplit(api).hostname or "") if api else ""
    return "sandbox" if host in ("127.0.0.1", "localhost", "::1") else "API"


def describe_target(api: str | None, customer_id: int | None) -> str:
    if api is None:
        return "no API (dry run)"
    return f"{api_label(api)} {api}, customer {customer_id}"


@dataclass(frozen=True)
class ReportPaths:
    """The files written for one run (None: not written, e.g. no row needs attention)."""

    results_csv: Path
    corrections_xlsx: Path | None
    corrections_csv: Path | None
    summary_json: Path
    summary_html: Path

    def as_dict(self) -> dict[str, str | None]:
        """File name → path as text (None when not written)."""
        return {k: (str(v) if v is not None else None) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class CountedItem:
    """One line of a "most frequent" table: a label, its count and the first few row numbers."""

    label: str
    count: int
    column: str | None = None
    example_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class Changes:
    """What changed since the previous run of the same input (rows matched by ORIGIN_ROW)."""

    fixed: int  # needed attention before, now created/already_created
    still_failing: int  # needed attention before and still does
    new: int  # not in the previous run
    other: int  # in both runs, any other transition (e.g. created → created, invalid → valid in a dry run)
    not_in_this_run: int  # in the previous run only (e.g. rows left out of a corrections file)


@dataclass(frozen=True)
class SummaryStats:
    """Everything the summaries show, computed once from outcomes, errors and previous."""

    total_rows: int
    counts: dict[str, int]  # every Status value, zeros included, in Status order
    needs_attention: int
    succeeded: int
    error_count: int
    rows_with_errors: int
    errors_by_check: list[CountedItem]
    errors_by_column: list[CountedItem]
    top_messages: list[CountedItem]
    api_problems: list[CountedItem]
    changes: Changes | None


def summary_stats(
    raw: RawTable, outcomes: pl.DataFrame, errors: pl.DataFrame, previous: pl.DataFrame | None
) -> SummaryStats:
    """Counts per status, errors by kind and by column, top messages and API problems, changes since last run."""
    status_counts = dict(outcomes.get_column("status").value_counts().iter_rows())
    counts = {s.value: int(status_counts.get(s.value, 0)) for s in Status}
    origin = raw.frame.select(pl.col(ROW).alias("row"), pl.col(ORIGIN_ROW).alias("origin"))
    located = (
        errors.select(
            pl.col("row").cast(pl.Int64),
            pl.col("column"),
            pl.col("check").fill_null("error"),
            pl.coalesce(pl.col("message"), pl.col("check"), pl.lit("error")).alias("message"),
        )
        .join(origin, on="row", how="left", maintain_order="left")
        .with_columns(pl.coalesce("origin", "row").alias("origin"))
    )
    by_check = [
        CountedItem(label=str(k), count=int(n))
        for k, n in located.group_by("check").len().sort(["len", "check"], descending=[True, False]).iter_rows()
    ]
    by_column = [
        CountedItem(label=str(k) if k is not None else WHOLE_ROW, count=int(n), column=k)
        for k, n in located.group_by("column")
        .len()
        .sort(["len", "column"], descending=[True, False], nulls_last=True)
        .iter_rows()
    ]
    top = (
        located.group_by("column", "message", maintain_order=True)
        .agg(pl.len().alias("n"), pl.col("origin").head(EXAMPLE_ROWS).alias("rows"))
        .sort("n", descending=True, maintain_order=True)
        .head(TOP)
    )
    top_messages = [
        CountedItem(label=m, count=int(n), column=c, example_rows=tuple(int(r) for r in rows))
        for c, m, n, rows in top.iter_rows()
    ]
    problems = (
        outcomes.filter(pl.col("problem_title").is_not_null() | pl.col("problem_status").is_not_null())
        .group_by("problem_status", "problem_title", maintain_order=True)
        .agg(pl.len().alias("n"), pl.col(ORIGIN_ROW).head(EXAMPLE_ROWS).alias("rows"))
        .sort("n", descending=True, maintain_order=True)
        .head(TOP)
    )
    api_problems = [
        CountedItem(
            label=" ".join(p for p in (str(st) if st is not None else "", title or "") if p) or "problem",
            count=int(n),
            example_rows=tuple(int(r) for r in rows),
        )
        for st, title, n, rows in problems.iter_rows()
    ]
    attention_values = [s.value for s in NEEDS_ATTENTION]
    return SummaryStats(
        total_rows=outcomes.height,
        counts=counts,
        needs_attention=sum(counts[s] for s in attention_values),
        succeeded=sum(counts[s.value] for s in SUCCESS),
        error_count=errors.height,
        rows_with_errors=located.get_column("row").n_unique() if located.height else 0,
        errors_by_check=by_check,
        errors_by_column=by_column,
        top_messages=top_messages,
        api_problems=api_problems,
        changes=compare_runs(outcomes, previous) if previous is not None else None,
    )


def compare_runs(outcomes: pl.DataFrame, previous: pl.DataFrame) -> Changes:
    """Fixed / still failing / new counts between `previous` (ORIGIN_ROW, status) and this run's outcomes."""
    attention = [s.value for s in NEEDS_ATTENTION]
    success = [s.value for s in SUCCESS]
    prev = previous.select(pl.col(ORIGIN_ROW).cast(pl.Int64), pl.col("status").cast(pl.String).alias("before"))
    prev = prev.unique(ORIGIN_ROW, keep="last", maintain_order=True)
    now = outcomes.select(pl.col(ORIGIN_ROW).cast(pl.Int64), pl.col("status").cast(pl.String).alias("after"))
    both = now.join(prev, on=ORIGIN_ROW, how="left", maintain_order="left")
    before, after = pl.col("before"), pl.col("after")
    counts = both.select(
        fixed=(before.is_in(attention) & after.is_in(success)).sum(),
        still=(before.is_in(attention) & after.is_in(attention)).sum(),
        new=before.is_null().sum(),
    ).row(0)
    fixed, still, new = (int(x) for x in counts)
    gone = prev.join(now, on=ORIGIN_ROW, how="anti").height
    return Changes(
        fixed=fixed, still_failing=still, new=new, other=now.height - fixed - still - new, not_in_this_run=gone
    )


def summary_document(run: RunSummary, stats: SummaryStats, paths: ReportPaths) -> dict[str, Any]:
    """The content of summary.json."""
    run_fields = asdict(run)
    return {
        "schema_version": 1,
        **run_fields,
        "total_rows": stats.total_rows,
        "counts": stats.counts,
        "needs_attention": stats.needs_attention,
        "succeeded": stats.succeeded,
        "errors": {
            "total": stats.error_count,
            "rows_with_errors": stats.rows_with_errors,
            "by_check": {i.label: i.count for i in stats.errors_by_check},
            "by_column": {i.label: i.count for i in stats.errors_by_column},
            "top_messages": [
                {"column": i.column, "message": i.label, "count": i.count, "example_rows": list(i.example_rows)}
                for i in stats.top_messages
            ],
        },
        "api_problems": [
            {"problem": i.label, "count": i.count, "example_rows": list(i.example_rows)} for i in stats.api_problems
        ],
        "changes": asdict(stats.changes) if stats.changes is not None else None,
        "reports": paths.as_dict(),
    }
