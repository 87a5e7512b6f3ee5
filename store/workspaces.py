"""workspaces: statements and their functions."""

from __future__ import annotations

from typing import Any

import asyncpg

from store.db import Queryable

# from shared/channels.py
SELECT_SETTINGS = """
SELECT webhook_url, webhook_secret, email_from, timezone, send_window, frequency_cap
FROM channel_settings WHERE workspace = $1
"""


# from shared/channels.py
UPSERT_SETTINGS = """
INSERT INTO channel_settings (workspace, webhook_url, webhook_secret, email_from, timezone,
                              send_window, frequency_cap, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now())
ON CONFLICT (workspace) DO UPDATE
SET webhook_url = $2, webhook_secret = $3, email_from = $4, timezone = $5,
    send_window = $6, frequency_cap = $7, updated_at = now()
"""


async def select_settings(conn: Queryable, workspace: Any) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_SETTINGS, workspace)


async def upsert_settings(
    conn: Queryable,
    workspace: Any,
    arg2: Any,
    arg3: Any,
    email_from: Any,
    timezone: Any,
    arg6: Any,
    arg7: Any,
) -> str:
    return await conn.execute(
        UPSERT_SETTINGS, workspace, arg2, arg3, email_from, timezone, arg6, arg7
    )
