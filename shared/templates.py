"""Message templates: Jinja2 in a sandbox, over the contact's properties.

`{{ contact.first_name | default("there") }}`: the only variable is `contact`, the
contact's properties (a missing property, even a nested one, renders empty). The sandbox
refuses attribute tricks (`{{ contact.__class__ }}`), so a template written by a
marketer cannot reach Python. HTML parts are autoescaped; subject and text are not.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_PART_CHARS = 100_000

_plain = SandboxedEnvironment(autoescape=False, undefined=ChainableUndefined)
_html = SandboxedEnvironment(autoescape=True, undefined=ChainableUndefined)


class TemplateBody(BaseModel):
    """A template as stored: `subject` + `html`/`text` for email, `text` for SMS and
    WhatsApp. `sample` (not stored) is a contact to check the rendering against."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=1000)
    html: str | None = Field(default=None, max_length=MAX_PART_CHARS)
    text: str | None = Field(default=None, max_length=MAX_PART_CHARS)

    @field_validator("subject", "html", "text")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("text cannot contain NUL characters")
        return value


class RenderError(Exception):
    """A template part that cannot be rendered: `part` names it, the message says why."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part
        self.message = message


class Rendered(BaseModel):
    subject: str | None = None
    html: str | None = None
    text: str | None = None


def render_text(source: str, contact: dict[str, Any], *, html: bool = False) -> str:
    """Renders one part; raises RenderError when it cannot."""
    env = _html if html else _plain
    try:
        return env.from_string(source).render(contact=contact)
    except TemplateSyntaxError as exc:
        raise RenderError(
            "template", f"{exc.message or 'syntax error'} (line {exc.lineno})"
        ) from exc
    except TemplateError as exc:
        raise RenderError("template", str(exc) or type(exc).__name__) from exc
    except Exception as exc:  # e.g. {{ contact.age + 1 }} with a text age
        raise RenderError("template", f"{type(exc).__name__}: {exc}") from exc


def render(template: TemplateBody, contact: dict[str, Any]) -> Rendered:
    """Every part of the template over the contact; RenderError names the failing part."""
    out: dict[str, str | None] = {}
    for part in ("subject", "html", "text"):
        source = getattr(template, part)
        if source is None:
            out[part] = None
            continue
        try:
            out[part] = render_text(source, contact, html=part == "html")
        except RenderError as exc:
            raise RenderError(part, exc.message) from exc
    return Rendered(**out)


def render_lenient(source: str, contact: dict[str, Any]) -> str:
    """Task titles and notification messages: the text as written when it cannot render
    (they were checked when the journey was saved)."""
    try:
        return render_text(source, contact)
    except RenderError:
        return source
