"""The reconciler: what happened to rows whose answer was lost, found out by looking them up by reference
(there is no idempotency key in the API). A part of the engine (engine.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from pipeline.errors import RunStopped
from pipeline.model import Status
from pipeline.submit.client import ApiClient
from pipeline.submit.common import (
    PlannedRow,
    SayFn,
    SubmitOptions,
    SubmitStats,
    _uncertain_problem,
    _unresolved_problem,
)
from pipeline.submit.ledger import Ledger, LedgerRow, Update
from pipeline.submit.outcomes import RowResult
from pipeline.submit.throttle import Gate

log = structlog.get_logger(__name__)


class Reconciler:
    """Lost answers (500, timeout, connection dropped): looked up by reference in batches once their grace is
    over — found → `created`, absent → sent again, no reference → `uncertain`; and, before anything is sent, the
    rows an interrupted run left `sending`."""

    # provided by the engine (Submitter)
    client: ApiClient
    gate: Gate
    ledger: Ledger
    options: SubmitOptions
    run_id: str
    say: SayFn
    stats: SubmitStats
    _hurry: bool
    _reconcile: list[tuple[float, PlannedRow]]
    _reconcile_event: asyncio.Event
    _send_queue: asyncio.Queue[PlannedRow | None]
    _stale: dict[str, LedgerRow]

    if TYPE_CHECKING:

        def stop(self, error: RunStopped, hurry: bool = False) -> None: ...

        def _finish(self, planned: PlannedRow, result: RowResult, state: str | None = None) -> None: ...

        async def _retrying(self, call: Callable[[], Awaitable[Any]], through_gate: bool) -> Any: ...

    async def _reconcile_interrupted(self) -> None:
        """Rows an interrupted run left `sending` (found through the state index, whatever file they came from):
        looked up by reference before anything is sent."""
        stale = await asyncio.to_thread(self.ledger.in_state, "sending")
        if not stale:
            return
        self._stale = {entry.key: entry for entry in stale}
        log.info("reconciling_interrupted", rows=len(stale))
        # A run killed moments ago may have requests the server is still processing: let them land first.
        wait = self.options.timeout_grace_s - min(_age_s(e.updated_at) for e in stale)
        if wait > 0:
            log.info("waiting_before_lookup", seconds=round(wait, 1))
            self.say(
                f"waiting {wait:.0f} s before looking up {len(stale)} row(s) an interrupted run left unanswered: "
                "requests it sent may still be arriving at BigChange, and looking too early could send a job twice"
            )
            await asyncio.sleep(wait)
        updates: list[Update] = []
        with_ref = [e for e in stale if e.reference]
        for entry in stale:
            if not entry.reference:
                updates.append(Update(entry.key, Status.UNCERTAIN, problem=_uncertain_problem()))
        for start in range(0, len(with_ref), self.options.reconcile_batch):
            batch = with_ref[start : start + self.options.reconcile_batch]
            found = await self._lookup([e.reference for e in batch if e.reference])
            for entry in batch:
                job_id = found.get(entry.reference or "")
                if job_id is not None:
                    self.stats.reconciled_found += 1
                    updates.append(Update(entry.key, Status.ALREADY_CREATED, job_id=job_id))
                else:
                    self.stats.reconciled_absent += 1
                    updates.append(Update(entry.key, Status.PENDING))
        await asyncio.shield(asyncio.wrap_future(self.ledger.submit_record(updates, self.run_id)))
        self._stale = {}

    async def _lookup(self, references: list[str]) -> dict[str, int]:
        """find_jobs for reconciliation, with a few retries; a look-up that keeps failing stops the run."""
        return await self._retrying(lambda: self.client.find_jobs(references), through_gate=False)

    async def _reconciler(self) -> None:
        while True:
            batch = self._ready(time.monotonic())
            if batch:
                await self._resolve(batch)
                continue
            upcoming = min((not_before for not_before, _ in self._reconcile), default=None)
            timeout = None if upcoming is None else max(0.05, upcoming - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile_event.wait(), timeout)
            self._reconcile_event.clear()

    def _ready(self, now: float) -> list[tuple[float, PlannedRow]]:
        """Up to one look-up's worth of unknown outcomes whose grace is over. They stay listed until resolved,
        so a look-up cancelled by a stop loses nothing."""
        return [item for item in self._reconcile if item[0] <= now][: self.options.reconcile_batch]

    async def _resolve(self, batch: list[tuple[float, PlannedRow]]) -> bool:
        """Look a batch up and act on it; False (rows left listed) when the look-up could not be made."""
        try:
            found = await self._lookup([p.reference for _, p in batch if p.reference])
        except RunStopped as exc:
            self.stop(exc)
            return False
        resolved = {id(item) for item in batch}
        self._reconcile = [item for item in self._reconcile if id(item) not in resolved]
        for _, planned in batch:
            job_id = found.get(planned.reference or "")
            if job_id is not None:
                self.stats.reconciled_found += 1
                self._finish(planned, RowResult(Status.CREATED, job_id))
            elif self.gate.closed:
                # Absent, but the run is stopping: the next run looks it up again before sending anything.
                self._finish(planned, RowResult(Status.UNCERTAIN, None, _unresolved_problem()), state="sending")
            else:
                self.stats.reconciled_absent += 1
                if planned.attempts >= self.options.max_attempts:
                    self._finish(planned, RowResult(Status.FAILED, None, _absent_problem()))
                else:
                    self.stats.retries += 1
                    self._send_queue.put_nowait(planned)
        return True

    async def _final_reconcile(self) -> None:
        """At the end (or a stop): look up the lost answers whose grace is over; the rest — and all of them when
        hurrying — stay `sending` in the ledger and are reported uncertain: the next run looks them up first."""
        if not self._hurry:
            now = time.monotonic()
            while batch := self._ready(now):
                if not await self._resolve(batch):
                    break
        for _, planned in self._reconcile:
            self._finish(planned, RowResult(Status.UNCERTAIN, None, _unresolved_problem()), state="sending")
        self._reconcile.clear()


def _age_s(stamp: str) -> float:
    """Seconds since a ledger timestamp (ISO, UTC); very old when unreadable."""
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - then).total_seconds()


def _absent_problem() -> dict[str, Any]:
    return {
        "type": None,
        "title": "Not created",
        "status": None,
        "detail": "answers kept getting lost and look-ups found no job; run again to send it",
    }
