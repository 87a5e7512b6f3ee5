"""The channels that take a message out of the building: email over SMTP, and an HTTP
webhook for SMS, WhatsApp, tasks and notifications. Used by the sender only.

Each send carries the outbox row's idempotency key (email: `Message-ID` and
`X-Nurture-Idempotency-Key`; webhook: `Idempotency-Key` and `X-Nurture-Idempotency-Key`),
so a provider that deduplicates can drop the copy too many a crash between "sent" and
"recorded" can cause. The caller's `Handover` frames that moment: `begin` just before the
message itself goes out (SMTP: after the server took the envelope, before DATA; webhook:
before the POST), `done` as soon as the provider accepted it (SMTP: before QUIT).

A refusal that retrying cannot fix raises `PermanentFailure` with the provider's answer;
anything else raises `TransientFailure`, and the activity retry policy tries again with
backoff. `TransientFailure.maybe_delivered` says the message was handed over and no answer
came back (lost connection, timeout): the provider may have it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from email.message import EmailMessage
from typing import Any, Literal
from urllib.parse import quote

import aiosmtplib
import httpx
from aiosmtplib.typing import Default

from services.outbound import ForbiddenDestination, vetted_address
from shared.channels import header_problem, one_address
from shared.destinations import FORBIDDEN
from shared.settings import Settings

ANSWER_CHARS = 1000
"""How much of the SMTP server's answer (the operator's own relay) the log keeps."""
STATUS_LINE_CHARS = 80
"""How much of a webhook's status line the log keeps: never its body."""


