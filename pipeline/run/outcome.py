"""One outcome per source row: the outcome frame the reports are written from, the errors from the API side
(rejected rows' field errors on their source cells, what to do for failed, uncertain and pending rows), and the
rows recorded in the ledger at the end of a run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import polars as pl

from pipeline.model import ORIGIN_ROW, ROW, CellError, Status, errors_frame
from pipeline.report.field_errors import problem_errors
from pipeline.run.prepare import Prepared
from pipeline.submit.outcomes import Outcomes

OUTCOME_SCHEMA: dict[str, pl.DataType] = {
    ROW: pl.Int64(),
    ORIGIN_ROW: pl.Int64(),
    "status": pl.String(),
    "job_id": pl.Int64(),
    "reference": pl.String(),
    "problem_status": pl.Int64(),
    "problem_title": pl.String(),
    "problem_detail": pl.String(),
    "problem_type": pl.String(),
    "note": pl.String(),
}


def _outcomes(prepared: Prepared, outcomes: Outcomes | None, dry_run: bool) -> pl.DataFrame:
    """One outcome per source row, in source order."""
    base = prepared.mapped.frame.select(ROW, ORIGIN_ROW, "reference")
    planned = prepared.plan.rows.select(ROW)
    if outcomes is not None:
        planned = pl.concat([planned, outcomes.frame()], how="horizontal")
    else:
        status = Status.VALID if dry_run else Status.PENDING
        planned = planned.with_columns(pl.lit(str(status)).alias("status"))
    frame = base.join(planned, on=ROW, how="left", maintain_order="left")
    frame = frame.with_columns(pl.col("status").fill_null(str(Status.INVALID)))
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in OUTCOME_SCHEMA.items()
    )


#: What a row-level message says for sent rows that did not end created, when the problem gives no detail.
NEXT_STEP = {
    Status.PENDING: "not sent: the run stopped before this row; run the same command again to send it",
    Status.FAILED: "the API kept failing for this row (retry budget spent); run again to send it",
    Status.UNCERTAIN: "sent, but the answer was lost; check in BigChange whether the job exists",
}


def _outcome_errors(prepared: Prepared, outcomes: Outcomes | None) -> pl.DataFrame:
    """Errors from the API side: a rejected row's field errors located on the source cells that fed them, and
    one row-level message saying what to do for failed, uncertain and pending rows."""
    if outcomes is None:
        return errors_frame()
    found: list[CellError] = []
    rows = prepared.plan.rows.get_column(ROW)
    attention = list(outcomes.indices({Status.REJECTED, *NEXT_STEP}))
    rejected = [index for index in attention if outcomes.status(index) == Status.REJECTED]
    payload_text = dict(zip(rejected, prepared.plan.payloads_at(rejected), strict=True))
    for index in attention:
        row = rows[index]
        result = outcomes.get(index)
        problem = result.problem or {}
        if result.status == Status.REJECTED:
            found.extend(problem_errors(row, problem, payload_text[index], prepared.mapping))
        else:
            detail = problem.get("detail") or problem.get("title")
            message = f"{detail}; {NEXT_STEP[result.status]}" if result.status == Status.FAILED and detail else None
            found.append(CellError(row, None, None, str(result.status), message or detail or NEXT_STEP[result.status]))
    return errors_frame(found)


def _run_rows(outcomes: pl.DataFrame, prepared: Prepared) -> Iterator[tuple[Any, ...]]:
    """(row, origin_row, key, status, job_id, reference, problem JSON) per source row, for the ledger."""
    keys = prepared.plan.rows.select(ROW, "key")
    frame = outcomes.join(keys, on=ROW, how="left", maintain_order="left")
    columns = ("problem_status", "problem_title", "problem_detail", "problem_type")
    for row, origin, key, status, job_id, reference, p_status, title, detail, p_type, note in frame.select(
        ROW, ORIGIN_ROW, "key", "status", "job_id", "reference", *columns, "note"
    ).iter_rows():
        problem: dict[str, Any] = {}
        if p_status is not None or title is not None or detail is not None or p_type is not None:
            problem = {"status": p_status, "title": title, "detail": detail, "type": p_type}
        if note:
            problem["note"] = note
        yield (row, origin, key, status, job_id, reference, json.dumps(problem) if problem else None)
