"""A write Postgres picked as a deadlock's victim is run again; one that keeps colliding
becomes a 503 `write_conflict` the caller may retry (no server needed: the errors are the
ones asyncpg raises)."""

from __future__ import annotations

import asyncpg
import pytest

from shared.errors import Unavailable
from store.db import with_retry


async def test_a_deadlock_victim_is_run_again() -> None:
    attempts = []

    async def write() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        return "stored"

    assert await with_retry(write) == "stored"
    assert len(attempts) == 3


async def test_a_write_that_keeps_colliding_is_a_503_to_retry() -> None:
    attempts = []

    async def write() -> None:
        attempts.append(1)
        raise asyncpg.exceptions.SerializationError("could not serialize access")

    with pytest.raises(Unavailable) as refused:
        await with_retry(write, attempts=4)
    assert (refused.value.status, refused.value.reason) == (503, "write_conflict")
    assert len(attempts) == 4


async def test_any_other_error_is_not_retried() -> None:
    attempts = []

    async def write() -> None:
        attempts.append(1)
        raise asyncpg.exceptions.UniqueViolationError("duplicate key")

    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        await with_retry(write)
    assert len(attempts) == 1
