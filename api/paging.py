"""Pages of a list: `?cursor=&limit=` in, `{"items": [...], "next_cursor": ...}` out. A
cursor is opaque to the caller (base64 of where the page ended); anything else is 400
`invalid_cursor`."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from api.errors import ApiError
from api.ingest import storable_text


def encode_cursor(after: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode()


def encode_moment_cursor(at: datetime, key: str) -> str:
    """A cursor for a page ordered by (moment, key)."""
    return encode_cursor([at.isoformat(), key])


def decode_moment_cursor(cursor: str) -> tuple[datetime, str] | None:
    """The (moment, key) a page ordered by them starts after; None for the first page."""
    after = decode_cursor(cursor, list)
    if after is None:
        return None
    try:
        return datetime.fromisoformat(after[0]), after[1]
    except (ValueError, IndexError):
        raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.") from None


def decode_cursor(cursor: str, kind: type | tuple[type, ...] = str) -> Any:
    """Where a page starts after (None for the first page), checked to be a `kind`."""
    if not cursor:
        return None
    try:
        after = json.loads(base64.urlsafe_b64decode(cursor.encode()))["after"]
    except (ValueError, TypeError, KeyError, UnicodeError):
        after = None
    parts = after if isinstance(after, list) else [after]
    if not isinstance(after, kind) or not all(
        isinstance(part, str) and storable_text(part) for part in parts
    ):
        raise ApiError(400, "invalid_cursor", "The cursor is not one this API returned.")
    return after
