"""From the ledger's opening to the last report, Ctrl-C and SIGTERM cannot cut a run short of its reports."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from pipeline.errors import Interrupted
from pipeline.run.signals import _Signals


def test_signals_outside_the_send_loop_are_noted_not_obeyed(capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGINT)
    signals = _Signals()
    signals.arm()
    try:
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt without the handler
        os.kill(os.getpid(), signal.SIGTERM)  # would end the process
        with pytest.raises(Interrupted, match="interrupted by SIGINT before anything was sent; nothing was changed"):
            signals.checkpoint()  # acted on at the next stage before the submit
    finally:
        signals.disarm()
    assert capsys.readouterr().err.count("SIGINT: stopping before sending") == 1  # noted once, then quiet
    assert signal.getsignal(signal.SIGINT) is before


class FakeSubmitter:
    def __init__(self) -> None:
        self.stops: list[tuple[str, bool]] = []

    def stop(self, error: Any, hurry: bool = False) -> None:
        self.stops.append((str(error), hurry))


def test_signals_during_sending_stop_the_submitter_and_a_second_one_hurries() -> None:
    signals = _Signals()
    submitter = FakeSubmitter()
    said: list[str] = []

    async def go() -> None:
        signals.attach(asyncio.get_running_loop(), submitter, said.append)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.05)
        signals.detach()

    signals.arm()
    try:
        asyncio.run(go())
    finally:
        signals.disarm()
    assert [hurry for _, hurry in submitter.stops] == [False, True]
    assert "interrupted by SIGINT" in submitter.stops[0][0]
    assert said == [
        "SIGINT: finishing the requests in flight (interrupt again to stop at once)…",
        "SIGINT: abandoning the requests in flight; their rows are reported uncertain",
    ]


def test_a_signal_before_sending_begins_stops_at_attach() -> None:
    signals = _Signals()
    submitter = FakeSubmitter()
    signals.arm()
    try:
        os.kill(os.getpid(), signal.SIGTERM)

        async def go() -> None:
            signals.attach(asyncio.get_running_loop(), submitter, lambda text: None)  # type: ignore[arg-type]

        asyncio.run(go())
    finally:
        signals.disarm()
    assert submitter.stops and "SIGTERM" in submitter.stops[0][0]
