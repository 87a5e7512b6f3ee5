"""EnrollmentWorkflow: one contact's way through one journey (docs/design.md, "The
enrollment workflow").

The main loop reads like the journey: enter the start stage; before every action check the
exits; run the action with its handler (one per action type); go where it says; at an end
or an exit write the outcome; then listen for the goal until the attribution window
closes. Signal handlers only update the contact and decide; the loop acts between actions.
Waits race their timer against `wait_condition`, so an exit or a stage move interrupts
them; an exit cancels a running activity. Decisions are pure (`shared.exits`, `.stages`,
`.own_writes`, `.decisions`); the log's bookkeeping rides along with activities.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow

from workers.step_log import StepLog

with workflow.unsafe.imports_passed_through():
    from shared import decisions, exits, own_writes, stages
    from shared import search_attributes as sa
    from shared.contact import ContactEvent
    from shared.describe import current_details, describe_action, iso_duration, view, when
    from shared.enrollment import (
        ContactChanged,
        EnrollmentInput,
        EnrollmentView,
        HeldValue,
        Phase,
        Unenroll,
        WriteProperty,
    )
    from shared.journey import (
        Action,
        BranchOn,
        CreateTask,
        GoTo,
        Journey,
        SendMessage,
        SendNotification,
        SetProperty,
        Split,
        Wait,
        WaitForEvent,
        resolve_target,
    )
    from shared.stages import Next
    from workers import steps

# Behaviours runs of `behaviour` 0 decide by marker (shared.enrollment.BEHAVIOUR says which)
CHANNELS_PATCH = "channels-v1"
OWN_WRITES_PATCH = "caller-stage-wins-v1"
MIN_DEFERRAL = timedelta(seconds=1)


@workflow.defn(name="EnrollmentWorkflow")
class EnrollmentWorkflow:
    @workflow.init
    def __init__(self, input: EnrollmentInput) -> None:
        self.input = input
        self.journey: Journey = input.journey
        self.ref = input.ref(workflow.info().workflow_id)
        self.s = input.carried or input.first_state()
        self.details = ""
        self.log = StepLog(self.s, self.ref, input.contact_id, self._settle)
        self.trigger = input.trigger.for_templates() if input.trigger else None
        self._stage_attribute = workflow.info().typed_search_attributes.get(sa.JOURNEY_STAGE)

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
            entry = self.input.entry_stage or self.journey.start_stage
            self._enter_stage(entry, reason=self.input.entered_by or "enrolled")
        while self.s.leaving is None:
            self._check_exits()
            if self.s.leaving is not None:
                break
            if self._continue_as_new_due():
                await self._continue_as_new()
            if self.s.stage_move is not None:
                self._enter_stage(self.s.stage_move, reason=self.s.stage_move_reason or "")
                continue
            action = stages.current_action(self.journey, self.s)
            if action is None:
                await self._stay_in_stage()
                continue
            self._describe(describe_action(action))
            step = await self._run(action)
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
        else:
            self.s.leaving = exits.end_at(self.journey, target)

    def _enter_stage(self, key: str, reason: str) -> None:
        """Entering a stage writes its value to the stage property (riding along with the
        next activity) and starts its actions from the first."""
        if self.s.stage_entries >= self.input.max_stage_entries:
            self.s.leaving = exits.loop_limit(
                self.s.stage_entries, self.input.max_stage_entries, key
            )
            return
        detail, effects = stages.enter(self.journey, self.s, key, reason)
        self.log.record("enter_stage", "entered", detail, effects)
        if self._stage_attribute != key:
            workflow.upsert_search_attributes([sa.JOURNEY_STAGE.value_set(key)])
            self._stage_attribute = key

    async def _stay_in_stage(self) -> None:
        """All actions ran, none jumped: stay until the stage property changes or an exit."""
        self._describe("all actions done; staying until the stage changes or an exit")
        await self.log.flush_read_models()
        await workflow.wait_condition(self._interrupted)

    # --- one handler per action type ----------------------------------------------------

    async def _run(self, action: Action) -> Next | None:
        """Runs one action; None: it was interrupted (an exit, a stage move or
        continue-as-new) and the loop decides what comes next."""
        match action:
            case SendMessage():
                return await self._send_message(action)
            case Wait():
                return await self._wait(action)
            case WaitForEvent():
                return await self._wait_for_event(action)
            case CreateTask() | SendNotification():
                return await self._for_the_crm(action)
            case SetProperty():
                return await self._set_property(action)
            case GoTo():
                self.log.record("go_to", "jumped", {"target": action.target})
                return Next(action.target)
            case BranchOn() | Split():
                return self._decide(action)

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
            step = self.log.step("send_message", "queued", detail)
            request = steps.SendMessageRequest(
                enrollment=self.ref,
                pending=self.s.pending,
                step=step,
                action=action,
                properties=self.s.contact.properties,
                delivery=self.journey.delivery_options,
                trigger=self.trigger,
            )
            summary = describe_action(action)
            result = await self.log.activity(steps.SEND_MESSAGE, request, summary)
            if result is None:
                return None
            sent = result.send
            if sent is None or not self._has(CHANNELS_PATCH):
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
        self._describe(f"message waits until {when(until)} ({reason.replace('_', ' ')})")
        elapsed = await self._sleep_until(until)
        self.s.wait_until = None
        return elapsed

    def _after_delivery(self, sent: steps.SendOutcome, summary: str) -> Next | None:
        """A send failed for good: counted, then per the journey go on or end."""
        if sent.status != "failed":
            return Next()
        self.s.failed_sends += 1
        if self.journey.delivery_options.on_failure == "end":
            self.s.leaving = exits.delivery_failed(summary, sent.message)
            return None
        return Next()

    async def _wait(self, action: Wait) -> Next | None:
        until = self._begin_wait(action.duration)
        self._describe(f"waiting until {when(until)}")
        if not await self._sleep_until(until):
            return None
        self._end_wait(
            "wait", "elapsed", {"duration": iso_duration(action.duration), "until": until}
        )
        return Next()

    async def _wait_for_event(self, action: WaitForEvent) -> Next | None:
        until = self._begin_wait(action.timeout)
        wanted = action.event.describe()
        self._describe(f"waiting until {when(until)} for {wanted}")
        timed_out = await self._sleep_until(until, also=lambda: self.s.event_arrived)
        if self.s.event_arrived:
            result, branch = "event", action.on_event
        elif timed_out:
            result, branch = "timeout", action.on_timeout
        else:
            return None
        go_to = branch.go_to if branch is not None else None
        self._end_wait("wait_for_event", result, {"event": wanted, "until": until, "go_to": go_to})
        return Next(go_to)

    async def _for_the_crm(self, action: CreateTask | SendNotification) -> Next | None:
        """A task or a notification: recorded, and POSTed to the workspace's webhook."""
        about = {"enrollment": self.ref, "pending": self.s.pending, "trigger": self.trigger}
        about["properties"] = self.s.contact.properties
        request: steps.CreateTaskRequest | steps.SendNotificationRequest
        if isinstance(action, CreateTask):
            step = self.log.step("create_task", "created", {"title": action.title})
            request = steps.CreateTaskRequest(step=step, action=action, **about)
            name = steps.CREATE_TASK
        else:
            step = self.log.step("send_notification", "queued", {"to": action.to})
            request = steps.SendNotificationRequest(step=step, action=action, **about)
            name = steps.SEND_NOTIFICATION
        result = await self.log.activity(name, request, describe_action(action))
        if result is None:
            return None
        if result.send is not None and self._has(CHANNELS_PATCH):
            return self._after_delivery(result.send, describe_action(action))
        return Next()

    async def _set_property(self, action: SetProperty) -> Next | None:
        """Writes the property; setting the stage property moves the contact to the
        matching stage (or ends it early at a matching end) before the next action."""
        effect = WriteProperty(property=action.property, value=action.value)
        step = self.log.step(
            "set_property", "set", {"property": action.property, "value": action.value}, [effect]
        )
        request = steps.StepRequest(enrollment=self.ref, pending=self.s.pending, step=step)
        if await self.log.activity(steps.SET_PROPERTY, request, describe_action(action)) is None:
            return None
        if action.property == self.journey.stage_property:
            reason = f"set_property in stage {self.s.stage}"
            stages.stage_value_changed(self.journey, self.s, action.value, reason)
        return Next()

    def _decide(self, action: BranchOn | Split) -> Next | None:
        """A branch or a split (`shared.decisions`): no activity; a holdout leaves."""
        number, i = workflow.random().random(), self.input
        decision = decisions.decide(action, self.s, number, i.winners, i.journey_version, i.forced)
        self.log.record(action.type, decision.result, decision.detail, decision.effects)
        if decision.holdout:
            self.s.leaving = exits.holdout(action.name, decision.result)
            return None
        return Next(decision.go_to)

    # --- waiting ---------------------------------------------------------------------------

    def _begin_wait(self, duration: timedelta) -> datetime:
        """The wait's deadline, kept in the state so it survives continue-as-new."""
        if self.s.wait_until is None:
            self.s.wait_until = workflow.now() + duration
            self.s.event_arrived = False
        return self.s.wait_until

    def _end_wait(self, action: str, result: str, detail: dict[str, Any]) -> None:
        self.log.record(action, result, detail)
        self.s.wait_until, self.s.event_arrived = None, False

    async def _sleep_until(self, until: datetime, also: Callable[[], bool] = lambda: False) -> bool:
        """True when the deadline passed; False when interrupted (or `also` became true).
        The timer carries no summary: the current details say what the contact waits for,
        and a summary is one more payload per wait for the worker to carry (docs/operating.md)."""
        await self.log.flush_read_models()
        remaining = until - workflow.now()
        if remaining <= timedelta(0):
            return True
        try:
            await workflow.wait_condition(lambda: self._interrupted() or also(), timeout=remaining)
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
        """Decides an exit (`shared.exits`, in its order); the loop acts on it."""
        if self.s.phase is Phase.RUNNING and self.s.leaving is None:
            self.s.leaving = exits.exit_for(self.journey, self.s)

    async def _leave(self) -> None:
        """Writes the end or exit with its read models; the attribution window follows
        when a later goal could still count (docs/design.md, "Ends")."""
        leaving = self.s.leaving
        assert leaving is not None
        action, detail = exits.leaving_record(leaving, was=self.details)
        status = exits.left(self.s, self.journey, leaving, workflow.now())
        effects = exits.leaving_effects(self.journey, self.s, leaving, status)
        self.log.record(action, leaving.outcome.value, detail, effects)
        workflow.upsert_search_attributes([sa.ENROLLMENT_OUTCOME.value_set(leaving.outcome.value)])
        self._describe(f"{leaving.outcome.value}: {leaving.reason}")
        await self.log.flush()

    # --- the attribution window -----------------------------------------------------------

    async def _attribution_window(self) -> None:
        """After the end, only the goal matters: a goal met before the window closes may
        still count as a conversion (docs/design.md, "Ends")."""
        until = self.s.window_until
        assert until is not None
        self._describe(
            f"{self.s.outcome}: attribution window open until {when(until)}, listening for the goal"
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
                )
            except TimeoutError:
                break
            if self._continue_as_new_due() and not self.s.goal_met_in_window:
                await self._continue_as_new()
        self.log.record(*exits.window_closed(self.s))
        self.s.phase = Phase.COMPLETED
        self._describe(f"completed: {self.s.outcome}")
        await self.log.flush()

    # --- signals and the query -------------------------------------------------------------

    @workflow.signal(name="contact_event")
    def contact_event(self, event: ContactEvent) -> None:
        """An activity of the contact. Ignored when the starting snapshot already counted
        it (at or below the watermark) or when its id was seen before."""
        if stages.hear_event(self.journey, self.s, event):
            self._after_signal()

    @workflow.signal(name="contact_changed")
    def contact_changed(self, change: ContactChanged) -> None:
        """A full snapshot of the contact's properties and lists as of `change.seq`;
        older snapshots are ignored and never undo a newer write of the journey's own."""
        if change.seq <= self.s.snapshot_seq:
            return
        before = self.s.contact.properties.get(self.journey.stage_property)
        own_writes.apply_snapshot(self.s, change)
        stages.caller_moved(self.journey, self.s, self.journey.stage_property, before)
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
            exits.goal_met_in_window(self.journey, self.s)

    @workflow.query(name="state")
    def state(self) -> EnrollmentView:
        action = (
            stages.current_action(self.journey, self.s)
            if self.s.phase is Phase.RUNNING and self.s.stage
            else None
        )
        return view(self.journey, self.s, self.details, action)

    # --- the log, activities, continue-as-new ------------------------------------------------

    def _settle(self, refused: dict[str, Any]) -> None:
        own_writes.settle(self.s, refused, lambda: self._has(OWN_WRITES_PATCH), self._caller_value)

    def _has(self, patch: str) -> bool:
        """A behaviour new runs have by their input (no marker); older runs by the patch."""
        return self.input.behaviour >= 1 or workflow.patched(patch)

    def _caller_value(self, key: str, held: HeldValue) -> None:
        """A caller's value that won over the journey's write applies now."""
        before = own_writes.take_held(self.s, key, held)
        if key == self.journey.stage_property:
            stages.caller_moved(self.journey, self.s, key, before)
        self._after_signal()

    def _describe(self, doing: str) -> None:
        """What the contact is doing, in words: the workflow's current details in the UI."""
        running = self.s.phase is Phase.RUNNING
        self.details = current_details(self.input.contact_id, self.s.stage, running, doing)
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
