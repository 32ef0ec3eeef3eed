"""SIGINT/SIGTERM during a run: stop new sends (a second signal abandons the requests in flight), never lose the
ledger or the reports. Armed and attached by the runner (pipeline/run/runner.py)."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from pipeline.errors import Interrupted
from pipeline.submit import Submitter


class _Signals:
    """SIGINT/SIGTERM for the whole run, from the ledger's opening to the last report: while requests go out
    they stop new sends (a second one abandons the requests in flight); before and after, they are noted and
    the run finishes writing its ledger and reports. One handler for all of it, so there is no gap in which a
    signal falls back to its default and kills the run without its reports."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._saved: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._submitter: Submitter | None = None
        self._say: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
        self.count = 0
        self.first: str | None = None

    def arm(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handle)

    def disarm(self) -> None:
        for sig, previous in self._saved.items():
            signal.signal(sig, previous)
        self._saved.clear()

    def attach(self, loop: asyncio.AbstractEventLoop, submitter: Submitter, say: Callable[[str], None]) -> None:
        self._loop, self._submitter, self._say = loop, submitter, say
        if self.first is not None:  # a signal came while the run was getting ready: send nothing
            self._stop(self.first, hurry=False)

    def detach(self) -> None:
        self._loop = self._submitter = None
        self._say = lambda text: print(text, file=sys.stderr)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        self.first = self.first or name
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._stop, name, self.count > 1)  # safe from a signal handler
        else:
            print(f"jobimport: {name}: finishing the ledger and the reports first…", file=sys.stderr)

    def _stop(self, name: str, hurry: bool) -> None:
        if self._submitter is None:
            return
        if not hurry:
            self._say(f"{name}: finishing the requests in flight (interrupt again to stop at once)…")
        self._submitter.stop(
            Interrupted(
                f"interrupted by {name}: no new rows sent; rows not sent are pending and the next run continues"
            ),
            hurry=hurry,
        )
