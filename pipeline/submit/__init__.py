"""The submit stage: planned rows → jobs in BigChange exactly once, with one outcome per row.

Modules:

- `engine`: `Submitter`, the asynchronous engine (workers, retries, look-before-send, reconciliation, breaker);
- `client`: the API client (OAuth token, create and look-up calls, classification of every answer);
- `throttle`: the adaptive concurrency gate;
- `ledger`: the durable record (sqlite) of every row's key, state, job id and problem, per tenant identity;
- `outcomes`: the compact per-row outcome store of one run;
- `latency`: the latency histogram of answered creates.
"""

from pipeline.submit.engine import PlannedRow, SubmitOptions, SubmitStats, Submitter

__all__ = ["PlannedRow", "SubmitOptions", "SubmitStats", "Submitter"]
