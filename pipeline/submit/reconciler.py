"""The reconciler: what happened to rows whose answer was lost, found out by looking them up by reference (there
is no idempotency key in the API) — and, before anything is sent, the rows an interrupted run left `sending`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from pipeline.errors import RunStopped
from pipeline.model import Status
from pipeline.submit.common import PlannedRow, RunContext, RunPart, SayFn, SubmitOptions, SubmitStats, uncertain_problem
from pipeline.submit.ledger import Ledger, LedgerRow, Update
from pipeline.submit.outcomes import RowResult

log = structlog.get_logger(__name__)

Lookup = Callable[[list[str]], Awaitable[dict[str, int]]]


class Reconciler(RunPart):
    """Lost answers (500, timeout, connection dropped) wait out a grace period, then are looked up by reference
    in batches: found → `created`; absent → sent again (or `failed` once the budget is spent); when the run is
    stopping, or the look-up cannot be made, they stay `sending` in the ledger and are reported `uncertain`."""

    def __init__(self, run: RunContext, lookup: Lookup, resend: Callable[[PlannedRow], None]) -> None:
        super().__init__(run)
        self.lookup = lookup
        self.resend = resend
        self.waiting: list[tuple[float, PlannedRow]] = []  # (not before, row): unknown outcomes to look up
        self.wake = asyncio.Event()

    def add(self, planned: PlannedRow, grace_s: float) -> None:
        """A row on the wire whose answer was lost: looked up once `grace_s` is over."""
        self.waiting.append((time.monotonic() + grace_s, planned))
        self.wake.set()

    async def run(self) -> None:
        while True:
            batch = self._ready(time.monotonic())
            if batch:
                await self._resolve(batch)
                continue
            upcoming = min((not_before for not_before, _ in self.waiting), default=None)
            timeout = None if upcoming is None else max(0.05, upcoming - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
            self.wake.clear()

    async def final(self, hurry: bool, budget_s: float) -> None:
        """At the end (or a stop): look up the lost answers whose grace is over, within `budget_s` (what is left
        of the drain time); the rest — all of them when hurrying — are abandoned: reported `uncertain`, kept
        `sending` in the ledger, looked up by the next run first."""
        if not hurry and budget_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(budget_s):
                    now = time.monotonic()
                    while batch := self._ready(now):
                        if not await self._resolve(batch):
                            break
        for _, planned in self.waiting:
            self.tracker.abandon(planned)
        self.waiting.clear()

    def _ready(self, now: float) -> list[tuple[float, PlannedRow]]:
        """Up to one look-up's worth of unknown outcomes whose grace is over. They stay listed until resolved,
        so a look-up cancelled by a stop loses nothing."""
        return [item for item in self.waiting if item[0] <= now][: self.options.reconcile_batch]

    async def _resolve(self, batch: list[tuple[float, PlannedRow]]) -> bool:
        """Look a batch up and act on it; False (rows left listed) when the look-up could not be made."""
        try:
            found = await self.lookup([p.reference for _, p in batch if p.reference])
        except RunStopped as exc:
            self.stop(exc)
            return False
        # no await from here on: every row of the batch gets its outcome in this step
        resolved = {id(item) for item in batch}
        self.waiting = [item for item in self.waiting if id(item) not in resolved]
        for _, planned in batch:
            job_id = found.get(planned.reference or "")
            if job_id is not None:
                self.stats.reconciled_found += 1
                self.tracker.finish(planned, RowResult(Status.CREATED, job_id))
            elif self.stopping():
                # Absent, but the run is stopping: the next run looks it up again before sending anything.
                self.tracker.abandon(planned)
            else:
                self.stats.reconciled_absent += 1
                if planned.attempts >= self.options.max_attempts:
                    self.tracker.finish(planned, RowResult(Status.FAILED, None, _absent_problem()))
                else:
                    self.stats.retries += 1
                    self.tracker.retry(planned)
                    self.resend(planned)
        return True


async def reconcile_interrupted(
    ledger: Ledger,
    run_id: str,
    options: SubmitOptions,
    stats: SubmitStats,
    lookup: Lookup,
    say: SayFn,
    stopped: asyncio.Event,
    unresolved: dict[str, LedgerRow],
) -> None:
    """Rows an interrupted run left `sending` (found through the state index, whatever file they came from): looked
    up by reference before anything is sent. `unresolved` holds them until they are settled, so that when a stop
    or a look-up that keeps failing (RunStopped, raised) cuts this short, they are never sent blindly."""
    stale = await asyncio.to_thread(ledger.in_state, "sending")
    if not stale:
        return
    unresolved.update((entry.key, entry) for entry in stale)
    log.info("reconciling_interrupted", rows=len(stale))
    # A run killed moments ago may have requests the server is still processing: let them land first.
    wait = options.timeout_grace_s - min(_age_s(e.updated_at) for e in stale)
    if wait > 0:
        log.info("waiting_before_lookup", seconds=round(wait, 1))
        say(
            f"waiting {wait:.0f} s before looking up {len(stale)} row(s) an interrupted run left unanswered: "
            "requests it sent may still be arriving at BigChange, and looking too early could send a job twice"
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), wait)  # a stop (Ctrl-C) ends the wait at once
        if stopped.is_set():
            return
    updates: list[Update] = []
    with_ref = [e for e in stale if e.reference]
    for entry in stale:
        if not entry.reference:
            updates.append(Update(entry.key, Status.UNCERTAIN, problem=uncertain_problem()))
    for start in range(0, len(with_ref), options.reconcile_batch):
        batch = with_ref[start : start + options.reconcile_batch]
        found = await lookup([e.reference for e in batch if e.reference])
        for entry in batch:
            job_id = found.get(entry.reference or "")
            if job_id is not None:
                stats.reconciled_found += 1
                updates.append(Update(entry.key, Status.ALREADY_CREATED, job_id=job_id))
            else:
                stats.reconciled_absent += 1
                updates.append(Update(entry.key, Status.PENDING))
    await asyncio.shield(asyncio.wrap_future(ledger.submit_record(updates, run_id)))
    unresolved.clear()


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
