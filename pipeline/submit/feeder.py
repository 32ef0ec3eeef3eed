"""The feeder: which planned rows the ledger already settles, which are looked up in BigChange by reference before
their first send (found with the same job type and contact → `already_created`; another job → a conflict,
`rejected`, not sent), and which are handed to the workers — never far ahead of them.

Two tasks: the triage reads the plan slice by slice (asking the ledger about those keys only) and looks new
references up, handing the rows to send over a bounded queue; the feed puts them on the workers' queue, never more
than the tracker's room ahead of the answers (a worker has each row written `sending` once it holds a slot for it).
Rows the feed or the triage still held when the run stopped, and slices never read, are settled at the end
(`settle_rest`): what the ledger decides, else `pending`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any

from pipeline.model import Status
from pipeline.submit.client import FoundJob
from pipeline.submit.common import PlannedRow, RunContext, RunPart, uncertain_problem, unresolved_problem
from pipeline.submit.ledger import Ledger, LedgerRow, Update
from pipeline.submit.outcomes import RowResult
from pipeline.submit.throttle import Stopped

FOUND_NOTE = "found in BigChange"
LOOKUP_BATCH = 50  # references per GET /v1/jobs (the API's limit)

SummaryLookup = Callable[[list[str]], Awaitable[dict[str, list[FoundJob]]]]


class Feeder(RunPart):
    def __init__(
        self, run: RunContext, ledger: Ledger, lookup: SummaryLookup, queue: asyncio.Queue[PlannedRow | None]
    ) -> None:
        super().__init__(run)
        self.ledger = ledger
        self.lookup = lookup
        self.queue = queue
        self.stale: dict[str, LedgerRow] = {}  # `sending` rows an interrupted run left, still unresolved
        self.fed_all = False
        # slices read from the plan that may still hold rows not yet marked `sending` (settled at the end)
        self._open: deque[list[PlannedRow]] = deque()
        self.ready: asyncio.Queue[list[PlannedRow] | None] = asyncio.Queue(maxsize=48)

    # --- deciding ----------------------------------------------------------------------------------------------

    def decide(self, planned: PlannedRow, entry: LedgerRow | None) -> RowResult | None:
        """The result for a row the ledger already settles, or None when it must be sent (or looked up)."""
        if entry is None:
            return None
        if entry.key in self.stale:  # still unresolved (the start-up look-up failed): never resend blindly
            return RowResult(Status.UNCERTAIN, None, unresolved_problem())
        if entry.state in (Status.CREATED, Status.ALREADY_CREATED):
            return RowResult(Status.ALREADY_CREATED, entry.job_id)
        if (
            entry.state == Status.REJECTED
            and not self.options.resend_rejected
            and entry.fingerprint == planned.fingerprint
        ):
            return RowResult(Status.REJECTED, None, entry.problem)
        if entry.state == Status.UNCERTAIN and not self.options.resend_uncertain:
            return RowResult(Status.UNCERTAIN, None, entry.problem or uncertain_problem())
        return None

    async def _known(self, batch: list[PlannedRow]) -> dict[str, LedgerRow]:
        return await asyncio.to_thread(self.ledger.known, [p.key for p in batch])

    # --- the triage task ---------------------------------------------------------------------------------------

    async def triage(self, batches: Iterator[list[PlannedRow]]) -> None:
        """Slice by slice: what the ledger settles is settled, new references are looked up in BigChange, and the
        rows left to send are handed to the feed. Ends with None on the queue when the plan is read."""
        for batch in batches:
            self._open.append(batch)
            self._forget_settled()
            if self.stopping():
                return
            known = await self._known(batch)
            fresh: list[PlannedRow] = []
            to_send: list[PlannedRow] = []
            for planned in batch:
                entry = known.get(planned.key)
                planned.prior = entry
                result = self.decide(planned, entry)
                if result is not None:
                    self.tracker.settle(planned, result)
                elif entry is None and planned.reference and self.options.lookup_before_send:
                    fresh.append(planned)
                else:
                    to_send.append(planned)
            if to_send:  # rows the ledger knows but that still need sending (e.g. after a failure)
                await self.ready.put(to_send)
            if fresh:
                # handed over look-up by look-up: the first rows leave one answer after the run starts
                try:
                    async with contextlib.aclosing(self._look_before_send(fresh)) as parts:
                        async for part in parts:
                            if part:
                                await self.ready.put(part)
                except Stopped:
                    return
        await self.ready.put(None)

    def _forget_settled(self) -> None:
        while len(self._open) > 1 and not any(self.tracker.is_planned(p.index) for p in self._open[0]):
            self._open.popleft()

    async def _look_before_send(self, rows: list[PlannedRow]) -> AsyncGenerator[list[PlannedRow], None]:
        """Rows with a reference the ledger has never seen are looked up in BigChange first (≤ 50 a call, up to
        `lookahead_calls` calls at once); yields, call by call in the rows' order, the rows to send (found ones
        are settled here). A look-up that keeps failing raises when its turn comes; the calls still running are
        then cancelled."""
        chunks = [rows[i : i + LOOKUP_BATCH] for i in range(0, len(rows), LOOKUP_BATCH)]
        limit = asyncio.Semaphore(self.options.lookahead_calls)

        async def one(chunk: list[PlannedRow]) -> dict[str, list[FoundJob]]:
            async with limit:
                return await self.lookup([p.reference for p in chunk if p.reference])

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
        for planned in chunk:
            jobs = found.get(planned.reference or "")
            if not jobs:
                to_send.append(planned)
                continue
            same = _same_job(planned, jobs)
            if same is not None:
                self.stats.found_before_send += 1
                self.tracker.settle(
                    planned,
                    RowResult(Status.ALREADY_CREATED, same.id, note=FOUND_NOTE),
                    Update(planned.key, Status.ALREADY_CREATED, job_id=same.id),
                )
            else:
                # Not written to the ledger: the reference is looked up again on every run until resolved.
                self.stats.conflicts += 1
                self.tracker.settle(planned, RowResult(Status.REJECTED, None, _conflict_problem(planned, jobs[0])))
        return to_send

    # --- the feed task -----------------------------------------------------------------------------------------

    async def feed(self) -> None:
        """Queue the rows to send, never more than the tracker's room ahead of the answers. (Nothing is written
        here: a worker has the row written `sending` once it holds a slot for it.)"""
        while (rows := await self.ready.get()) is not None:
            for planned in rows:
                if self.tracker.outstanding >= self.tracker.room:
                    await self.tracker.wait_for_room(1)
                if self.stopping():
                    return  # rows not queued stay planned: settled as pending at the end
                self.tracker.queue(planned)
                self.queue.put_nowait(planned)  # room: the queue holds at most the outstanding rows
        self.fed_all = True

    # --- the end -----------------------------------------------------------------------------------------------

    async def settle_rest(self, batches: Iterator[list[PlannedRow]]) -> None:
        """Rows never marked `sending`: those the triage or the feed still held when the run stopped, and the
        slices never read. What the ledger settles is settled; the rest are pending (never sent)."""
        held = [p for batch in self._open for p in batch if self.tracker.is_planned(p.index)]
        self._open.clear()
        for batch in _chunks(held, 1024):
            await self._settle_from_ledger(batch)
        for batch in batches:
            await self._settle_from_ledger(batch)

    async def _settle_from_ledger(self, batch: list[PlannedRow]) -> None:
        try:
            known = await self._known(batch)
        except Exception:  # the ledger cannot be read either: never sent, so pending is true
            known = {}
        for planned in batch:
            entry = known.get(planned.key, planned.prior)
            planned.prior = entry
            result = self.decide(planned, entry)
            if result is not None:
                self.tracker.settle(planned, result)
            else:
                self.tracker.unsent(planned)


def _chunks(rows: list[PlannedRow], size: int) -> Iterator[list[PlannedRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


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
