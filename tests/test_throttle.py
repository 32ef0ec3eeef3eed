"""The adaptive gate: AIMD on concurrency, a learned pacing rate, and pauses shared by every worker."""

from __future__ import annotations

import asyncio
import time

from pipeline.throttle import Gate


def test_slow_start_then_halving_on_throttle() -> None:
    gate = Gate(max_concurrency=32, initial=4)
    for _ in range(10):
        gate.on_success(0.05)
    assert gate.limit == 14  # +1 per clean answer in slow start
    gate.on_throttled(retry_after=0)
    assert gate.limit == 7 and gate.ssthresh == 7
    for _ in range(7):
        gate.on_success(0.05)
    assert 7.9 < gate.limit < 8.1  # congestion avoidance: +1 per window of `limit` answers


def test_never_above_max_and_latency_rise_cuts() -> None:
    gate = Gate(max_concurrency=8, initial=4)
    for _ in range(50):
        gate.on_success(0.01)
    assert gate.limit == 8
    for _ in range(30):
        gate.on_success(0.2)  # answers 20× slower: the server is queueing
    assert gate.limit < 8


def test_retry_after_pauses_every_worker() -> None:
    async def go() -> float:
        gate = Gate(max_concurrency=4, initial=4)
        gate.pause(0.3)
        started = time.monotonic()
        await asyncio.gather(*(gate.acquire() for _ in range(3)))
        return time.monotonic() - started

    assert asyncio.run(go()) >= 0.28


def test_pacing_rate_spaces_requests() -> None:
    async def go() -> float:
        gate = Gate(max_concurrency=50, initial=50)
        gate.rate = 100.0
        started = time.monotonic()
        for _ in range(21):
            await gate.acquire()
            await gate.release()
        return time.monotonic() - started

    assert 0.18 <= asyncio.run(go()) < 0.6  # 20 intervals of 10 ms
