"""What reaches the terminal: text from files (names, headers, values) made visible, and a closed pipe survived.

- `one_line(text)`: every control character, line breaks included, shown as `[U+001B]`, the marker the reports
  use (pipeline/report/cellsafety.py): a line of ours stays one line whatever a file name holds, and no escape
  sequence from a file reaches the terminal.
- `visible(text)`: the same, keeping line breaks and tabs (for multi-line output such as tables).
- `guard_stdout()`: standard output through a wrapper that applies `visible` to everything printed, and that
  survives a reader that went away (`jobimport report … | head`): the rest of the output is dropped, the
  command finishes its work and ends with its own exit code, without a word about the pipe.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Any, TextIO

#: C0 controls, DEL, C1 controls, the Unicode line/paragraph separators and the non-characters U+FFFE/U+FFFF
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, 0xFFFE, 0xFFFF]
_ONE_LINE = {code: f"[U+{code:04X}]" for code in _CONTROLS}
_VISIBLE = {code: mark for code, mark in _ONE_LINE.items() if code not in (0x09, 0x0A)}


def one_line(text: object) -> str:
    """`text` with every control character (line breaks and tabs included) shown as `[U+XXXX]`."""
    return str(text).translate(_ONE_LINE)


def visible(text: object) -> str:
    """`text` with every control character but line feed and tab shown as `[U+XXXX]`."""
    return str(text).translate(_VISIBLE)


class _GuardedStream(io.TextIOBase):
    """A text stream that makes control characters visible and swallows a broken pipe (then drops the rest)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._broken = False

    def write(self, text: str) -> int:
        if self._broken:
            return len(text)
        try:
            self._stream.write(visible(text))
        except BrokenPipeError:
            self._break()
        return len(text)

    def flush(self) -> None:
        if self._broken:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._break()

    def _break(self) -> None:
        """The reader is gone: point the descriptor at the null device, so that the interpreter's final flush
        finds nothing to complain about."""
        self._broken = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._stream, "encoding", "utf-8"))

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_stdout() -> None:
    """Route standard output through `_GuardedStream` (once)."""
    if not isinstance(sys.stdout, _GuardedStream) and sys.stdout is not None:
        sys.stdout = _GuardedStream(sys.stdout)
