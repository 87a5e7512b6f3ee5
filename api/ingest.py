"""What contacts, lists and events share on the way in: the names and values a caller may
send (anything Postgres can store, so nothing a caller sends ends in a 500), the per-contact
row lock every writer takes, and retrying a transaction that lost a deadlock.

Ordering: every writer of a contact's properties, lists or events takes the contact's row
lock before it draws a sequence number from `change_seq`, and holds it to commit. So, per
contact, sequence order is commit order: a snapshot that misses a change has a lower
watermark than that change, and the workflow never drops it as already seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints
from pydantic_core import PydanticCustomError

from api.errors import ApiError
from store import contacts as contacts_store
from store.db import Queryable

MAX_BATCH = 1000
"""Events per POST /v1/events, and contacts per list batch."""

# No control characters: ids travel in workflow ids, search attributes and URLs, and
# Postgres text cannot hold NUL.
_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
_NAME_RULES = "1-256 characters, no control characters"

Name = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_NAME_PATTERN)]
"""A contact id, list name, event type or idempotency key in a body."""
ContactIdPath = Annotated[
    str, Path(min_length=1, max_length=256, pattern=_NAME_PATTERN, description=_NAME_RULES)
]
ListPath = Annotated[
    str, Path(min_length=1, max_length=256, pattern=_NAME_PATTERN, description=_NAME_RULES)
]
JourneyIdPath = Annotated[
    str, Path(min_length=1, max_length=256, pattern=_NAME_PATTERN, description=_NAME_RULES)
]
"""Every id in a path follows one rule: the contact's, the list's, the journey's."""
VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="A version number.")]


def storable_text(text: str) -> bool:
    """Whether Postgres can store the string: no NUL, and valid UTF-8 (no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


MAX_DEPTH = 32


def _in_range(value: datetime) -> datetime:
    """A moment Postgres and Python both hold once in UTC (9999-12-31T23:59-14:00 is
    not: it is year 10000 in UTC)."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_out_of_range", "The moment is out of range once in UTC."
        ) from None
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_in_range)]
"""A moment with a time zone, within range in UTC."""


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    """JSON that Postgres `jsonb` takes: no NUL in any string or key, finite numbers, and
    not absurdly deep."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise PydanticCustomError(
                "too_deep", "Values may nest at most {depth} levels.", {"depth": MAX_DEPTH}
            )
        if isinstance(item, str):
            if not storable_text(item):
                raise PydanticCustomError(
                    "invalid_string", "Strings may not contain NUL or lone surrogates."
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise PydanticCustomError("invalid_number", "Numbers must be finite.")
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str) or not storable_text(key):
                    raise PydanticCustomError(
                        "invalid_string", "Keys may not contain NUL or lone surrogates."
                    )
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
    return value


Properties = Annotated[
    dict[str, Any],
    AfterValidator(_storable),
    Field(description="A JSON object; a property set to null is removed (contacts)."),
]


def batch_too_large(what: str, count: int) -> ApiError:
    return ApiError(
        413,
        "batch_too_large",
        f"A batch holds at most {MAX_BATCH} {what}; this one has {count}.",
        limit=MAX_BATCH,
    )


async def lock_contacts(
    conn: Queryable, workspace: str, ids: Iterable[str], *, create: bool
) -> set[str]:
    """Takes the row lock of each contact, in id order (so two batches never deadlock on
    each other), creating the missing ones when `create`. Returns the ids that exist."""
    wanted = sorted(set(ids))
    return await contacts_store.lock(conn, workspace, wanted, create=create)
