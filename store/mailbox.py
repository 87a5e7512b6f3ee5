"""mailbox: statements and their functions."""

from __future__ import annotations

from typing import Any

import asyncpg

from store.db import Queryable

# from api/routes/messages.py
SELECT_MESSAGES = """
SELECT id, received_at, mail_from, rcpt_to, subject, message_id, idempotency_key, text, html,
       headers
FROM dev_mailbox
WHERE workspace = $1 AND ($2::text IS NULL OR $2 = ANY(rcpt_to))
ORDER BY id DESC LIMIT $3
"""


async def select_messages(
    conn: Queryable, workspace: Any, to: Any, limit: Any
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_MESSAGES, workspace, to, limit)


# from cli/mail_sink.py
INSERT_MESSAGE = """
INSERT INTO dev_mailbox (workspace, mail_from, rcpt_to, subject, message_id, idempotency_key,
                         text, html, headers)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""


async def insert_message(
    conn: Queryable,
    arg1: Any,
    arg2: Any,
    arg3: Any,
    arg4: Any,
    arg5: Any,
    arg6: Any,
    arg7: Any,
    arg8: Any,
    headers: Any,
) -> str:
    return await conn.execute(
        INSERT_MESSAGE, arg1, arg2, arg3, arg4, arg5, arg6, arg7, arg8, headers
    )
