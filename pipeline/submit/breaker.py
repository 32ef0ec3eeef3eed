"""The circuit breakers of a submission: stop the run when the failures say it is not the rows — too many
consecutive server or network failures with no success for a while (the API looks down or overloaded), or every
row so far refused with 403 (the credentials or the tenant)."""

from __future__ import annotations

import time

from pipeline.errors import AuthRefused, CircuitOpen, RunStopped
from pipeline.submit.client import Answer, Kind
from pipeline.submit.common import PlannedRow, RunContext, RunPart


class Breaker(RunPart):
    def __init__(self, run: RunContext) -> None:
        super().__init__(run)
        self.consecutive_failures = 0
        self.last_success = time.monotonic()
        self.forbidden_streak: list[PlannedRow] = []
        self.last_forbidden: Answer | None = None
        self.any_success = False
        self.other_answers = 0  # rejections other than 403
        self.forbidden_stop = False  # the run stopped because every row so far got 403

    def success(self) -> None:
        self.consecutive_failures = 0
        self.last_success = time.monotonic()
        self.forbidden_streak.clear()
        self.any_success = True

    def rejected(self, planned: PlannedRow, answer: Answer) -> None:
        """After the row was finished `rejected`: a streak of 403 before any success is the credentials."""
        self.consecutive_failures = 0
        if answer.status != 403:
            self.other_answers += 1
            return
        if self.any_success or self.other_answers:
            return
        self.forbidden_streak.append(planned)
        self.last_forbidden = answer
        if len(self.forbidden_streak) >= self.options.auth_streak:
            self.forbidden_everywhere()

    def failure(self) -> None:
        self.consecutive_failures += 1
        quiet = time.monotonic() - self.last_success
        if self.consecutive_failures >= self.options.breaker_threshold and quiet >= self.options.breaker_quiet_s:
            self.stop(
                CircuitOpen(
                    f"{self.consecutive_failures} server or network failures in a row; the API looks down "
                    "or overloaded. Rows not sent are pending: run again later"
                )
            )

    def at_end(self, stopped: RunStopped | None) -> None:
        """Fewer rows than the streak threshold (or 403s still in flight after that stop), all refused with 403:
        still the credentials or the tenant."""
        if (
            self.forbidden_streak
            and not self.any_success
            and not self.other_answers
            and (stopped is None or self.forbidden_stop)
        ):
            self.forbidden_everywhere()

    def forbidden_everywhere(self) -> None:
        """Every row so far got 403: those rows go back to pending and the run stops."""
        answer = self.last_forbidden or Answer(Kind.REJECTED, 403)
        streak = len(self.forbidden_streak)
        for planned in self.forbidden_streak:
            self.tracker.reopen_as_pending(planned, answer.problem)
        self.forbidden_streak.clear()  # 403s still in flight start a new streak, handled the same way
        self.forbidden_stop = True
        title = (answer.problem or {}).get("title") or "Forbidden"
        self.stop(
            AuthRefused(
                f"the API answered 403 ({title}) to the first {streak} rows; check "
                "BIGCHANGE_CUSTOMER_ID and the API key's scopes (jobs:write), then run again"
            )
        )