class PermanentFailure(Exception):
    """The provider refused the send for good (e.g. a 4xx other than 429, an SMTP 5xx)."""

    def __init__(
        self, message: str, answer: dict[str, Any] | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.answer = answer or {}
        if reason:
            self.answer["reason"] = reason


class TransientFailure(Exception):
    """Worth retrying: the provider is down, slow, rate limiting or answered 5xx."""

    def __init__(self, message: str, maybe_delivered: bool = False) -> None:
        super().__init__(message)
        self.maybe_delivered = maybe_delivered


class Handover:
    """The sender's bookkeeping at the moment a message leaves: `begin` is awaited just
    before the provider can have it (and may raise to call the send off), `done` as soon
    as the provider's acceptance is in, before the session is closed. This one records
    nothing."""

    async def begin(self) -> None:
        return None

    async def done(self, answer: dict[str, Any]) -> None:
        return None


class _HandingOverSMTP(aiosmtplib.SMTP):
    """aiosmtplib's client, beginning the hand-over between RCPT and DATA: until DATA the
    server has no message, so a crash before it cannot deliver one."""

    def __init__(self, handover: Handover, **options: Any) -> None:
        super().__init__(**options)
        self.handover = handover
        self.handed_over = False

    async def data(
        self,
        message: str | bytes,
        /,
        *,
        timeout: float | Literal[Default.token] | None = Default.token,  # noqa: ASYNC109 (overridden)
    ) -> aiosmtplib.SMTPResponse:
        await self.handover.begin()
        self.handed_over = True
        return await super().data(message, timeout=timeout)


def message_id(key: str, domain: str) -> str:
    """The idempotency key as an RFC 5322 Message-ID (`:` and `.` percent-encoded)."""
    local = quote(key, safe="/").replace(".", "%2E")
    return f"<{local}@{domain}>"


class Email:
    """Email over SMTP with aiosmtplib, configured by the worker's settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def configured(self) -> bool:
        return bool(self.settings.smtp_host)

    def compose(
        self, key: str, sender: str, to: str, content: dict[str, Any], workspace: str
    ) -> EmailMessage:
        subject = content.get("subject") or ""
        # checked when queued; again here, so no interpreter's header folding can be fooled
        if not one_address(to) or header_problem(subject) is not None:
            raise PermanentFailure("the address or the subject cannot be an email header")
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = subject
        domain = sender.rpartition("@")[2] or "nurture.local"
        msg["Message-ID"] = message_id(key, domain)
        msg["X-Nurture-Idempotency-Key"] = key
        msg["X-Nurture-Workspace"] = workspace
        unsubscribe = [u for u in content.get("list_unsubscribe") or [] if isinstance(u, str)]
        if unsubscribe and not any(header_problem(u) for u in unsubscribe):
            # RFC 8058: one-click unsubscribe for bulk senders
            msg["List-Unsubscribe"] = ", ".join(f"<{u}>" for u in unsubscribe)
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        text, html = content.get("text"), content.get("html")
        msg.set_content(text if text is not None else "")
        if html is not None:
            msg.add_alternative(html, subtype="html")
        return msg

    async def send(self, msg: EmailMessage, handover: Handover | None = None) -> dict[str, Any]:
        s = self.settings
        handover = handover or Handover()
        client = _HandingOverSMTP(
            handover,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            cert_bundle=s.smtp_ca_file,
            timeout=s.smtp_timeout,
        )
        try:
            async with client:
                errors, response = await client.send_message(msg)
                answer: dict[str, Any] = {
                    "smtp": response[:ANSWER_CHARS],
                    "refused": {k: str(v) for k, v in errors.items()},
                }
                # recorded before QUIT: one round trip less in which a crash makes a resend
                await handover.done(answer)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            refused = [{"code": r.code, "message": r.message} for r in exc.recipients]
            answer = {"smtp": refused}
            if all(500 <= c < 600 for c in codes):
                raise PermanentFailure(f"the SMTP server refused {msg['To']}", answer) from exc
            raise TransientFailure(str(exc)) from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            # our configuration, not the contact: retry until an operator fixes it
            raise TransientFailure(f"SMTP authentication failed: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            answer = {"smtp": {"code": exc.code, "message": exc.message[:ANSWER_CHARS]}}
            if 500 <= exc.code < 600:
                raise PermanentFailure(f"the SMTP server answered {exc.code}", answer) from exc
            raise TransientFailure(f"SMTP {exc.code}: {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # no answer to DATA: the server may have taken the message
            raise TransientFailure(
                f"SMTP: {type(exc).__name__}: {exc}", maybe_delivered=client.handed_over
            ) from exc
        return answer


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`X-Nurture-Signature`: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


class Webhook:
    """Signed JSON POSTs to the workspace's webhook URL, only to an address the rules allow
    (`services.outbound`), within a total deadline; the reply's body is never read: the
    log keeps its status line."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.allowance = settings.webhook_allowance

    async def send(
        self,
        url: str,
        secret: str,
        key: str,
        body: dict[str, Any],
        handover: Handover | None = None,
    ) -> dict[str, Any]:
        try:
            address = await vetted_address(url, self.allowance)
        except ForbiddenDestination as exc:
            raise PermanentFailure(
                f"the webhook URL may not be reached: {exc}", reason=FORBIDDEN
            ) from exc
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise TransientFailure(f"webhook: the host does not resolve: {exc}") from exc
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        target = httpx.URL(url)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "X-Nurture-Idempotency-Key": key,
            "X-Nurture-Signature": sign(secret, int(time.time()), raw),
        }
        extensions: dict[str, Any] = {}
        if address is not None:
            # connect to the address that was checked; the host still names the site
            headers["Host"] = target.netloc.decode("ascii")
            extensions["sni_hostname"] = target.host
            target = target.copy_with(host=address)
        handover = handover or Handover()
        await handover.begin()
        try:
            async with (
                asyncio.timeout(self.settings.webhook_deadline),
                httpx.AsyncClient(timeout=self.settings.webhook_timeout) as http,
            ):
                request = http.build_request(
                    "POST", target, content=raw, headers=headers, extensions=extensions
                )
                response = await http.send(request, stream=True)
                await response.aclose()  # the body is never read: its size cannot matter
        except (httpx.HTTPError, TimeoutError) as exc:
            # not even connected: the receiver cannot have it; otherwise it may
            unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            what = "no answer within the deadline" if isinstance(exc, TimeoutError) else exc
            raise TransientFailure(
                f"webhook: {type(exc).__name__}: {what}", maybe_delivered=not unsent
            ) from exc
        status = response.status_code
        answer = {"status": status, "reason": response.reason_phrase[:STATUS_LINE_CHARS]}
        if 200 <= status < 300:
            await handover.done(answer)
            return answer
        if status == 429 or status >= 500 or status == 408:
            raise TransientFailure(f"webhook answered {status}")
        raise PermanentFailure(f"the webhook answered {status}", answer)
