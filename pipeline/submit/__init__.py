"""The submit stage: planned rows → jobs in BigChange exactly once, with one outcome per row.

Modules:

- `engine`: `Submitter`, which wires the parts below and runs them under one task group, and winds them down in
  order on a stop;
- `tracker`: the row tracker, every row's state machine and the only writer of outcomes and ledger updates;
- `feeder`: what the ledger already settles, look-before-send, and the bounded queue to the workers;
- `sender`: the workers, and what each answer means for its row (retries through `pipeline.retry`);
- `reconciler`: lost answers looked up by reference, and the rows an interrupted run left `sending`;
- `breaker`: the circuit breakers (server/network failures in a row, 403 on every row);
- `common`: what the parts share (`PlannedRow`, `SubmitOptions`, `SubmitStats`, `RunContext`);
- `client`: the API client (OAuth token, create and look-up calls, classification of every answer);
- `throttle`: the adaptive concurrency gate;
- `ledger`: the durable record (sqlite) of every row's key, state, job id and problem, per tenant identity;
- `outcomes`: the compact per-row outcome store of one run;
- `latency`: the latency histogram of answered creates.
"""

from pipeline.submit.common import PlannedRow, SubmitOptions, SubmitStats
from pipeline.submit.engine import Submitter

__all__ = ["PlannedRow", "SubmitOptions", "SubmitStats", "Submitter"]
