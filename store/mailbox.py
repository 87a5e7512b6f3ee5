"""The dev mailbox (`dev_mailbox`): what the SMTP sink of `nurture dev` received."""

from __future__ import annotations

from typing import Any

import asyncpg

from store.db import Queryable

SELECT_MESSAGES = """
SELECT id, received_at, mail_from, rcpt_to, subject, message_id, idempotency_key, text, html,
       headers
FROM dev_mailbox
WHERE workspace = $1 AND ($2::text IS NULL OR $2 = ANY(rcpt_to))
ORDER BY id DESC LIMIT $3
"""


async def messages(
    conn: Queryable, workspace: str, to: str | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_MESSAGES, workspace, to, limit)


INSERT_MESSAGE = """
INSERT INTO dev_mailbox (workspace, mail_from, rcpt_to, subject, message_id, idempotency_key,
                         text, html, headers)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""


async def keep(
    conn: Queryable,
    workspace: str | None,
    mail_from: str,
    rcpt_to: list[str],
    subject: str | None,
    message_id: str | None,
    idempotency_key: str | None,
    text: str | None,
    html: str | None,
    headers: dict[str, Any],
) -> None:
    """Keeps one message the dev SMTP sink received."""
    await conn.execute(
        INSERT_MESSAGE,
        workspace,
        mail_from,
        rcpt_to,
        subject,
        message_id,
        idempotency_key,
        text,
        html,
        headers,
    )
