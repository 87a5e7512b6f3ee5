"""EnrollmentWorkflow: one contact's way through one journey (DESIGN §3 and §4).

The main loop reads like the journey: enter the start stage; before every action check
the exits; run the action with its handler (one short method per action type); go where
it says; at an end or an exit write the outcome; then listen for the goal until the
attribution window closes.

Signal handlers only update the contact and decide: they set a pending exit or stage move,
and the loop acts on it between actions. Waits race their timer against `wait_condition`,
so an exit or a stage move interrupts them at once; a running activity is cancelled by an
exit and the cancellation is awaited.

Bookkeeping that has no side effect of its own (stage entries, wait and go_to log rows)
is queued in `state.pending` and rides along with the next activity; a local activity
writes it only when the enrollment is about to block (or end) with read models pending.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from shared import search_attributes as sa
    from shared.contact import ContactEvent
    from shared.criteria import (
        AllNode,
        AnyNode,
        Criteria,
        ListLeaf,
        PropertyLeaf,
        apply_event,
        evaluate,
        explain,
        matches_event,
    )
    from shared.enrollment import (
        AddToList,
        Complete,
        ContactChanged,
        Convert,
        Effect,
        EndEnrollment,
        EnrollmentInput,
        EnrollmentRef,
        EnrollmentState,
        EnrollmentView,
        EnterStage,
        HeldValue,
        Leaving,
        Outcome,
        OwnWrite,
        Phase,
        StepRecord,
        Unenroll,
        WriteProperty,
    )
    from shared.journey import (
        Action,
        CreateTask,
        GoTo,
        Journey,
        SendMessage,
        SendNotification,
        SetProperty,
        Wait,
        WaitForEvent,
        resolve_target,
    )
    from workers.steps import (
        CREATE_TASK,
        RECORD_STEPS,
        SEND_MESSAGE,
        SEND_NOTIFICATION,
        SET_PROPERTY,
        CreateTaskRequest,
        SendMessageRequest,
        SendNotificationRequest,
        SendOutcome,
        StepRequest,
        StepResult,
    )

DELIVERY_FAILED = "DeliveryFailed"
"""ApplicationError type a channel raises (non-retryable) when a provider refuses a send."""

CHANNELS_PATCH = "channels-v1"
"""Issue 8: sends wait for the send window / frequency cap, and a refused delivery skips
the action or ends the enrollment, as the journey says."""
OWN_WRITES_PATCH = "caller-stage-wins-v1"
"""A caller's stage value that raced the journey's own stage write applies
(`_settle_own_writes`); older histories kept the journey's value."""
MIN_DEFERRAL = timedelta(seconds=1)

ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[DELIVERY_FAILED],
)
ACTIVITY_TIMEOUT = timedelta(minutes=2)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
RECORD_TIMEOUT = timedelta(seconds=30)


@dataclass(frozen=True)
class Next:
    """An action finished: continue with the stage's next action, or jump to `go_to`."""

    go_to: str | None = None


Handler = Callable[[Any], Awaitable[Next | None]]
"""Runs one action; None means it was interrupted (exit, stage move or continue-as-new)
and the loop decides what comes next."""


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _iso(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "" if days else "T0S")


def describe_action(action: Action) -> str:
    """An action in words, for current details, activity summaries and the state query."""
    match action:
        case SendMessage():
            kind = "marketing " if action.marketing else ""
            return f"send {kind}{'+'.join(action.channels)} {action.template!r}"
        case Wait():
            return f"wait {_iso(action.duration)}"
        case WaitForEvent():
            return f"wait up to {_iso(action.timeout)} for {action.event.describe()}"
        case CreateTask():
            return f"create task {action.title!r} for {action.assign_to}"
        case SetProperty():
            return f"set {action.property} = {action.value!r}"
        case SendNotification():
            return f"notify {', '.join(action.to)}: {action.message!r}"
        case GoTo():
            return f"go to {action.target}"
    return str(action.type)


