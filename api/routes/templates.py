"""Message templates, per workspace: PUT checks that every part renders, GET reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from api.deps import PoolDep, SettingsDep, WorkspaceDep
from api.errors import ApiError
from services.rendering import renderer
from shared.engagement_metrics import TemplatePerformance, template_figures
from shared.templates import TEMPLATE_NAME, RenderError, TemplateBody
from store import templates as templates_store
from store import tracking as tracking_store

router = APIRouter(prefix="/v1/templates", tags=["templates"])


class TemplateIn(TemplateBody):
    """`subject` + `html`/`text` for email, `text` for SMS and WhatsApp. `sample` is a
    contact's properties to check the rendering with (default: a contact with none)."""

    sample: dict[str, Any] = Field(default_factory=dict)


class TemplateOut(TemplateBody):
    name: str
    created_at: datetime
    updated_at: datetime


def _check_name(name: str) -> None:
    if not TEMPLATE_NAME.fullmatch(name):
        raise ApiError(
            422,
            "invalid_template_name",
            "A template name is 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit.",
        )


@router.put(
    "/{name}",
    response_model=TemplateOut,
    operation_id="put_template",
    summary="Save a message template",
)
async def put_template(
    name: str, body: TemplateIn, pool: PoolDep, workspace: WorkspaceDep, settings: SettingsDep
) -> Any:
    """Saves the template once every part renders (against `sample`), within the limits
    of a render (422 `template_too_costly`)."""
    _check_name(name)
    if body.text is None and body.html is None:
        raise ApiError(
            422, "empty_template", "A template needs `text` (SMS, WhatsApp, email) or `html`."
        )
    problems = []
    for part in ("subject", "html", "text"):
        source = getattr(body, part)
        if source is None:
            continue
        try:
            await renderer(settings).render_parts({part: source}, body.sample)
        except RenderError as exc:
            problems.append({"path": part, "reason": exc.reason, "message": exc.message})
    if problems:
        parts = ", ".join(p["path"] for p in problems)
        raise ApiError(
            422,
            problems[0]["reason"],
            f"The template cannot be rendered ({parts}): {problems[0]['message']}.",
            problems=problems,
        )
    row = await templates_store.upsert(pool, workspace, name, body.subject, body.html, body.text)
    return dict(row) if row is not None else None


@router.get(
    "",
    response_model=list[TemplateOut],
    operation_id="list_templates",
    summary="List the message templates",
)
async def list_templates(pool: PoolDep, workspace: WorkspaceDep) -> Any:
    return [dict(r) for r in await templates_store.templates(pool, workspace)]


@router.get(
    "/{name}",
    response_model=TemplateOut,
    operation_id="get_template",
    summary="Get a message template",
)
async def get_template(name: str, pool: PoolDep, workspace: WorkspaceDep) -> Any:
    row = await templates_store.template(pool, workspace, name)
    if row is None:
        raise ApiError(404, "template_not_found", f"No template named {name!r}.")
    return dict(row)


@router.get(
    "/{name}/performance",
    operation_id="template_performance",
    summary="How a template's messages perform, in every journey",
)
async def template_performance(
    name: str, pool: PoolDep, workspace: WorkspaceDep
) -> TemplatePerformance:
    """Per journey and stage that sent it, and in all: sent, delivered, failed, unique
    opens and clicks by people and by machines, click-to-open rate, unsubscribes and
    conversions (docs/metrics.md, "Message performance")."""
    if await templates_store.template(pool, workspace, name) is None:
        raise ApiError(404, "template_not_found", f"No template named {name!r}.")
    rows = await tracking_store.performance(pool, workspace, None, name)
    return template_figures(name, rows)


@router.delete(
    "/{name}", status_code=204, operation_id="delete_template", summary="Delete a message template"
)
async def delete_template(name: str, pool: PoolDep, workspace: WorkspaceDep) -> None:
    if not await templates_store.delete(pool, workspace, name):
        raise ApiError(404, "template_not_found", f"No template named {name!r}.")
