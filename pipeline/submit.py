"""Submission: turn planned rows into jobs exactly once, through faults, throttling and interruptions.

A bounded pool of workers pulls from a queue that a feeder fills in small batches, each batch made durable in
the ledger as `sending` before any of its requests leaves. Answers are classified by the client:
- created → `created`; rejected (400/403/422) → `rejected` with the problem details;
- transient (429, 502/503/504, not sent) → sent again after a backoff (429/503 also slow everyone down), until
  the retry budget runs out → `failed`;
- unknown (500, timeout, answer lost) → looked up by reference in batches of ≤ 50: found → `created` with its
  id; absent → sent again; no reference → `uncertain` (never resent automatically).
A circuit breaker stops the run after too many consecutive server or network failures; a 401 that survives a
token refresh, or a streak of 403s before any success, stops it as a configuration problem. On stop, rows not
yet sent go back to `pending`; in-flight requests get a bounded time to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from pipeline.client import Answer, ApiClient, Kind
from pipeline.errors import AuthRefused, CircuitOpen, RunStopped, TransientError
from pipeline.ledger import Ledger, LedgerRow, Update
from pipeline.model import Status
from pipeline.throttle import Gate, Stopped

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class PlannedRow:
    """One valid source row, ready to send."""

    row: int
    key: str
    reference: str | None
    payload: str
    fingerprint: str = ""
    attempts: int = 0  # sends made by this run that count against the retry budget (429s do not)
    throttled: int = 0  # 429 answers this row got

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.payload)


def fingerprint(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class RowResult:
    status: Status
    job_id: int | None = None
    problem: dict[str, Any] | None = None


@dataclass
class SubmitOptions:
    max_concurrency: int = 32
    initial_concurrency: int = 4
    max_attempts: int = 6  # sends per row per run for transient failures and absent-after-lookup
    max_throttled: int = 50  # 429 answers one row may get before it is `failed`
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    breaker_threshold: int = 20  # consecutive server/network failures…
    breaker_quiet_s: float = 5.0  # …with no success for this long (answers that fail together are one event)
    auth_streak: int = 10  # consecutive 403s before any success → configuration problem
    resend_uncertain: bool = False
    resend_rejected: bool = False  # send again rows the API refused, even unchanged (the tenant's rules changed)
    drain_timeout_s: float = 30.0  # how long in-flight requests may finish after a stop
    reconcile_batch: int = 50
    # How long after an unknown outcome a look-up may decide "absent, send again": the server may still be working
    # on the request. After an answer (500) or a dropped connection: lookup_grace_s; after a timeout (the server may
    # not even have started): timeout_grace_s, which the runner sets to the read timeout. Rows an interrupted run
    # left `sending` are looked up only once they are timeout_grace_s old.
    lookup_grace_s: float = 2.0
    timeout_grace_s: float = 30.0
    max_retry_after_s: float = 300.0  # a longer Retry-After stops the run (rows pending) instead of waiting
    flush_every_s: float = 0.2  # ledger commit cadence for results


@dataclass
class SubmitStats:
    sent: int = 0
    retries: int = 0
    http_429: int = 0
    http_5xx: int = 0
    lost_answers: int = 0
    reconciled_found: int = 0
    reconciled_absent: int = 0
    lookups: int = 0
    stop_reason: str | None = None
    max_concurrency_seen: int = 0
    paused_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)  # of answered creates (created or rejected)


ProgressFn = Callable[[Status, int], None]


@dataclass
class _State:
    results: dict[str, RowResult] = field(default_factory=dict)
    pending_updates: list[Update] = field(default_factory=list)
    consecutive_failures: int = 0
    last_success: float = field(default_factory=time.monotonic)
    forbidden_streak: list[str] = field(default_factory=list)
    last_forbidden: Answer | None = None
    any_success: bool = False
    other_answers: int = 0  # rejections other than 403


class Submitter:
    def __init__(
        self,
        client: ApiClient,
        ledger: Ledger,
        run_id: str,
        options: SubmitOptions | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.run_id = run_id
        self.options = options or SubmitOptions()
        self.progress = progress or (lambda status, n: None)
        self.stats = SubmitStats()
        self.gate = Gate(self.options.max_concurrency, self.options.initial_concurrency)
        self._state = _State()
        self._stop_error: RunStopped | None = None
        self._send_queue: asyncio.Queue[PlannedRow | None] = asyncio.Queue()
        self._reconcile: list[tuple[float, PlannedRow]] = []  # (not before, row): unknown outcomes to look up
        self._reconcile_event = asyncio.Event()
        self._waiting_retry: dict[str, tuple[PlannedRow, asyncio.TimerHandle]] = {}
        self._in_flight: dict[str, PlannedRow] = {}
        self._outstanding = 0  # rows handed to the engine without a final result yet
        self._done = asyncio.Event()
        self._hurry = False

    # --- public ------------------------------------------------------------------------------------------------

    def stop(self, error: RunStopped, hurry: bool = False) -> None:
        """Stop new sends (signal handler, breaker, auth). The first reason wins. `hurry` (a second Ctrl-C)
        also abandons in-flight requests at once: they stay `sending` and the next run looks them up."""
        if hurry:
            self._hurry = True
        if self._stop_error is None:
            self._stop_error = error
            self.stats.stop_reason = str(error)
            log.warning("run_stopping", reason=str(error))
            self._done.set()
            self._reconcile_event.set()

    async def run(self, rows: list[PlannedRow]) -> dict[str, RowResult]:
        """Submit `rows` (unique keys). Returns key → result for every row; raises nothing for row problems."""
        if len({r.key for r in rows}) != len(rows):
            raise ValueError("planned rows must have unique keys")
        to_send = await self._triage(rows)
        self._outstanding = len(to_send)
        if to_send:
            await self._submit(to_send)
        state = self._state
        if state.forbidden_streak and not state.any_success and not state.other_answers and not self._stop_error:
            # Fewer rows than the streak threshold, all refused with 403: still the credentials or the tenant.
            self._forbidden_everywhere(state.last_forbidden)
        self._flush()
        self.stats.max_concurrency_seen = self.gate.stats.max_limit_seen
        self.stats.paused_s = self.gate.stats.paused_s
        return self._state.results

    @property
    def stop_error(self) -> RunStopped | None:
        return self._stop_error

    # --- before sending: what the ledger already knows -----------------------------------------------------------

    async def _triage(self, rows: list[PlannedRow]) -> list[PlannedRow]:
        known = self.ledger.rows()
        try:
            await self._reconcile_interrupted(known)
        except RunStopped as exc:
            self.stop(exc)  # report what the ledger knows; send nothing
        to_send: list[PlannedRow] = []
        for planned in rows:
            entry = known.get(planned.key)
            result = self._decide(planned, entry)
            if result is None and self._stop_error is not None:
                stale = entry is not None and entry.state == "sending"  # the next run looks it up first
                result = (
                    RowResult(Status.UNCERTAIN, None, _unresolved_problem()) if stale else RowResult(Status.PENDING)
                )
            if result is None:
                to_send.append(planned)
            else:
                self._finish(planned.key, result, write=False)
        return to_send

    def _decide(self, planned: PlannedRow, entry: LedgerRow | None) -> RowResult | None:
        """The result for a row the ledger already settles, or None when it must be sent."""
        if entry is None:
            return None
        if entry.state in (Status.CREATED, Status.ALREADY_CREATED):
            return RowResult(Status.ALREADY_CREATED, entry.job_id)
        if (
            entry.state == Status.REJECTED
            and entry.fingerprint == planned.fingerprint
            and not self.options.resend_rejected
        ):
            return RowResult(Status.REJECTED, None, entry.problem)
        if entry.state == Status.UNCERTAIN and not self.options.resend_uncertain:
            return RowResult(Status.UNCERTAIN, None, entry.problem or _uncertain_problem())
        return None

    async def _reconcile_interrupted(self, known: dict[str, LedgerRow]) -> None:
        """Rows an interrupted run left `sending`: look them up by reference before anything is sent."""
        stale = [entry for entry in known.values() if entry.state == "sending"]
        if not stale:
            return
        log.info("reconciling_interrupted", rows=len(stale))
        # A run killed moments ago may have requests the server is still processing: let them land first.
        wait = self.options.timeout_grace_s - min(_age_s(e.updated_at) for e in stale)
        if wait > 0:
            log.info("waiting_before_lookup", seconds=round(wait, 1))
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
        self.ledger.record(updates, self.run_id)
        for update in updates:
            old = known[update.key]
            known[update.key] = LedgerRow(
                old.key, update.state, old.reference, update.job_id, old.fingerprint, update.problem, old.attempts
            )

    async def _lookup(self, references: list[str]) -> dict[str, int]:
        """find_jobs with a few retries; a look-up that keeps failing stops the run (we must not guess)."""
        for attempt in range(6):
            try:
                self.stats.lookups += 1
                return await self.client.find_jobs(references)
            except TransientError as exc:
                if exc.status == 429:
                    self.stats.http_429 += 1
                await asyncio.sleep(exc.retry_after or min(8.0, 0.5 * 2**attempt))
        raise CircuitOpen(
            "cannot look jobs up by reference to reconcile lost answers (the API keeps failing); "
            "nothing was resent; run again later"
        )

    # --- the engine ----------------------------------------------------------------------------------------------

    async def _submit(self, rows: list[PlannedRow]) -> None:
        workers = [asyncio.create_task(self._worker()) for _ in range(self.options.max_concurrency)]
        feeder = asyncio.create_task(self._feed(rows))
        reconciler = asyncio.create_task(self._reconciler())
        flusher = asyncio.create_task(self._flusher())
        done = asyncio.create_task(self._done.wait())
        helpers = {feeder, reconciler, flusher}
        try:
            while not done.done():
                finished, _ = await asyncio.wait({done, *helpers}, return_when=asyncio.FIRST_COMPLETED)
                for task in finished - {done}:
                    helpers.discard(task)
                    error = None if task.cancelled() else task.exception()
                    if error is not None:
                        # A dead feeder, reconciler or flusher would leave the run waiting forever.
                        log.error("internal_task_failed", error=repr(error))
                        self.stop(
                            RunStopped(
                                f"internal failure ({type(error).__name__}: {error}); the ledger keeps every row's "
                                "state: run again"
                            )
                        )
        finally:
            done.cancel()
            await self.gate.close()
            feeder.cancel()
            for _ in workers:
                self._send_queue.put_nowait(None)  # wakes idle workers so they exit at once
            # In-flight requests get a bounded time to finish; then they are cancelled and stay `sending`.
            deadline = time.monotonic() + self.options.drain_timeout_s
            still = set(workers)
            while still and not self._hurry and time.monotonic() < deadline:
                _, still = await asyncio.wait(still, timeout=0.1)
            for task in still:
                task.cancel()
            await asyncio.gather(*workers, feeder, return_exceptions=True)
            reconciler.cancel()
            await asyncio.gather(reconciler, return_exceptions=True)
            await self._final_reconcile()
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            self._settle_unsent(rows)

    async def _feed(self, rows: list[PlannedRow]) -> None:
        """Make rows durable as `sending` in batches, then queue them; never far ahead of the workers."""
        batch_size = max(8, self.options.max_concurrency)
        for start in range(0, len(rows), batch_size):
            while self._send_queue.qsize() >= batch_size and not self.gate.closed:
                await asyncio.sleep(0.005)
            if self.gate.closed:
                return
            batch = rows[start : start + batch_size]
            self.ledger.mark_sending(((r.key, r.reference, r.fingerprint) for r in batch), self.run_id)
            for planned in batch:
                self._send_queue.put_nowait(planned)

    async def _worker(self) -> None:
        while True:
            planned = await self._send_queue.get()
            if planned is None:
                return
            try:
                await self.gate.acquire()
            except Stopped:
                self._send_queue.put_nowait(planned)  # back for _settle_unsent
                return
            self._in_flight[planned.key] = planned
            try:
                planned.attempts += 1
                answer = await self._send(planned)
            finally:
                await self.gate.release()
            # Not reached when cancelled mid-request: the row stays in _in_flight and is settled as uncertain.
            del self._in_flight[planned.key]
            if answer.kind != Kind.AUTH or answer.status == 401:
                self.stats.sent += 1
            self._handle(planned, answer)

    async def _send(self, planned: PlannedRow) -> Answer:
        try:
            return await self.client.create_job(planned.payload.encode("utf-8"))
        except AuthRefused as exc:  # the token endpoint refused our credentials
            self.stop(exc)
            return Answer(Kind.AUTH, problem=_problem(exc))
        except TransientError as exc:  # the token endpoint kept failing (after its own retries): nothing was sent
            self.stop(CircuitOpen(f"{exc}; rows not sent are pending"))
            return Answer(Kind.AUTH, exc.status, problem=_problem(exc))
        except Exception as exc:  # a bug or an unexpected library error: the request may have left
            log.exception("send_failed_unexpectedly", key=planned.key)
            return Answer(Kind.UNKNOWN, problem=_problem(exc))

    def _handle(self, planned: PlannedRow, answer: Answer) -> None:
        state = self._state
        if answer.kind in (Kind.CREATED, Kind.REJECTED):
            self.stats.latencies_ms.append(answer.latency_s * 1000)
        if answer.kind == Kind.REJECTED and answer.status != 403:
            state.other_answers += 1
        if answer.kind == Kind.CREATED:
            self.gate.on_success(answer.latency_s)
            state.consecutive_failures = 0
            state.last_success = time.monotonic()
            state.forbidden_streak.clear()
            state.any_success = True
            self._finish(planned.key, RowResult(Status.CREATED, answer.job_id))
        elif answer.kind == Kind.REJECTED:
            state.consecutive_failures = 0
            self._finish(planned.key, RowResult(Status.REJECTED, None, answer.problem))
            if answer.status == 403 and not state.any_success and not state.other_answers:
                state.forbidden_streak.append(planned.key)
                state.last_forbidden = answer
                if len(state.forbidden_streak) >= self.options.auth_streak:
                    self._forbidden_everywhere(answer)
        elif answer.kind == Kind.AUTH:
            self._finish(planned.key, RowResult(Status.PENDING, None, answer.problem))
            if answer.status != 401:
                return  # the token endpoint failed: the stop reason is already set
            self.stop(
                AuthRefused(
                    "the API answers 401 even with a fresh token; check the API key, its scopes (jobs:write) "
                    "and BIGCHANGE_TOKEN_URL, then run again"
                )
            )
        elif answer.kind == Kind.ENDPOINT:
            self._finish(planned.key, RowResult(Status.PENDING, None, answer.problem))
            title = (answer.problem or {}).get("title") or ""
            self.stop(
                AuthRefused(
                    f"the API answered {answer.status} {title} to POST {self.client.jobs_url}: that is not the "
                    "create-job endpoint; check BIGCHANGE_BASE_URL (e.g. https://api.bigchange.com/v1)"
                )
            )
        elif answer.kind == Kind.TRANSIENT:
            self._transient(planned, answer)
        else:
            self._unknown(planned, answer)

    def _forbidden_everywhere(self, answer: Answer | None) -> None:
        """Every row so far got 403: it is the credentials or the tenant, not the rows. Those rows go back to
        pending and the run stops."""
        answer = answer or Answer(Kind.REJECTED, 403)
        for key in self._state.forbidden_streak:
            self._state.results[key] = RowResult(Status.PENDING, None, answer.problem)
            self._state.pending_updates.append(Update(key, Status.PENDING, problem=answer.problem))
        title = (answer.problem or {}).get("title") or "Forbidden"
        self.stop(
            AuthRefused(
                f"the API answered 403 ({title}) to the first {len(self._state.forbidden_streak)} rows; check "
                "BIGCHANGE_CUSTOMER_ID and the API key's scopes (jobs:write), then run again"
            )
        )

    def _transient(self, planned: PlannedRow, answer: Answer) -> None:
        if answer.retry_after is not None and answer.retry_after > self.options.max_retry_after_s:
            self._finish(planned.key, RowResult(Status.PENDING, None, answer.problem))
            self.stop(
                CircuitOpen(
                    f"the API asks to wait {answer.retry_after:.0f} s (Retry-After) before sending more; rows not "
                    "sent are pending: run again later"
                )
            )
            return
        if answer.status == 429:
            self.stats.http_429 += 1
            self.gate.on_throttled(answer.retry_after)
            planned.attempts -= 1  # throttling is flow control, not a failure of the row
            planned.throttled += 1
        else:
            if answer.status is not None and answer.status >= 500:
                self.stats.http_5xx += 1
            if answer.status == 503:
                self.gate.on_overloaded(answer.retry_after)
            self._count_failure()
        if planned.attempts >= self.options.max_attempts or planned.throttled >= self.options.max_throttled:
            self._finish(planned.key, RowResult(Status.FAILED, None, answer.problem))
            return
        self.stats.retries += 1
        delay = answer.retry_after if answer.retry_after is not None else self._backoff(planned.attempts)
        self._retry_later(planned, delay)

    def _unknown(self, planned: PlannedRow, answer: Answer) -> None:
        self.stats.lost_answers += 1
        if answer.status is not None and answer.status >= 500:
            self.stats.http_5xx += 1
        self._count_failure()
        if not planned.reference:
            self._finish(planned.key, RowResult(Status.UNCERTAIN, None, _uncertain_problem(answer.problem)))
            return
        grace = self.options.timeout_grace_s if answer.timed_out else self.options.lookup_grace_s
        self._reconcile.append((time.monotonic() + grace, planned))
        self._reconcile_event.set()

    def _count_failure(self) -> None:
        self._state.consecutive_failures += 1
        quiet = time.monotonic() - self._state.last_success
        if self._state.consecutive_failures >= self.options.breaker_threshold and quiet >= self.options.breaker_quiet_s:
            self.stop(
                CircuitOpen(
                    f"{self._state.consecutive_failures} server or network failures in a row; the API looks down "
                    "or overloaded. Rows not sent are pending: run again later"
                )
            )

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self.options.backoff_max_s, self.options.backoff_base_s * 2 ** max(0, attempts - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _retry_later(self, planned: PlannedRow, delay: float) -> None:
        def requeue() -> None:
            self._waiting_retry.pop(planned.key, None)
            if not self.gate.closed:
                self._send_queue.put_nowait(planned)
            else:
                self._finish(planned.key, RowResult(Status.PENDING))

        handle = asyncio.get_running_loop().call_later(delay, requeue)
        self._waiting_retry[planned.key] = (planned, handle)

    # --- lost answers ---------------------------------------------------------------------------------------------

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
                self._finish(planned.key, RowResult(Status.CREATED, job_id))
            elif self.gate.closed:
                # Absent, but the run is stopping: the next run looks it up again before sending anything.
                self._finish(planned.key, RowResult(Status.UNCERTAIN, None, _unresolved_problem()), state="sending")
            else:
                self.stats.reconciled_absent += 1
                if planned.attempts >= self.options.max_attempts:
                    self._finish(planned.key, RowResult(Status.FAILED, None, _absent_problem()))
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
            self._finish(planned.key, RowResult(Status.UNCERTAIN, None, _unresolved_problem()), state="sending")
        self._reconcile.clear()

    # --- bookkeeping ----------------------------------------------------------------------------------------------

    def _finish(self, key: str, result: RowResult, write: bool = True, state: str | None = None) -> None:
        """Record a row's final result (and, with `write`, its ledger state: the status unless `state` says)."""
        self._state.results[key] = result
        if write:
            self._state.pending_updates.append(Update(key, state or result.status, result.job_id, result.problem))
            self._outstanding -= 1
            if self._outstanding <= 0:
                self._done.set()
        self.progress(result.status, 1)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.options.flush_every_s)
            self._flush()

    def _flush(self) -> None:
        if self._state.pending_updates:
            updates, self._state.pending_updates = self._state.pending_updates, []
            try:
                self.ledger.record(updates, self.run_id)
            except Exception:
                self._state.pending_updates[:0] = updates  # not written: keep them for the next flush
                raise

    def _settle_unsent(self, rows: list[PlannedRow]) -> None:
        """After a stop: rows never sent (queued, waiting to retry, never fed) become `pending`."""
        unsent: list[Update] = []
        for _, handle in self._waiting_retry.values():
            handle.cancel()
        while not self._send_queue.empty():
            planned = self._send_queue.get_nowait()
            if planned is not None and planned.key not in self._state.results:
                self._state.results[planned.key] = RowResult(Status.PENDING)
                unsent.append(Update(planned.key, Status.PENDING))
                self.progress(Status.PENDING, 1)
        for key in list(self._waiting_retry) + list(self._in_flight):
            if key not in self._state.results:
                # waiting to retry: nothing was created; in flight and cancelled: unknown, stays `sending`.
                if key in self._waiting_retry:
                    self._state.results[key] = RowResult(Status.PENDING)
                    unsent.append(Update(key, Status.PENDING))
                else:
                    self._state.results[key] = RowResult(Status.UNCERTAIN, None, _unresolved_problem())
                self.progress(self._state.results[key].status, 1)
        for planned in rows:
            if planned.key not in self._state.results:  # never fed: not in the ledger as sending
                self._state.results[planned.key] = RowResult(Status.PENDING)
                self.progress(Status.PENDING, 1)
        self._state.pending_updates.extend(unsent)
        self._flush()


def _age_s(stamp: str) -> float:
    """Seconds since a ledger timestamp (ISO, UTC); very old when unreadable."""
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - then).total_seconds()


def _problem(exc: Exception) -> dict[str, Any]:
    return {"type": None, "title": type(exc).__name__, "status": None, "detail": str(exc)}


def _uncertain_problem(cause: dict[str, Any] | None = None) -> dict[str, Any]:
    detail = (
        "the request was sent but its answer was lost, and the row has no reference to look the job up by; "
        "check in BigChange whether the job exists, then rerun with --resend-uncertain to send it again"
    )
    if cause and cause.get("detail"):
        detail += f" (cause: {cause['detail']})"
    return {"type": None, "title": "Outcome unknown", "status": (cause or {}).get("status"), "detail": detail}


def _unresolved_problem() -> dict[str, Any]:
    return {
        "type": None,
        "title": "Outcome unknown",
        "status": None,
        "detail": "the answer was lost and the run stopped before it could be looked up; the next run looks "
        "it up by reference before sending anything",
    }


def _absent_problem() -> dict[str, Any]:
    return {
        "type": None,
        "title": "Not created",
        "status": None,
        "detail": "answers kept getting lost and look-ups found no job; run again to send it",
    }
