"""Submission: turn planned rows into jobs exactly once, through faults, throttling, interruptions and a failing
ledger.

The engine (`Submitter`) wires a few collaborators, each with one job, and runs them under one task group:
- the row tracker (tracker.py) owns every row's state and is the only writer of outcomes and ledger updates;
- the feeder (feeder.py) settles what the ledger already knows, looks new references up in BigChange, and makes
  the rest durable as `sending` just before queueing them (a bounded queue, never far ahead of the answers);
- the sender (sender.py): a bounded pool of workers, and what each answer means for its row;
- the reconciler (reconciler.py) looks lost answers up by reference, and first the rows a killed run left;
- the breaker (breaker.py) stops the run when failures say it is not the rows.
Retries are decided in one place (`pipeline.retry`). A stop (Ctrl-C, breaker, credentials, ledger) closes the
gate: no new request leaves, requests in flight get `drain_timeout_s` to finish (a second Ctrl-C abandons them:
`uncertain`), rows marked `sending` but not sent are taken back (`pending`), and the final look-up of lost answers
is bounded by what is left of the drain time. Whatever happens, `run` returns every row's outcome; it raises
nothing for rows or stops (the stop is `stop_error`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import structlog

from pipeline.errors import CircuitOpen, JobImportError, LedgerUnavailable, RunStopped, TransientError
from pipeline.retry import RetryPolicy, call_with_retries
from pipeline.submit.breaker import Breaker
from pipeline.submit.client import ApiClient, FoundJob
from pipeline.submit.common import PlannedRow, ProgressFn, RunContext, SayFn, SubmitOptions, SubmitStats
from pipeline.submit.feeder import Feeder
from pipeline.submit.ledger import Ledger
from pipeline.submit.outcomes import Outcomes
from pipeline.submit.reconciler import Reconciler, reconcile_interrupted
from pipeline.submit.sender import Sender
from pipeline.submit.throttle import Gate
from pipeline.submit.tracker import RowTracker, Violation

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: look-ups (before sending, after lost answers): a GET creates nothing, so every transient failure may be retried
LOOKUP_POLICY = RetryPolicy(attempts=6, base_s=0.5, max_s=8.0, max_wait_s=60.0)


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
        self.tracker = RowTracker(0, ledger, run_id)
        self.violations: list[Violation] = []
        self._stop_error: RunStopped | None = None
        self._finished = asyncio.Event()  # every row fed and answered, or a stop
        self._hurry = asyncio.Event()  # a second Ctrl-C: abandon what is in flight

    # --- public ------------------------------------------------------------------------------------------------

    def stop(self, error: RunStopped, hurry: bool = False) -> None:
        """Stop new sends (signal handler, breaker, credentials, ledger). The first reason wins. `hurry` (a second
        Ctrl-C) also abandons in-flight requests at once: they are reported `uncertain`, and stay `sending` in the
        ledger for the next run to look up."""
        if hurry:
            self._hurry.set()
        if self._stop_error is None:
            self._stop_error = error
            self.stats.stop_reason = str(error)
            log.warning("run_stopping", reason=str(error))
        self._finished.set()

    @property
    def stop_error(self) -> RunStopped | None:
        return self._stop_error

    def stopping(self) -> bool:
        return self._stop_error is not None

    async def run(self, batches: Iterator[list[PlannedRow]], total: int) -> Outcomes:
        """Submit the planned rows `batches` yields (unique keys, indices 0..total-1, in order). Returns every
        row's outcome; raises nothing for row problems, stops or a failing ledger."""
        room = self.options.outstanding_rows or max(256, 8 * self.options.max_concurrency)
        room = max(room, 64, self.options.max_concurrency)
        tracker = self.tracker = RowTracker(total, self.ledger, self.run_id, self.progress, room)
        tracker.on_ledger_error = self._ledger_failed
        queue: asyncio.Queue[PlannedRow | None] = asyncio.Queue(maxsize=room + self.options.max_concurrency + 64)
        run = RunContext(tracker, self.options, self.stats, self.stopping, self.stop)
        breaker = Breaker(run)
        feeder = Feeder(run, self.ledger, self._summaries, queue)
        reconciler = Reconciler(run, self._find, self._requeue)
        sender = Sender(run, self.client, self.gate, breaker, reconciler, queue)
        sender.ledger_failed = self._ledger_failed
        self._sender = sender
        try:
            await reconcile_interrupted(
                self.ledger, self.run_id, self.options, self.stats, self._find, self.say, self._finished, feeder.stale
            )
        except RunStopped as exc:
            self.stop(exc)  # report what the ledger knows; send nothing
        except Exception as exc:
            self._ledger_failed(exc)
        if not self.stopping():
            await self._submit(batches, feeder, sender, reconciler, queue)
        await feeder.settle_rest(batches)
        breaker.at_end(self._stop_error)
        await self._flush_ledger()
        self.violations = tracker.close()
        if self.violations:  # a bug: the rows concerned were made safe (uncertain / pending); say so
            self.stop(
                RunStopped(
                    f"internal failure: {len(self.violations)} row(s) ended outside a final state (first: plan row "
                    f"{self.violations[0].index}, {self.violations[0].what}); they are reported uncertain or pending "
                    "and the next run looks them up: please report it"
                )
            )
        self.stats.max_concurrency_seen = self.gate.stats.max_limit_seen
        self.stats.paused_s = self.gate.stats.paused_s
        return tracker.outcomes

    # --- the task group ------------------------------------------------------------------------------------------

    async def _submit(
        self,
        batches: Iterator[list[PlannedRow]],
        feeder: Feeder,
        sender: Sender,
        reconciler: Reconciler,
        queue: asyncio.Queue[Any],
    ) -> None:
        def check_done() -> None:
            if feeder.fed_all and self.tracker.outstanding == 0:
                self._finished.set()

        self.tracker.on_idle = check_done
        async with asyncio.TaskGroup() as group:
            triage = group.create_task(self._guard(feeder.triage(batches), "triage"))
            feed = group.create_task(self._guard(self._feed(feeder, check_done), "feeder"))
            workers = [group.create_task(self._guard(sender.worker(), "worker")) for _ in range(self._workers())]
            helpers = [
                group.create_task(self._guard(reconciler.run(), "reconciler")),
                group.create_task(self._guard(self._flusher(), "flusher")),
                group.create_task(self._guard(self.gate.watch_loop(), "loop watch")),
            ]
            group.create_task(self._supervise(triage, feed, workers, helpers, sender, reconciler, queue))
        # A worker cancelled by a second Ctrl-C leaves the rows queued behind it: never sent, taken back.
        while not queue.empty():
            planned = queue.get_nowait()
            if planned is not None:
                self.tracker.take_back(planned)

    def _workers(self) -> int:
        """The gate admits at most max_concurrency requests at once; a few more workers have their next row
        written `sending` and wait for a slot with it, so that no slot waits for a ledger commit (measured: one
        worker per slot, each send waiting for its commit, gave 0.80× a bare loop at concurrency 32). After a kill
        -9, the rows `sending` without having been sent are at most the rows of these workers."""
        concurrency = self.options.max_concurrency
        return concurrency + max(4, concurrency // 4)

    async def _feed(self, feeder: Feeder, check_done: Callable[[], None]) -> None:
        await feeder.feed()
        check_done()

    async def _supervise(
        self,
        triage: asyncio.Task[None],
        feed: asyncio.Task[None],
        workers: list[asyncio.Task[None]],
        helpers: list[asyncio.Task[None]],
        sender: Sender,
        reconciler: Reconciler,
        queue: asyncio.Queue[Any],
    ) -> None:
        """Wait for the end (every row answered) or a stop, then wind down in order: nothing new leaves, what is in
        flight finishes within the drain time (or is abandoned on a second Ctrl-C), lost answers are looked up
        with what is left of it, and every helper is ended."""
        loop = asyncio.get_running_loop()
        await self._finished.wait()
        deadline = loop.time() + self.options.drain_timeout_s
        if self.stopping():
            await self.gate.close()
            for task in (triage, feed):
                task.cancel()
            await asyncio.gather(triage, feed, return_exceptions=True)
            sender.take_back_waiting()
        for _ in workers:
            await queue.put(None)
        hurry: asyncio.Task[Any] = asyncio.create_task(self._hurry.wait())
        running: set[asyncio.Task[Any]] = {w for w in workers if not w.done()}
        while running and not self._hurry.is_set() and loop.time() < deadline:
            _, running = await asyncio.wait(
                running | {hurry}, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
            )
            running.discard(hurry)
        hurry.cancel()
        for task in running:
            task.cancel()  # their rows: abandoned (uncertain) if on the wire, taken back if not
        await asyncio.gather(*workers, return_exceptions=True)
        helpers[0].cancel()  # the reconciler loop; what it still lists is looked up once more below
        await asyncio.gather(helpers[0], return_exceptions=True)
        await reconciler.final(self._hurry.is_set(), deadline - loop.time())
        for task in helpers[1:]:
            task.cancel()
        await asyncio.gather(*helpers[1:], return_exceptions=True)

    async def _guard(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run one part of the group: a stop it raises stops the run (in order, not by cancelling the others); an
        unexpected error is a bug, which stops the run the same way, so every row still gets a true outcome."""
        try:
            await work
        except RunStopped as exc:
            self.stop(exc)
        except Exception as exc:
            log.exception("internal_task_failed", task=name)
            self.stop(
                RunStopped(
                    f"internal failure in the {name} ({type(exc).__name__}: {exc}); the ledger keeps every row's "
                    "state: run again"
                )
            )

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.options.flush_every_s)
            self.tracker.flush()

    # --- the ledger ------------------------------------------------------------------------------------------------

    def _ledger_failed(self, exc: BaseException) -> None:
        self.stop(
            LedgerUnavailable(
                f"cannot write the ledger {self.ledger.path} ({_first_line(exc)}); nothing more was sent and the "
                "reports say which rows' outcomes may be missing from it (the next run looks those up): free the "
                "disk or fix the ledger, then run again"
            )
        )

    async def _flush_ledger(self) -> None:
        """Everything the tracker wrote, made durable before the reports are built; a failure stops the run (once)
        and the rows concerned are named in the reports."""
        self.tracker.flush()
        try:
            await asyncio.to_thread(self.ledger.flush)
        except Exception as exc:
            self._ledger_failed(exc)
        self.tracker.settle_writes()

    # --- look-ups (through the one retry policy) ----------------------------------------------------------------

    async def _lookup(self, call: Callable[[], Awaitable[T]], through_gate: bool) -> T:
        """A look-up, tried again while the policy says a retry can help; one that keeps failing stops the run."""

        async def once() -> T:
            if through_gate:
                await self.gate.acquire(priority=True)  # raises Stopped when the run is stopping
            try:
                self.stats.lookups += 1
                return await call()
            finally:
                if through_gate:
                    await self.gate.release()

        def on_failure(exc: JobImportError, attempt: int) -> None:
            if isinstance(exc, TransientError) and exc.status == 429:
                self.stats.http_429 += 1
                if through_gate:
                    self.gate.on_throttled(exc.retry_after)

        try:
            return await call_with_retries(once, LOOKUP_POLICY, on_failure)
        except TransientError:
            raise CircuitOpen(
                "cannot look jobs up by reference in BigChange (the API keeps failing); nothing was sent for the "
                "rows concerned; run again later"
            ) from None

    async def _summaries(self, references: list[str]) -> dict[str, list[FoundJob]]:
        """A look-up before sending, through the gate (it shares the API's allowance with the sends)."""
        return await self._lookup(lambda: self.client.find_job_summaries(references), through_gate=True)

    async def _find(self, references: list[str]) -> dict[str, int]:
        """A look-up after a lost answer (not through the gate: it must not wait behind the sends)."""
        return await self._lookup(lambda: self.client.find_jobs(references), through_gate=False)

    def _requeue(self, planned: PlannedRow) -> None:
        self._sender.requeue(planned)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
