"""The phases of "0. CPU" take turns: nurture's enrollments and bare's; nurture's exits,
bare's and bare's with the exit's contract; in rounds whose order reverses every other
round, so that the machine's drift during a run falls on each alike (a stand-in for the
stack's CPU counters: no servers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bench import cpu


class _Counters:
    """What `_cpu` reads of a stack: CPU seconds per process, here advanced by each unit."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"worker": 0.0}

    def cpu_seconds(self) -> dict[str, float]:
        return dict(self.seconds)


async def test_rounds_take_turns_and_cover_each_pool_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cpu, "QUIET_WINDOW", 0.01)
    monkeypatch.setattr(cpu, "RATE", 10_000.0)
    stack = _Counters()
    order: list[str] = []
    taken: dict[str, list[int]] = {"nurture": [], "bare": [], "leave": []}

    def exit_of(kind: str, cost: float) -> Callable[[list[Any]], Awaitable[list[float]]]:
        def batch(part: list[Any]) -> Awaitable[list[float]]:
            order.append(kind)

            async def one(i: int) -> float:
                taken[kind].append(part[i])
                stack.seconds["worker"] += cost
                return float(part[i])

            return cpu.paced(len(part), one, cpu.RATE)

        return batch

    pools = {kind: list(range(40)) for kind in taken}
    done = await cpu._alternated(
        stack,  # type: ignore[arg-type]
        {"nurture": exit_of("nurture", 0.003), "bare": exit_of("bare", 0.002),
         "leave": exit_of("leave", 0.001)},
        pools,
    )  # fmt: skip

    assert order == ["nurture", "bare", "leave", "leave", "bare", "nurture"] * 2
    assert all(sorted(taken[kind]) == pools[kind] for kind in taken)
    assert sorted(done["nurture"][0]) == [float(i) for i in range(40)]
    assert done["nurture"][1]["worker"] == pytest.approx(40 * 0.003)
    assert done["leave"][1]["worker"] == pytest.approx(40 * 0.001)
