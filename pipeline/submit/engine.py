"""Submission: turn planned rows into jobs exactly once, through faults, throttling and interruptions.

Rows stream in from the plan in slices; nothing holds an object per row of the file. For each slice the feeder
asks the ledger about its keys only, settles what the ledger already knows, looks rows with a reference that
the ledger has never seen up in BigChange (≤ 50 per call, several calls at once, through the same client and
gate as the sends: found with the same type and contact → `already_created`; another → a conflict, `rejected`,
not sent), makes the rest durable as `sending` (through the ledger's writer thread) and queues them for a
bounded pool of workers. Answers are classified by the client:
- created → `created`; rejected (400/403/422) → `rejected` with the problem details;
- transient (429, 502/503/504, not sent) → sent again after a backoff (429/503 also slow everyone down), until
  the retry budget runs out → `failed`;
- unknown (500, timeout, answer lost) → looked up by reference in batches of ≤ 50: found → `created` with its
  id; absent → sent again; no reference → `uncertain` (never resent automatically).
A circuit breaker stops the run after too many consecutive server or network failures; a 401 that survives a
token refresh, or a streak of 403s before any success, stops it as a configuration problem. On stop, rows not
yet sent go back to `pending` and the rest of the file is settled from the ledger alone.

This module is the engine (`Submitter`: workers, answers, retries, bookkeeping); its parts are mixins in their own
modules: the triage and look-before-send (triage.py), the reconciler (reconciler.py), the circuit breakers
(breaker.py); what they share is in common.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import structlog

from pipeline.errors import AuthRefused, CircuitOpen, JobImportError, RunStopped, TokenUnavailable, TransientError
from pipeline.model import Status
from pipeline.submit.breaker import Breaker
from pipeline.submit.client import Answer, ApiClient, Kind
from pipeline.submit.common import (
    PlannedRow,
    ProgressFn,
    SayFn,
    SubmitOptions,
    SubmitStats,
    _State,
    _uncertain_problem,
    _unresolved_problem,
)
from pipeline.submit.ledger import Ledger, LedgerRow, Update
from pipeline.submit.outcomes import Outcomes, RowResult
from pipeline.submit.reconciler import Reconciler
from pipeline.submit.throttle import Gate, Stopped
from pipeline.submit.triage import Triage

log = structlog.get_logger(__name__)


class Submitter(Triage, Reconciler, Breaker):
    """The engine: workers send the rows the triage hands over, answers are classified and acted on (retry,
    reconcile, stop); the triage (triage.py), the reconciler (reconciler.py) and the breakers (breaker.py) are
    its parts, each in its own module."""

    def __init__(
        self,
        client: ApiClient,
        ledger: Ledger,
        run_id: str,
        options: SubmitOptions | None = None,
        progress: ProgressFn | None = None,
        say: SayFn | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.run_id = run_id
        self.options = options or SubmitOptions()
        self.progress = progress or (lambda status, n: None)
        self.say = say or (lambda text: None)
        self.stats = SubmitStats()
        self.gate = Gate(self.options.max_concurrency, self.options.initial_concurrency)
        self._state = _State()
        self.outcomes = Outcomes(0)
        self._stop_error: RunStopped | None = None
        self._send_queue: asyncio.Queue[PlannedRow | None] = asyncio.Queue()
        self._reconcile: list[tuple[float, PlannedRow]] = []  # (not before, row): unknown outcomes to look up
        self._reconcile_event = asyncio.Event()
        self._waiting_retry: dict[str, tuple[PlannedRow, asyncio.TimerHandle]] = {}
        self._in_flight: dict[str, PlannedRow] = {}
        self._outstanding = 0  # rows queued to send without a final result yet
        self._fed_all = False
        self._done = asyncio.Event()
        self._hurry = False
        self._stale: dict[str, LedgerRow] = {}  # `sending` rows an interrupted run left, still unresolved
        self._write_error: BaseException | None = None
        self._forbidden_stop = False  # the run stopped because every row so far got 403

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

    async def run(self, batches: Iterator[list[PlannedRow]], total: int) -> Outcomes:
        """Submit the planned rows `batches` yields (unique keys, indices 0..total-1, in order). Returns every
        row's outcome; raises nothing for row problems."""
        self.outcomes = Outcomes(total)
        try:
            await self._reconcile_interrupted()
        except RunStopped as exc:
            self.stop(exc)  # report what the ledger knows; send nothing
        if self._stop_error is None:
            await self._submit(batches)
        # Whatever was not fed (a stop, or nothing to send): settled from the ledger alone, never sent.
        await self._settle_rest(batches)
        state = self._state
        if (
            state.forbidden_streak
            and not state.any_success
            and not state.other_answers
            and (self._stop_error is None or self._forbidden_stop)
        ):
            # Fewer rows than the streak threshold (or 403s still in flight after that stop), all refused with
            # 403: still the credentials or the tenant.
            self._forbidden_everywhere(state.last_forbidden)
        try:
            self._flush()
            await asyncio.to_thread(self.ledger.flush)
        except Exception as exc:  # the disk is full, the file was taken away...: stop; the reports still come
            self.stop(
                RunStopped(
                    f"cannot write the ledger {self.ledger.path} ({exc}); rows sent are looked up by the next run: "
                    "free the disk or fix the file's permissions, then run again"
                )
            )
        self.stats.max_concurrency_seen = self.gate.stats.max_limit_seen
        self.stats.paused_s = self.gate.stats.paused_s
        return self.outcomes

    @property
    def stop_error(self) -> RunStopped | None:
        return self._stop_error

    # --- the engine ----------------------------------------------------------------------------------------------

    async def _retrying(self, call: Callable[[], Awaitable[Any]], through_gate: bool) -> Any:
        """A look-up, tried again while the error says a retry can help (`retryable`, the error tree's word)."""
        for attempt in range(6):
            if through_gate:
                await self.gate.acquire(priority=True)  # raises Stopped when the run is stopping
            try:
                self.stats.lookups += 1
                return await call()
            except TokenUnavailable as exc:  # already retried by the token source: stop, run again later
                raise CircuitOpen(f"{exc}; rows not sent are pending") from None
            except JobImportError as exc:
                if not exc.retryable or not isinstance(exc, TransientError):
                    raise
                if exc.status == 429:
                    self.stats.http_429 += 1
                    if through_gate:
                        self.gate.on_throttled(exc.retry_after)
                delay = exc.retry_after or min(8.0, 0.5 * 2**attempt)
            finally:
                if through_gate:
                    await self.gate.release()
            await asyncio.sleep(delay)
        raise CircuitOpen(
            "cannot look jobs up by reference in BigChange (the API keeps failing); nothing was sent for the rows "
            "concerned; run again later"
        )

    async def _submit(self, batches: Iterator[list[PlannedRow]]) -> None:
        workers = [asyncio.create_task(self._worker()) for _ in range(self.options.max_concurrency)]
        feeder = asyncio.create_task(self._feed(batches))
        reconciler = asyncio.create_task(self._reconciler())
        flusher = asyncio.create_task(self._flusher())
        watcher = asyncio.create_task(self.gate.watch_loop())
        done = asyncio.create_task(self._done.wait())
        helpers = {feeder, reconciler, flusher}
        try:
            while not done.done():
                finished, _ = await asyncio.wait({done, *helpers}, return_when=asyncio.FIRST_COMPLETED)
                for task in finished - {done}:
                    helpers.discard(task)
                    error = None if task.cancelled() else task.exception()
                    if isinstance(error, RunStopped):
                        self.stop(error)
                    elif error is not None:
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
            watcher.cancel()
            await asyncio.gather(flusher, watcher, return_exceptions=True)
            self._settle_unsent()

    async def _feed(self, batches: Iterator[list[PlannedRow]]) -> None:
        """Queue the rows to send in small chunks, each made durable as `sending` just before it is queued (so a
        row is never marked long before its request leaves), never far ahead of the workers. The next slices are
        triaged and looked up meanwhile (`_triage`), so the workers do not wait for look-ups."""
        # parts of up to a slice (rows the ledger settles) or one look-up's rows (≤ 50): about two slices ahead
        ready: asyncio.Queue[list[PlannedRow] | None] = asyncio.Queue(maxsize=48)
        triage = asyncio.create_task(self._triage(batches, ready))
        # Each chunk waits for one durable commit (an fsync): at least 64 rows a commit, or a low concurrency on a
        # fast API would be bound by the disk (measured: 1,100 rows/s at concurrency 8 with 8-row chunks).
        chunk = max(64, self.options.max_concurrency)
        try:
            ended = False
            while not ended and (rows := await ready.get()) is not None:
                # look-ups hand rows over ≤ 50 at a time: what is ready already goes into the same commit
                while len(rows) < chunk and not ready.empty():
                    more = ready.get_nowait()
                    if more is None:
                        ended = True
                        break
                    rows = rows + more
                for start in range(0, len(rows), chunk):
                    while self._send_queue.qsize() >= chunk and not self.gate.closed:
                        await asyncio.sleep(0.005)
                    if self.gate.closed:
                        return
                    part = rows[start : start + chunk]
                    durable = self.ledger.submit_sending(((r.key, r.reference) for r in part), self.run_id)
                    # shielded: a stop cancels this wait, never the write itself (the rows then stay pending)
                    await asyncio.shield(asyncio.wrap_future(durable))
                    self._outstanding += len(part)
                    for planned in part:
                        self._send_queue.put_nowait(planned)
            await triage  # raises what stopped it (a look-up that keeps failing, credentials refused)
        finally:
            triage.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await triage
        self._fed_all = True
        if self._outstanding <= 0:
            self._done.set()

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
            self.stats.latency.add(answer.latency_s * 1000)
        if answer.kind == Kind.REJECTED and answer.status != 403:
            state.other_answers += 1
        if answer.kind == Kind.CREATED:
            self.gate.on_success(answer.latency_s)
            state.consecutive_failures = 0
            state.last_success = time.monotonic()
            state.forbidden_streak.clear()
            state.any_success = True
            self._finish(planned, RowResult(Status.CREATED, answer.job_id))
        elif answer.kind == Kind.REJECTED:
            state.consecutive_failures = 0
            self._finish(planned, RowResult(Status.REJECTED, None, answer.problem))
            if answer.status == 403 and not state.any_success and not state.other_answers:
                state.forbidden_streak.append(planned)
                state.last_forbidden = answer
                if len(state.forbidden_streak) >= self.options.auth_streak:
                    self._forbidden_everywhere(answer)
        elif answer.kind == Kind.AUTH:
            self._finish(planned, RowResult(Status.PENDING, None, answer.problem))
            if answer.status != 401:
                return  # the token endpoint failed: the stop reason is already set
            self.stop(
                AuthRefused(
                    "the API answers 401 even with a fresh token; check the API key, its scopes (jobs:write) "
                    "and BIGCHANGE_TOKEN_URL, then run again"
                )
            )
        elif answer.kind == Kind.ENDPOINT:
            self._finish(planned, RowResult(Status.PENDING, None, answer.problem))
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

    def _transient(self, planned: PlannedRow, answer: Answer) -> None:
        if answer.retry_after is not None and answer.retry_after > self.options.max_retry_after_s:
            self._finish(planned, RowResult(Status.PENDING, None, answer.problem))
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
            self._finish(planned, RowResult(Status.FAILED, None, answer.problem))
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
            self._finish(planned, RowResult(Status.UNCERTAIN, None, _uncertain_problem(answer.problem)))
            return
        grace = self.options.timeout_grace_s if answer.timed_out else self.options.lookup_grace_s
        self._reconcile.append((time.monotonic() + grace, planned))
        self._reconcile_event.set()

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self.options.backoff_max_s, self.options.backoff_base_s * 2 ** max(0, attempts - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _retry_later(self, planned: PlannedRow, delay: float) -> None:
        def requeue() -> None:
            self._waiting_retry.pop(planned.key, None)
            if not self.gate.closed:
                self._send_queue.put_nowait(planned)
            else:
                self._finish(planned, RowResult(Status.PENDING))

        handle = asyncio.get_running_loop().call_later(delay, requeue)
        self._waiting_retry[planned.key] = (planned, handle)

    # --- bookkeeping ----------------------------------------------------------------------------------------------

    def _settle(self, planned: PlannedRow, result: RowResult) -> None:
        """A row settled before it was queued (by the ledger or a look-up): its outcome, no send."""
        self.outcomes.record(planned.index, result)
        self.progress(result.status, 1)

    def _finish(self, planned: PlannedRow, result: RowResult, state: str | None = None) -> None:
        """Record a queued row's final result and its ledger state (the status unless `state` says)."""
        self.outcomes.record(planned.index, result)
        fingerprint = planned.fingerprint if result.status == Status.REJECTED else None
        self._state.pending_updates.append(
            Update(planned.key, state or result.status, result.job_id, result.problem, fingerprint)
        )
        self._outstanding -= 1
        if self._fed_all and self._outstanding <= 0:
            self._done.set()
        self.progress(result.status, 1)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.options.flush_every_s)
            self._flush()

    def _flush(self) -> None:
        """Hand the results gathered since the last flush to the ledger's writer (it never blocks the loop)."""
        if self._write_error is not None:
            raise RunStopped(
                f"cannot write the ledger {self.ledger.path} ({self._write_error}); rows not yet sent stay pending "
                "and rows sent are looked up by the next run: free the disk or fix the file's permissions, then run "
                "again"
            )
        if self._state.pending_updates:
            updates, self._state.pending_updates = self._state.pending_updates, []
            self.ledger.submit_record(updates, self.run_id).add_done_callback(self._note_write)

    def _note_write(self, future: Any) -> None:
        """(writer thread) Remember a failed ledger write: the run stops at the next flush."""
        if future.exception() is not None and self._write_error is None:
            self._write_error = future.exception()

    def _settle_unsent(self) -> None:
        """After a stop: rows queued or waiting to retry become `pending`; rows whose request was cut off stay
        `sending` in the ledger and are reported uncertain."""
        for _, handle in self._waiting_retry.values():
            handle.cancel()
        unsent: list[PlannedRow] = []
        while not self._send_queue.empty():
            planned = self._send_queue.get_nowait()
            if planned is not None:
                unsent.append(planned)
        unsent.extend(planned for planned, _ in self._waiting_retry.values())
        for planned in unsent:
            if not self.outcomes.has(planned.index):
                self._finish(planned, RowResult(Status.PENDING))
        for planned in self._in_flight.values():
            if not self.outcomes.has(planned.index):
                self._finish(planned, RowResult(Status.UNCERTAIN, None, _unresolved_problem()), state="sending")
        self._waiting_retry.clear()
        self._in_flight.clear()
        self._flush()


def _problem(exc: Exception) -> dict[str, Any]:
    return {"type": None, "title": type(exc).__name__, "status": None, "detail": str(exc)}
