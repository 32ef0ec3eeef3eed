"""The `jobimport` command's entry point: the signal handler first, then the command (see interrupts.py).

While the command loads (about a second of imports), a Ctrl-C is only noted — raising KeyboardInterrupt in the
middle of an import can surface as another error (Python wraps it in a RuntimeError inside a class body) — and
the command then ends at once with exit 3, having done nothing."""

import sys

from pipeline import interrupts

interrupts.install()


def main() -> int:
    try:
        previous = interrupts.listen(lambda name: None)  # noted while loading
        try:
            from pipeline.cli import main as cli_main
        finally:
            interrupts.listen(previous)
        if interrupts.received():
            print("jobimport: interrupted before anything was sent; nothing was changed", file=sys.stderr)
            return 3
        return cli_main()
    finally:
        interrupts.settle()
