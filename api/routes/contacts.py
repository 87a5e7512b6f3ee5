"""Contacts and list memberships, pushed by the caller.

Each write commits the change with a new sequence number and returns; the relay
(`services.relay`) delivers it to the enrollments whose journeys read what changed, and
enrolls the contact where a journey's list/stage rule now holds.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import PoolDep, QuotaDep, WorkspaceDep
from api.errors import ApiError
from api.ingest import (
    MAX_BATCH,
    ContactIdPath,
    ListPath,
    Name,
    Properties,
    batch_too_large,
    lock_contacts,
)
from store import contacts as contacts_store
from store import enrollments as enrollments_store
from store.db import Queryable, with_retry

router = APIRouter(tags=["contacts"])


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    properties: Properties


class ActiveEnrollment(BaseModel):
    journey_id: str
    workflow_id: str
    status: str
    stage: str | None


class ContactOut(BaseModel):
    id: str
    properties: dict[str, Any]
    lists: list[str]
    seq: int = Field(description="Sequence number of the contact's latest change.")
    enrollments: list[ActiveEnrollment] = Field(
        description="Enrollments running or inside their attribution window."
    )


class MembersIn(BaseModel):
    """Contacts to add to and remove from one list, at most 1,000 of each."""

    model_config = ConfigDict(extra="forbid")
    add: list[Name] = []
    remove: list[Name] = []


class MembersOut(BaseModel):
    added: int = Field(description="Contacts that were not members and now are.")
    removed: int = Field(description="Contacts that were members and no longer are.")
    unchanged: int


class MembersPage(BaseModel):
    items: list[str]
    next_cursor: str | None


async def _contact_out(conn: Queryable, workspace: str, contact_id: str) -> ContactOut:
    row = await contacts_store.contact(conn, workspace, contact_id)
    if row is None:
        raise ApiError(404, "contact_not_found", f"No contact with id {contact_id!r}.")
    lists = await contacts_store.lists_of(conn, workspace, contact_id)
    active = [
        ActiveEnrollment(**dict(r))
        for r in await enrollments_store.select_active(conn, workspace, contact_id)
    ]
    return ContactOut(**dict(row), lists=lists, enrollments=active)


@router.put(
    "/v1/contacts/{contact_id}", operation_id="upsert_contact", summary="Create or update a contact"
)
async def upsert_contact(
    contact_id: ContactIdPath,
    body: ContactIn,
    pool: PoolDep,
    workspace: WorkspaceDep,
    quota: QuotaDep,
) -> ContactOut:
    """Creates a contact or merges properties into it: properties not named are kept, a
    property set to `null` is removed. A change reaches the enrollments whose journeys
    read that property (the stage property moves the contact; an end value ends it) and
    may enroll the contact (a journey's list/stage rule)."""
    quota.charge(1)
    to_set = {k: v for k, v in body.properties.items() if v is not None}
    to_remove = sorted(k for k, v in body.properties.items() if v is None)

    async def write() -> ContactOut:
        async with pool.acquire() as conn, conn.transaction():
            await contacts_store.upsert(conn, workspace, contact_id, to_set, to_remove)
            return await _contact_out(conn, workspace, contact_id)

    return await with_retry(write)


@router.get(
    "/v1/contacts/{contact_id}",
    operation_id="get_contact",
    summary="Get a contact with its lists and enrollments",
)
async def get_contact(
    contact_id: ContactIdPath, pool: PoolDep, workspace: WorkspaceDep
) -> ContactOut:
    """A contact's properties, lists and open enrollments."""
    return await _contact_out(pool, workspace, contact_id)


async def change_members(
    pool: Any, workspace: str, list_name: str, add: list[str], remove: list[str]
) -> MembersOut:
    """One transaction: lock the contacts (in id order), change the memberships, and give
    a new sequence number to each contact whose lists changed. Adding creates a missing
    contact; removing never does."""
    add, remove = sorted(set(add)), sorted(set(remove))

    async def write() -> MembersOut:
        async with pool.acquire() as conn, conn.transaction():
            existing = await lock_contacts(conn, workspace, [*add, *remove], create=False)
            missing = [c for c in add if c not in existing]
            if missing:
                await lock_contacts(conn, workspace, missing, create=True)
            added = await contacts_store.add_members(conn, workspace, list_name, add) if add else []
            removed = (
                await contacts_store.remove_members(conn, workspace, list_name, remove)
                if remove
                else []
            )
            if added or removed:
                await contacts_store.bump(conn, workspace, [*added, *removed])
        return MembersOut(
            added=len(added),
            removed=len(removed),
            unchanged=len(add) + len(remove) - len(added) - len(removed),
        )

    return await with_retry(write)


@router.put(
    "/v1/lists/{list_name}/members/{contact_id}",
    status_code=204,
    operation_id="add_member",
    summary="Add a contact to a list",
)
async def add_member(
    list_name: ListPath,
    contact_id: ContactIdPath,
    pool: PoolDep,
    workspace: WorkspaceDep,
    quota: QuotaDep,
) -> Response:
    """Adds the contact to the list (creating the contact if needed). May enroll it where
    the list is eligible; ends enrollments where it is a suppression list."""
    quota.charge(1)
    await change_members(pool, workspace, list_name, [contact_id], [])
    return Response(status_code=204)


@router.delete(
    "/v1/lists/{list_name}/members/{contact_id}",
    status_code=204,
    operation_id="remove_member",
    summary="Remove a contact from a list",
)
async def remove_member(
    list_name: ListPath,
    contact_id: ContactIdPath,
    pool: PoolDep,
    workspace: WorkspaceDep,
    quota: QuotaDep,
) -> Response:
    """Removes the contact from the list; an enrollment left in none of its journey's
    eligible lists exits with `removed_from_list` (when the journey says so)."""
    quota.charge(1)
    await change_members(pool, workspace, list_name, [], [contact_id])
    return Response(status_code=204)


@router.post(
    "/v1/lists/{list_name}/members",
    operation_id="change_members",
    summary="Add and remove list members in one batch",
)
async def change_members_batch(
    list_name: ListPath, body: MembersIn, pool: PoolDep, workspace: WorkspaceDep, quota: QuotaDep
) -> MembersOut:
    """Adds and removes up to 1,000 contacts each in one transaction."""
    for what, ids in (("contacts to add", body.add), ("contacts to remove", body.remove)):
        if len(ids) > MAX_BATCH:
            raise batch_too_large(what, len(ids))
    quota.charge(len(body.add) + len(body.remove))
    both = sorted(set(body.add) & set(body.remove))
    if both:
        raise ApiError(
            422,
            "conflicting_membership",
            f"Contact {both[0]!r} is both added to and removed from the list.",
            contact_ids=both[:20],
        )
    return await change_members(pool, workspace, list_name, body.add, body.remove)


@router.get(
    "/v1/lists/{list_name}/members", operation_id="list_members", summary="List a list's members"
)
async def list_members(
    list_name: ListPath,
    pool: PoolDep,
    workspace: WorkspaceDep,
    cursor: str = Query("", max_length=256, pattern=r"^[^\x00]*$"),
    limit: int = Query(100, ge=1, le=1000),
) -> MembersPage:
    """The list's members in id order, a page at a time."""
    items = await contacts_store.members(pool, workspace, list_name, cursor, limit)
    return MembersPage(items=items, next_cursor=items[-1] if len(items) == limit else None)
