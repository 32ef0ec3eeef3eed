"""Per-row outcomes of a run, kept compactly: one byte of status and eight of job id per planned row.

A million-row run must not hold a million result objects. Rows are addressed by their index in the plan
(`PlannedRow.index`); problem details and notes are kept only for the rows that have one. A row without an
outcome at the end of a run was never sent: `pending`.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.model import Status

_CODES: list[Status] = list(Status)
_CODE_OF = {status: code for code, status in enumerate(_CODES, start=1)}
_NO_JOB = 0


@dataclass(slots=True)
class RowResult:
    status: Status
    job_id: int | None = None
    problem: dict[str, Any] | None = None
    note: str | None = None  # e.g. "found in BigChange"


class Outcomes:
    """Outcome of each planned row, by index; unset means `pending`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._status = bytearray(size)
        self._job = array("q", bytes(8 * size))
        self._problem: dict[int, dict[str, Any]] = {}
        self._note: dict[int, str] = {}
        self.settled = 0

    def record(self, index: int, result: RowResult) -> None:
        if not self._status[index]:
            self.settled += 1
        self._status[index] = _CODE_OF[result.status]
        self._job[index] = result.job_id or _NO_JOB
        if result.problem:
            self._problem[index] = result.problem
        else:
            self._problem.pop(index, None)
        if result.note:
            self._note[index] = result.note
        else:
            self._note.pop(index, None)

    def has(self, index: int) -> bool:
        return bool(self._status[index])

    def status(self, index: int) -> Status:
        code = self._status[index]
        return _CODES[code - 1] if code else Status.PENDING

    def get(self, index: int) -> RowResult:
        job = self._job[index]
        return RowResult(self.status(index), job or None, self._problem.get(index), self._note.get(index))

    def indices(self, statuses: set[Status]) -> Iterator[int]:
        """Indices of the rows in these statuses (`pending` includes rows without an outcome)."""
        codes = {_CODE_OF[s] for s in statuses}
        if Status.PENDING in statuses:
            codes.add(0)
        for index, code in enumerate(self._status):
            if code in codes:
                yield index

    def frame(self) -> pl.DataFrame:
        """status, job_id, problem_* and note columns, one row per planned row, in plan order."""
        names = [str(s) for s in _CODES]
        status = (
            pl.Series("code", self._status, dtype=pl.UInt8)
            .replace_strict(list(range(len(names) + 1)), [str(Status.PENDING), *names], return_dtype=pl.String)
            .alias("status")
        )
        job = pl.Series("job_id", self._job, dtype=pl.Int64)
        job = job.set(job == _NO_JOB, None)
        problem_index = sorted(self._problem)
        sparse = pl.DataFrame(
            {
                "index": problem_index,
                "problem_status": [_int_or_none(self._problem[i].get("status")) for i in problem_index],
                "problem_title": [_str_or_none(self._problem[i].get("title")) for i in problem_index],
                "problem_detail": [_str_or_none(self._problem[i].get("detail")) for i in problem_index],
                "problem_type": [_str_or_none(self._problem[i].get("type")) for i in problem_index],
            },
            schema={
                "index": pl.Int64(),
                "problem_status": pl.Int64(),
                "problem_title": pl.String(),
                "problem_detail": pl.String(),
                "problem_type": pl.String(),
            },
        )
        notes = pl.DataFrame(
            {"index": list(self._note), "note": list(self._note.values())},
            schema={"index": pl.Int64(), "note": pl.String()},
        )
        base = pl.DataFrame([status, job]).with_row_index("index").with_columns(pl.col("index").cast(pl.Int64))
        return (
            base.join(sparse, on="index", how="left", maintain_order="left")
            .join(notes, on="index", how="left", maintain_order="left")
            .drop("index")
        )

    def problem(self, index: int) -> dict[str, Any] | None:
        return self._problem.get(index)


def _int_or_none(value: object) -> int | None:
    try:
        return int(value) if value is not None else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
