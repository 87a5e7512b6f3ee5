"""Contacts and list memberships, pushed by the caller."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from api.deps import PoolDep, WorkspaceDep
from api.errors import ApiError

router = APIRouter(tags=["contacts"])

UPSERT_CONTACT = """
INSERT INTO contacts AS c (workspace, id, properties)
VALUES ($1, $2, jsonb_strip_nulls($3::jsonb))
ON CONFLICT (workspace, id) DO UPDATE
SET properties = (c.properties || $3::jsonb) - (
        SELECT coalesce(array_agg(key), '{}') FROM jsonb_each($3::jsonb) WHERE value = 'null'
    ),
    seq = nextval('change_seq'), updated_at = now()
RETURNING id, properties, seq
"""
SELECT_CONTACT = "SELECT id, properties, seq FROM contacts WHERE workspace = $1 AND id = $2"
SELECT_LISTS = (
    "SELECT list FROM list_members WHERE workspace = $1 AND contact_id = $2 ORDER BY list"
)
SELECT_ACTIVE = """
SELECT journey_id, workflow_id, status, stage FROM enrollments
WHERE workspace = $1 AND contact_id = $2 AND status <> 'completed' ORDER BY journey_id
"""
ADD_MEMBER = """
INSERT INTO list_members (workspace, list, contact_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING
"""
REMOVE_MEMBER = "DELETE FROM list_members WHERE workspace = $1 AND list = $2 AND contact_id = $3"
TOUCH_CONTACT = """
INSERT INTO contacts AS c (workspace, id) VALUES ($1, $2)
ON CONFLICT (workspace, id) DO UPDATE SET seq = nextval('change_seq'), updated_at = now()
"""


class ContactIn(BaseModel):
    properties: dict[str, Any]


class ActiveEnrollment(BaseModel):
    journey_id: str
    workflow_id: str
    status: str
    stage: str | None


class ContactOut(BaseModel):
    id: str
    properties: dict[str, Any]
    lists: list[str]
    seq: int
    enrollments: list[ActiveEnrollment]


async def _contact_out(pool: Any, workspace: str, contact_id: str) -> ContactOut:
    row = await pool.fetchrow(SELECT_CONTACT, workspace, contact_id)
    if row is None:
        raise ApiError(404, "contact_not_found", f"No contact with id {contact_id!r}.")
    lists = [r["list"] for r in await pool.fetch(SELECT_LISTS, workspace, contact_id)]
    active = [
        ActiveEnrollment(**dict(r)) for r in await pool.fetch(SELECT_ACTIVE, workspace, contact_id)
    ]
    return ContactOut(**dict(row), lists=lists, enrollments=active)


@router.put("/v1/contacts/{contact_id}", operation_id="upsert_contact", tags=["contacts"])
async def upsert_contact(
    contact_id: str, body: ContactIn, pool: PoolDep, workspace: WorkspaceDep
) -> ContactOut:
    """Creates or merges a contact's properties; a `null` value removes that property."""
    await pool.execute(UPSERT_CONTACT, workspace, contact_id, body.properties)
    return await _contact_out(pool, workspace, contact_id)


@router.get("/v1/contacts/{contact_id}", operation_id="get_contact")
async def get_contact(contact_id: str, pool: PoolDep, workspace: WorkspaceDep) -> ContactOut:
    """A contact's properties, lists and active enrollments."""
    return await _contact_out(pool, workspace, contact_id)


@router.put(
    "/v1/lists/{list_name}/members/{contact_id}", status_code=204, operation_id="add_member"
)
async def add_member(
    list_name: str, contact_id: str, pool: PoolDep, workspace: WorkspaceDep
) -> Response:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(TOUCH_CONTACT, workspace, contact_id)
        await conn.execute(ADD_MEMBER, workspace, list_name, contact_id)
    return Response(status_code=204)


@router.delete(
    "/v1/lists/{list_name}/members/{contact_id}", status_code=204, operation_id="remove_member"
)
async def remove_member(
    list_name: str, contact_id: str, pool: PoolDep, workspace: WorkspaceDep
) -> Response:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(TOUCH_CONTACT, workspace, contact_id)
        await conn.execute(REMOVE_MEMBER, workspace, list_name, contact_id)
    return Response(status_code=204)
