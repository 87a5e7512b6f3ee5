"""API keys: `nk_<id>_<secret>`. The secret is shown once; Postgres keeps its SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import asyncpg

KEY_PATTERN = re.compile(r"^nk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
WORKSPACE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

INSERT_KEY = "INSERT INTO api_keys (id, workspace, secret_hash) VALUES ($1, $2, $3)"
SELECT_KEY = "SELECT workspace, secret_hash FROM api_keys WHERE id = $1 AND revoked_at IS NULL"
LIST_KEYS = """
SELECT id, workspace, created_at, revoked_at FROM api_keys
WHERE ($1::text IS NULL OR workspace = $1) ORDER BY created_at, id
"""
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING workspace
"""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(conn: asyncpg.Pool | asyncpg.Connection, workspace: str) -> str:
    """Creates a key for `workspace` and returns it: the only time it is ever visible."""
    if not WORKSPACE_PATTERN.match(workspace):
        raise ValueError(
            "a workspace name is 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    await conn.execute(INSERT_KEY, key_id, workspace, _hash(secret))
    return f"nk_{key_id}_{secret}"


async def workspace_for(conn: asyncpg.Pool | asyncpg.Connection, key: str) -> str | None:
    """The workspace a key belongs to, or None for an unknown, malformed or revoked key."""
    match = KEY_PATTERN.match(key)
    if match is None:
        return None
    row = await conn.fetchrow(SELECT_KEY, match.group(1))
    if row is None or not hmac.compare_digest(row["secret_hash"], _hash(match.group(2))):
        return None
    return str(row["workspace"])


async def list_keys(
    conn: asyncpg.Pool | asyncpg.Connection, workspace: str | None = None
) -> list[asyncpg.Record]:
    """id, workspace, created_at, revoked_at of every key (of one workspace); never a
    secret."""
    return await conn.fetch(LIST_KEYS, workspace)


async def revoke_key(conn: asyncpg.Pool | asyncpg.Connection, key_id: str) -> str | None:
    """Revokes the key with this id (`nk_<id>_…`); its workspace, None if there is no such
    key or it was revoked already. APIs stop accepting it within their key cache's
    lifetime (`NURTURE_API_KEY_CACHE_SECONDS`)."""
    workspace: str | None = await conn.fetchval(REVOKE_KEY, key_id)
    return workspace
