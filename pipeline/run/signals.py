"""SIGINT/SIGTERM during a run, from the ledger's opening to the last report: noted, never obeyed by Python's
default handler (pipeline/interrupts.py installs ours first thing), and acted on where it is safe:
- before the submit, at the next stage (`checkpoint`): the run ends with exit 3, nothing sent;
- during it, the first stops new sends (requests in flight finish), a second abandons what is in flight;
- after it, the reports and the ledger are finished first.
Armed and attached by the runner (pipeline/run/runner.py)."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable

from pipeline import interrupts
from pipeline.errors import Interrupted
from pipeline.submit import Submitter


class _Signals:
    def __init__(self) -> None:
        self._previous: interrupts.Listener | None = None
        self._armed = False
        self._saved: dict[int, object] = {}  # Python's handlers, when the command's entry did not install ours
        self._loop: asyncio.AbstractEventLoop | None = None
        self._submitter: Submitter | None = None
        self._say: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
        self.count = 0
        self.first: str | None = None

    def arm(self) -> None:
        if self._armed:
            return
        if not interrupts.installed() and threading.current_thread() is threading.main_thread():
            # called as a library (the Python API, an orchestrator's worker): ours until the run ends
            self._saved = {sig: signal.getsignal(sig) for sig in interrupts.SIGNALS}
            interrupts.install()
        self._previous = interrupts.listen(self._handle)
        self._armed = True

    def disarm(self) -> None:
        if not self._armed:
            return
        interrupts.listen(self._previous)
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._saved = {}
        self._armed = False

    def checkpoint(self) -> None:
        """Between the stages before the submit: a signal that came meanwhile ends the run here, nothing sent."""
        if self.first is not None and self._submitter is None:
            raise Interrupted(f"interrupted by {self.first} before anything was sent; nothing was changed")

    def attach(self, loop: asyncio.AbstractEventLoop, submitter: Submitter, say: Callable[[str], None]) -> None:
        self._loop, self._submitter, self._say = loop, submitter, say
        if self.first is not None:  # a signal came while the run was getting ready: send nothing
            self._stop(self.first, hurry=self.count > 1)

    def detach(self) -> None:
        self._loop = None
        self._say = lambda text: print(text, file=sys.stderr)

    def _handle(self, name: str) -> None:
        """(the main thread, between two bytecodes) Note the signal; the loop acts on it."""
        self.count += 1
        self.first = self.first or name
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._stop, name, self.count > 1)  # safe from a signal handler
        elif self.count == 1:
            when = "finishing the ledger and the reports first" if self._submitter else "stopping before sending"
            print(f"jobimport: {name}: {when}…", file=sys.stderr)

    def _stop(self, name: str, hurry: bool) -> None:
        if self._submitter is None:
            return
        if not hurry:
            self._say(f"{name}: finishing the requests in flight (interrupt again to stop at once)…")
        else:
            self._say(f"{name}: abandoning the requests in flight; their rows are reported uncertain")
        self._submitter.stop(
            Interrupted(
                f"interrupted by {name}: no new rows sent; rows not sent are pending and the next run continues"
            ),
            hurry=hurry,
        )
