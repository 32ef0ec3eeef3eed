"""The `jobimport` command's entry point: the signal handler first, then the command (see interrupts.py)."""

from pipeline import interrupts

interrupts.install()


def main() -> int:
    from pipeline.cli import main as cli_main

    return cli_main()
