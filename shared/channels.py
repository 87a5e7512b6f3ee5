"""A workspace's channel settings (webhook, send window, frequency cap) and the rules
that decide when a message may go out: quiet hours, the cap, unsubscribes.

The rules are pure functions of their inputs (the time given is the workflow's time of
the step, so a time-skipping test and a replay see the same answers).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from email.header import decode_header
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, field_validator

from shared.journey import WEEKDAYS, Duration, SendWindow, TimeZoneName

DEFAULT_TIMEZONE = "UTC"
CHANNEL_ADDRESS = {"email": "email", "sms": "phone", "whatsapp": "phone"}
"""The contact property that holds each channel's address."""


class FrequencyCap(BaseModel):
    """At most `max` marketing messages per contact in any rolling `per` (ISO-8601)."""

    model_config = ConfigDict(extra="forbid")

    max: int = Field(gt=0, le=1000)
    per: Duration

    @field_validator("per")
    @classmethod
    def _positive(cls, per: timedelta) -> timedelta:
        if per <= timedelta(0) or per > timedelta(days=366):
            raise ValueError("the cap's window lasts more than zero and at most 366 days")
        return per


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl
    secret: SecretStr = Field(min_length=16, max_length=512)
    """Signs every request (HMAC-SHA256)."""

    @field_validator("secret")
    @classmethod
    def _storable(cls, secret: SecretStr) -> SecretStr:
        if "\x00" in secret.get_secret_value():
            raise ValueError("the secret cannot contain NUL characters")
        return secret


class ChannelSettings(BaseModel):
    """`PUT /v1/settings/channels`: what a workspace's channels need."""

    model_config = ConfigDict(extra="forbid")

    webhook: Webhook | None = None
    """SMS, WhatsApp, tasks and notifications are POSTed here; None: recorded only."""
    email_from: str | None = Field(default=None, max_length=320, pattern=r"^[^\x00-\x1f]*$")
    """Overrides the worker's `NURTURE_SMTP_FROM` for this workspace."""
    timezone: TimeZoneName = DEFAULT_TIMEZONE
    """The zone of contacts without a `timezone` property."""
    send_window: SendWindow | None = None
    """Quiet hours for journeys that set none; None: any time."""
    frequency_cap: FrequencyCap | None = None


# --- the rules ------------------------------------------------------------------------------


def contact_zone(
    properties: dict[str, Any], window: SendWindow, workspace_zone: str
) -> tuple[ZoneInfo, str]:
    """The zone a window is read in: the contact's `timezone` property if it names one,
    else the window's own, else the workspace's. Returns the zone and where it came from."""
    own = properties.get("timezone")
    if isinstance(own, str) and own:
        try:
            return ZoneInfo(own), f"the contact's timezone {own}"
        except Exception:
            pass  # not a zone: fall back, the log says which zone was used
    name = window.timezone or workspace_zone
    return ZoneInfo(name), f"{'the window' if window.timezone else 'the workspace'} zone {name}"


def next_opening(window: SendWindow, zone: ZoneInfo, at: datetime) -> datetime | None:
    """None when `at` is inside the window; otherwise when it next opens (UTC)."""
    local = at.astimezone(zone)
    crosses_midnight = window.end < window.start
    openings: list[datetime] = []
    for offset in range(-1, 8):
        day = local.date() + timedelta(days=offset)
        if WEEKDAYS[day.weekday()] not in window.days:
            continue
        opens = datetime.combine(day, window.start, tzinfo=zone)
        closes_day = day + timedelta(days=1) if crosses_midnight else day
        closes = datetime.combine(closes_day, window.end, tzinfo=zone)
        if opens <= local < closes:
            return None
        if opens > local:
            openings.append(opens)
    return min(openings).astimezone(ZoneInfo("UTC"))


def unsubscribed(properties: dict[str, Any], channel: str) -> str | None:
    """The property that unsubscribes the contact from marketing on `channel`, if any:
    `unsubscribed` (every channel) or `unsubscribed_<channel>`, set to true."""
    for name in ("unsubscribed", f"unsubscribed_{channel}"):
        value = properties.get(name)
        if value is True or (isinstance(value, str) and value.lower() == "true"):
            return name
    return None


# --- what may go into an email's headers ------------------------------------------------

_ADDRESS = re.compile(r"[^\s@,;:<>()\[\]\\\"]+@[^\s@,;:<>()\[\]\\\"]+\.[^\s@,;:<>()\[\]\\\"]+")
MAX_HEADER = 998
"""Characters of a header line (RFC 5322)."""


def one_address(value: object) -> bool:
    """Exactly one plain address (`ada@example.test`): no list, no display name, no
    comment, no whitespace or line break, at most 254 characters. Checked here, not left
    to the email library, so that a patched or unpatched interpreter sends the same."""
    return isinstance(value, str) and len(value) <= 254 and _ADDRESS.fullmatch(value) is not None


def header_problem(value: str) -> str | None:
    """Why a rendered value cannot be a header (a subject), or None: a line break, raw or
    inside an encoded word (`=?utf-8?q?=0D=0A?=`), or over a header line's length."""
    if "\r" in value or "\n" in value:
        return "it contains a line break"
    if len(value) > MAX_HEADER:
        return f"it is longer than {MAX_HEADER} characters"
    if "=?" in value:
        try:
            parts = decode_header(value)
        except (ValueError, LookupError):
            return "it contains an encoded word that does not decode"
        for text, charset in parts:
            decoded = (
                text.decode(charset or "ascii", "replace") if isinstance(text, bytes) else text
            )
            if "\r" in decoded or "\n" in decoded:
                return "it contains an encoded line break"
    return None


def sender_refusal(email_from: str, allowed: list[str]) -> tuple[str, str] | None:
    """Why a workspace may not send as `email_from` ((reason, sentence)), or None: it
    must be one plain address at a domain the operator allowed for the workspace."""
    if not one_address(email_from):
        return "invalid_sender", "email_from must be exactly one plain address."
    domain = email_from.rpartition("@")[2].lower()
    if domain not in allowed:
        return (
            "sender_domain_not_allowed",
            f"This workspace may not send as {domain!r}; the operator allows domains with "
            "`nurture workspaces allow-sender-domain`.",
        )
    return None
