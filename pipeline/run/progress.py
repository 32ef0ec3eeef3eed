"""What a person sees while a run goes: a rich progress bar on a terminal, plain lines otherwise.

Counts per status are kept here so the bar can show created/failed as they happen.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.model import Status


class RunProgress:
    """Use as a context manager; call `advance(status)` once per row that reaches an outcome."""

    def __init__(self, total: int, stream: TextIO | None = None, interval_s: float = 5.0) -> None:
        self.total = total
        self.counts: Counter[str] = Counter()
        self.done = 0
        self._stream = stream or sys.stderr
        self.console = Console(file=self._stream, highlight=False, soft_wrap=True)
        self._interactive = self.console.is_terminal
        self._interval = interval_s
        self._last_line = 0.0
        self._started = time.monotonic()
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> RunProgress:
        if self._interactive:
            self._bar = Progress(
                TextColumn("[bold]importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>7} rows/s"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[counts]}"),
                console=self.console,
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("import", total=self.total, rate="-", counts="")  # type: ignore[assignment]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._render(force=True)
            self._bar.stop()
        else:
            self._line()

    def advance(self, status: Status | str, n: int = 1) -> None:
        """`n` rows reached `status` (negative: a status taken back). Pending rows are not done: the bar and the
        line never show a stopped run as complete."""
        self.counts[str(status)] += n
        if str(status) != Status.PENDING:
            self.done += n
        self._render()

    def _summary(self) -> str:
        parts = [
            f"{name} {count}{' (not sent)' if name == Status.PENDING else ''}"
            for name, count in sorted(self.counts.items())
            if count
        ]
        return ", ".join(parts)

    def _rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _render(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._bar is not None and self._task is not None:
            if force or now - self._last_line > 0.2:
                self._bar.update(self._task, completed=self.done, rate=f"{self._rate():.0f}", counts=self._summary())
                self._last_line = now
        elif force or now - self._last_line >= self._interval:
            self._line()

    def _line(self) -> None:
        self._last_line = time.monotonic()
        self.console.print(f"progress: {self.done}/{self.total} rows, {self._rate():.0f} rows/s; {self._summary()}")
