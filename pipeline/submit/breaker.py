"""The circuit breakers of a submission. A part of the engine (engine.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pipeline.errors import AuthRefused, CircuitOpen, RunStopped
from pipeline.model import Status
from pipeline.submit.client import Answer, Kind
from pipeline.submit.common import ProgressFn, SubmitOptions, _State
from pipeline.submit.ledger import Update
from pipeline.submit.outcomes import Outcomes, RowResult


class Breaker:
    """Stop the run when the failures say it is not the rows: too many consecutive server or network failures with
    no success for a while (the API looks down or overloaded), or every row so far refused with 403 (the
    credentials or the tenant)."""

    # provided by the engine (Submitter)
    options: SubmitOptions
    outcomes: Outcomes
    progress: ProgressFn
    _forbidden_stop: bool
    _state: _State

    if TYPE_CHECKING:

        def stop(self, error: RunStopped, hurry: bool = False) -> None: ...

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
