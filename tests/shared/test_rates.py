"""The ingest token bucket: a burst, then the sustained rate, per workspace."""

from __future__ import annotations

from shared.rates import Buckets


def test_a_burst_then_the_rate_and_workspaces_apart() -> None:
    buckets = Buckets(rate=10, burst=100)
    assert buckets.take("a", 100, now=0.0) == 0
    assert buckets.take("a", 5, now=0.0) == 0.5  # refused: 5 more items in half a second
    assert buckets.take("b", 100, now=0.0) == 0  # another workspace has its own bucket
    assert buckets.take("a", 5, now=0.5) == 0
    assert buckets.take("a", 1, now=0.5) == 0.1
    assert buckets.take("a", 100, now=100.0) == 0  # refilled, never past the burst
    assert buckets.take("a", 1, now=100.0) == 0.1


def test_no_limit_and_requests_larger_than_the_burst() -> None:
    assert Buckets(rate=0, burst=1).take("a", 10**9, now=0.0) == 0
    buckets = Buckets(rate=10, burst=50)
    assert buckets.take("a", 1000, now=0.0) == 0  # counted as a full burst
    assert buckets.take("a", 1000, now=0.0) == 5.0
