"""Message templates (`templates`), per workspace and name."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.templates import TemplateBody
from store.db import Queryable

UPSERT_TEMPLATE = """
INSERT INTO templates (workspace, name, subject, html, text) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (workspace, name) DO UPDATE
SET subject = $3, html = $4, text = $5, updated_at = now()
RETURNING name, subject, html, text, created_at, updated_at
"""


SELECT_TEMPLATE = """
SELECT name, subject, html, text, created_at, updated_at FROM templates
WHERE workspace = $1 AND name = $2
"""


SELECT_TEMPLATES = """
SELECT name, subject, html, text, created_at, updated_at FROM templates
WHERE workspace = $1 ORDER BY name
"""


DELETE_TEMPLATE = "DELETE FROM templates WHERE workspace = $1 AND name = $2"


async def upsert(
    conn: Queryable, workspace: Any, name: Any, subject: Any, html: Any, text: Any
) -> asyncpg.Record | None:
    return await conn.fetchrow(UPSERT_TEMPLATE, workspace, name, subject, html, text)


async def template(conn: Queryable, workspace: Any, name: Any) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_TEMPLATE, workspace, name)


async def body(conn: Queryable, workspace: str, name: str) -> TemplateBody | None:
    """What a message renders: the template's subject, html and text."""
    row = await conn.fetchrow(SELECT_TEMPLATE, workspace, name)
    if row is None:
        return None
    return TemplateBody(subject=row["subject"], html=row["html"], text=row["text"])


async def delete(conn: Queryable, workspace: str, name: str) -> bool:
    """Whether there was such a template."""
    return await conn.execute(DELETE_TEMPLATE, workspace, name) != "DELETE 0"


async def templates(conn: Queryable, workspace: Any) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_TEMPLATES, workspace)


TEMPLATE_NAMES = "SELECT name FROM templates WHERE workspace = $1 AND name = ANY($2::text[])"


async def existing(conn: Queryable, workspace: str, names: list[str]) -> set[str]:
    """Which of `names` the workspace has saved."""
    return {r["name"] for r in await conn.fetch(TEMPLATE_NAMES, workspace, names)}
