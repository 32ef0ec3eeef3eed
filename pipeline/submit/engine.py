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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from pipeline.errors import AuthRefused, CircuitOpen, JobImportError, RunStopped, TokenUnavailable, TransientError
from pipeline.model import Status
from pipeline.submit.client import Answer, ApiClient, FoundJob, Kind
from pipeline.submit.latency import LatencyHistogram
from pipeline.submit.ledger import Ledger, LedgerRow, Update
from pipeline.submit.outcomes import Outcomes, RowResult
from pipeline.submit.throttle import Gate, Stopped

log = structlog.get_logger(__name__)

FOUND_NOTE = "found in BigChange"
LOOKUP_BATCH = 50  # references per GET /v1/jobs (the API's limit)


@dataclass(slots=True)
class PlannedRow:
    """One valid source row, ready to send. `index` is its position in the plan (its outcome's address)."""

    index: int
    row: int
    key: str
    reference: str | None
    payload: str
    attempts: int = 0  # sends made by this run that count against the retry budget (429s do not)
    throttled: int = 0  # 429 answers this row got

    @property
    def fingerprint(self) -> str:
        """sha256 of the payload (the key already is one for rows without a reference): computed only where a
        rejection must be told from a changed row."""
        if self.key.startswith("fp:"):
            return self.key[3:]
        return fingerprint(self.payload)


def fingerprint(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


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
    lookup_before_send: bool = True  # look a reference the ledger does not know up in BigChange first
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
    lookahead_calls: int = 8  # look-ups before sending that may be in flight at once


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
    found_before_send: int = 0  # rows a look-up before their first send found in BigChange
    conflicts: int = 0  # rows whose reference BigChange holds for a job of another type or contact
    stop_reason: str | None = None
    max_concurrency_seen: int = 0
    paused_s: float = 0.0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram, repr=False)  # answered creates


ProgressFn = Callable[[Status, int], None]
SayFn = Callable[[str], None]


@dataclass
class _State:
    pending_updates: list[Update] = field(default_factory=list)
    consecutive_failures: int = 0
    last_success: float = field(default_factory=time.monotonic)
    forbidden_streak: list[PlannedRow] = field(default_factory=list)
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

    # --- before sending: what an interrupted run left, and what the ledger already knows --------------------------

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

    # --- look before sending --------------------------------------------------------------------------------------

    async def _look_before_send(self, rows: list[PlannedRow]) -> AsyncIterator[list[PlannedRow]]:
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

    async def _lookup(self, references: list[str]) -> dict[str, int]:
        """find_jobs for reconciliation, with a few retries; a look-up that keeps failing stops the run."""
        return await self._retrying(lambda: self.client.find_jobs(references), through_gate=False)

    async def _retrying(self, call: Callable[[], Awaitable[Any]], through_gate: bool) -> Any:
        """A look-up, tried again while the error says a retry can help (`retryable`, the error tree's word)."""
        for attempt in range(6):
            if through_gate:
                await self.gate.acquire()  # raises Stopped when the run is stopping
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

    # --- the engine ----------------------------------------------------------------------------------------------

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
            while (rows := await ready.get()) is not None:
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
                        async for part in self._look_before_send(fresh):
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

    def _forbidden_everywhere(self, answer: Answer | None) -> None:
        """Every row so far got 403: it is the credentials or the tenant, not the rows. Those rows go back to
        pending and the run stops."""
        answer = answer or Answer(Kind.REJECTED, 403)
        streak = len(self._state.forbidden_streak)
        for planned in self._state.forbidden_streak:
            self.outcomes.record(planned.index, RowResult(Status.PENDING, None, answer.problem))
            self._state.pending_updates.append(Update(planned.key, Status.PENDING, problem=answer.problem))
        self._state.forbidden_streak.clear()  # 403s still in flight start a new streak, handled the same way
        self._forbidden_stop = True
        self.progress(Status.REJECTED, -streak)  # what the bar counted as rejected is pending after all
        self.progress(Status.PENDING, streak)
        title = (answer.problem or {}).get("title") or "Forbidden"
        self.stop(
            AuthRefused(
                f"the API answered 403 ({title}) to the first {streak} rows; check "
                "BIGCHANGE_CUSTOMER_ID and the API key's scopes (jobs:write), then run again"
            )
        )

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
                self._finish(planned, RowResult(Status.PENDING))

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
