"""The one place that decides whether a failed call is tried again, and after how long.

Every retry in the tool goes through `RetryPolicy.delay`: creates (a row sent again after a 429/503 or a
connection refused before sending), look-ups by reference, the token fetch, and the pages of the tenant's
reference data. A failure says two things about itself (the error tree's words, `pipeline.errors`):
`retryable` — trying the same call again can succeed without a human changing something — and
`may_have_created` — the job may exist, so it must be looked up, never sent again blindly. A stop
(`RunStopped`) is never retried inside the run, whatever it says about a later run.

Why our own module and not `stamina`: a create's retry is not a wrapped call but a row put back in the send queue
after a delay (the worker is free meanwhile), so the decision must be a plain function; and stamina's hook is also
called with CancelledError (a permissive hook resent a request), takes a Retry-After float unclamped and without
jitter, and its decorator logs the call's arguments (row data, tokens) — each a way to duplicate or leak what we
send (see NOTES-LIBRARIES.md). Forty lines of our own carry none of that.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pipeline.errors import JobImportError, RunStopped

T = TypeVar("T")


class Failure(Protocol):
    """What a retry decision looks at: an error of the tree, or a classified answer (`submit.client.Answer`)."""

    @property
    def retryable(self) -> bool: ...

    @property
    def may_have_created(self) -> bool: ...

    @property
    def retry_after(self) -> float | None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; between them exponential backoff from `base_s` up to `max_s` with jitter (half to
    the whole of the step), or the server's Retry-After (capped at `max_wait_s`)."""

    attempts: int = 6
    base_s: float = 0.5
    max_s: float = 30.0
    max_wait_s: float = 300.0
    jitter: bool = True

    def delay(self, failure: Failure | BaseException, attempt: int) -> float | None:
        """Seconds to wait before trying again after the `attempt`-th try (1 for the first) failed with
        `failure`; None when it must not be tried again (not retryable, may have created, a stop, budget spent)."""
        if not retry_now(failure) or attempt >= self.attempts:
            return None
        retry_after = getattr(failure, "retry_after", None)
        if retry_after is not None:
            return min(max(0.0, float(retry_after)), self.max_wait_s)
        return self.backoff(attempt)

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_s, self.base_s * 2 ** max(0, attempt - 1))
        return random.uniform(ceiling / 2, ceiling) if self.jitter else ceiling


def retry_now(failure: Failure | BaseException) -> bool:
    """True when the same call may be made again in this run: retryable, cannot have created a job, not a stop.
    Anything that is not one of our failures (a CancelledError above all) is never retried."""
    if isinstance(failure, RunStopped) or not isinstance(failure, JobImportError | _FailureLike):
        return False
    return bool(getattr(failure, "retryable", False)) and not getattr(failure, "may_have_created", True)


class _FailureLike:
    """Marker base for classified answers that are failures without being exceptions (`submit.client.Answer`)."""

    __slots__ = ()


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_failure: Callable[[JobImportError, int], None] | None = None,
) -> T:
    """`call()` until it succeeds or `policy` says stop; then its last failure is raised. Only errors of the tree
    are considered: anything else (a bug, a cancellation) goes straight through. `on_failure(error, attempt)` is
    told of each failure first (to slow a gate down, count a retry)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except JobImportError as exc:
            if on_failure is not None:
                on_failure(exc, attempt)
            delay = policy.delay(exc, attempt)
            if delay is None:
                raise
        await asyncio.sleep(delay)
