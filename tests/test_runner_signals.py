"""Once sending may begin, Ctrl-C and SIGTERM cannot cut a run short of its ledger and reports."""

from __future__ import annotations

import os
import signal

import pytest

from pipeline.runner import _ReportsFirst


def test_signals_are_noted_not_raised_while_reports_are_written(capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGINT)
    shield = _ReportsFirst()
    shield.arm()
    try:
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt without the shield
        os.kill(os.getpid(), signal.SIGTERM)  # would end the process
    finally:
        shield.disarm()
    assert capsys.readouterr().err.count("finishing the ledger and the reports first") == 2
    assert signal.getsignal(signal.SIGINT) is before
