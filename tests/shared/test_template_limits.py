"""The limited sandbox refuses what made a template expensive before it costs anything:
`lipsum`, a huge `range`, `*`/`**` building huge strings or numbers, output past the cap."""

from __future__ import annotations

import pytest

from shared.templates import INVALID, TOO_COSTLY, RenderError, render_text


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ lipsum(15000)|length }}", INVALID),  # lipsum is gone
        ('{{ "a" * 10**9 }}', TOO_COSTLY),
        ("{{ [1] * 10**7 }}", TOO_COSTLY),
        ("{{ 2 ** 100000 }}", TOO_COSTLY),
        ("{{ 10**4000 * 10**4000 }}", TOO_COSTLY),
        ("{% for i in range(10**6) %}{% endfor %}", TOO_COSTLY),
        ('{% for i in range(5000) %}{{ "y" * 100 }}{% endfor %}', TOO_COSTLY),
    ],
)
def test_costly_templates_are_refused(source: str, reason: str) -> None:
    with pytest.raises(RenderError) as refused:
        render_text(source, {})
    assert refused.value.reason == reason, refused.value.message


def test_ordinary_templates_still_render() -> None:
    source = '{% for i in range(3) %}{{ i }}{% endfor %} {{ "ab" * 2 }} {{ 2 ** 10 }} {{ 3 * 4 }}'
    assert render_text(source, {}) == "012 abab 1024 12"
    assert render_text("{{ contact.name | upper }}", {"name": "ada"}) == "ADA"


def test_the_output_cap_is_a_setting() -> None:
    assert render_text("{{ 'x' * 10 }}", {}, output_chars=10) == "x" * 10
    with pytest.raises(RenderError) as refused:
        render_text("{{ 'x' * 10 }}!", {}, output_chars=10)
    assert refused.value.reason == TOO_COSTLY
