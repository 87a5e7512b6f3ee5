"""Errors a caller can cause, raised wherever the rule that refuses lives (a pure check, a
service) and answered by the API as a status, a machine-readable `reason` and one sentence.
"""

from __future__ import annotations

from typing import Any


class CallerError(Exception):
    """Something the caller sent or asked that the product refuses."""

    status = 400

    def __init__(self, reason: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.extra = extra


class NotFound(CallerError):
    status = 404


class Conflict(CallerError):
    """The request is well formed but the current state refuses it."""

    status = 409


class Invalid(CallerError):
    status = 422


class Unavailable(CallerError):
    """A part the request needs (Temporal) did not answer; the caller may retry."""

    status = 503


class TooMany(CallerError):
    """The caller asks for more at once than it may; it may retry later."""

    status = 429
