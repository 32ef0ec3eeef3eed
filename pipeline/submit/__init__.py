"""The submit stage: planned rows → jobs in BigChange exactly once, with one outcome per row.

Modules:

- `engine`: `Submitter`, the asynchronous engine (workers, retries, backoff, bookkeeping), with its parts:
  - `triage`: what the ledger already settles, and look-before-send (references looked up before a first send);
  - `reconciler`: lost answers looked up by reference, and the rows an interrupted run left `sending`;
  - `breaker`: the circuit breakers (server/network failures in a row, 403 on every row);
- `common`: what the engine and its parts share (`PlannedRow`, `SubmitOptions`, `SubmitStats`, the engine's state);
- `client`: the API client (OAuth token, create and look-up calls, classification of every answer);
- `throttle`: the adaptive concurrency gate;
- `ledger`: the durable record (sqlite) of every row's key, state, job id and problem, per tenant identity;
- `outcomes`: the compact per-row outcome store of one run;
- `latency`: the latency histogram of answered creates.
"""

from pipeline.submit.common import PlannedRow, SubmitOptions, SubmitStats
from pipeline.submit.engine import Submitter

__all__ = ["PlannedRow", "SubmitOptions", "SubmitStats", "Submitter"]
