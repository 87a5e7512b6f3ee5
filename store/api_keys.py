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
