"""Triage and look-before-send: which planned rows the ledger already settles, which are looked up in
BigChange by reference before their first send (found with the same job type and contact → `already_created`;
another job → a conflict, `rejected`, not sent), and which go to the workers. A part of the engine (engine.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from pipeline.model import Status
from pipeline.submit.client import ApiClient, FoundJob
from pipeline.submit.common import (
    PlannedRow,
    ProgressFn,
    SubmitOptions,
    SubmitStats,
    _uncertain_problem,
    _unresolved_problem,
)
from pipeline.submit.ledger import Ledger, LedgerRow, Update
from pipeline.submit.outcomes import Outcomes, RowResult
from pipeline.submit.throttle import Gate, Stopped

FOUND_NOTE = "found in BigChange"
LOOKUP_BATCH = 50  # references per GET /v1/jobs (the API's limit)


class Triage:
    """Before sending, slice by slice: what the ledger settles is settled (`_decide`), references the ledger has
    never seen are looked up in BigChange (`_look_before_send`), the rows left to send go to the feeder; rows never
    fed are settled from the ledger alone (`_settle_rest`)."""

    # provided by the engine (Submitter)
    client: ApiClient
    gate: Gate
    ledger: Ledger
    options: SubmitOptions
    outcomes: Outcomes
    progress: ProgressFn
    run_id: str
    stats: SubmitStats
    _stale: dict[str, LedgerRow]

    if TYPE_CHECKING:

        def _settle(self, planned: PlannedRow, result: RowResult) -> None: ...

        def _note_write(self, future: Any) -> None: ...

        async def _retrying(self, call: Callable[[], Awaitable[Any]], through_gate: bool) -> Any: ...

    def _decide(self, planned: PlannedRow, entry: LedgerRow | None) -> RowResult | None:
        """The result for a row the ledger already settles, or None when it must be sent (or looked up)."""
        if entry is None:
            return None
        if entry.key in self._stale:  # still unresolved (the start-up look-up failed): never resend blindly
            return RowResult(Status.UNCERTAIN, None, _unresolved_problem())
        if entry.state in (Status.CREATED, Status.ALREADY_CREATED):
            return RowResult(Status.ALREADY_CREATED, entry.job_id)
        if (
            entry.state == Status.REJECTED
            and not self.options.resend_rejected
            and entry.fingerprint == planned.fingerprint
        ):
            return RowResult(Status.REJECTED, None, entry.problem)
        if entry.state == Status.UNCERTAIN and not self.options.resend_uncertain:
            return RowResult(Status.UNCERTAIN, None, entry.problem or _uncertain_problem())
        return None

    async def _known(self, batch: list[PlannedRow]) -> dict[str, LedgerRow]:
        return await asyncio.to_thread(self.ledger.known, [p.key for p in batch])

    async def _settle_rest(self, batches: Iterator[list[PlannedRow]]) -> None:
        """Rows never fed: what the ledger settles, else `pending` (counted as such in the progress)."""
        for batch in batches:
            known = await self._known(batch)
            for planned in batch:
                result = self._decide(planned, known.get(planned.key))
                if result is not None:
                    self._settle(planned, result)
        unsettled = self.outcomes.size - self.outcomes.settled
        if unsettled:
            self.progress(Status.PENDING, unsettled)

    async def _triage(self, batches: Iterator[list[PlannedRow]], ready: asyncio.Queue[list[PlannedRow] | None]) -> None:
        """Slice by slice: what the ledger settles is settled, new references are looked up in BigChange, and the
        rows left to send are handed to the feeder. Ends with None (also when it fails: the feeder then stops)."""
        try:
            for batch in batches:
                if self.gate.closed:
                    break
                known = await self._known(batch)
                fresh: list[PlannedRow] = []
                to_send: list[PlannedRow] = []
                for planned in batch:
                    entry = known.get(planned.key)
                    result = self._decide(planned, entry)
                    if result is not None:
                        self._settle(planned, result)
                    elif entry is None and planned.reference and self.options.lookup_before_send:
                        fresh.append(planned)
                    else:
                        to_send.append(planned)
                if to_send:  # rows the ledger knows but that still need sending (e.g. after a failure)
                    await ready.put(to_send)
                if fresh:
                    # handed over look-up by look-up: the first rows leave one answer after the run starts, not
                    # once the whole slice has been looked up
                    try:
                        # closed even when this task is cancelled while the queue is full: its look-ups stop then
                        async with contextlib.aclosing(self._look_before_send(fresh)) as parts:
                            async for part in parts:
                                if part:
                                    await ready.put(part)
                    except Stopped:
                        break
            await ready.put(None)
        except BaseException:
            # Failing or cancelled: the feeder must still see the end. Rows of slices not yet queued were never
            # marked `sending`: they stay without an outcome, i.e. pending.
            while ready.full():
                ready.get_nowait()
            ready.put_nowait(None)
            raise

    async def _look_before_send(self, rows: list[PlannedRow]) -> AsyncGenerator[list[PlannedRow], None]:
        """Rows with a reference the ledger has never seen are looked up in BigChange first (≤ 50 a call, up to
        `lookahead_calls` calls at once); yields, call by call in the rows' order, the rows to send (found ones are
        settled here: `already_created`, or a conflict). A look-up that keeps failing raises when its turn comes;
        the calls still running are then cancelled."""
        chunks = [rows[i : i + LOOKUP_BATCH] for i in range(0, len(rows), LOOKUP_BATCH)]
        limit = asyncio.Semaphore(self.options.lookahead_calls)

        async def one(chunk: list[PlannedRow]) -> dict[str, list[FoundJob]]:
            async with limit:
                return await self._lookup_summaries([p.reference for p in chunk if p.reference])

        calls = [asyncio.create_task(one(chunk)) for chunk in chunks]
        try:
            for chunk, call in zip(chunks, calls, strict=True):
                yield self._sort_found(chunk, await call)
        finally:
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)

    def _sort_found(self, chunk: list[PlannedRow], found: dict[str, list[FoundJob]]) -> list[PlannedRow]:
        """Settle the rows BigChange already holds (the same job: `already_created`; another: a conflict); return
        the rest, to send."""
        to_send: list[PlannedRow] = []
        updates: list[Update] = []
        for planned in chunk:
            jobs = found.get(planned.reference or "")
            if not jobs:
                to_send.append(planned)
                continue
            same = _same_job(planned, jobs)
            if same is not None:
                self.stats.found_before_send += 1
                result = RowResult(Status.ALREADY_CREATED, same.id, note=FOUND_NOTE)
                self._settle(planned, result)
                updates.append(Update(planned.key, Status.ALREADY_CREATED, job_id=same.id))
            else:
                # Not written to the ledger: the reference is looked up again on every run until resolved.
                self.stats.conflicts += 1
                self._settle(planned, RowResult(Status.REJECTED, None, _conflict_problem(planned, jobs[0])))
        if updates:
            self.ledger.submit_record(updates, self.run_id).add_done_callback(self._note_write)
        return to_send

    async def _lookup_summaries(self, references: list[str]) -> dict[str, list[FoundJob]]:
        """One look-up before sending, through the gate (it shares the API's allowance with the sends)."""
        return await self._retrying(lambda: self.client.find_job_summaries(references), through_gate=True)


def _same_job(planned: PlannedRow, jobs: list[FoundJob]) -> FoundJob | None:
    """The job among `jobs` (same reference) with this row's job type and contact, if any."""
    try:
        body = json.loads(planned.payload)
    except ValueError:
        return None
    type_id, contact_id = body.get("typeId"), body.get("contactId")
    for job in jobs:
        if job.type_id == type_id and job.contact_id == contact_id:
            return job
    return None


def _conflict_problem(planned: PlannedRow, job: FoundJob) -> dict[str, Any]:
    try:
        body = json.loads(planned.payload)
    except ValueError:
        body = {}
    return {
        "type": None,
        "title": "Reference already used",
        "status": 409,
        "detail": f"BigChange already has job {job.id} with reference '{planned.reference}' but job type "
        f"{job.type_id} and contact {job.contact_id} (this row: job type {body.get('typeId')}, contact "
        f"{body.get('contactId')}); not sent. Give this row another reference, or correct job {job.id} in BigChange",
    }
