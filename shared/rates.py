"""Per-workspace rate limits on ingest (docs/reliability.md, "Security"): a token bucket
per workspace, `rate` items a second sustained with `burst` at once. Pure: the caller
passes the clock."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class Buckets:
    rate: float
    """Items a second, sustained; 0 or less: no limit."""
    burst: int
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, key: str, items: int, now: float) -> float:
        """Takes `items` from `key`'s bucket: 0 when they fit, else the seconds until they
        would (nothing is taken then)."""
        if self.rate <= 0:
            return 0.0
        items = min(items, self.burst)  # a request larger than the burst waits for a full one
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= items:
            bucket.tokens -= items
            return 0.0
        return (items - bucket.tokens) / self.rate
