"""Declaring a split's winner, and reading a journey's experiments for `/metrics`
(docs/metrics.md, "Experiments"). A split with `winner.auto` is checked whenever one of
its counts moves (a draw, a goal met), in the transaction that moved it; once declared,
enrollments started afterwards draw over the winner's share (`shared.decisions`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.experiment_metrics import (
    Counts,
    Declared,
    ExperimentMetrics,
    experiments,
    snapshot,
    splits_of,
    winner_now,
)
from shared.journey import Journey
from store import experiments as experiments_store
from store.db import Queryable


async def check_winner(
    conn: Queryable, ws: str, journey_id: str, journey: Journey, split_name: str, version: int
) -> str | None:
    """Declares the split's winner if one is ahead now (once ever); returns it."""
    split = next((s for _, s in splits_of(journey) if s.name == split_name), None)
    if split is None or split.winner is None or not split.winner.auto:
        return None
    if await experiments_store.is_declared(conn, ws, journey_id, split_name):
        return None
    counts: Counts = {
        r["variant"]: (r["entered"], r["converted"], r["counted"])
        for r in await experiments_store.stats(conn, ws, journey_id, split_name)
    }
    name = winner_now(split, counts)
    if name is None:
        return None
    figures = snapshot(split, counts)
    if await experiments_store.declare(conn, ws, journey_id, split_name, name, version, figures):
        return name
    return None


async def declared(conn: Queryable, ws: str, journey_id: str) -> dict[str, Declared]:
    return {
        r["split"]: Declared(
            variant=r["variant"],
            version=r["version"],
            declared_at=r["declared_at"],
            figures=r["figures"],
        )
        for r in await experiments_store.winners(conn, ws, journey_id)
    }


async def metrics(
    conn: Queryable,
    ws: str,
    journey_id: str,
    journey: Journey,
    since: datetime | None = None,
    until: datetime | None = None,
    version: int | None = None,
) -> list[ExperimentMetrics]:
    """The journey's splits with their figures (narrowed to draws in a window or on a
    version when asked)."""
    if not splits_of(journey):
        return []
    counts: dict[str, Counts] = {}
    rows = await experiments_store.figures(conn, ws, journey_id, since, until, version)
    for r in rows:
        counts.setdefault(r["split"], {})[r["variant"]] = (
            r["entered"],
            r["converted"],
            r["counted"],
        )
    return experiments(journey, counts, await declared(conn, ws, journey_id))


def winners_of(rows: list[Any]) -> dict[str, str]:
    return {r["split"]: r["variant"] for r in rows}


def auto_splits(journey: Journey) -> bool:
    """Whether a split of the journey declares its winner itself."""
    return any(s.winner is not None and s.winner.auto for _, s in splits_of(journey))
