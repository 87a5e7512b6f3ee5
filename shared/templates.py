"""Message templates: Jinja2 in a sandbox, over the contact's properties.

`{{ contact.first_name | default("there") }}`: the variables are `contact`, the contact's
properties, and `trigger`, the event that started the entry of an event-triggered journey
(`{{ trigger.properties.cart_id }}`, `{{ trigger.occurred_at }}`; empty otherwise), and
`unsubscribe_url` in tracked emails. A missing property, even a nested one, renders
empty. The sandbox refuses attribute tricks (`{{ contact.__class__ }}`), so a template
written by a marketer cannot reach Python. HTML parts are autoescaped; subject and text are not.

It is also limited, so that a template cannot cost much (docs/reliability.md, "Security"):
no `lipsum`, `range` of at most MAX_RANGE items, `*` and `**` refused when their result
would be huge, and output cut off at `output_chars` (RenderError `template_too_costly`).
The hard limits (time and memory) are the renderer's process (services/rendering.py): the
API and the worker never render on their event loop.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_PART_CHARS = 100_000
MAX_RANGE = 10_000
"""Items a template's `range()` may produce."""
OUTPUT_CHARS = 256_000
"""What one part may render to, by default (NURTURE_RENDER_OUTPUT_CHARS)."""
MAX_INT_BITS = 4096
"""How large a number `*` and `**` may make."""

INVALID = "invalid_template"
TOO_COSTLY = "template_too_costly"


class TooCostly(Exception):
    """A template asked for more than a message may cost."""


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TooCostly(f"range() of {len(numbers)} items (at most {MAX_RANGE})")
    return numbers


class _Limited(SandboxedEnvironment):
    """The sandbox, with what makes a template expensive taken out or bounded."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=ChainableUndefined)
        self.globals.pop("lipsum", None)
        self.globals["range"] = _bounded_range

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int):
                if right > 0 and abs(left) > 1 and abs(left).bit_length() * right > MAX_INT_BITS:
                    raise TooCostly(f"{left} ** {right} is too large a number")
            return left**right
        sizes = [len(x) for x in (left, right) if isinstance(x, (str, list, tuple))]
        counts = [x for x in (left, right) if isinstance(x, int) and not isinstance(x, bool)]
        if sizes and counts and sizes[0] * max(counts[0], 0) > OUTPUT_CHARS:
            raise TooCostly(f"repeating {sizes[0]} items {counts[0]} times is too long")
        if len(counts) == 2 and sum(abs(n).bit_length() for n in counts) > MAX_INT_BITS:
            raise TooCostly("the product is too large a number")
        return left * right


_plain = _Limited(autoescape=False)
_html = _Limited(autoescape=True)


@lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> Template:
    return (_html if html else _plain).from_string(source)


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
    """A template part that cannot be rendered: `part` names it, the message says why, and
    `reason` is `invalid_template` or `template_too_costly`."""

    def __init__(self, part: str, message: str, reason: str = INVALID) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part
        self.message = message
        self.reason = reason


class Rendered(BaseModel):
    subject: str | None = None
    html: str | None = None
    text: str | None = None


def render_text(
    source: str,
    contact: dict[str, Any],
    *,
    html: bool = False,
    output_chars: int = OUTPUT_CHARS,
    variables: dict[str, Any] | None = None,
) -> str:
    """Renders one part; raises RenderError when it cannot. `variables`: `trigger` (the
    event that started the entry, empty for other journeys) and `unsubscribe_url`."""
    given = {"trigger": {}, "unsubscribe_url": "", **(variables or {})}
    try:
        chunks: list[str] = []
        size = 0
        for chunk in _compiled(source, html).generate(contact=contact, **given):
            size += len(chunk)
            if size > output_chars:
                raise TooCostly(f"it renders more than {output_chars} characters")
            chunks.append(chunk)
        return "".join(chunks)
    except TooCostly as exc:
        raise RenderError("template", str(exc), TOO_COSTLY) from exc
    except MemoryError as exc:
        raise RenderError(
            "template", "it needs more memory than a message may", TOO_COSTLY
        ) from exc
    except TemplateSyntaxError as exc:
        raise RenderError(
            "template", f"{exc.message or 'syntax error'} (line {exc.lineno})"
        ) from exc
    except TemplateError as exc:
        raise RenderError("template", str(exc) or type(exc).__name__) from exc
    except Exception as exc:  # e.g. {{ contact.age + 1 }} with a text age
        raise RenderError("template", f"{type(exc).__name__}: {exc}") from exc


def render_parts(
    parts: dict[str, str | None],
    contact: dict[str, Any],
    output_chars: int = OUTPUT_CHARS,
    variables: dict[str, Any] | None = None,
) -> dict[str, str | None]:
    """Every part over the contact (a part named `html` is autoescaped); RenderError names
    the failing part."""
    out: dict[str, str | None] = {}
    for part, source in parts.items():
        if source is None:
            out[part] = None
            continue
        try:
            out[part] = render_text(
                source, contact, html=part == "html", output_chars=output_chars, variables=variables
            )
        except RenderError as exc:
            raise RenderError(part, exc.message, exc.reason) from exc
    return out


def render(template: TemplateBody, contact: dict[str, Any]) -> Rendered:
    """Every part of the template over the contact, in this process (the renderer's child
    process and tests; the API and the worker go through services/rendering.py)."""
    return Rendered(**render_parts(template.model_dump(), contact))
