"""The web view (docs/web.md): server-rendered pages over the same services as the API,
for people. `/ui/login` takes an API key and keeps it in an HttpOnly, SameSite=strict
cookie (Secure over HTTPS); the key's workspace scopes every page exactly as the API.
Read-first: the only writes are activate, deactivate and unenroll, each a POST behind a
confirmation and a CSRF token. Every asset is the app's own (`/ui/static`), and the
Content-Security-Policy allows nothing else."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import key_workspace
from api.routes.enrollments import _detail
from api.routes.metrics import journey_metrics_of
from services import enrolling, journeys
from shared.activation import BatchKind
from shared.describe import describe_action
from shared.enrollment import Outcome, Phase
from shared.errors import Conflict, Invalid, NotFound
from shared.journey import Journey
from shared.metrics import goal_metrics, window_of
from store import batches as batches_store
from store import enrollments as enrollments_store
from store import journeys as journeys_store
from store import metrics as metrics_store

router = APIRouter(prefix="/ui", include_in_schema=False)
UI = Path(__file__).resolve().parent.parent / "ui"
COOKIE = "nurture_key"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
pages = jinja2.Environment(
    loader=jinja2.FileSystemLoader(UI / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _csrf(key: str) -> str:
    return hmac.new(key.encode(), b"nurture-ui-csrf", hashlib.sha256).hexdigest()[:32]


async def _who(request: Request) -> tuple[str, str] | None:
    key = request.cookies.get(COOKIE)
    if not key or len(key) > 200:
        return None
    workspace = await key_workspace(request.app, key)
    return (workspace, key) if workspace is not None else None


def _page(template: str, code: int = 200, /, **context: Any) -> HTMLResponse:
    context.setdefault("workspace", None)
    context.setdefault("csrf", "")
    return HTMLResponse(pages.get_template(template).render(**context), code, headers=HEADERS)


def _login() -> Response:
    return RedirectResponse("/ui/login", 303, headers=HEADERS)


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body())[:4096].decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body).items()}


async def _checked_post(request: Request) -> tuple[str, str] | None:
    """The session of a write: logged in, and the form's CSRF token is the session's."""
    who = await _who(request)
    if who is None:
        return None
    form = await _form(request)
    if not hmac.compare_digest(form.get("csrf", ""), _csrf(who[1])):
        return None
    return who


# --- session --------------------------------------------------------------------------


@router.get("/login")
async def login_page() -> HTMLResponse:
    return _page("login.html", error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    key = (await _form(request)).get("key", "").strip()
    workspace = await key_workspace(request.app, key) if 0 < len(key) <= 200 else None
    if workspace is None:
        return _page("login.html", 401, error="That key is unknown or revoked.")
    answer = RedirectResponse("/ui", 303, headers=HEADERS)
    secure = request.url.scheme == "https"
    answer.set_cookie(COOKIE, key, httponly=True, samesite="strict", secure=secure, path="/ui")
    return answer


@router.post("/logout")
async def logout(request: Request) -> Response:
    answer = _login()
    answer.delete_cookie(COOKIE, path="/ui")
    return answer


# --- journeys -------------------------------------------------------------------------


@router.get("")
async def journey_list(request: Request) -> Response:
    who = await _who(request)
    if who is None:
        return _login()
    workspace, key = who
    listed = []
    async with request.app.state.pool.acquire() as conn:
        for row in await journeys_store.journeys(conn, workspace, None, 200):
            journey = Journey.model_validate(row["definition"])
            tally = await metrics_store.tally(conn, workspace, row["id"], row["goal_epoch"])
            goal = None
            if journey.goal is not None:
                found = goal_metrics(
                    journey.goal, row["goal_epoch"], tally.epoch_profiles, tally.conversions
                )
                goal = {**found.model_dump(), "target_words": _target(found.target)}
            batch = await batches_store.latest(conn, workspace, row["id"], BatchKind.ACTIVATE)
            listed.append(
                {
                    **dict(row),
                    "enrolled": tally.enrolled,
                    "active": tally.by_status["running"],
                    "goal": goal,
                    "activation": dict(batch) if batch is not None else None,
                }
            )
    return _page("journeys.html", journeys=listed, workspace=workspace, csrf=_csrf(key))


def _target(target: dict[str, float] | None) -> str:
    if not target:
        return ""
    return f"{target['count']:g} conversions" if "count" in target else f"{target['percent']:g}%"


async def _map_context(request: Request, workspace: str, journey_id: str) -> dict[str, Any]:
    q = request.query_params
    since, until = q.get("since") or None, q.get("until") or None
    window = window_of(since, until)
    async with request.app.state.pool.acquire() as conn:
        row = await journeys.get(conn, workspace, journey_id)
        asked = q.get("version", "")
        # at most 9 digits: a version is a Postgres int
        version = int(asked) if asked.isdigit() and len(asked) <= 9 else row["version"]
        found = await journeys_store.version(conn, workspace, journey_id, version)
        if found is None:
            raise NotFound("version_not_found", f"Journey {journey_id!r} has no version {version}.")
        shown = Journey.model_validate(found["definition"])
        m = await journey_metrics_of(
            conn, request.app.state.settings, request.app.state.eligible_cache, workspace,
            journey_id, window, version if version != row["version"] else None, shown,
        )  # fmt: skip
        versions = await journeys_store.version_numbers(conn, workspace, journey_id)
    actions = {s.key: [describe_action(a) for a in s.actions] for s in shown.stages}
    stages = [{**s.model_dump(), "actions": actions.get(s.key, [])} for s in m.stages]
    query = urlencode(
        {k: v for k, v in (("version", version), ("since", since), ("until", until)) if v}
    )
    return {
        "id": journey_id, "name": row["name"], "status": row["status"], "m": m,
        "stages": stages, "version": version, "current": row["version"], "versions": versions,
        "since": since, "until": until, "query": query,
        "target_words": _target(m.goal.target if m.goal else None),
    }  # fmt: skip


@router.get("/journeys/{journey_id}")
async def journey_page(journey_id: str, request: Request) -> Response:
    who = await _who(request)
    if who is None:
        return _login()
    try:
        context = await _map_context(request, who[0], journey_id)
    except (NotFound, Invalid) as exc:
        return _page("journeys.html", 404, journeys=[], workspace=who[0], csrf=_csrf(who[1]),
                     error=exc.message)  # fmt: skip
    return _page("journey.html", workspace=who[0], csrf=_csrf(who[1]), **context)


@router.get("/journeys/{journey_id}/map")
async def journey_map(journey_id: str, request: Request) -> Response:
    who = await _who(request)
    if who is None:
        return Response(status_code=401, headers=HEADERS)
    try:
        context = await _map_context(request, who[0], journey_id)
    except (NotFound, Invalid):
        return Response(status_code=404, headers=HEADERS)
    return _page("map.html", **context)


@router.post("/journeys/{journey_id}/{change}")
async def change_journey(journey_id: str, change: str, request: Request) -> Response:
    who = await _checked_post(request)
    if who is None or change not in ("activate", "deactivate"):
        return Response("Forbidden: log in again.", 403, headers=HEADERS)
    state, settings = request.app.state, request.app.state.settings
    try:
        if change == "activate":
            await journeys.activate(
                state.pool, state.temporal, settings, who[0], journey_id, "web view"
            )
        else:
            await journeys.deactivate(
                state.pool, state.temporal, settings, who[0], journey_id, "web view", False
            )
    except (Conflict, NotFound, Invalid) as exc:
        return _page("journeys.html", 409, journeys=[], workspace=who[0], csrf=_csrf(who[1]),
                     error=exc.message)  # fmt: skip
    return RedirectResponse(f"/ui/journeys/{quote(journey_id)}", 303, headers=HEADERS)


# --- contacts -------------------------------------------------------------------------


@router.get("/journeys/{journey_id}/contacts")
async def contact_list(journey_id: str, request: Request) -> Response:
    who = await _who(request)
    if who is None:
        return _login()
    q = request.query_params
    stage = q.get("stage") or None
    status = q.get("status") if q.get("status") in [p.value for p in Phase] else None
    outcome = q.get("outcome") if q.get("outcome") in [o.value for o in Outcome] else None
    after = q.get("after") or ""
    entry = q.get("entry") or ""
    after_entry = int(entry) if entry.isdigit() and len(entry) < 10 else 0
    async with request.app.state.pool.acquire() as conn:
        try:
            row = await journeys.get(conn, who[0], journey_id)
        except NotFound:
            return Response(status_code=404, headers=HEADERS)
        items = await enrollments_store.select_page(
            conn, who[0], journey_id, after, status, outcome, 50, None, after_entry, stage
        )
    journey = Journey.model_validate(row["definition"])
    last = items[-1] if len(items) == 50 else None
    next_query = ""
    if last is not None:
        kept = {k: v for k, v in (("stage", stage), ("status", status), ("outcome", outcome)) if v}
        next_query = urlencode({**kept, "after": last["contact_id"], "entry": last["entry"]})
    return _page(
        "contacts.html", workspace=who[0], csrf=_csrf(who[1]), id=journey_id, name=row["name"],
        items=items, stage=stage, status=status, outcome=outcome,
        stage_keys=[s.key for s in journey.stages], statuses=[p.value for p in Phase],
        outcomes=[o.value for o in Outcome], next_cursor=last is not None, next_query=next_query,
    )  # fmt: skip


def _leaves(step: Any) -> list[str]:
    """The criteria explanation of a step (an exit, an end, a branch), leaf by leaf."""
    found: list[str] = []
    explanations = [step.explanation] if step.explanation else []
    explanations += [t.get("explanation") for t in step.detail.get("tried", []) or []]
    for explanation in explanations:
        for leaf in (explanation or {}).get("leaves", []):
            mark = "✓" if leaf.get("result") else "✗"
            found.append(f"{mark} {leaf.get('reason', '')}")
    return found


@router.get("/journeys/{journey_id}/contacts/{contact_id}")
async def contact_page(journey_id: str, contact_id: str, request: Request) -> Response:
    who = await _who(request)
    if who is None:
        return _login()
    pool, settings = request.app.state.pool, request.app.state.settings
    try:
        row = await journeys.get(pool, who[0], journey_id)
        detail = await _detail(pool, who[0], journey_id, contact_id, None)
    except NotFound:  # unknown journey or contact: the API's 404s
        return Response(status_code=404, headers=HEADERS)
    ui = settings.temporal_ui_url.rstrip("/")
    workflow = quote(detail.workflow_id or "", safe="")
    temporal = f"{ui}/namespaces/{quote(settings.temporal_namespace)}/workflows/{workflow}"
    return _page(
        "contact.html", workspace=who[0], csrf=_csrf(who[1]), id=journey_id, name=row["name"],
        contact_id=contact_id, d=detail, temporal_url=temporal, leaves=_leaves,
    )  # fmt: skip


@router.post("/journeys/{journey_id}/contacts/{contact_id}/unenroll")
async def unenroll(journey_id: str, contact_id: str, request: Request) -> Response:
    who = await _checked_post(request)
    if who is None:
        return Response("Forbidden: log in again.", 403, headers=HEADERS)
    state = request.app.state
    try:
        await enrolling.unenroll_contact(state.pool, state.temporal, who[0], journey_id, contact_id)
    except (Conflict, NotFound):
        pass
    target = f"/ui/journeys/{quote(journey_id)}/contacts/{quote(contact_id, safe='')}"
    return RedirectResponse(target, 303, headers=HEADERS)
