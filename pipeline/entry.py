"""The `jobimport` command's entry point: the signal handler first, then the command (see interrupts.py)."""

import sys

from pipeline import interrupts

interrupts.install()


def main() -> int:
    try:
        try:
            from pipeline.cli import main as cli_main
        except KeyboardInterrupt:  # Ctrl-C while the command was still loading: nothing was done
            print("jobimport: interrupted before anything was sent; nothing was changed", file=sys.stderr)
            return 3
        return cli_main()
    finally:
        interrupts.settle()
