"""The tracking endpoints mail clients reach, without an API key (docs/channels.md,
"Tracking"): the open pixel, click redirects, and one-click unsubscribe (RFC 8058) with a
small confirmation page. Every token is checked against the server secret before anything
is read: a forged or altered one gets 404 and records nothing. A click redirects only to
the URL the message held at that link's place. Not in the OpenAPI document: these are for
mail clients, not for API callers."""

from __future__ import annotations

import base64
import html

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import PoolDep, SettingsDep
from api.errors import ApiError
from services import engagement
from shared import tracking

router = APIRouter(prefix="/t", include_in_schema=False)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def _read(secret: str | None, token: str, kind: str) -> tuple[bytes, int]:
    found = tracking.read(secret, token, kind) if secret else None
    if found is None:
        raise ApiError(404, "not_found", "No such link.")
    return found


def _agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:500]


@router.get("/o/{token}")
async def opened(token: str, request: Request, pool: PoolDep, settings: SettingsDep) -> Response:
    message, _ = _read(settings.tracking_secret, token, tracking.OPEN)
    row = await engagement.record(pool, settings, message, tracking.OPEN, 0, _agent(request))
    if row is None:
        raise ApiError(404, "not_found", "No such link.")
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get("/c/{token}")
async def clicked(token: str, request: Request, pool: PoolDep, settings: SettingsDep) -> Response:
    message, link = _read(settings.tracking_secret, token, tracking.CLICK)
    row = await engagement.record(pool, settings, message, tracking.CLICK, link, _agent(request))
    if row is None:
        raise ApiError(404, "not_found", "No such link.")
    return RedirectResponse(row["links"][link], status_code=302, headers=NO_STORE)


@router.get("/u/{token}")
async def unsubscribe_page(token: str, settings: SettingsDep) -> HTMLResponse:
    """A confirmation page: following the link alone (a scanner does) unsubscribes nobody."""
    _read(settings.tracking_secret, token, tracking.UNSUBSCRIBE)
    action = html.escape(f"/t/u/{token}")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Unsubscribe</title>"
        "<meta name='viewport' content='width=device-width'></head><body>"
        "<p>Stop receiving these emails?</p>"
        f"<form method='post' action='{action}'><button type='submit'>Unsubscribe</button>"
        "</form></body></html>"
    )
    return HTMLResponse(page, headers=NO_STORE)


@router.post("/u/{token}")
async def unsubscribe(
    token: str, request: Request, pool: PoolDep, settings: SettingsDep
) -> HTMLResponse:
    """One click (RFC 8058 `List-Unsubscribe=One-Click`, or the page's button): the contact's
    `unsubscribed_email` is set, which every later marketing email honours."""
    message, _ = _read(settings.tracking_secret, token, tracking.UNSUBSCRIBE)
    agent = _agent(request)
    row = await engagement.record(pool, settings, message, tracking.UNSUBSCRIBE, 0, agent)
    if row is None:
        raise ApiError(404, "not_found", "No such link.")
    page = "<!doctype html><html><body><p>You are unsubscribed.</p></body></html>"
    return HTMLResponse(page, headers=NO_STORE)
