"""The error tree: every failure the tool reports says what failed, where, what to do, and whether a retry helps.

`exit_code` is the process exit code from DESIGN.md when the error ends the run. `retryable` tells the caller
whether trying the same thing again can succeed without a human changing something. A failed request also says
whether the job may have been created (`may_have_created`): then it is looked up, never sent again blindly.
The only place that turns these words into "try again now, after so long" is `pipeline.retry.RetryPolicy`.
A stop carries its reason as a value (`StopReason`), so callers (the drop mode, an orchestrator) never read
message text.
"""

from __future__ import annotations

from enum import StrEnum


class StopReason(StrEnum):
    """Why a run stopped before every row had an outcome (a value for programs; the message is for people)."""

    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM
    API_DOWN = "api_down"  # circuit breaker, a token endpoint or look-ups that keep failing, a long Retry-After
    CONFIGURATION = "configuration"  # credentials, tenant or endpoint refused for every row
    LEDGER = "ledger"  # the ledger cannot be written
    REPORTS = "reports"  # a report could not be written (every row's outcome is in the ledger)
    INTERNAL = "internal"  # a bug: the ledger keeps every row's state


class JobImportError(Exception):
    """Base of every error the tool raises on purpose. Its message is one line meant for the user."""

    exit_code: int = 2
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- the run cannot start (exit 2): a human must change the input, the mapping or the settings ----------------


class UsageError(JobImportError):
    """Command-line arguments that do not make sense together."""


class InputFileError(JobImportError):
    """The input file cannot be read as a table (missing, empty, not a spreadsheet, protected, ragged...)."""


class NoDataRows(InputFileError):
    """The file has a header row but no data rows: for a nightly drop, a normal empty night. `columns` are its
    headers (so a drop can still tell an empty night from a file whose headers no longer match the mapping)."""

    def __init__(self, message: str, columns: list[str] | None = None) -> None:
        super().__init__(message)
        self.columns = list(columns or [])


class MappingError(JobImportError):
    """The mapping file is unreadable or refers to something that does not exist."""


class SettingsError(JobImportError):
    """Environment settings are missing or malformed (base URL, credentials, customer id)."""


# --- the run was stopped (exit 3) ------------------------------------------------------------------------------


class RunStopped(JobImportError):
    """The run stopped before every row had an outcome; the rest are `pending` and a rerun continues."""

    exit_code = 3
    reason: StopReason = StopReason.INTERNAL


class AuthRefused(RunStopped):
    """The API refuses our credentials or tenant for every call: a configuration problem, not a row problem."""

    reason = StopReason.CONFIGURATION


class CircuitOpen(RunStopped):
    """Too many consecutive server or network failures: the API is down or overloaded; try again later."""

    retryable = True
    reason = StopReason.API_DOWN


class TokenUnavailable(CircuitOpen):
    """The token endpoint kept failing through its own retries: stop now and run again later (no more retries in
    this run would help sooner). `status` is its last HTTP status, if it answered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LedgerUnavailable(RunStopped):
    """The ledger cannot be written (disk full, file taken away, database unreachable): nothing more is sent;
    the reports are still written. Running again once it is fixed is safe."""

    retryable = True
    reason = StopReason.LEDGER


class Interrupted(RunStopped):
    """SIGINT/SIGTERM: new sends stopped, in-flight ones finished, ledger and reports written."""

    retryable = True
    reason = StopReason.INTERRUPTED


# --- one request's fate (used inside submit; never ends the run by itself) -------------------------------------


class RequestError(JobImportError):
    """A single API call did not give a usable answer."""

    may_have_created = False


class TransientError(RequestError):
    """Nothing was created (429, 503, a connection error before the request was written, a read-only call that
    failed): the same call may be made again."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
