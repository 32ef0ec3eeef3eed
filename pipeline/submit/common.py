"""What the submit engine and its collaborators (tracker, feeder, sender, reconciler, breaker) share: a planned
row, the options and counters of a submission, and the problem details recorded for rows whose outcome is not
known."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.model import Status
from pipeline.submit.latency import LatencyHistogram
from pipeline.submit.ledger import LedgerRow

if TYPE_CHECKING:
    from pipeline.errors import RunStopped
    from pipeline.submit.tracker import RowTracker


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
    prior: LedgerRow | None = None  # what the ledger held for its key when the run first looked (None: nothing)

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
    outstanding_rows: int = 0  # most rows marked `sending` without an outcome at once (0: 8 × max_concurrency, ≥ 256)
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
class RunContext:
    """What every collaborator of one submission shares: the row tracker, the options and counters, and the run's
    stop (the first reason wins; `stopping()` says whether one came)."""

    tracker: RowTracker
    options: SubmitOptions
    stats: SubmitStats
    stopping: Callable[[], bool]
    stop: Callable[[RunStopped], None]


class RunPart:
    """A collaborator of one submission (feeder, sender, reconciler, breaker): the run's shared context as its own
    attributes, since they are read for every row."""

    def __init__(self, run: RunContext) -> None:
        self.tracker = run.tracker
        self.options = run.options
        self.stats = run.stats
        self.stopping = run.stopping
        self.stop = run.stop


def uncertain_problem(cause: dict[str, Any] | None = None) -> dict[str, Any]:
    detail = (
        "the request was sent but its answer was lost, and the row has no reference to look the job up by; "
        "check in BigChange whether the job exists, then rerun with --resend-uncertain to send it again"
    )
    if cause and cause.get("detail"):
        detail += f" (cause: {cause['detail']})"
    return {"type": None, "title": "Outcome unknown", "status": (cause or {}).get("status"), "detail": detail}


def unresolved_problem() -> dict[str, Any]:
    return {
        "type": None,
        "title": "Outcome unknown",
        "status": None,
        "detail": "the answer was lost and the run stopped before it could be looked up; the next run looks "
        "it up by reference before sending anything",
    }
