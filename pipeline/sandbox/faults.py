"""Fault injection of the sandbox: latency, a token-bucket rate limit, and seeded random server faults.

One `random.Random(seed)` per server; every draw happens synchronously when a request arrives, so the same
seed and the same sequence of requests give the same faults. A draw is made only when it can matter: the
jitter draw when `jitter_ms > 0`, the fault draw (one uniform number per authenticated POST /v1/jobs) when
any fault probability is above 0.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum


class Fault(Enum):
    """What happens to one POST /v1/jobs besides its normal handling."""

    NONE = "none"
    E500 = "500"  # problem details, nothing created
    E502 = "502"  # gateway HTML page, nothing created
    E503 = "503"  # plain text with Retry-After, nothing created
    LOST = "lost"  # handled normally (the job is created), then the connection is dropped without an answer
    SLOW = "slow"  # handled normally (the job is created), then the answer waits slow_ms


@dataclass(frozen=True)
class FaultSettings:
    """Every setting that can change at run time (command line options and POST /_sandbox/faults)."""

    latency_ms: float = 0.0  # added to every /auth and /v1 answer
    jitter_ms: float = 0.0  # plus uniform(0, jitter_ms)
    rate_limit: float = 0.0  # requests per second over /auth and /v1 together; 0 = unlimited
    burst: int = 0  # bucket size; 0 = max(1, ceil(rate_limit))
    p500: float = 0.0
    p502: float = 0.0
    p503: float = 0.0
    p_lost: float = 0.0
    p_slow: float = 0.0
    slow_ms: float = 5000.0
    retry_after: int = 1  # seconds, in the Retry-After header of an injected 503
    token_lifetime: int = 3600  # seconds, expires_in of new tokens

    def check(self) -> None:
        """Raise ValueError (one line) when a value is out of range."""
        for name in ("latency_ms", "jitter_ms", "rate_limit", "slow_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("p500", "p502", "p503", "p_lost", "p_slow"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability between 0 and 1, got {value}")
        total = self.p500 + self.p502 + self.p503 + self.p_lost + self.p_slow
        if total > 1.0 + 1e-9:
            raise ValueError(f"p500 + p502 + p503 + p_lost + p_slow must be <= 1, got {total:g}")
        if self.burst < 0:
            raise ValueError(f"burst must be >= 0, got {self.burst}")
        if self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, got {self.retry_after}")
        if not 1 <= self.token_lifetime <= 2_147_483_647:
            raise ValueError(f"token_lifetime must be between 1 and 2147483647 seconds, got {self.token_lifetime}")

    def updated(self, changes: Mapping[str, object]) -> FaultSettings:
        """A copy with `changes` applied (JSON values), checked. Unknown names and wrong types → ValueError."""
        known = {f.name: f.type for f in fields(self)}
        values: dict[str, float | int] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault setting {name!r}; known: {', '.join(sorted(known))}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if known[name] == "int":
                if value != int(value):
                    raise ValueError(f"{name} must be a whole number, got {value!r}")
                values[name] = int(value)
            else:
                values[name] = float(value)
        new = replace(self, **values)  # type: ignore[arg-type]
        new.check()
        return new

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


FAULT_SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(FaultSettings))


class TokenBucket:
    """`rate` tokens per second, at most `capacity`; a request takes one token or is refused."""

    def __init__(self, rate: float, capacity: int) -> None:
        self.rate = rate
        self.capacity = float(capacity if capacity > 0 else max(1, math.ceil(rate)))
        self.tokens = self.capacity
        self.last = time.monotonic()

    def take(self) -> int | None:
        """None when admitted; otherwise the whole seconds to wait (>= 1) for the next token."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - self.tokens) / self.rate))


class FaultInjector:
    """The live fault state of one server: settings, the seeded random generator, the bucket, the counts."""

    def __init__(self, settings: FaultSettings, seed: int | None) -> None:
        settings.check()
        self.seed = seed
        self.random = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self._apply(settings)

    def _apply(self, settings: FaultSettings) -> None:
        self.settings = settings
        self.bucket = TokenBucket(settings.rate_limit, settings.burst) if settings.rate_limit > 0 else None
        s = settings
        self._thresholds = (
            (s.p500, Fault.E500),
            (s.p500 + s.p502, Fault.E502),
            (s.p500 + s.p502 + s.p503, Fault.E503),
            (s.p500 + s.p502 + s.p503 + s.p_lost, Fault.LOST),
            (s.p500 + s.p502 + s.p503 + s.p_lost + s.p_slow, Fault.SLOW),
        )
        self._any_fault = self._thresholds[-1][0] > 0.0
        self._latency = s.latency_ms / 1000.0
        self._jitter = s.jitter_ms / 1000.0

    def update(self, changes: Mapping[str, object]) -> FaultSettings:
        """Change settings at run time (`seed` reseeds the generator). The bucket restarts full."""
        changes = dict(changes)
        if "seed" in changes:
            seed = changes.pop("seed")
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise ValueError(f"seed must be a whole number or null, got {seed!r}")
            new = self.settings.updated(changes)
            self.seed = seed
            self.random = random.Random(seed)
        else:
            new = self.settings.updated(changes)
        self._apply(new)
        return new

    def reset(self) -> None:
        """Forget counts, reseed with the current seed, refill the bucket."""
        self.counts.clear()
        self.random = random.Random(self.seed)
        self._apply(self.settings)

    def admit(self) -> int | None:
        """Rate limit: None when the request may proceed, else the Retry-After seconds of a 429."""
        if self.bucket is None:
            return None
        wait = self.bucket.take()
        if wait is not None:
            self.counts["429"] += 1
        return wait

    def delay(self) -> float:
        """Seconds to hold this answer (latency plus jitter)."""
        if self._jitter > 0.0:
            return self._latency + self.random.uniform(0.0, self._jitter)
        return self._latency

    def draw(self) -> Fault:
        """The fault for one authenticated POST /v1/jobs."""
        if not self._any_fault:
            return Fault.NONE
        u = self.random.random()
        for threshold, fault in self._thresholds:
            if u < threshold:
                self.counts[fault.value] += 1
                return fault
        return Fault.NONE
