"""Per-workspace settings (`channel_settings`): webhook, sender address, zone, send window,
frequency cap."""

from __future__ import annotations

from shared.channels import ChannelSettings, Webhook
from store.db import Queryable

SELECT_SETTINGS = """
SELECT webhook_url, webhook_secret, email_from, timezone, send_window, frequency_cap
FROM channel_settings WHERE workspace = $1
"""


UPSERT_SETTINGS = """
INSERT INTO channel_settings (workspace, webhook_url, webhook_secret, email_from, timezone,
                              send_window, frequency_cap, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now())
ON CONFLICT (workspace) DO UPDATE
SET webhook_url = $2, webhook_secret = $3, email_from = $4, timezone = $5,
    send_window = $6, frequency_cap = $7, updated_at = now()
"""


async def channel_settings(conn: Queryable, workspace: str) -> ChannelSettings:
    """The workspace's channel settings (the defaults when it never saved any)."""
    row = await conn.fetchrow(SELECT_SETTINGS, workspace)
    if row is None:
        return ChannelSettings()
    webhook = None
    if row["webhook_url"]:
        webhook = Webhook(url=row["webhook_url"], secret=row["webhook_secret"])
    return ChannelSettings(
        webhook=webhook,
        email_from=row["email_from"],
        timezone=row["timezone"],
        send_window=row["send_window"],
        frequency_cap=row["frequency_cap"],
    )


async def save_channel_settings(conn: Queryable, workspace: str, settings: ChannelSettings) -> None:
    hook = settings.webhook
    await conn.execute(
        UPSERT_SETTINGS,
        workspace,
        str(hook.url) if hook else None,
        hook.secret.get_secret_value() if hook else None,
        settings.email_from,
        settings.timezone,
        settings.send_window.model_dump(mode="json") if settings.send_window else None,
        settings.frequency_cap.model_dump(mode="json") if settings.frequency_cap else None,
    )


ALLOW_SENDER_DOMAIN = """
INSERT INTO sender_domains (workspace, domain) VALUES ($1, $2) ON CONFLICT DO NOTHING
"""
SELECT_SENDER_DOMAINS = "SELECT domain FROM sender_domains WHERE workspace = $1 ORDER BY domain"


async def allow_sender_domain(conn: Queryable, workspace: str, domain: str) -> None:
    await conn.execute(ALLOW_SENDER_DOMAIN, workspace, domain.lower())


async def sender_domains(conn: Queryable, workspace: str) -> list[str]:
    """The domains the workspace may send email from."""
    return [r["domain"] for r in await conn.fetch(SELECT_SENDER_DOMAINS, workspace)]
