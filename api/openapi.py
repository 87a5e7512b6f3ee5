"""The API's own description: the OpenAPI document (with the journey's JSON Schema and
examples of the bodies people write by hand) and its page at `/docs`, served with every
asset from the app itself, so it renders on a machine without internet."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from shared.journey import Journey

DOCS_ASSETS = "/docs/assets"
"""Swagger UI's scripts, styles and icons (from the swagger-ui-py wheel), served here."""

JOURNEY_EXAMPLE: dict[str, Any] = {
    "name": "Trial to paid",
    "owner": "marketing@acme.test",
    "stage_property": "journey_stage",
    "eligible_lists": ["trial-users"],
    "start_stage": "onboarding",
    "enroll_empty_stage": True,
    "stages": [
        {
            "key": "onboarding",
            "value": "onboarding",
            "actions": [
                {
                    "type": "send_message",
                    "channels": ["email"],
                    "template": "welcome",
                    "marketing": True,
                },
                {"type": "wait", "duration": "P2D"},
                {
                    "type": "wait_for_event",
                    "event": {"type": "form_submitted", "target": "demo-request"},
                    "timeout": "P5D",
                    "on_event": {"go_to": "engaged"},
                    "on_timeout": {"go_to": "nudge"},
                },
            ],
        },
        {
            "key": "nudge",
            "value": "nudge",
            "actions": [
                {
                    "type": "send_message",
                    "channels": ["email", "sms"],
                    "template": "nudge",
                    "marketing": True,
                },
                {"type": "wait", "duration": "P3D"},
                {"type": "go_to", "target": "failure:churned"},
            ],
        },
        {
            "key": "engaged",
            "value": "engaged",
            "actions": [
                {
                    "type": "create_task",
                    "title": "Call {{ contact.first_name }}",
                    "assign_to": "owner",
                },
                {"type": "set_property", "property": "lead_status", "value": "sales_ready"},
                {"type": "send_notification", "to": ["team:sales"], "message": "Demo requested"},
                {"type": "wait", "duration": "P7D"},
                {"type": "go_to", "target": "success"},
            ],
        },
    ],
    "ends": {
        "success": {"value": "customer", "add_to_list": "customers"},
        "failure": [{"value": "churned"}],
    },
    "goal": {
        "criteria": {
            "any": [
                {"property": "lifecycle_stage", "op": "eq", "value": "customer"},
                {"event": "form_submitted", "target": "pricing", "min_count": 1},
                {
                    "all": [
                        {"event": "page_viewed", "min_count": 5},
                        {"list": "newsletter", "member": True},
                    ]
                },
            ]
        },
        "target": {"percent": 20},
        "attribution_window": "P3D",
    },
    "suppression_lists": ["competitors", "employees"],
    "exit": {"when_removed_from_eligible_lists": True, "when_stage_matches_end": True},
}
"""The journey of `examples/trial_to_paid.json` (a test keeps the two equal)."""

JOURNEY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Journey"},
                "example": JOURNEY_EXAMPLE,
            }
        },
    }
}
"""Journey bodies are validated by our own validator (every problem at once, by path), so
FastAPI does not see their model: the routes that take one declare it with this."""


def document_journey_schema(app: FastAPI) -> None:
    """Puts the journey's JSON Schema into the OpenAPI document."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            journey = Journey.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(journey.pop("$defs", {}))
            components["Journey"] = journey
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def serve_docs(app: FastAPI) -> None:
    """`/docs`: Swagger UI with its assets served by the app (the app is built with
    `docs_url=None` and `redoc_url=None`: FastAPI's own pages load them from a CDN)."""
    static = resources.files("swagger_ui") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(static)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="nurture API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )
