"""2. History events per action, per action type, read from the histories of real runs.

For each action type, two journeys run: one with the action once, one with it three times
(then `go_to success`); the difference in history length over the two extra actions is
what one more such action costs. The bare baseline is measured the same way: workflows
with one and three activities (an activity action's minimum: scheduled, started,
completed, and the workflow task that follows) and with one and three timers (a wait's
minimum). A `go_to`, a `branch` and a `split` need no event at all in Temporal (they are
decisions of the workflow): their minimum is 0, so their figure is the absolute count.

The whole 3-action journey's history is compared with the bare workflow that does the
same (one activity, one timer) as well.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench import journeys
from bench.baseline import BARE_JOURNEY, BareInput
from bench.report import Figure
from bench.stack import BASELINE_QUEUE, Stack

SHORT = "PT0.2S"

ACTIONS: dict[str, dict[str, Any]] = {
    "send_message": journeys.SEND,
    "create_task": {"type": "create_task", "title": "Call {{ contact.id }}", "assign_to": "owner"},
    "set_property": {"type": "set_property", "property": "plan", "value": "pro"},
    "send_notification": {"type": "send_notification", "to": ["team:sales"], "message": "hi"},
    "wait": {"type": "wait", "duration": SHORT},
    "wait_for_event": {
        "type": "wait_for_event",
        "event": {"type": "demo_requested"},
        "timeout": SHORT,
    },
}
# decisions of the workflow: a branch no path of which holds and a split whose one live
# variant continues, so that each goes on with the next action
DECISIONS: dict[str, dict[str, Any]] = {
    "branch": {
        "type": "branch",
        "name": "b",
        "paths": [{"name": "p", "when": {"list": "nobody-is-in-this-list"}, "go_to": "success"}],
    },
    "split": {
        "type": "split",
        "name": "s",
        "variants": [{"name": "A", "percent": 100}, {"name": "B", "percent": 0}],
    },
}
MINIMUM_KIND = {
    "send_message": "activity",
    "create_task": "activity",
    "set_property": "activity",
    "send_notification": "activity",
    "wait": "timer",
    "wait_for_event": "timer",
}


def _repeated(kind: str, times: int) -> dict[str, Any]:
    if kind == "go_to":
        # a chain of stages, each jumping to the next: `times` go_tos into stages
        stages = [
            {
                "key": f"s{i}",
                "value": f"s{i}",
                "actions": [{"type": "go_to", "target": f"s{i + 1}"}],
            }
            for i in range(1, times)
        ]
        stages.append({"key": f"s{times}", "value": f"s{times}", "actions": [journeys.END]})
        first = {"type": "go_to", "target": "s1"}
        return journeys.journey([first], stages=stages)
    if kind in DECISIONS:  # names are unique in a journey
        each = [{**DECISIONS[kind], "name": f"{kind}{i}"} for i in range(times)]
        return journeys.journey([*each, journeys.END])
    return journeys.journey([ACTIONS[kind]] * times + [journeys.END])


async def _events(client: Client, workflow_id: str) -> list[str]:
    handle = client.get_workflow_handle(workflow_id)
    await handle.result()
    history = await handle.fetch_history()
    return [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]


async def _journey_events(stack: Stack, definition: dict[str, Any]) -> list[str]:
    journey_id = await journeys.create_active(stack.http, definition)
    [contact] = stack.new_contacts(1, "hist")
    await journeys.create_contacts(stack.http, [contact])
    [workflow_id] = await journeys.enroll_all(stack.api, journey_id, [contact])
    return await _events(stack.temporal, workflow_id)


async def _bare_events(stack: Stack, activities: int, timers: int) -> list[str]:
    handle = await stack.temporal.start_workflow(
        BARE_JOURNEY,
        BareInput(activities=activities, timers=timers, timer_seconds=0.2),
        id=f"bare-history-{uuid.uuid4().hex[:8]}",
        task_queue=BASELINE_QUEUE,
    )
    return await _events(stack.temporal, handle.id)


async def run(
    stack: Stack, sample_ids: list[str] | None = None
) -> tuple[list[Figure], dict[str, Any]]:
    kinds = [*ACTIONS, "go_to", *DECISIONS]
    runs = await asyncio.gather(
        *(_journey_events(stack, _repeated(kind, n)) for kind in kinds for n in (1, 3))
    )
    bare = await asyncio.gather(
        _bare_events(stack, 1, 0),
        _bare_events(stack, 3, 0),
        _bare_events(stack, 0, 1),
        _bare_events(stack, 0, 3),
        _bare_events(stack, 1, 1),
    )
    minimum = {
        "activity": (len(bare[1]) - len(bare[0])) / 2,
        "timer": (len(bare[3]) - len(bare[2])) / 2,
    }
    figures: list[Figure] = []
    details: dict[str, Any] = {"minimum": minimum, "per_action": {}}
    for index, kind in enumerate(kinds):
        once, thrice = runs[2 * index], runs[2 * index + 1]
        per_action = (len(thrice) - len(once)) / 2
        extra = Counter(thrice) - Counter(once)
        details["per_action"][kind] = {
            "events": per_action,
            "one": len(once),
            "three": len(thrice),
            "extra_events_for_two_more": dict(extra),
        }
        if kind == "go_to" or kind in DECISIONS:
            what = "go_to (into a stage)" if kind == "go_to" else f"{kind} (continuing)"
            figures.append(
                Figure(
                    "2. history",
                    f"events per {what}",
                    per_action,
                    "events",
                    target=0,
                    on="value",
                    at_least=False,
                    note="Temporal needs none",
                )
            )
            continue
        figures.append(
            Figure(
                "2. history",
                f"events per {kind}",
                per_action,
                "events",
                baseline=minimum[MINIMUM_KIND[kind]],
                baseline_name=f"bare {MINIMUM_KIND[kind]}",
                target=1.15,
                at_least=False,
            )
        )
    whole = await _journey_events(stack, journeys.three_actions(SHORT))
    figures.append(
        Figure(
            "2. history",
            "events per 3-action enrollment",
            len(whole),
            "events",
            baseline=len(bare[4]),
            baseline_name="bare activity+timer",
            target=1.15,
            at_least=False,
        )
    )
    details["three_actions"] = {"nurture": Counter(whole), "bare": Counter(bare[4])}
    details["three_actions_sequence"] = whole
    return figures, details
