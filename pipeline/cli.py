"""Command line: parses arguments, calls the stages, prints, and chooses the exit code. No logic of its own."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("not yet built")