@workflow.defn(name="EnrollmentWorkflow")
class EnrollmentWorkflow:
    @workflow.init
    def __init__(self, input: EnrollmentInput) -> None:
        self.input = input
        self.journey: Journey = input.journey
        self.ref = EnrollmentRef(
            workspace=input.workspace,
            journey_id=input.journey_id,
            contact_id=input.contact_id,
            workflow_id=workflow.info().workflow_id,
            goal_epoch=input.goal_epoch,
        )
        self.s = input.carried or EnrollmentState(
            contact=input.contact,
            snapshot_seq=input.contact.event_seq,
            event_watermark=input.contact.event_seq,
        )
        self.details = ""
        self._stage_attribute = workflow.info().typed_search_attributes.get(sa.JOURNEY_STAGE)
        self._handlers: dict[str, Handler] = {
            "send_message": self._send_message,
            "wait": self._wait,
            "wait_for_event": self._wait_for_event,
            "create_task": self._create_task,
            "set_property": self._set_property,
            "send_notification": self._send_notification,
            "go_to": self._go_to_action,
        }

    @workflow.run
    async def run(self, input: EnrollmentInput) -> EnrollmentView:
        if self.s.phase is Phase.RUNNING:
            await self._run_journey()
        if self.s.phase is Phase.IN_ATTRIBUTION_WINDOW:
            await self._attribution_window()
        return self.state()

    # --- the journey --------------------------------------------------------------------

    async def _run_journey(self) -> None:
        if self.s.stage is None:
            self._enter_stage(self.journey.start_stage, reason="enrolled")
        while self.s.leaving is None:
            self._check_exits()
            if self.s.leaving is not None:
                break
            if self._continue_as_new_due():
                await self._continue_as_new()
            if self.s.stage_move is not None:
                self._enter_stage(self.s.stage_move, reason=self.s.stage_move_reason or "")
                continue
            action = self._current_action()
            if action is None:
                await self._stay_in_stage()
                continue
            self._describe(describe_action(action))
            step = await self._handlers[action.type](action)
            if step is not None and self.s.leaving is None:
                self._after(step)
        await self._leave()

    def _after(self, step: Next) -> None:
        if step.go_to is None:
            self.s.action_index += 1
            return
        target = resolve_target(step.go_to)
        if target.kind == "stage" and target.stage_key is not None:
            self._enter_stage(target.stage_key, reason=f"go_to from {self.s.stage}")
        elif target.kind == "success":
            end = self.journey.ends.success
            self.s.leaving = Leaving(
                outcome=Outcome.SUCCESS,
                to_node="end:success",
                reason="reached the success end",
                end_value=end.value,
                add_to_list=end.add_to_list,
            )
        else:
            value = target.end_value or ""
            failure = self.journey.failure_end(value)
            self.s.leaving = Leaving(
                outcome=Outcome.FAILURE,
                to_node=f"end:failure:{value}",
                reason=f"reached the failure end {value!r}",
                end_value=value,
                add_to_list=failure.add_to_list if failure else None,
            )

    def _current_action(self) -> Action | None:
        assert self.s.stage is not None
        actions = self.journey.stage_by_key(self.s.stage).actions
        return actions[self.s.action_index] if self.s.action_index < len(actions) else None

    def _enter_stage(self, key: str, reason: str) -> None:
        """Entering a stage writes its value to the stage property (riding along with the
        next activity) and starts its actions from the first."""
        if self.s.stage_entries >= self.input.max_stage_entries:
            self.s.leaving = Leaving(
                outcome=Outcome.LOOP_LIMIT,
                to_node="exit:loop_limit",
                reason=f"{self.s.stage_entries} stage entries reached the cap of "
                f"{self.input.max_stage_entries} before entering {key!r}",
            )
            return
        stage = self.journey.stage_by_key(key)
        effects: list[Effect] = [EnterStage(stage=key, from_stage=self.s.stage)]
        prop = self.journey.stage_property
        if (was := self.s.contact.properties.get(prop)) != stage.value:
            effects.append(
                WriteProperty(property=prop, value=stage.value, conditional=True, expected=was)
            )
            self._write_locally(prop, stage.value)
        from_stage = self.s.stage
        self.s.stage, self.s.action_index = key, 0
        self.s.stage_entries += 1
        self.s.stage_move = self.s.stage_move_reason = None
        self.s.wait_until, self.s.event_arrived = None, False
        self._record(
            "enter_stage",
            "entered",
            {"reason": reason, "from": from_stage, "entry": self.s.stage_entries},
            effects,
        )
        if self._stage_attribute != key:
            workflow.upsert_search_attributes([sa.JOURNEY_STAGE.value_set(key)])
            self._stage_attribute = key

    async def _stay_in_stage(self) -> None:
        """Every action of the stage has run and none jumped: the contact stays in the
        stage until the stage property changes or an exit applies."""
        self._describe("all actions done; staying until the stage changes or an exit")
        await self._flush_read_models()
        await workflow.wait_condition(self._interrupted)

    # --- one handler per action type ----------------------------------------------------

    async def _send_message(self, action: SendMessage) -> Next | None:
        """Sends the message; outside the send window, or over the frequency cap with
        `when_capped: wait`, it waits (a durable timer an exit interrupts) and tries
        again as a new step."""
        detail = {
            "channels": action.channels,
            "template": action.template,
            "marketing": action.marketing,
        }
        while True:
            step = self._step("send_message", "queued", detail)
            request = SendMessageRequest(
                enrollment=self.ref,
                pending=self.s.pending,
                step=step,
                action=action,
                properties=self.s.contact.properties,
                delivery=self.journey.delivery_options,
            )
            result = await self._activity(SEND_MESSAGE, request, describe_action(action))
            if result is None:
                return None
            sent = result.send
            if sent is None or not workflow.patched(CHANNELS_PATCH):
                self.s.marketing_sent = self.s.marketing_sent or action.marketing
                return Next()
            if sent.status == "deferred" and sent.until is not None:
                if not await self._deferred(sent.until, sent.reason or "deferred"):
                    return None
                continue
            if sent.status in ("sent", "queued"):
                self.s.marketing_sent = self.s.marketing_sent or action.marketing
            return self._after_delivery(sent, describe_action(action))

    async def _deferred(self, until: datetime, reason: str) -> bool:
        """Waits for the send window to open (or the cap to allow); False if interrupted."""
        until = max(until, workflow.now() + MIN_DEFERRAL)
        self.s.wait_until = until
        self._describe(f"message waits until {_when(until)} ({reason.replace('_', ' ')})")
        elapsed = await self._sleep_until(until, summary=f"{reason} until {_when(until)}")
        self.s.wait_until = None
        return elapsed

    def _after_delivery(self, sent: SendOutcome, summary: str) -> Next | None:
        """A provider refused for good: per the journey, go on or end `delivery_failed`."""
        if sent.status != "failed":
            return Next()
        if self.journey.delivery_options.on_failure == "end":
            self.s.leaving = Leaving(
                outcome=Outcome.DELIVERY_FAILED,
                to_node="exit:delivery_failed",
                reason=f"{summary} failed: {sent.message}",
            )
            return None
        return Next()

    async def _wait(self, action: Wait) -> Next | None:
        until = self._begin_wait(action.duration)
        self._describe(f"waiting until {_when(until)}")
        if not await self._sleep_until(until, summary=f"wait {_iso(action.duration)}"):
            return None
        self._end_wait("wait", "elapsed", {"duration": _iso(action.duration), "until": until})
        return Next()

    async def _wait_for_event(self, action: WaitForEvent) -> Next | None:
        until = self._begin_wait(action.timeout)
        wanted = action.event.describe()
        self._describe(f"waiting until {_when(until)} for {wanted}")
        timed_out = await self._sleep_until(
            until, summary=f"wait for {wanted}", also=lambda: self.s.event_arrived
        )
        if self.s.event_arrived:
            result, branch = "event", action.on_event
        elif timed_out:
            result, branch = "timeout", action.on_timeout
        else:
            return None
        go_to = branch.go_to if branch is not None else None
        self._end_wait("wait_for_event", result, {"event": wanted, "until": until, "go_to": go_to})
        return Next(go_to)

    async def _create_task(self, action: CreateTask) -> Next | None:
        step = self._step("create_task", "created", {"title": action.title})
        request = CreateTaskRequest(
            enrollment=self.ref,
            pending=self.s.pending,
            step=step,
            action=action,
            properties=self.s.contact.properties,
        )
        result = await self._activity(CREATE_TASK, request, describe_action(action))
        if result is None:
            return None
        if result.send is not None and workflow.patched(CHANNELS_PATCH):
            return self._after_delivery(result.send, describe_action(action))
        return Next()

    async def _set_property(self, action: SetProperty) -> Next | None:
        """Writes the property; setting the stage property moves the contact to the
        matching stage (or ends it early at a matching end) before the next action."""
        effect = WriteProperty(property=action.property, value=action.value)
        step = self._step(
            "set_property", "set", {"property": action.property, "value": action.value}, [effect]
        )
        request = StepRequest(enrollment=self.ref, pending=self.s.pending, step=step)
        if await self._activity(SET_PROPERTY, request, describe_action(action)) is None:
            return None
        if action.property == self.journey.stage_property:
            self._stage_property_changed(action.value, f"set_property in stage {self.s.stage}")
        return Next()

    async def _send_notification(self, action: SendNotification) -> Next | None:
        step = self._step("send_notification", "queued", {"to": action.to})
        request = SendNotificationRequest(
            enrollment=self.ref,
            pending=self.s.pending,
            step=step,
            action=action,
            properties=self.s.contact.properties,
        )
        result = await self._activity(SEND_NOTIFICATION, request, describe_action(action))
        if result is None:
            return None
        if result.send is not None and workflow.patched(CHANNELS_PATCH):
            return self._after_delivery(result.send, describe_action(action))
        return Next()

    async def _go_to_action(self, action: GoTo) -> Next | None:
        self._record("go_to", "jumped", {"target": action.target})
        return Next(action.target)

    # --- waiting ---------------------------------------------------------------------------

    def _begin_wait(self, duration: timedelta) -> datetime:
        """The wait's deadline, kept in the state so it survives continue-as-new."""
        if self.s.wait_until is None:
            self.s.wait_until = workflow.now() + duration
            self.s.event_arrived = False
        return self.s.wait_until

    def _end_wait(self, action: str, result: str, detail: dict[str, Any]) -> None:
        self._record(action, result, detail)
        self.s.wait_until, self.s.event_arrived = None, False

    async def _sleep_until(
        self, until: datetime, summary: str, also: Callable[[], bool] = lambda: False
    ) -> bool:
        """True when the deadline passed; False when interrupted (or `also` became true)."""
        await self._flush_read_models()
        remaining = until - workflow.now()
        if remaining <= timedelta(0):
            return True
        try:
            await workflow.wait_condition(
                lambda: self._interrupted() or also(), timeout=remaining, timeout_summary=summary
            )
        except TimeoutError:
            return True
        return False

    def _interrupted(self) -> bool:
        return (
            self.s.leaving is not None
            or self.s.stage_move is not None
            or self._continue_as_new_due()
        )

    # --- exits ---------------------------------------------------------------------------

    def _check_exits(self) -> None:
        """DESIGN §3.3, in its order: goal, suppression, removal from the eligible lists,
        stage value equal to an end, manual unenroll. Decides; the loop acts."""
        if self.s.phase is not Phase.RUNNING or self.s.leaving is not None:
            return
        self.s.leaving = (
            self._goal_exit()
            or self._suppression_exit()
            or self._removal_exit()
            or self._end_value_exit()
            or self._unenroll_exit()
        )

    def _exit(self, outcome: Outcome, reason: str, criteria: Criteria | None) -> Leaving:
        why = explain(criteria, self.s.contact).model_dump(mode="json") if criteria else None
        return Leaving(
            outcome=outcome, to_node=f"exit:{outcome.value}", reason=reason, explanation=why
        )

    def _goal_exit(self) -> Leaving | None:
        goal = self.journey.goal
        if goal is None or not evaluate(goal.criteria, self.s.contact):
            return None
        leaving = self._exit(Outcome.GOAL_MET, "met the journey's goal", goal.criteria)
        leaving.goal_met_seq = self.s.contact.event_seq
        return leaving

    def _suppression_exit(self) -> Leaving | None:
        lists = sorted(set(self.s.contact.lists) & set(self.journey.suppression_lists))
        if not lists:
            return None
        criteria = AnyNode(any=[ListLeaf(list=name) for name in self.journey.suppression_lists])
        return self._exit(Outcome.SUPPRESSED, f"joined suppression list {lists[0]!r}", criteria)

    def _removal_exit(self) -> Leaving | None:
        eligible = self.journey.eligible_lists
        if not (self.journey.exit.when_removed_from_eligible_lists and eligible):
            return None
        if set(self.s.contact.lists) & set(eligible):
            return None
        criteria = AllNode(all=[ListLeaf(list=name, member=False) for name in eligible])
        return self._exit(Outcome.REMOVED_FROM_LIST, "removed from every eligible list", criteria)

    def _end_value_exit(self) -> Leaving | None:
        prop = self.journey.stage_property
        value = self.s.contact.properties.get(prop)
        found = self.journey.end_for_value(value) if value is not None else None
        if not (self.journey.exit.when_stage_matches_end and found):
            return None
        kind, end = found
        criteria = PropertyLeaf(property=prop, op="eq", value=end.value)
        leaving = self._exit(
            Outcome.ENDED_EARLY, f"{prop} was set to the {kind} end {end.value!r}", criteria
        )
        leaving.end_value, leaving.add_to_list = end.value, end.add_to_list
        return leaving

    def _unenroll_exit(self) -> Leaving | None:
        if self.s.unenroll is None:
            return None
        reason = self.s.unenroll.reason
        try:
            outcome = Outcome(reason)
        except ValueError:
            outcome = Outcome.UNENROLLED
        return self._exit(outcome, f"unenrolled: {reason}", None)

    async def _leave(self) -> None:
        """Writes the end or exit with its read models; the attribution window follows
        when a later goal could still count (DESIGN §3.5 and §3.6)."""
        leaving = self.s.leaving
        assert leaving is not None
        goal = self.journey.goal
        window = goal is not None and leaving.outcome not in (Outcome.GOAL_MET, Outcome.SUPPRESSED)
        status = Phase.IN_ATTRIBUTION_WINDOW if window else Phase.COMPLETED
        effects: list[Effect] = [
            EndEnrollment(
                from_stage=self.s.stage,
                to_node=leaving.to_node,
                outcome=leaving.outcome,
                end_value=leaving.end_value,
                status=status,
                goal_met_seq=leaving.goal_met_seq,
            )
        ]
        prop, value = self.journey.stage_property, leaving.end_value
        if value is not None and (was := self.s.contact.properties.get(prop)) != value:
            effects.append(
                WriteProperty(property=prop, value=value, conditional=True, expected=was)
            )
            self._write_locally(prop, value)
        if leaving.add_to_list:
            effects.append(AddToList(list=leaving.add_to_list))
            self._join_locally(leaving.add_to_list)
        if leaving.outcome is Outcome.GOAL_MET:
            effects.append(Convert(after_end=False, goal_met_seq=leaving.goal_met_seq))
        detail = {
            "reason": leaving.reason,
            "to": leaving.to_node,
            "end_value": leaving.end_value,
            "explanation": leaving.explanation,
            "was": self.details,
        }
        action = "end" if leaving.outcome in (Outcome.SUCCESS, Outcome.FAILURE) else "exit"
        self._record(action, leaving.outcome.value, detail, effects)
        now = workflow.now()
        self.s.phase, self.s.outcome, self.s.end_value = status, leaving.outcome, leaving.end_value
        self.s.explanation, self.s.exit_reason = leaving.explanation, leaving.reason
        self.s.ended_at, self.s.wait_until = now, None
        if window and goal is not None:
            self.s.window_until = now + goal.attribution_window
        workflow.upsert_search_attributes([sa.ENROLLMENT_OUTCOME.value_set(leaving.outcome.value)])
        self._describe(f"{leaving.outcome.value}: {leaving.reason}")
        await self._flush(f"{leaving.outcome.value}: {leaving.reason}")

    # --- the attribution window -----------------------------------------------------------

    async def _attribution_window(self) -> None:
        """After the end, only the goal matters: a goal met before the window closes may
        still count as a conversion (DESIGN §3.5)."""
        until = self.s.window_until
        assert until is not None
        self._describe(
            f"{self.s.outcome}: attribution window open until {_when(until)}, "
            "listening for the goal"
        )
        while not (self.s.goal_met_in_window or self.s.window_closed_early):
            remaining = until - workflow.now()
            if remaining <= timedelta(0):
                break
            try:
                await workflow.wait_condition(
                    lambda: (
                        self.s.goal_met_in_window
                        or self.s.window_closed_early is not None
                        or self._continue_as_new_due()
                    ),
                    timeout=remaining,
                    timeout_summary="attribution window",
                )
            except TimeoutError:
                break
            if self._continue_as_new_due() and not self.s.goal_met_in_window:
                await self._continue_as_new()
        if self.s.goal_met_in_window:
            convert = Convert(after_end=True, goal_met_seq=self.s.contact.event_seq)
            detail = {"explanation": self.s.explanation}
            self._record("goal_met", "after_end", detail, [convert, Complete()])
        else:
            why = self.s.window_closed_early or "attribution window closed"
            self._record("complete", "completed", {"reason": why}, [Complete()])
        self.s.phase = Phase.COMPLETED
        self._describe(f"completed: {self.s.outcome}")
        await self._flush("enrollment completed")

    # --- signals and the query -------------------------------------------------------------

    @workflow.signal(name="contact_event")
    def contact_event(self, event: ContactEvent) -> None:
        """An activity of the contact. Ignored when the starting snapshot already counted
        it (at or below the watermark) or when its id was seen before."""
        if event.seq <= self.s.event_watermark or event.id in self.s.contact.seen_event_ids:
            return
        self.s.contact = apply_event(self.s.contact, event, self.journey)
        waiting = self._current_action() if self.s.wait_until is not None else None
        if isinstance(waiting, WaitForEvent) and matches_event(waiting.event, event):
            self.s.event_arrived = True
        self._after_signal()

    @workflow.signal(name="contact_changed")
    def contact_changed(self, change: ContactChanged) -> None:
        """A full snapshot of the contact's properties and lists as of `change.seq`;
        older snapshots are ignored and never undo a newer write of the journey's own."""
        if change.seq <= self.s.snapshot_seq:
            return
        self.s.snapshot_seq = change.seq
        prop = self.journey.stage_property
        before = self.s.contact.properties.get(prop)
        properties = dict(change.properties)
        lists = set(change.lists)
        for key, own in list(self.s.own_writes.items()):
            if own.seq is not None and own.seq <= change.seq:
                del self.s.own_writes[key]  # the snapshot already reflects it
            elif key.startswith("list:"):
                lists.add(key.removeprefix("list:"))
            else:
                if own.seq is None:  # in flight: settled by `_settle_own_writes`
                    own.held = (
                        HeldValue(seq=change.seq, value=properties.get(key), present=True)
                        if key in properties and properties[key] != own.value
                        else HeldValue(seq=change.seq)
                        if key not in properties
                        else None
                    )
                properties[key] = own.value
        self.s.contact = self.s.contact.model_copy(
            update={
                "properties": properties,
                "lists": sorted(lists),
                "event_seq": max(self.s.contact.event_seq, change.seq),
            }
        )
        after = properties.get(prop)
        if after != before and self.s.phase is Phase.RUNNING:
            self._stage_property_changed(after, f"the contact's {prop} changed to {after!r}")
        self._after_signal()

    @workflow.signal(name="unenroll")
    def unenroll(self, request: Unenroll) -> None:
        if self.s.phase is Phase.IN_ATTRIBUTION_WINDOW:
            self.s.window_closed_early = f"unenrolled: {request.reason}"
        self.s.unenroll = request
        self._after_signal()

    def _after_signal(self) -> None:
        if self.s.phase is Phase.RUNNING:
            self._check_exits()
        elif self.s.phase is Phase.IN_ATTRIBUTION_WINDOW and not self.s.goal_met_in_window:
            goal = self.journey.goal
            if goal is not None and evaluate(goal.criteria, self.s.contact):
                self.s.goal_met_in_window = True
                self.s.explanation = explain(goal.criteria, self.s.contact).model_dump(mode="json")

    def _stage_property_changed(self, value: Any, reason: str) -> None:
        """A new stage value moves the contact between actions; an end value is an exit
        (`_check_exits`); any other value leaves the contact where it is."""
        stage = self.journey.stage_by_value(value)
        if stage is None:
            return
        if stage.key == self.s.stage:
            self.s.stage_move = self.s.stage_move_reason = None
        else:
            self.s.stage_move, self.s.stage_move_reason = stage.key, reason

    @workflow.query(name="state")
    def state(self) -> EnrollmentView:
        action = self._current_action() if self.s.phase is Phase.RUNNING and self.s.stage else None
        return EnrollmentView(
            phase=self.s.phase,
            stage=self.s.stage,
            next_action=describe_action(action) if action is not None else None,
            details=self.details,
            stage_entries=self.s.stage_entries,
            step_seq=self.s.step_seq,
            outcome=self.s.outcome,
            end_value=self.s.end_value,
            reason=self.s.exit_reason,
            explanation=self.s.explanation,
            marketing_sent=self.s.marketing_sent,
            waiting_until=self.s.wait_until,
            window_until=self.s.window_until,
            contact_seq=self.s.contact.event_seq,
            pending_steps=len(self.s.pending),
        )

    # --- the log, activities, continue-as-new ------------------------------------------------

    def _step(
        self,
        action: str,
        result: str,
        detail: dict[str, Any] | None = None,
        effects: list[Effect] | None = None,
    ) -> StepRecord:
        """A new log record with the next step number (its idempotency key)."""
        self.s.step_seq += 1
        return StepRecord(
            step_seq=self.s.step_seq,
            at=workflow.now(),
            stage=self.s.stage,
            action=action,
            result=result,
            detail=detail or {},
            effects=effects or [],
        )

    def _record(
        self,
        action: str,
        result: str,
        detail: dict[str, Any] | None = None,
        effects: list[Effect] | None = None,
    ) -> None:
        """Queues bookkeeping: it rides along with the next activity."""
        self.s.pending.append(self._step(action, result, detail, effects))

    async def _activity(self, name: str, request: StepRequest, summary: str) -> StepResult | None:
        """Runs a side-effecting step; an exit meanwhile cancels it (and waits for the
        cancellation). Returns None when it did not happen."""
        handle = workflow.start_activity(
            name,
            request,
            result_type=StepResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"{self.input.contact_id} · stage {self.s.stage} · {summary}",
        )
        await workflow.wait_condition(lambda: handle.done() or self.s.leaving is not None)
        if not handle.done():
            handle.cancel()
        try:
            result = await handle
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                return None
            if isinstance(err.cause, ApplicationError) and err.cause.type == DELIVERY_FAILED:
                self.s.leaving = Leaving(
                    outcome=Outcome.DELIVERY_FAILED,
                    to_node="exit:delivery_failed",
                    reason=f"{summary} failed: {err.cause.message}",
                )
                return None
            raise
        self._committed(request, result)
        return result

    async def _flush_read_models(self) -> None:
        """Before blocking, write pending records that change what the metrics show (a
        stage entry must count while the contact waits); plain log rows can wait."""
        if any(record.effects for record in self.s.pending):
            await self._flush("record stage entry")

    async def _flush(self, summary: str) -> None:
        if not self.s.pending:
            return
        request = StepRequest(enrollment=self.ref, pending=self.s.pending)
        result = await workflow.execute_local_activity(
            RECORD_STEPS,
            request,
            result_type=StepResult,
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
            summary=f"{self.input.contact_id} · {summary}",
        )
        self._committed(request, result)

    def _committed(self, request: StepRequest, result: StepResult) -> None:
        """The request's records are in the database: drop them from `pending`, and date
        the journey's own writes so that older contact snapshots cannot undo them."""
        sent = {record.step_seq for record in request.pending}
        self.s.pending = [r for r in self.s.pending if r.step_seq not in sent]
        records = [*request.pending, *([request.step] if request.step else [])]
        refused: dict[str, Any] = {}
        for record in records:
            for effect in record.effects:
                if isinstance(effect, WriteProperty):
                    if record is request.step:  # set_property: true only once it happened
                        self._write_locally(effect.property, effect.value)
                    if effect.property in result.refused_writes:
                        refused[effect.property] = effect.value
                    else:
                        self._dated(effect.property, effect.value, result.contact_seq)
                elif isinstance(effect, AddToList):
                    self._dated(f"list:{effect.list}", True, result.contact_seq)
        self._settle_own_writes(refused)

    def _settle_own_writes(self, refused: dict[str, Any]) -> None:
        """A caller's value wins over a stage write of the journey's that was in flight:
        when the database refused the write (the caller's value was there first), or when
        a snapshot held back meanwhile turns out newer than the write. The value then
        applies as if its snapshot arrived now (a stage move, an end)."""
        for key, own in list(self.s.own_writes.items()):
            lost = key in refused and own.seq is None and own.value == refused[key]
            held = own.held
            if not lost:
                if held is None or own.seq is None:
                    continue
                if held.seq <= own.seq:  # the snapshot predates the write
                    own.held = None
                    continue
            if not workflow.patched(OWN_WRITES_PATCH):
                continue
            del self.s.own_writes[key]
            if held is not None:
                self._caller_value(key, held)

    def _caller_value(self, key: str, held: HeldValue) -> None:
        properties = dict(self.s.contact.properties)
        before = properties.get(key)
        if held.present:
            properties[key] = held.value
        else:
            properties.pop(key, None)
        self.s.contact = self.s.contact.model_copy(update={"properties": properties})
        after = properties.get(key)
        if key == self.journey.stage_property and after != before:
            if self.s.phase is Phase.RUNNING:
                self._stage_property_changed(after, f"the contact's {key} changed to {after!r}")
        self._after_signal()

    def _dated(self, key: str, value: Any, seq: int | None) -> None:
        own = self.s.own_writes.get(key)
        if own is not None and own.seq is None and own.value == value and seq is not None:
            own.seq = seq

    def _write_locally(self, prop: str, value: Any) -> None:
        self.s.contact = self.s.contact.model_copy(
            update={"properties": {**self.s.contact.properties, prop: value}}
        )
        self.s.own_writes[prop] = OwnWrite(value=value)

    def _join_locally(self, name: str) -> None:
        self.s.contact = self.s.contact.with_lists({*self.s.contact.lists, name})
        self.s.own_writes[f"list:{name}"] = OwnWrite(value=True)

    def _describe(self, doing: str) -> None:
        """What the contact is doing, in words: the workflow's current details in the UI."""
        where = f"stage {self.s.stage} · " if self.s.stage and self.s.phase is Phase.RUNNING else ""
        self.details = f"{self.input.contact_id} · {where}{doing}"
        workflow.set_current_details(self.details)

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        if self.input.continue_as_new_after is not None:
            return info.get_current_history_length() >= self.input.continue_as_new_after
        return info.is_continue_as_new_suggested()

    async def _continue_as_new(self) -> NoReturn:
        # Signal handlers are synchronous, but wait for them anyway: a handler that is
        # still running when the run closes would lose its update to the new run.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            self.input.model_copy(update={"carried": self.s, "contact": self.s.contact})
        )
