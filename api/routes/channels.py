"""A workspace's channel settings: webhook (URL + signing secret), time zone, send
window, frequency cap. The secret is write-only: GET says whether one is set."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import PoolDep, SettingsDep, WorkspaceDep
from api.errors import ApiError
from services.outbound import save_time_refusal
from shared.channels import ChannelSettings, FrequencyCap, sender_refusal
from shared.destinations import FORBIDDEN, shown
from shared.journey import SendWindow
from store import workspaces as workspaces_store

router = APIRouter(prefix="/v1/settings/channels", tags=["channels"])


class WebhookOut(BaseModel):
    url: str
    secret_set: bool


class ChannelSettingsOut(BaseModel):
    webhook: WebhookOut | None
    email_from: str | None
    timezone: str
    send_window: SendWindow | None
    frequency_cap: FrequencyCap | None


def _out(settings: ChannelSettings) -> dict[str, Any]:
    hook = settings.webhook
    return {
        "webhook": {"url": shown(str(hook.url)), "secret_set": True} if hook else None,
        "email_from": settings.email_from,
        "timezone": settings.timezone,
        "send_window": settings.send_window,
        "frequency_cap": settings.frequency_cap,
    }


@router.get(
    "",
    response_model=ChannelSettingsOut,
    operation_id="get_channel_settings",
    summary="The workspace's channel settings",
)
async def get_channel_settings(pool: PoolDep, workspace: WorkspaceDep) -> Any:
    return _out(await workspaces_store.channel_settings(pool, workspace))


@router.put(
    "",
    response_model=ChannelSettingsOut,
    operation_id="put_channel_settings",
    summary="Replace the workspace's channel settings",
)
async def put_channel_settings(
    body: ChannelSettings, pool: PoolDep, workspace: WorkspaceDep, settings: SettingsDep
) -> Any:
    """Replaces the workspace's channel settings (fields left out take their defaults).
    `email_from` must be at a domain the operator allowed for the workspace (422
    `sender_domain_not_allowed`); the webhook may not point at this machine, a private or
    link-local network, nor carry credentials (422 `webhook_url_forbidden`)."""
    if body.webhook is not None:
        url = str(body.webhook.url)
        if forbidden := await save_time_refusal(url, settings.webhook_allowance):
            raise ApiError(422, FORBIDDEN, f"The webhook URL is not allowed: {forbidden}.")
    if body.email_from:
        allowed = await workspaces_store.sender_domains(pool, workspace)
        if refused := sender_refusal(body.email_from, allowed):
            reason, message = refused
            raise ApiError(422, reason, message, allowed_domains=allowed)
    await workspaces_store.save_channel_settings(pool, workspace, body)
    return _out(body)
