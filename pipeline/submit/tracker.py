"""The row tracker: every planned row's state through one submission, and the only writer of its outcomes and of
the ledger's row updates.

A row moves through phases, and only these moves are legal (anything else raises `IllegalTransition`):

    planned ──settle─────────────────────────────────────────────────▶ final (the ledger or a look-up decided)
    planned ──unsent─────────────────────────────────────────────────▶ final (pending: the run stopped first)
    planned ──queue──▶ queued ──sending──▶ sending ──on_wire──▶ on the wire ──finish──▶ final
                         │                  │   ▲                 │   │
                         │                  │   └──── retry ──────┘   └──abandon──▶ final (uncertain)
                         └──take_back──▶ final (pending; nothing was written)
                                            ├──take_back──▶ final (pending, or what the ledger held before)
                                            └──finish─────▶ final (a retry budget spent while waiting)

A row is written `sending` only once a worker has taken it to send, then waits for a slot of the gate with it
(the rows asking while a commit is on its way share the next one), so after a kill -9 the rows the ledger holds
as `sending` without having been sent are at most one per worker. A row taken
back after that commit (a stop, a cancel) gets back what the ledger held before (`pending` for a new row) in a
write queued after it. At the end, `close()` checks that every row is final and that its reported status agrees
with what was written to the ledger for it; rows whose ledger write did not become durable are named (the reports
say so), so a ledger failure loses no outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import structlog

from pipeline.model import Status
from pipeline.submit.common import PlannedRow, ProgressFn, uncertain_problem, unresolved_problem
from pipeline.submit.ledger import Ledger, Update
from pipeline.submit.outcomes import Outcomes, RowResult

log = structlog.get_logger(__name__)

PLANNED, QUEUED, SENDING, ON_WIRE, FINAL = 0, 1, 2, 3, 4
_PHASES = ("planned", "queued", "sending", "on the wire", "final")

#: What the ledger may say for a row once the run reports it in a status (None: no row written by this run).
#: `uncertain` rows keep `sending` when they have a reference (the next run looks them up first).
AGREES: dict[Status, frozenset[str | None]] = {
    Status.CREATED: frozenset({"created"}),
    Status.ALREADY_CREATED: frozenset({"created", "already_created", None}),
    Status.REJECTED: frozenset({"rejected", None}),  # a conflict found by a look-up is not written
    Status.FAILED: frozenset({"failed"}),
    Status.UNCERTAIN: frozenset({"sending", "uncertain", None}),
    Status.PENDING: frozenset({"pending", "failed", "rejected", None}),  # taken back: what it held before
}

_LEDGER_STATES: tuple[str | None, ...] = (None, "sending", *(str(s) for s in Status if s != Status.VALID))
_LEDGER_CODE = {state: code for code, state in enumerate(_LEDGER_STATES) if state is not None}
_SENDING_CODE = _LEDGER_CODE["sending"]

_RESTORABLE = frozenset({Status.UNCERTAIN, Status.FAILED, Status.REJECTED, Status.PENDING})

MAYBE_NOT_RECORDED = "outcome may be missing from the ledger (it could not be written): the next run looks it up"


class IllegalTransition(RuntimeError):
    """A bug: a row was moved in a way the state machine does not allow."""


@dataclass(frozen=True, slots=True)
class Violation:
    index: int
    what: str


class RowTracker:
    """One per submission. Called from the event loop's thread only (ledger write callbacks hop back to it)."""

    def __init__(
        self, total: int, ledger: Ledger, run_id: str, progress: ProgressFn | None = None, room: int = 1 << 30
    ) -> None:
        self.outcomes = Outcomes(total)
        self.ledger = ledger
        self.run_id = run_id
        self.progress = progress or (lambda status, n: None)
        self._phase = bytearray(total)
        self._written = bytearray(total)  # last ledger state this run wrote for a row (a code of _LEDGER_STATES)
        self._updates: list[Update] = []
        self._update_rows: list[int] = []
        self._writes: list[tuple[Future[Any], list[int]]] = []  # ledger writes not yet known to be durable
        self._not_durable: set[int] = set()
        self._refusals: dict[str, str] = {}  # key → who holds it: claims a shared ledger refused
        self.ledger_error: BaseException | None = None
        self.on_ledger_error: Callable[[BaseException], None] = lambda exc: None
        self.outstanding = 0  # rows marked sending without a final state
        self.room = room  # the most rows that may be outstanding at once (the feeder waits for room)
        self._room_free = asyncio.Event()
        self._room_free.set()
        self.on_idle: Callable[[], None] = lambda: None
        self._batch: dict[int, PlannedRow] | None = None  # rows asking for `sending` in this loop step
        self._batch_done: asyncio.Future[None] | None = None
        self._committing = False  # a `sending` commit is on its way

    # --- moves -------------------------------------------------------------------------------------------------

    def settle(self, planned: PlannedRow, result: RowResult, update: Update | None = None) -> None:
        """planned → final without sending: what the ledger or a look-up decided (and the ledger update, if any)."""
        self._move(planned.index, (PLANNED,), FINAL)
        self._final(planned, result, update)

    def unsent(self, planned: PlannedRow) -> None:
        """planned → final: never sent because the run stopped. Pending — unless the ledger holds an unresolved
        outcome for it (an `uncertain` row given to --resend-uncertain): that stays what it was."""
        self._move(planned.index, (PLANNED,), FINAL)
        self._final(planned, _unsent_result(planned), None)

    def queue(self, planned: PlannedRow) -> None:
        """planned → queued: handed to the workers (nothing written yet; counts against the room)."""
        self._move(planned.index, (PLANNED,), QUEUED)
        self.outstanding += 1
        if self.outstanding >= self.room:
            self._room_free.clear()

    def sending(self, planned: PlannedRow) -> asyncio.Future[None] | None:
        """queued → sending: the row is to be written `sending`; returns the future of that durable commit (await
        it before the request leaves), or None for a row already `sending` (sent before, now sent again). The rows
        asking while a commit is on its way share the next one."""
        if self._phase[planned.index] == SENDING:
            return None
        self._move(planned.index, (QUEUED,), SENDING)
        self._written[planned.index] = _SENDING_CODE
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch, self._batch_done = {}, loop.create_future()
            if not self._committing:  # else it goes out as soon as the commit on its way has landed
                loop.call_soon(self._commit_sending)
        self._batch[planned.index] = planned
        return self._batch_done

    def _commit_sending(self) -> None:
        """One `sending` commit at a time: the rows asking while one is on its way make the next (group commit, so
        the commits a second never outgrow what the disk can sync, however many workers ask)."""
        if self._committing or self._batch is None:
            return
        batch, done = self._batch, self._batch_done
        self._batch, self._batch_done = None, None
        assert done is not None
        if not batch:
            done.set_result(None)
            return
        rows = list(batch.values())
        try:
            future = self.ledger.submit_sending(((p.key, p.reference) for p in rows), self.run_id)
        except Exception as exc:
            done.set_exception(exc)
            return
        self._committing = True
        self._watch(future, [p.index for p in rows])
        loop = asyncio.get_running_loop()

        def landed(f: Future[Any]) -> None:  # the writer's thread
            loop.call_soon_threadsafe(self._sending_landed, done, f)

        future.add_done_callback(landed)

    def _sending_landed(self, done: asyncio.Future[None], landed: Future[Any]) -> None:
        self._committing = False
        if not landed.cancelled() and landed.exception() is None and landed.result():
            self._refusals.update(landed.result())  # keys a shared ledger refused: another live run holds them
        _settle_future(done, landed)
        self._commit_sending()  # the rows that asked meanwhile

    def refusal(self, planned: PlannedRow) -> str | None:
        """Who holds the row, when the shared ledger refused this run's claim on it (then it must not be sent)."""
        return self._refusals.pop(planned.key, None)

    def on_wire(self, planned: PlannedRow) -> None:
        """sending → on the wire: its request is about to leave (from here on, it may create the job)."""
        self._move(planned.index, (SENDING,), ON_WIRE)

    def retry(self, planned: PlannedRow) -> None:
        """on the wire → sending: the answer says nothing was created (429, 503, refused before sending, or a
        look-up found no job); it waits to be sent again."""
        self._move(planned.index, (ON_WIRE,), SENDING)

    def finish(self, planned: PlannedRow, result: RowResult, ledger_state: str | None = None) -> None:
        """sending | on the wire → final, with its ledger state (the status unless `ledger_state` says)."""
        self._move(planned.index, (SENDING, ON_WIRE), FINAL)
        state = ledger_state or str(result.status)
        fingerprint = planned.fingerprint if result.status == Status.REJECTED else None
        self._final(planned, result, Update(planned.key, state, result.job_id, result.problem, fingerprint))
        self._release(1)

    def take_back(self, planned: PlannedRow) -> None:
        """queued | sending → final: never put on the wire by this run (a stop, a cancel). A row already written
        `sending` gets back what the ledger held before (pending for a new row), in a write queued after that one;
        a queued row, or one whose `sending` was not yet handed to the ledger, needs no write."""
        phase = self._phase[planned.index]
        self._move(planned.index, (QUEUED, SENDING), FINAL)
        update: Update | None = None
        if phase == SENDING and self._batch is not None and planned.index in self._batch:
            del self._batch[planned.index]  # its commit was not submitted yet: the ledger never hears of it
            self._written[planned.index] = 0
        elif phase == SENDING:
            prior = planned.prior
            if prior is not None and prior.state in _RESTORABLE:
                update = Update(planned.key, prior.state, prior.job_id, prior.problem, prior.fingerprint)
            else:
                update = Update(planned.key, Status.PENDING)
        self._final(planned, _unsent_result(planned), update)
        self._release(1)

    def refused(self, planned: PlannedRow, note: str) -> None:
        """sending → final `pending`: a shared ledger refused the claim (another live run holds the row, or settled
        it meanwhile). Never sent, and nothing written: the ledger's row is the other run's."""
        self._move(planned.index, (SENDING,), FINAL)
        self._written[planned.index] = 0  # the `sending` write did not take for this row
        self._final(planned, RowResult(Status.PENDING, None, None, note), None)
        self._release(1)

    def abandon(self, planned: PlannedRow, problem: dict[str, Any] | None = None) -> None:
        """on the wire → final `uncertain`: its request may have reached BigChange and no answer will be read (a
        second Ctrl-C, a drain that timed out, a look-up the stop cut short). The ledger keeps `sending`: the next
        run looks it up by reference first, or reports it uncertain when it has none."""
        self._move(planned.index, (ON_WIRE,), FINAL)
        result = RowResult(
            Status.UNCERTAIN, None, problem or (unresolved_problem() if planned.reference else uncertain_problem())
        )
        self._final(planned, result, None)
        self._release(1)

    def reopen_as_pending(self, planned: PlannedRow, problem: dict[str, Any] | None) -> None:
        """final `rejected` (403) → final `pending`: every row so far was refused with 403, so it is the
        credentials or the tenant, not the row (the circuit breaker's verdict)."""
        if self._phase[planned.index] != FINAL or self.outcomes.status(planned.index) != Status.REJECTED:
            raise IllegalTransition(f"row {planned.row}: only a rejected row can be reopened as pending")
        self.outcomes.record(planned.index, RowResult(Status.PENDING, None, problem))
        self._queue(planned.index, Update(planned.key, Status.PENDING, problem=problem))
        self.progress(Status.REJECTED, -1)
        self.progress(Status.PENDING, 1)

    # --- queries -----------------------------------------------------------------------------------------------

    def phase(self, index: int) -> str:
        return _PHASES[self._phase[index]]

    def is_planned(self, index: int) -> bool:
        return self._phase[index] == PLANNED

    async def wait_for_room(self, rows: int) -> None:
        """Wait until `rows` more may be outstanding (the feeder never runs far ahead of the answers)."""
        while self.outstanding > 0 and self.outstanding + rows > self.room:
            self._room_free.clear()
            await self._room_free.wait()

    # --- the ledger ----------------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Hand the updates gathered since the last flush to the ledger's writer (never blocks the loop)."""
        if not self._updates:
            return
        updates, rows = self._updates, self._update_rows
        self._updates, self._update_rows = [], []
        try:
            future = self.ledger.submit_record(updates, self.run_id)
        except Exception as exc:  # the writer is gone (closed ledger): the same as a failed write
            self._not_durable.update(rows)
            self._failed(exc)
            return
        self._watch(future, rows)

    def _watch(self, future: Future[Any], rows: list[int]) -> None:
        self._writes.append((future, rows))
        loop = asyncio.get_running_loop()

        def done(f: Future[Any]) -> None:  # the writer's thread
            if not f.cancelled() and f.exception() is not None:
                loop.call_soon_threadsafe(self._failed, f.exception())

        future.add_done_callback(done)
        if len(self._writes) > 64:
            self._prune()

    def _prune(self) -> None:
        keep = []
        for future, rows in self._writes:
            if not future.done():
                keep.append((future, rows))
            elif future.cancelled() or future.exception() is not None:
                self._not_durable.update(rows)
        self._writes = keep

    def _failed(self, exc: BaseException | None) -> None:
        if exc is None or self.ledger_error is not None:
            return
        self.ledger_error = exc
        log.error("ledger_write_failed", error=repr(exc))
        self.on_ledger_error(exc)

    def settle_writes(self) -> None:
        """After the ledger's writer has finished (or failed) every write: which rows' last write is not durable.
        Their results carry a note saying so."""
        for future, rows in self._writes:
            if not future.done() or future.cancelled() or future.exception() is not None:
                self._not_durable.update(rows)
                if future.done() and not future.cancelled():
                    self._failed(future.exception())
        self._writes = []
        self._not_durable.update(self._update_rows)  # never handed to the writer
        for index in sorted(self._not_durable):
            if self._phase[index] == FINAL:
                result = self.outcomes.get(index)
                if result.status == Status.PENDING and not self._written[index]:
                    continue  # nothing was written for it: the ledger cannot be behind
                result.note = MAYBE_NOT_RECORDED
                self.outcomes.record(index, result)

    # --- the end -----------------------------------------------------------------------------------------------

    def close(self) -> list[Violation]:
        """Every row must be final and agree with what this run wrote to the ledger for it. Returns the
        violations (a bug if any); each offending row is made safe: `uncertain` if it may have been sent (the
        ledger keeps `sending` and the next run looks it up), `pending` if it never was."""
        violations: list[Violation] = []
        for index, phase in enumerate(self._phase):
            if phase == FINAL:
                status = self.outcomes.status(index)
                written = _LEDGER_STATES[self._written[index]]
                if written not in AGREES[status]:
                    violations.append(Violation(index, f"reported {status} but the ledger was told {written}"))
                continue
            violations.append(Violation(index, f"ended {_PHASES[phase]}, not final"))
            if phase == PLANNED:
                self.outcomes.record(index, RowResult(Status.PENDING))
            else:
                self.outcomes.record(index, RowResult(Status.UNCERTAIN, None, unresolved_problem()))
            self._phase[index] = FINAL
        for violation in violations[:20]:
            log.error("row_tracker_violation", index=violation.index, what=violation.what)
        return violations

    # --- inside ----------------------------------------------------------------------------------------------

    def _move(self, index: int, allowed: tuple[int, ...], to: int) -> None:
        phase = self._phase[index]
        if phase not in allowed:
            raise IllegalTransition(f"plan row {index}: {_PHASES[phase]} → {_PHASES[to]} is not a legal move")
        self._phase[index] = to

    def _final(self, planned: PlannedRow, result: RowResult, update: Update | None) -> None:
        self.outcomes.record(planned.index, result)
        if update is not None:
            self._queue(planned.index, update)
        self.progress(result.status, 1)

    def _queue(self, index: int, update: Update) -> None:
        self._written[index] = _LEDGER_CODE[update.state]
        self._updates.append(update)
        self._update_rows.append(index)

    def _release(self, rows: int) -> None:
        self.outstanding -= rows
        if self.outstanding < self.room:
            self._room_free.set()
        if self.outstanding == 0:
            self.on_idle()


def _settle_future(done: asyncio.Future[None], landed: Future[Any]) -> None:
    if done.done():
        return
    if landed.cancelled() or landed.exception() is None:
        done.set_result(None)
    else:
        done.set_exception(landed.exception())  # type: ignore[arg-type]


def _unsent_result(planned: PlannedRow) -> RowResult:
    prior = planned.prior
    if prior is not None and prior.state == Status.UNCERTAIN:
        return RowResult(Status.UNCERTAIN, None, prior.problem or uncertain_problem())
    return RowResult(Status.PENDING)
