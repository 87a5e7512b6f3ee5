"""Email engagement that nurture measures itself (docs/channels.md, "Tracking"): opaque
signed tokens, the HTML rewrite (an open pixel, click-tracked links), and the guess that a
machine, not a person, opened or clicked. Pure: the sender's activity and the tracking
endpoints do the I/O.

A token is 15 bytes and a 16-byte HMAC-SHA256 tag, base64url: the message's id (12 bytes
derived from its idempotency key with the server secret, so a retried send gets the same
id and nobody without the secret can compute one), the kind (`o` open, `c` click, `u`
unsubscribe) and a link number. No workspace, contact or URL is in it: the URLs stay in
the database, so a click can only ever redirect to a URL that was in the message. A
forged or altered token fails the tag check before any database read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

OPEN, CLICK, UNSUBSCRIBE = "o", "c", "u"
KINDS = (OPEN, CLICK, UNSUBSCRIBE)
MAX_LINKS = 500
_BODY = 15
_TAG = 16

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)

MACHINE_AGENTS = re.compile(
    r"GoogleImageProxy|YahooMailProxy|ggpht\.com|Barracuda|Mimecast|Proofpoint|"
    r"Microsoft Office Protection|SafeLinks|bot\b|crawler|spider|python-httpx|curl/",
    re.IGNORECASE,
)
"""User agents of mail privacy proxies, security scanners and scripts."""


def message_id(secret: str, key: str) -> bytes:
    """The tracked message's id: the same for the same idempotency key (a retried send),
    unguessable without the secret."""
    return hmac.new(secret.encode(), b"message:" + key.encode(), hashlib.sha256).digest()[:12]


def token(secret: str, message: bytes, kind: str, link: int = 0) -> str:
    body = message + kind.encode() + link.to_bytes(2, "big")
    tag = hmac.new(secret.encode(), body, hashlib.sha256).digest()[:_TAG]
    return base64.urlsafe_b64encode(body + tag).decode().rstrip("=")


def read(secret: str, text: str, kind: str) -> tuple[bytes, int] | None:
    """(message id, link number) of a token of this kind; None for anything forged,
    altered, of another kind, or not a token at all."""
    if len(text) != 42:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "==")
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _BODY + _TAG:
        return None
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != text:
        return None  # the last character's unused bits altered: not the token we made
    body, tag = raw[:_BODY], raw[_BODY:]
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()[:_TAG]
    if not hmac.compare_digest(tag, expected) or body[12:13] != kind.encode():
        return None
    return body[:12], int.from_bytes(body[13:15], "big")


@dataclass(frozen=True)
class Tracked:
    html: str
    links: list[str]
    """The original URLs, by link number."""


def track_html(secret: str, base_url: str, message: bytes, source: str, skip: str = "") -> Tracked:
    """Every http(s) `<a href>` rewritten to its click URL (except `skip`, the message's
    unsubscribe URL) and the open pixel added before `</body>`."""
    links: list[str] = []
    base = base_url.rstrip("/")

    def rewrite(found: re.Match[str]) -> str:
        url = html.unescape(found.group(3)).strip()
        if not url.lower().startswith(("http://", "https://")) or url == skip:
            return found.group(0)
        if len(links) >= MAX_LINKS:
            return found.group(0)
        links.append(url)
        click = f"{base}/t/c/{token(secret, message, CLICK, len(links) - 1)}"
        return f"{found.group(1)}{found.group(2)}{click}{found.group(2)}"

    rewritten = _HREF.sub(rewrite, source)
    pixel = (
        f'<img src="{base}/t/o/{token(secret, message, OPEN)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px">'
    )
    ends = list(_BODY_END.finditer(rewritten))
    if ends:
        at = ends[-1].start()
        rewritten = rewritten[:at] + pixel + rewritten[at:]
    else:
        rewritten += pixel
    return Tracked(rewritten, links)


_TEXT_URL = re.compile(r"https?://[^\s<>\"')\]]+", re.IGNORECASE)


def track_text(
    secret: str, base_url: str, message: bytes, source: str, links: list[str], skip: str = ""
) -> str:
    """Every http(s) URL of a plain-text part replaced by its click URL; `links` (the HTML
    part's, if any) is extended, so a URL in both parts shares its link number."""
    base = base_url.rstrip("/")

    def rewrite(found: re.Match[str]) -> str:
        url = found.group(0).rstrip(".,;:!?")
        tail = found.group(0)[len(url) :]
        if url == skip or (url not in links and len(links) >= MAX_LINKS):
            return found.group(0)
        if url not in links:
            links.append(url)
        return f"{base}/t/c/{token(secret, message, CLICK, links.index(url))}{tail}"

    return _TEXT_URL.sub(rewrite, source)


def unsubscribe_url(secret: str, base_url: str, message: bytes) -> str:
    return f"{base_url.rstrip('/')}/t/u/{token(secret, message, UNSUBSCRIBE)}"


def machine_open(
    delivered_at: datetime | None, at: datetime, agent: str, within: timedelta
) -> bool:
    """Most likely a proxy or a scanner: within `within` of delivery, or a known agent."""
    if MACHINE_AGENTS.search(agent or ""):
        return True
    return delivered_at is not None and at - delivered_at < within


def machine_click(
    delivered_at: datetime | None,
    at: datetime,
    agent: str,
    within: timedelta,
    last_click: tuple[datetime, int] | None,
    link: int,
) -> bool:
    """An open's signs, or another link of the same message clicked within a second (a
    scanner follows every link)."""
    if machine_open(delivered_at, at, agent, within):
        return True
    if last_click is None:
        return False
    when, other = last_click
    return other != link and at - when < timedelta(seconds=1)
