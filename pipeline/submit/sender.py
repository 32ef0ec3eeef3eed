"""The sender: a bounded pool of workers that put the queued rows on the wire through the gate, and what each
answer means for its row — created, rejected, sent again after a delay (the retry policy decides), looked up
(the reconciler), or a stop (credentials, endpoint, a Retry-After too long to wait)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from pipeline.errors import AuthRefused, CircuitOpen, RunStopped
from pipeline.model import Status
from pipeline.retry import RetryPolicy
from pipeline.submit.breaker import Breaker
from pipeline.submit.client import Answer, ApiClient, Kind
from pipeline.submit.common import PlannedRow, RunContext, RunPart, uncertain_problem
from pipeline.submit.outcomes import RowResult
from pipeline.submit.reconciler import Reconciler
from pipeline.submit.throttle import Gate, Stopped

log = structlog.get_logger(__name__)


class Sender(RunPart):
    def __init__(
        self,
        run: RunContext,
        client: ApiClient,
        gate: Gate,
        breaker: Breaker,
        reconciler: Reconciler,
        queue: asyncio.Queue[PlannedRow | None],
    ) -> None:
        super().__init__(run)
        options = run.options
        self.client = client
        self.gate = gate
        self.breaker = breaker
        self.reconciler = reconciler
        self.queue = queue
        self.ledger_failed: Callable[[BaseException], None] = lambda exc: None
        self.policy = RetryPolicy(
            attempts=options.max_attempts,
            base_s=options.backoff_base_s,
            max_s=options.backoff_max_s,
            max_wait_s=options.max_retry_after_s,
        )
        self._waiting: dict[int, tuple[PlannedRow, asyncio.TimerHandle]] = {}  # rows waiting to be sent again

    async def worker(self) -> None:
        """Send queued rows until the None that ends the queue. Drains to the end even when the run stops (rows
        still queued are taken back), so nothing that puts on the queue ever waits forever."""
        while (planned := await self.queue.get()) is not None:
            if self.stopping():
                self.tracker.take_back(planned)
                continue
            # Written `sending` first, without holding a slot of the gate: the slots stay with requests on the wire
            # (measured: a slot held through the commit cost 5-6 ms of every request at concurrency 128).
            if not await self._landed(planned, self.tracker.sending(planned)):
                continue
            try:
                await self.gate.acquire()
            except Stopped:
                self.tracker.take_back(planned)
                continue
            except BaseException:
                self.tracker.take_back(planned)
                raise
            if self.stopping():  # (a slot can be free while the gate closes)
                self.tracker.take_back(planned)
                await self.gate.release()
                continue
            self.tracker.on_wire(planned)
            try:
                planned.attempts += 1
                answer = await self._send(planned)
            except BaseException:
                # cancelled (a second Ctrl-C, the drain time ran out): the request may have reached BigChange
                self.tracker.abandon(planned)
                raise
            self.handle(planned, answer)  # recorded before any other await
            await self.gate.release()

    async def _landed(self, planned: PlannedRow, landed: asyncio.Future[None] | None) -> bool:
        """Wait until the row is durably `sending`; False (the row taken back) when the ledger failed or the run
        stopped meanwhile: its request never leaves."""
        try:
            if landed is not None:
                await asyncio.shield(landed)
        except asyncio.CancelledError:
            self.tracker.take_back(planned)
            raise
        except Exception as exc:  # the ledger cannot be written: the run stops
            self.tracker.take_back(planned)
            self.ledger_failed(exc)
            return False
        note = self.tracker.refusal(planned)
        if note is not None:  # a shared ledger: another live run holds the row; reported pending, never sent
            self.tracker.refused(planned, note)
            return False
        if self.stopping():
            self.tracker.take_back(planned)
            return False
        return True

    async def _send(self, planned: PlannedRow) -> Answer:
        try:
            return await self.client.create_job(planned.payload.encode("utf-8"))
        except RunStopped as exc:  # the token endpoint refused our credentials, or kept failing: nothing was sent
            self.stop(exc)
            return Answer(Kind.AUTH, getattr(exc, "status", None), problem=_problem(exc))
        except Exception as exc:  # a bug or an unexpected library error: the request may have left
            log.exception("send_failed_unexpectedly", key=planned.key)
            return Answer(Kind.UNKNOWN, problem=_problem(exc))

    def handle(self, planned: PlannedRow, answer: Answer) -> None:
        """What the answer means for the row; never awaits, so an answer read is an answer recorded."""
        if answer.kind != Kind.AUTH or answer.status == 401:
            self.stats.sent += 1
        if answer.kind in (Kind.CREATED, Kind.REJECTED):
            self.stats.latency.add(answer.latency_s * 1000)
        if answer.kind == Kind.CREATED:
            self.gate.on_success(answer.latency_s)
            self.breaker.success()
            self.tracker.finish(planned, RowResult(Status.CREATED, answer.job_id))
        elif answer.kind == Kind.REJECTED:
            self.tracker.finish(planned, RowResult(Status.REJECTED, None, answer.problem))
            self.breaker.rejected(planned, answer)
        elif answer.kind == Kind.AUTH:  # 401 after a refresh, or no token: nothing was created
            self.tracker.finish(planned, RowResult(Status.PENDING, None, answer.problem))
            if answer.status == 401:
                self.stop(
                    AuthRefused(
                        "the API answers 401 even with a fresh token; check the API key, its scopes (jobs:write) "
                        "and BIGCHANGE_TOKEN_URL, then run again"
                    )
                )
        elif answer.kind == Kind.ENDPOINT:
            self.tracker.finish(planned, RowResult(Status.PENDING, None, answer.problem))
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
        """Nothing was created: send it again after a delay, unless the budget is spent or the run stops."""
        if answer.retry_after is not None and answer.retry_after > self.options.max_retry_after_s:
            self.tracker.finish(planned, RowResult(Status.PENDING, None, answer.problem))
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
            self.breaker.failure()
        delay = self.policy.delay(answer, planned.attempts)
        if delay is None or planned.throttled >= self.options.max_throttled:
            self.tracker.finish(planned, RowResult(Status.FAILED, None, answer.problem))
            return
        self.tracker.retry(planned)
        if self.stopping():
            self.tracker.take_back(planned)
            return
        self.stats.retries += 1
        handle = asyncio.get_running_loop().call_later(delay, self._send_again, planned)
        self._waiting[planned.index] = (planned, handle)

    def _send_again(self, planned: PlannedRow) -> None:
        self._waiting.pop(planned.index, None)
        self.requeue(planned)

    def requeue(self, planned: PlannedRow) -> None:
        """A row waiting to be sent (again) goes back on the queue — or, once the run is stopping, is taken back."""
        if self.stopping():
            self.tracker.take_back(planned)
        else:
            self.queue.put_nowait(planned)

    def take_back_waiting(self) -> None:
        """On a stop: rows waiting for their retry delay are never sent again by this run."""
        for planned, handle in self._waiting.values():
            handle.cancel()
            self.tracker.take_back(planned)
        self._waiting.clear()

    def _unknown(self, planned: PlannedRow, answer: Answer) -> None:
        """The job may exist: look it up by reference once the server had time to finish; without a reference,
        `uncertain` (never sent again automatically)."""
        self.stats.lost_answers += 1
        if answer.status is not None and answer.status >= 500:
            self.stats.http_5xx += 1
        self.breaker.failure()
        if not planned.reference:
            self.tracker.finish(planned, RowResult(Status.UNCERTAIN, None, uncertain_problem(answer.problem)))
            return
        grace = self.options.timeout_grace_s if answer.timed_out else self.options.lookup_grace_s
        self.reconciler.add(planned, grace)


def _problem(exc: Exception) -> dict[str, Any]:
    return {"type": None, "title": type(exc).__name__, "status": None, "detail": str(exc)}
