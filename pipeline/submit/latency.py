"""Latency percentiles in fixed memory: a log-bucketed histogram (5% wide buckets from 0.1 ms to ~1 h).

A million answers must not mean a million floats kept for two percentiles. Percentiles are exact to within one
bucket (±2.5%), which is more than a summary needs.
"""

from __future__ import annotations

import math

_BASE_MS = 0.1
_GROWTH = 1.05
_BUCKETS = int(math.log(3.6e6 / _BASE_MS, _GROWTH)) + 2


class LatencyHistogram:
    __slots__ = ("_counts", "count", "max_ms")

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self.count = 0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        bucket = 0 if ms <= _BASE_MS else min(_BUCKETS - 1, int(math.log(ms / _BASE_MS, _GROWTH)) + 1)
        self._counts[bucket] += 1
        self.count += 1
        self.max_ms = max(self.max_ms, ms)

    def percentile(self, pct: float) -> float | None:
        """The value below which `pct`% of the samples fall (a bucket's middle), None without samples."""
        if not self.count:
            return None
        rank = min(self.count, max(1, math.ceil(self.count * pct / 100)))
        seen = 0
        for bucket, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                if bucket == 0:
                    return round(_BASE_MS, 1)
                low = _BASE_MS * _GROWTH ** (bucket - 1)
                return round(min(self.max_ms, low * math.sqrt(_GROWTH)), 1)
        return round(self.max_ms, 1)
