"""In-process doubles for the submit engine's tests: a scripted API client (a schedule of answers, with a server-side
record of what it really created) and a real SQLite ledger whose Nth write fails, or whose `sending` commits can be
held back. The engine runs for real against them, in the test's own event loop — no sockets, no sleeps to speak of.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import TransientError
from pipeline.state import TenantIdentity
from pipeline.submit import PlannedRow, SubmitOptions
from pipeline.submit.client import Answer, FoundJob, Kind
from pipeline.submit.common import fingerprint
from pipeline.submit.ledger import SqliteLedger

#: What the fake API does with one create, in a schedule. "lost+" created the job but the answer was lost (a
#: timeout after sending); "lost-" lost it before the server acted; "500+" / "500-" likewise with an answer.
BEHAVIOURS = ("201", "422", "429", "503", "500+", "500-", "lost+", "lost-", "refused", "slow", "auth")


@dataclass
class FakeApi:
    """Answers creates from `schedule` (then `default` once it runs out); keeps the jobs it created, so a test can
    tell what BigChange really holds. `on_call(n)` runs as the n-th create starts (1-based): the place to press
    Ctrl-C. `slow_s`: how long a "slow" answer takes (a 201 in the end)."""

    schedule: list[str] = field(default_factory=list)
    default: str = "201"
    slow_s: float = 0.02
    on_call: Callable[[int], None] = lambda n: None
    lookup_fails: int = 0  # the first N look-ups answer 503
    jobs_url: str = "http://fake.invalid/v1/jobs"
    created: dict[str, list[int]] = field(default_factory=dict)  # row key → job ids created for it
    received: set[str] = field(default_factory=set)  # row keys a create request arrived for
    by_reference: dict[str, FoundJob] = field(default_factory=dict)
    calls: int = 0
    lookups: int = 0
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(9000))

    async def create_job(self, body: bytes) -> Answer:
        self.calls += 1
        n = self.calls
        self.received.add(_key(body))
        behaviour = self.schedule[n - 1] if n <= len(self.schedule) else self.default
        self.on_call(n)
        await asyncio.sleep(0)  # a real request yields to the loop at least once
        if behaviour == "slow":
            await asyncio.sleep(self.slow_s)
            return self._create(body)
        if behaviour == "201":
            return self._create(body)
        if behaviour == "422":
            return Answer(Kind.REJECTED, 422, problem={"title": "Unprocessable", "status": 422, "detail": "bad"})
        if behaviour == "429":
            return Answer(Kind.TRANSIENT, 429, problem={"title": "Too Many Requests", "status": 429}, retry_after=0)
        if behaviour == "503":
            return Answer(Kind.TRANSIENT, 503, problem={"title": "Service Unavailable", "status": 503})
        if behaviour == "refused":
            return Answer(Kind.TRANSIENT, None, problem={"title": "Connection failed before the request was sent"})
        if behaviour in ("500+", "lost+"):
            self._create(body)
        if behaviour.startswith("500"):
            return Answer(Kind.UNKNOWN, 500, problem={"title": "Internal Server Error", "status": 500})
        if behaviour.startswith("lost"):
            return Answer(Kind.UNKNOWN, None, problem={"title": "Answer lost"}, timed_out=True)
        if behaviour == "auth":
            return Answer(Kind.AUTH, 401, problem={"title": "Unauthorized", "status": 401})
        raise AssertionError(f"unknown behaviour {behaviour}")

    def _create(self, body: bytes) -> Answer:
        payload = json.loads(body)
        job_id = next(self._ids)
        reference = payload.get("reference")
        self.created.setdefault(_key(body), []).append(job_id)
        if reference:
            self.by_reference.setdefault(reference, FoundJob(job_id, payload.get("typeId"), payload.get("contactId")))
        return Answer(Kind.CREATED, 201, job_id=job_id, latency_s=0.001)

    async def find_job_summaries(self, references: list[str]) -> dict[str, list[FoundJob]]:
        self.lookups += 1
        await asyncio.sleep(0)
        if self.lookups <= self.lookup_fails:
            raise TransientError("job look-up by reference answered 503", status=503, retry_after=0)
        return {r: [self.by_reference[r]] for r in references if r in self.by_reference}

    async def find_jobs(self, references: list[str]) -> dict[str, int]:
        found = await self.find_job_summaries(references)
        return {ref: jobs[0].id for ref, jobs in found.items()}


def _key(body: bytes) -> str:
    """The ledger key of a create's body: its reference, else its payload's fingerprint (as the plan makes it)."""
    return json.loads(body).get("reference") or "fp:" + fingerprint(body.decode("utf-8"))


class ScriptedLedger(SqliteLedger):
    """A real SQLite ledger whose writes fail from the `fail_from`-th on (as a full disk does), and whose
    `sending` commits wait for `hold_sending` to be set when it is given."""

    def __init__(self, path: Path, fail_from: int | None = None, hold_sending: threading.Event | None = None) -> None:
        super().__init__(path, TenantIdentity("http://fake.invalid/v1", 1))
        self.fail_from = fail_from
        self.hold_sending = hold_sending
        self.sending_submitted = threading.Event()
        self.writes = 0

    def _write(self, jobs: list[Any]) -> Future[None]:
        if jobs:
            self.writes += 1
        if self.fail_from is not None and jobs and self.writes >= self.fail_from:
            future: Future[None] = Future()
            future.set_exception(sqlite3.OperationalError("database or disk is full"))
            return future
        if self.hold_sending is not None:
            jobs = [
                (sql, _held(params, self.hold_sending)) if "'sending'" in sql else (sql, params) for sql, params in jobs
            ]
        return super()._write(jobs)

    def submit_sending(self, items: Iterable[tuple[str, str | None]], run_id: str) -> Future[None]:
        future = super().submit_sending(items, run_id)
        self.sending_submitted.set()
        return future


def _held(params: Iterable[Any], hold: threading.Event) -> Iterator[Any]:
    """Parameters that the writer thread reads only once `hold` is set: a commit that takes its time, in order."""
    hold.wait(10)
    yield from params


def planned_rows(count: int, with_reference: Callable[[int], bool] = lambda i: True) -> list[PlannedRow]:
    """`count` valid rows as the plan makes them (index, source row, key, reference, payload)."""
    rows = []
    for i in range(count):
        reference = f"R{i:04d}" if with_reference(i) else None
        body = {"typeId": 101, "contactId": 5001, "description": f"visit {i}"}
        if reference:
            body["reference"] = reference
        payload = json.dumps(body, separators=(",", ":"))
        key = reference or "fp:" + fingerprint(payload)
        rows.append(PlannedRow(i, i + 2, key, reference, payload))
    return rows


def slices(rows: list[PlannedRow], size: int = 16) -> Iterator[list[PlannedRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def quick_options(**overrides: Any) -> SubmitOptions:
    """Options for in-process runs: no grace periods or backoffs worth waiting for."""
    base: dict[str, Any] = {
        "max_concurrency": 4,
        "initial_concurrency": 4,
        "max_attempts": 3,
        "max_throttled": 5,
        "backoff_base_s": 0.001,
        "backoff_max_s": 0.002,
        "lookup_grace_s": 0.0,
        "timeout_grace_s": 0.0,
        "drain_timeout_s": 0.5,
        "flush_every_s": 0.005,
        "breaker_threshold": 1000,
    }
    base.update(overrides)
    return SubmitOptions(**base)
