"""Ctrl-C and SIGTERM for the whole process, from its first statement to its last.

`install()` is the first thing the command's entry module does (`pipeline/entry.py`, before anything heavy is
imported), so there is no moment at which Python's default handler can kill a run without its ledger and reports.
Then:
- while a run listens (`listen`), every signal goes to it: it is noted, and acted on where it is safe (before the
  submit: at the next stage, nothing sent; during it: the first stops new sends, the second abandons what is in
  flight; after it: the reports are finished first);
- otherwise (other commands, or between runs) the first signal raises KeyboardInterrupt as usual, and any further
  one is only noted: a second Ctrl-C can never interrupt the clean-up the first one started.
Only the standard library here: this module is imported before everything else.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

#: the signals a user or a service manager sends to stop us (SIGTERM exists on Windows too, raised only by us)
SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)

Listener = Callable[[str], None]

_listener: Listener | None = None
_count = 0


def install() -> None:
    """Take SIGINT and SIGTERM for the process (main thread only; elsewhere nothing can be installed)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        signal.signal(sig, _handle)


def installed() -> bool:
    return signal.getsignal(signal.SIGINT) is _handle


def listen(listener: Listener | None) -> Listener | None:
    """Send every signal to `listener` (None: back to the default rules); returns the previous listener. The
    listener is called in the main thread, between two bytecodes: it must only note and schedule."""
    global _listener
    previous, _listener = _listener, listener
    return previous


def settle() -> None:
    """At the command's end: once a stop signal came, further ones are ignored for good. (Python resets a handler
    written in Python to the default while it shuts down, so a second Ctrl-C then would kill the process with
    -SIGINT after all its work was done; an ignored signal is left ignored.)"""
    if _count and threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def received() -> int:
    """How many stop signals the process has had."""
    return _count


def _handle(signum: int, frame: object) -> None:
    global _count
    _count += 1
    name = signal.Signals(signum).name
    if _listener is not None:
        _listener(name)
        return
    if _count > 1:
        print(f"jobimport: {name}: already stopping, finishing first…", file=sys.stderr)
        return
    raise KeyboardInterrupt
