"""Adaptive admission of requests: how many may be in flight, how fast they may start, and shared pauses.

Three controls, because the API publishes no rate limit:
- a concurrency limit (AIMD): slow start (+1 per clean answer) until the first sign of trouble, then +1 per
  window of `limit` clean answers; halved on 429/503 and cut by 10% when latency rises well above the
  baseline; never above `max_concurrency`, never below 1;
- a pacing rate (requests/s): a 429 that ends at least 0.2 s of sending (pauses excluded, slow start excluded)
  sets a ceiling — the
  lower of the current rate and the success rate over its last 0.5 s — and cuts the rate to 90% of it;
  the rate climbs back fast (5%/s) to 97% of the ceiling, then probes by max(0.5%, 0.5 req/s) per second,
  doubling that step every 10 s without a 429 (the limit may have moved up). Concurrency alone cannot hold a
  request-rate limit without repeated 429s;
- a shared pause: a Retry-After stops new sends for every worker, not only the one that got it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass

#: Latency above 2.5× the fastest answer plus this is read as requests queueing (at the server, or in our own event
#: loop when the client is the bottleneck): growth stops and the limit is cut. It was 10 ms; on a fast API that
#: let ~50 answers queue in our own loop (13 ms median latency against a 0.5 ms server, and the loop's lag with it).
QUEUE_ALLOWANCE_S = 0.002
#: How often the gate measures how busy its own event loop's thread is (CPU time over wall time), and the share
#: above which the client itself is the bottleneck: answers then wait for the loop, not for the API, and more
#: requests in flight add only to that wait (and to every timer's lateness), so growth stops and the limit is cut
#: as for rising latency. CPU time, not lateness: other processes on a shared machine delay a loop without it
#: being busy, and cutting for that would throttle a slow API for nothing.
BUSY_WINDOW_S = 0.1
BUSY_LIMIT = 0.9


@dataclass
class GateStats:
    limit_changes: int = 0
    pauses: int = 0
    paused_s: float = 0.0
    max_limit_seen: int = 0


class Stopped(Exception):
    """The gate was closed: no new request may start."""


class Gate:
    def __init__(self, max_concurrency: int, initial: int = 4) -> None:
        self.max = max(1, max_concurrency)
        self.limit = float(min(self.max, max(1, initial)))
        self.ssthresh = float(self.max)
        self.in_flight = 0
        self.rate: float | None = None  # requests/s when pacing, None = unpaced
        self._next_slot = 0.0
        self._pause_until = 0.0
        self._last_cut = 0.0
        self._last_latency_cut = 0.0
        self._baseline: float | None = None
        self._ewma: float | None = None
        self._successes: deque[float] = deque()
        self._sending_since: float | None = None
        self._ceiling = 0.0  # the rate at which the server last pushed back
        self._last_throttle = 0.0  # start of the current stretch of sending (after a pause)
        self._cond = asyncio.Condition()
        self._priority_waiting = 0  # waiters to serve before any other (see `acquire`)
        self._closed = False
        self.loop_busy = 0.0  # share of the last window the loop's thread spent on the CPU (see `watch_loop`)
        self.stats = GateStats(max_limit_seen=int(self.limit))

    # --- admission ---------------------------------------------------------------------------------------------

    async def acquire(self, priority: bool = False) -> None:
        """Wait for a slot; raise Stopped once the gate is closed (also when it closes during a pacing wait).

        `priority`: served before every other waiter (a look-up before sending: 50 rows wait for its answer).
        Without it, a worker that has just released a slot would take it straight back before a waiting look-up
        woke up, and look-ups would only get through when the send queue ran dry (measured: 10% fewer rows/s)."""
        while True:
            delay = await self._reserve(priority)
            if delay <= 0:
                return
            try:
                await asyncio.sleep(delay)
            except BaseException:
                # cancelled while waiting for the pace (a look-up abandoned, a stop): the slot is ours to give
                # back, or the gate would count it in flight for the rest of the run
                await asyncio.shield(self.release())
                raise
            if not self._closed and time.monotonic() >= self._pause_until:
                return
            await self.release()  # closed or paused while waiting for the slot: give it back, decide again

    async def _reserve(self, priority: bool = False) -> float:
        """Take a concurrency slot (waiting for pauses and the limit); return how long to wait for the pace."""
        async with self._cond:
            self._priority_waiting += priority
            try:
                while True:
                    if self._closed:
                        raise Stopped
                    now = time.monotonic()
                    if now < self._pause_until:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._cond.wait(), self._pause_until - now)
                        continue
                    if self.in_flight >= int(self.limit) or (self._priority_waiting and not priority):
                        await self._cond.wait()
                        continue
                    self.in_flight += 1
                    delay = 0.0
                    if self.rate is not None:
                        slot = max(self._next_slot, now)
                        self._next_slot = slot + 1.0 / self.rate
                        delay = slot - now
                    return delay
            finally:
                self._priority_waiting -= priority
                if priority and not self._priority_waiting:
                    # others may have waited only for the priority waiter: wake them for the slots still free
                    self._cond.notify(max(0, int(self.limit) - self.in_flight))

    async def release(self) -> None:
        async with self._cond:
            self.in_flight -= 1
            if self._priority_waiting:
                self._cond.notify_all()  # (rare: the priority waiter must hear of it, wherever it is in line)
            else:
                # wake as many waiters as there are free slots (the limit may have grown too), not every waiter:
                # the rest would only wake to find the limit reached and wait again
                self._cond.notify(max(1, int(self.limit) - self.in_flight))

    async def close(self) -> None:
        async with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # --- feedback ----------------------------------------------------------------------------------------------

    async def watch_loop(self) -> None:
        """Measure, window by window until cancelled, the share of wall time this thread (the event loop's) spent
        on the CPU: a saturated loop delays every answer and timer, and the limit should not grow past what it can
        serve."""
        cpu, wall = time.thread_time(), time.monotonic()
        while True:
            await asyncio.sleep(BUSY_WINDOW_S)
            cpu_now, wall_now = time.thread_time(), time.monotonic()
            self.loop_busy = (cpu_now - cpu) / max(1e-6, wall_now - wall)
            cpu, wall = cpu_now, wall_now

    def on_success(self, latency_s: float) -> None:
        now = time.monotonic()
        if self._sending_since is None:
            self._sending_since = now - latency_s
        self._successes.append(now)
        while self._successes and self._successes[0] < now - 2.0:
            self._successes.popleft()
        self._baseline = latency_s if self._baseline is None else min(self._baseline, latency_s)
        self._ewma = latency_s if self._ewma is None else 0.9 * self._ewma + 0.1 * latency_s
        if self._ewma > 2.5 * self._baseline + QUEUE_ALLOWANCE_S or self.loop_busy > BUSY_LIMIT:
            # Answers are slowing down: requests are queueing (at the server, or in our own loop). No growth while
            # it lasts, and a 10% cut at most once per five answer times (between 0.1 s and 1 s): time for the
            # cut to show in the answers, and fast enough to matter on a fast API.
            if now - self._last_latency_cut > min(1.0, max(0.1, 5 * self._ewma)) and self.limit > 1:
                self._set_limit(self.limit * 0.9)
                self.ssthresh = self.limit
                self._last_latency_cut = now
        elif self.limit < self.ssthresh:
            self._set_limit(self.limit + 1)
        else:
            self._set_limit(self.limit + 1.0 / self.limit)
        if self.rate is not None:
            # About `rate` successes a second, each adding step/rate: the rate grows by `step` req/s per second.
            if self.rate < 0.97 * self._ceiling:
                step = 0.05 * self.rate
            else:
                step = max(0.005 * self.rate, 0.5) * 2 ** min(6.0, (now - self._last_throttle) / 10.0)
            self.rate += step / self.rate

    def on_throttled(self, retry_after: float | None) -> None:
        """A 429: learn a pacing rate, halve concurrency (once per window), pause everyone for Retry-After."""
        now = time.monotonic()
        if now - self._last_cut > 1.0:
            start = max(now - 0.5, self._pause_until, self._sending_since if self._sending_since else now)
            # Not during slow start: completions then lag far behind what was offered, so they under-measure.
            if now - start >= 0.2 and self.limit >= self.ssthresh:
                measured = sum(1 for t in self._successes if t >= start) / (now - start)
                current = self.rate if self.rate is not None else measured
                self._ceiling = max(1.0, min(current, measured))
                self.rate = 0.9 * self._ceiling
            self._last_throttle = now
            self._halve(now)
        self.pause(retry_after if retry_after is not None else 1.0)

    def on_overloaded(self, retry_after: float | None) -> None:
        """A 503 (or a run of 5xx): halve concurrency, and pause everyone if the server said how long."""
        self._halve(time.monotonic())
        if retry_after:
            self.pause(retry_after)

    def pause(self, seconds: float) -> None:
        until = time.monotonic() + max(0.0, seconds)
        if until > self._pause_until:
            self.stats.pauses += 1
            self.stats.paused_s += until - max(self._pause_until, time.monotonic())
            self._pause_until = until

    def _halve(self, now: float) -> None:
        if now - self._last_cut > 1.0 or self._last_cut == 0.0:
            self.ssthresh = max(1.0, self.limit / 2)
            self._set_limit(self.ssthresh)
            self._last_cut = now

    def _set_limit(self, value: float) -> None:
        new = min(float(self.max), max(1.0, value))
        if int(new) != int(self.limit):
            self.stats.limit_changes += 1
        self.limit = new
        self.stats.max_limit_seen = max(self.stats.max_limit_seen, int(new))
