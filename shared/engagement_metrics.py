"""Message performance (docs/metrics.md, "Message performance"): per message of a journey,
what was sent and delivered, who opened and clicked (people and machines apart: mail
privacy proxies and scanners open and click on their own), unsubscribed, and converted.
Pure: `store.tracking.performance` reads the counts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class MessagePerformance(BaseModel):
    stage: str | None
    template: str | None
    variant: str | None = None
    """The split variant(s) the contacts who got it had drawn, if any."""
    journey_id: str | None = None
    sent: int
    delivered: int
    failed: int
    opens: int
    """Unique opens by people (the message opened by a person at least once)."""
    machine_opens: int
    """Unique opens most likely made by a mail privacy proxy or a security scanner."""
    clicks: int
    """Unique clicks by people."""
    machine_clicks: int
    click_to_open_rate: float
    """`clicks` in % of `opens`."""
    unsubscribes: int
    conversions: int
    """Contacts who received it and whom the journey counted as conversions."""


def pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def message_figures(row: Any) -> MessagePerformance:
    opens, clicks = row["opens_human"], row["clicks_human"]
    return MessagePerformance(
        stage=row["stage"],
        template=row["template"],
        variant=row["variant"],
        journey_id=row["journey_id"],
        sent=row["sent"],
        delivered=row["delivered"],
        failed=row["failed"],
        opens=opens,
        machine_opens=row["opens_machine"],
        clicks=clicks,
        machine_clicks=row["clicks_machine"],
        click_to_open_rate=pct(clicks, opens),
        unsubscribes=row["unsubscribes"],
        conversions=row["conversions"],
    )


class TemplatePerformance(BaseModel):
    template: str
    total: MessagePerformance
    journeys: list[MessagePerformance]


def template_figures(name: str, rows: list[Any]) -> TemplatePerformance:
    """The template's messages in every journey, and their sum."""
    each = [message_figures(r) for r in rows]
    keys = ("sent", "delivered", "failed", "opens", "machine_opens", "clicks",
            "machine_clicks", "unsubscribes", "conversions")  # fmt: skip
    sums = {k: sum(getattr(m, k) for m in each) for k in keys}
    total = MessagePerformance(
        stage=None,
        template=name,
        click_to_open_rate=pct(sums["clicks"], sums["opens"]),
        **sums,
    )
    return TemplatePerformance(template=name, total=total, journeys=each)
