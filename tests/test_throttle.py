"""The adaptive gate: AIMD on concurrency, a learned pacing rate, and pauses shared by every worker."""

from __future__ import annotations

import asyncio
import contextlib
import time

from pipeline.submit.throttle import Gate


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


def test_a_saturated_loop_stops_growth_and_cuts_the_limit() -> None:
    """On a fast API the client itself can be the bottleneck: answers are quick, but the loop is busy all the time.
    More requests in flight would only wait for the loop (and delay every timer), so the limit comes down."""
    gate = Gate(max_concurrency=64, initial=64)
    for _ in range(20):
        gate.on_success(0.001)
    assert gate.limit == 64
    gate.loop_busy = 0.97
    for _ in range(200):
        gate.on_success(0.001)  # latency alone says all is well
    assert gate.limit < 64
    cut = gate.limit
    gate.loop_busy = 0.5  # the loop has room again: growth resumes
    for _ in range(200):
        gate.on_success(0.001)
    assert gate.limit > cut


def test_the_loop_watch_measures_the_thread_busy_or_idle() -> None:
    async def go() -> tuple[float, float, float]:
        gate = Gate(max_concurrency=4)
        watch = asyncio.create_task(gate.watch_loop())
        await asyncio.sleep(0.35)  # idle: the loop waits in the selector
        idle = gate.loop_busy
        until = time.monotonic() + 0.45
        cpu, wall = time.thread_time(), time.monotonic()
        while time.monotonic() < until:  # busy: callbacks that never let the loop rest
            sum(range(2000))
            await asyncio.sleep(0)
        share = (time.thread_time() - cpu) / (time.monotonic() - wall)  # what the OS gave the thread meanwhile
        busy = gate.loop_busy
        watch.cancel()
        return idle, busy, share

    idle, busy, share = asyncio.run(go())
    # The busy share is of wall time: on a shared machine the OS may give the spinning thread much less than a
    # core, so it is judged against the share the thread really had over the same time.
    assert idle < 0.1 and busy > 0.5 * share and busy > idle + 0.05, (idle, busy, share)


def test_a_look_up_waiting_for_a_slot_is_served_before_a_worker_coming_back() -> None:
    """A worker that has just released its slot asks again at once; a look-up before sending (50 rows wait for it)
    that was already waiting goes first, or look-ups would only get through when the send queue ran dry."""

    async def go() -> list[str]:
        gate = Gate(max_concurrency=1, initial=1)
        await gate.acquire()  # a worker holds the only slot
        order: list[str] = []

        async def look_up() -> None:
            await gate.acquire(priority=True)
            order.append("look-up")
            await gate.release()

        waiting = asyncio.create_task(look_up())
        await asyncio.sleep(0)  # the look-up is in line
        await gate.release()  # the worker gives the slot back…
        await gate.acquire()  # …and asks again straight away
        order.append("worker")
        await gate.release()
        await waiting
        return order

    assert asyncio.run(go()) == ["look-up", "worker"]


def test_a_wait_for_the_pace_that_is_cancelled_gives_its_slot_back() -> None:
    """A look-up abandoned while it waits for its paced start (another look-up of the slice failed) must not keep
    its slot: with a limit of 1 the run would wait for ever."""

    async def go() -> int:
        gate = Gate(max_concurrency=1, initial=1)
        gate.rate = 2.0  # one start every 0.5 s
        await gate.acquire()
        await gate.release()
        waiting = asyncio.create_task(gate.acquire())  # paced: sleeps ~0.5 s holding the slot
        await asyncio.sleep(0.05)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0)
        return gate.in_flight

    assert asyncio.run(go()) == 0
