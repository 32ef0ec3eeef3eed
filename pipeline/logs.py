"""Structured logging: JSON lines (structlog) into the run's report directory, never tracebacks' locals.

Console messages for people go through the progress display (pipeline/run/progress.py), not through the log, so a
progress bar is never torn. Nothing secret is ever bound to a logger: the client logs no headers or bodies.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO

import structlog

_handle: IO[str] | None = None


def configure(log_path: Path | None) -> None:
    """Send JSON lines to `log_path` (appended), or drop them when None (dry runs write no log)."""
    global _handle
    close()
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False)),
        structlog.processors.JSONRenderer(),
    ]
    if log_path is None:
        structlog.configure(
            processors=processors,
            logger_factory=structlog.ReturnLoggerFactory(),
            wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
            cache_logger_on_first_use=False,
        )
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _handle = log_path.open("a", encoding="utf-8")
    structlog.configure(
        processors=processors,
        logger_factory=structlog.WriteLoggerFactory(file=_handle),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=False,
    )


def close() -> None:
    """Close the run's log file; later log lines are dropped (never written to a closed file) until the next
    `configure`."""
    global _handle
    if _handle is not None:
        _handle.flush()
        _handle.close()
        _handle = None
        configure(None)


def quiet_unless_configured() -> None:
    """Drop log lines until a run configures its log (the tenant's reference data is fetched before that)."""
    if _handle is None:
        configure(None)
