"""The relay: delivers what Postgres committed to the enrollment workflows, until Temporal
accepts it. Run by the API process (any number of them share the work).

Ingestion never talks to Temporal: the API commits a change (and the triggers of
`003_delivery.sql` queue it in the same transaction), answers, and the relay takes it
from there, in two steps over a batch, each a few statements with no transaction around
them (what a step holds meanwhile is leased):

1. **Route**: claim queued changes (or take those its own API process handed over as it
   stored them, already leased and with what a claim brings: `hand_off`), find the open
   enrollments of their contacts and the journeys that trigger on them
   (`shared.routing`, `services.triggers`: one pass of indexed queries per batch), and
   write one delivery per enrollment that cares. A batch that calls for event signals
   only (the usual one) is signalled at once instead, its changes still leased: no
   delivery is written unless a signal fails (then the ones not delivered are written and
   settled as step 2 settles them), and the changes leave the queue with the next claim.
2. **Deliver**: what the routing pass queued (leased to it as it queued them), and due
   deliveries it claims (a lease too, so that a crashed relay's work is retried): signal
   each enrollment, with bounded concurrency and in sequence order per enrollment,
   then delete what Temporal accepted (the next claim's statement does, within
   `flush_within`). A failure is retried with backoff; while Temporal is unreachable the
   relay backs off as a whole and tries again, for as long as it takes.

A delivery may reach a workflow twice (a crash between the signal and the delete): the
workflow ignores a snapshot at or below its watermark and an event id it has seen.
Commits wake the relay through LISTEN/NOTIFY (but for the hand-offs, which wake it
within its own process); it also polls, so a lost notification only costs a poll
interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from services.triggers import ActiveJourneys, contact_views, enter
from shared.contact import ContactEvent
from shared.enrollment import ContactChanged
from shared.entry import candidates, may_trigger
from shared.routing import Change, Delivery, InterestCache, by_contact, route
from shared.settings import Settings
from store import changes as changes_store
from store import contacts as contacts_store
from store import enrollments as enrollments_store
from store import journeys as journeys_store
from store.db import listen, wait_any

log = logging.getLogger("nurture.relay")


# Temporal itself is unreachable or overloaded: retry, and do not count it against the
# delivery (an outage may last hours; nothing is dropped because of it).
UNAVAILABLE = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNAUTHENTICATED,
        RPCStatusCode.PERMISSION_DENIED,
    }
)


@dataclass(frozen=True)
class RelayOptions:
    batch_size: int = 1000
    """Changes routed per pass (an equal share per workspace with changes queued)."""
    deliver_batch: int = 256
    """Deliveries claimed per pass, shared equally by the workspaces with deliveries due:
    small enough that a pass ends soon, so a workspace whose first delivery arrives
    behind another's flood waits one short pass, not the flood."""
    max_in_flight: int = 64
    """Enrollments signalled at once."""
    poll_interval: float = 1.0
    """Seconds between looks at the queues when no notification arrives."""
    coalesce: float = 0.02
    """Seconds from the start of a pass before a notification starts the next one: under
    load a pass takes what committed meanwhile (fewer passes, the same statements each);
    unloaded, a pass starts as soon as its change commits."""
    lease: float = 60.0
    """Seconds a claimed delivery is left to this relay before another may retry it."""
    fresh_lease: float = 10.0
    """The same for the changes a routing pass claims, and the deliveries it queues (and
    delivers at once): shorter, because a relay that dies in a pass leaves them."""
    min_backoff: float = 0.2
    max_backoff: float = 10.0
    max_attempts: int = 30
    """Failures (other than Temporal being unreachable) before a delivery is given up."""
    rpc_timeout: timedelta = timedelta(seconds=5)
    flush_within: float = 0.5
    """Seconds at most before delivered rows leave the queue (with the next claim, or a
    pass of their own when nothing else comes): well inside `fresh_lease`."""


@dataclass
class Outcome:
    """What became of a batch of deliveries."""

    done: list[tuple[int, int]] = field(default_factory=list)
    retry: list[tuple[int, str, float, int]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    missing: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    unreachable: bool = False


@dataclass(frozen=True)
class Signal:
    seq: int
    name: str
    payload: ContactEvent | ContactChanged
    rows: tuple[dict[str, Any], ...]


class Relay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        temporal: Client,
        settings: Settings,
        options: RelayOptions | None = None,
        claims: asyncpg.Pool | None = None,
    ) -> None:
        self.pool = pool
        # the routing pass's statements (claim, routed, deletes) and the hand-offs of the
        # events this process stores: on a pool of their own when the API has one (planned
        # once: `create_pool(generic_plans)`)
        self.claims = claims or pool
        self.temporal = temporal
        self.settings = settings
        self.options = options or RelayOptions()
        self.wake = asyncio.Event()
        self._versions = InterestCache()
        self._journeys = ActiveJourneys()
        self._outage = 0  # consecutive passes that found Temporal unreachable
        self._more = False  # this pass's claims may have left rows behind
        self._worked = False  # this pass routed or delivered something
        # What a routing pass queues is leased to it and delivered in the same pass. Due
        # deliveries are claimed when something else queued them (a NOTIFY saying so),
        # when the last claim may have left some behind, and at the latest a poll interval
        # after the last claim (another relay's leftovers, retries coming due): not on
        # every pass.
        self._queued: list[dict[str, Any]] = []
        # Delivered rows (id, generation) leave the queue with the next claim's statement,
        # at most `flush_within` later: a crash before then delivers them once more, as a
        # crash between a signal and its delete always could.
        self._delivered: list[tuple[int, int]] = []
        # Changes routed and signalled without a delivery row: they leave the queue the
        # same way (their lease, `fresh_lease`, outlasts `flush_within`).
        self._signalled: list[int] = []
        self._claim_now = True
        self._claim_by = 0.0
        # Changes handed over by their writer (`hand_off`), to route without a claim; a
        # claim of changes is due when others queued some (`_changes_notified`), or by
        # `_changes_by` (the poll, and the flush of what was signalled).
        self._handed: list[changes_store.Claim] = []
        self._changes_notified = True
        self._changes_left = False
        self._changes_by = 0.0
        self._running = False
        self._pass_started: float | None = None

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        listening = asyncio.create_task(
            listen(
                self.pool,
                changes_store.CHANGES_CHANNEL,
                self._notified,
                stop,
                self.options.max_backoff,
            )
        )
        self._running = True
        try:
            while not stop.is_set():
                self.wake.clear()
                started = self._pass_started = time.monotonic()
                try:
                    busy = await self.run_once()
                except Exception:
                    log.exception("relay pass failed; retrying")
                    await wait_any(stop, None, self.options.max_backoff)  # no hand-offs
                    continue
                finally:
                    self._pass_started = None
                if self._outage:
                    await wait_any(stop, None, self._outage_delay())
                elif not busy:
                    due = min(self.options.poll_interval, self._claim_by - time.monotonic())
                    if self._delivered or self._signalled:
                        due = min(due, self.options.flush_within)
                    await wait_any(stop, self.wake, max(0.0, due))
                    # under load, what commits within `coalesce` of the last pass shares
                    # the next one; a change after a quiet spell goes at once
                    gap = started + self.options.coalesce - time.monotonic()
                    if gap > 0 and self.wake.is_set():
                        await wait_any(stop, None, gap)
        finally:
            self._running = False
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            try:
                await self.flush()
            except Exception:  # delivered once more by whichever relay claims them
                log.warning("relay: delivered rows left queued at shutdown", exc_info=True)

    async def run_once(self) -> bool:
        """Routes a batch of changes and delivers a batch of due deliveries. True if more
        may be waiting (a claim took a workspace's whole share): the loop then goes on at
        once; otherwise it waits for a notification (one that came during the pass wakes
        it at once) or the poll.  A pass that found a few rows is not followed by an empty
        one: that second pass was four statements per event."""
        self._more = False
        routed = await self.route_once()
        delivered = 0
        if self._queued:  # what this pass queued is leased to it: delivered without a claim
            queued, self._queued = self._queued, []
            delivered = await self._deliver(queued)
        if self._claim_now or time.monotonic() >= self._claim_by:
            delivered += await self.deliver_once()
        self._worked = routed > 0 or delivered > 0
        return self._more

    async def drain(self) -> None:
        """Routes and delivers until nothing is due (tests, shutdown); bound it with
        `asyncio.timeout` while Temporal may be unreachable."""
        self._claim_now = self._changes_notified = True
        while await self.run_once() or self._worked:
            self._claim_now = self._changes_notified = True
        await self.flush()

    async def flush(self) -> None:
        """Deletes the delivered rows and signalled changes still waiting for the next
        claim to take them."""
        delivered, self._delivered = self._delivered, []
        signalled, self._signalled = self._signalled, []
        if delivered:
            await changes_store.delete_done(self.claims, delivered)
        if signalled:
            await changes_store.delete_signalled(self.claims, signalled)

    def _notified(self, payload: str) -> None:
        if payload == changes_store.DELIVERIES_QUEUED:
            self._claim_now = True
        else:
            self._changes_notified = True
        self.wake.set()

    def _outage_delay(self) -> float:
        return min(self.options.max_backoff, self.options.min_backoff * 2 ** min(self._outage, 10))

    # --- 1. route ---------------------------------------------------------------------------

    async def route_once(self, limit: int | None = None) -> int:
        """The changes handed over since the last pass, routed without a claim; then, when
        a claim of changes is due (`_changes_due`; always when none were handed over), one
        batch of changes, routed with a fixed number of statements and no transaction
        around them: the claim (a lease, with the contacts' open enrollments), unknown
        journey versions, and (when the batch holds property, list or goal changes) active
        journeys and contacts; then one statement that deletes the changes and queues their
        deliveries, or, when they are event signals only, none: they are signalled at once
        (`_signal_routed`). A relay that dies in between leaves its changes to the next
        claim after the lease; routing them twice renews the same deliveries (or signals
        an event twice, which the workflow ignores)."""
        routed = 0
        handed, self._handed = self._handed, []
        if handed:  # all at once: a pass signals its enrollments together
            routed += await self._route(changes_store.Claim.joined(handed))
        if handed and not self._changes_due():
            return routed
        self._changes_notified = False
        self._changes_by = time.monotonic() + self.options.poll_interval
        delivered, self._delivered = self._delivered, []
        signalled, self._signalled = self._signalled, []
        async with self.claims.acquire() as conn:
            try:
                claim = await changes_store.claim_routable(
                    conn,
                    limit or self.options.batch_size,
                    self.options.fresh_lease,
                    delivered,
                    signalled,
                )
            except BaseException:
                self._delivered += delivered
                self._signalled += signalled
                raise
        self._more = self._more or claim.more
        self._changes_left = claim.more
        return routed + await self._route(claim)

    def hand_off(self, claim: changes_store.Claim) -> None:
        """Takes changes their writer queued already leased to this relay, with what a
        claim brings (`events.hand_off`): the next pass routes them without a claim. Only
        while the relay runs and Temporal answers (`takes_hand_offs`)."""
        self._handed.append(claim)
        self.wake.set()

    @property
    def takes_hand_offs(self) -> bool:
        """Whether writers should hand their changes to this relay: it is running, Temporal
        answered its last signals, and no pass has been under way for a second (Temporal
        may be going out; the client retries a signal for up to ~15 s). Otherwise changes
        wait in the queue for whichever relay gets to them first."""
        started = self._pass_started
        return (
            self._running
            and not self._outage
            and (started is None or time.monotonic() - started < 1.0)
        )

    @property
    def hand_off_lease(self) -> float:
        """Seconds the changes handed over are leased to this relay: as long as a claimed
        delivery's, since the pass that takes them signals them (a relay that dies holding
        them leaves them to another after that)."""
        return self.options.lease

    def _changes_due(self) -> bool:
        """Whether this pass claims changes after routing those handed to it: some were
        queued by others (a notification), the last claim left some behind, the poll is
        due, or what was signalled has waited `flush_within` to leave the queue."""
        now = time.monotonic()
        if self._signalled or self._delivered:
            self._changes_by = min(self._changes_by, now + self.options.flush_within)
        return self._changes_notified or self._changes_left or now >= self._changes_by

    async def _route(self, claim: changes_store.Claim) -> int:
        """Routes a claim's changes (`route_once`); the number routed."""
        changes, enrollments = claim.changes, claim.enrollments
        if not changes:
            return 0
        conn = self.claims  # a statement only when one is needed
        missing = self._versions.missing(e.version_key for e in enrollments)
        for key, definition in (await journeys_store.versions(conn, missing)).items():
            self._versions.add(key, definition)
        deliveries = route(changes, by_contact(enrollments), self._versions)
        triggering = [c for c in changes if may_trigger(c)]
        if triggering:
            # a batch of events alone needs only the journeys an event starts, whose
            # keys the claim brought (usually none; parsed once per relay)
            if all(c.kind == "event" for c in triggering):
                journeys = await self._journeys.event_triggered(conn, claim.event_journeys)
            else:
                journeys = await self._journeys.load(conn, {c.workspace for c in triggering})
            if journeys:
                views = await contact_views(
                    conn, {c.contact for c in triggering if c.kind not in ("goal", "event")}
                )
                enrolled = {(e.workspace, e.journey_id, e.contact_id) for e in enrollments}
                deliveries += candidates(triggering, journeys, views, enrolled)
        # during an outage, what was routed is written and delivered with backoff
        if self._outage or not all(
            d.kind == "event" and (d.workspace, d.seq) in claim.events for d in deliveries
        ):
            queued = await changes_store.routed(conn, changes, deliveries, self.options.fresh_lease)
            self._queued += queued  # this pass delivers them
            return len(changes)
        await self._signal_routed(changes, deliveries, claim.events)
        return len(changes)

    async def _signal_routed(
        self,
        changes: list[Change],
        deliveries: list[Delivery],
        events: dict[tuple[str, int], ContactEvent],
    ) -> None:
        """Signals a routed batch of event deliveries without writing them: as `_deliver`
        does, on rows that exist only here (negative ids). When every signal went through,
        the changes leave with the next claim; otherwise the deliveries not made are
        written (`routed`, which deletes the changes) and what became of them is settled
        on the written rows, exactly as if they had been queued first."""
        rows = [
            {
                "id": -index,
                "generation": 0,
                "attempts": 0,
                "workspace": d.workspace,
                "contact_id": d.contact_id,
                "journey_id": d.journey_id,
                "workflow_id": d.workflow_id,
                "kind": d.kind,
                "seq": d.seq,
                **_event_columns(events[(d.workspace, d.seq)]),
            }
            for index, d in enumerate(deliveries, start=1)
        ]
        outcome = Outcome()
        signals = await self._signals(rows, outcome)
        gate = asyncio.Semaphore(self.options.max_in_flight)
        await asyncio.gather(
            *(
                self._signal_enrollment(gate, wf_id, queue, outcome)
                for wf_id, queue in signals.items()
            )
        )
        if not (outcome.retry or outcome.failed or outcome.missing):
            self._signalled += [c.id for c in changes]
            self._after(outcome)
            return
        made = {row_id for row_id, _ in outcome.done}
        left = [d for d, row in zip(deliveries, rows, strict=True) if row["id"] not in made]
        async with self.claims.acquire() as conn:
            written = await changes_store.routed(conn, changes, left, self.options.fresh_lease)
        by_key = {(r["workflow_id"], r["kind"], r["seq"]): r for r in written}
        real = {
            row["id"]: by_key[(row["workflow_id"], row["kind"], row["seq"])]
            for row in rows
            if row["id"] not in made
        }
        settled = Outcome(
            retry=[(real[i]["id"], error, delay, n) for i, error, delay, n in outcome.retry],
            failed=[(real[i]["id"], error) for i, error in outcome.failed],
            missing=[(real[row["id"]], error) for row, error in outcome.missing],
            unreachable=outcome.unreachable,
        )
        await self._settle(settled)
        self._after(settled)

    # --- 2. deliver -------------------------------------------------------------------------

    async def deliver_once(self) -> int:
        self._claim_now = False
        self._claim_by = time.monotonic() + self.options.poll_interval
        rows = await changes_store.claim_due(
            self.pool, self.options.deliver_batch, self.options.lease
        )
        if not rows:
            return 0
        filled = changes_store.filled(rows)
        self._more = self._more or filled
        self._claim_now = self._claim_now or filled
        return await self._deliver(rows)

    async def _deliver(self, rows: list[dict[str, Any]]) -> int:
        """Signals what `rows` (leased to this relay) carry, and settles them."""
        outcome = Outcome()
        signals = await self._signals(rows, outcome)
        entries = [r for r in rows if r["kind"].startswith("enter")]
        gate = asyncio.Semaphore(self.options.max_in_flight)
        jobs: list[Awaitable[None]] = [
            self._signal_enrollment(gate, wf_id, queue, outcome) for wf_id, queue in signals.items()
        ]
        jobs += [self._enter(gate, row, outcome) for row in entries]
        await asyncio.gather(*jobs)
        await self._settle(outcome)
        self._after(outcome)
        return len(rows)

    def _after(self, outcome: Outcome) -> None:
        """When to claim again (the soonest retry), and whether Temporal is out."""
        if outcome.retry:
            soonest = min(delay for _, _, delay, _ in outcome.retry)
            self._claim_by = min(self._claim_by, time.monotonic() + soonest)
        if outcome.unreachable:
            self._outage += 1
            log.warning("relay: Temporal is unreachable; %d deliveries wait", len(outcome.retry))
        else:
            self._outage = 0

    async def _signals(
        self, rows: list[dict[str, Any]], outcome: Outcome
    ) -> dict[str, list[Signal]]:
        """Per enrollment, its signals in sequence order: events as stored, and one snapshot
        of the contact as it is now for any number of pending contact changes."""
        event_rows = [r for r in rows if r["kind"] == "event"]
        contact_rows = [r for r in rows if r["kind"] == "contact"]
        snapshots: dict[tuple[str, str], ContactChanged] = {}
        if contact_rows:
            snapshots = await contacts_store.snapshots(
                self.pool, {(r["workspace"], r["contact_id"]) for r in contact_rows}
            )
        per_workflow: dict[str, list[Signal]] = defaultdict(list)
        pending_snapshots: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in event_rows:
            event = changes_store.claimed_event(row)
            if event is None:  # cannot happen (events are never deleted): drop, loudly
                outcome.failed.append((row["id"], "the event is gone"))
                continue
            per_workflow[row["workflow_id"]].append(
                Signal(event.seq, "contact_event", event, (row,))
            )
        for row in contact_rows:
            pending_snapshots[row["workflow_id"]].append(row)
        for wf_id, group in pending_snapshots.items():
            snapshot = snapshots.get((group[0]["workspace"], group[0]["contact_id"]))
            if snapshot is None:
                outcome.failed.extend((r["id"], "the contact is gone") for r in group)
                continue
            per_workflow[wf_id].append(
                Signal(snapshot.seq, "contact_changed", snapshot, tuple(group))
            )
        for queue in per_workflow.values():
            queue.sort(key=lambda s: s.seq)
        return per_workflow

    async def _signal_enrollment(
        self, gate: asyncio.Semaphore, wf_id: str, queue: list[Signal], outcome: Outcome
    ) -> None:
        """Signals one enrollment, in order; stops at the first failure (the rest wait for
        the retry, so the enrollment never sees a later change before an earlier one). A
        signal Temporal refuses for good (too large) becomes a dead letter alone: the ones
        behind it go on, still in order."""
        async with gate:
            handle = self.temporal.get_workflow_handle(wf_id)
            for index, signal in enumerate(queue):
                if outcome.unreachable:
                    self._retry(queue[index:], outcome, "Temporal is unreachable", counted=False)
                    return
                try:
                    await handle.signal(
                        signal.name, signal.payload, rpc_timeout=self.options.rpc_timeout
                    )
                except RPCError as exc:
                    if exc.status == RPCStatusCode.INVALID_ARGUMENT:
                        self._failed([signal], exc, outcome)
                        continue
                    self._failed(queue[index:], exc, outcome)
                    return
                except Exception as exc:
                    self._failed(queue[index:], exc, outcome)
                    return
                outcome.done.extend((r["id"], r["generation"]) for r in signal.rows)

    async def _enter(self, gate: asyncio.Semaphore, row: dict[str, Any], outcome: Outcome) -> None:
        async with gate:
            if outcome.unreachable:
                self._retry_rows([row], outcome, "Temporal is unreachable", counted=False)
                return
            delivery = Delivery(
                workspace=row["workspace"],
                contact_id=row["contact_id"],
                journey_id=row["journey_id"],
                workflow_id=row["workflow_id"],
                kind=row["kind"],
                seq=row["seq"],
            )
            try:
                await enter(self.pool, self.temporal, self.settings, delivery)
            except Exception as exc:
                self._failed_rows([row], exc, outcome)
                return
            outcome.done.append((row["id"], row["generation"]))

    def _failed(self, queue: list[Signal], exc: Exception, outcome: Outcome) -> None:
        self._failed_rows([r for s in queue for r in s.rows], exc, outcome)

    def _failed_rows(self, rows: list[dict[str, Any]], exc: Exception, outcome: Outcome) -> None:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        status = exc.status if isinstance(exc, RPCError) else None
        if status == RPCStatusCode.NOT_FOUND:
            # Not started yet, or finished: decided from the enrollment rows in _settle.
            outcome.missing.extend((r, error) for r in rows)
        elif status == RPCStatusCode.INVALID_ARGUMENT:
            outcome.failed.extend((r["id"], error) for r in rows)
        elif status in UNAVAILABLE or (status is None and _is_connection_error(exc)):
            outcome.unreachable = True
            self._retry_rows(rows, outcome, error, counted=False)
        else:
            log.warning("relay: delivery failed (%s); will retry", error)
            self._retry_rows(rows, outcome, error, counted=True)

    def _retry(self, queue: list[Signal], outcome: Outcome, error: str, counted: bool) -> None:
        self._retry_rows([r for s in queue for r in s.rows], outcome, error, counted)

    def _retry_rows(
        self, rows: list[dict[str, Any]], outcome: Outcome, error: str, counted: bool
    ) -> None:
        for row in rows:
            attempts = row["attempts"] + (1 if counted else 0)
            if counted and attempts >= self.options.max_attempts:
                outcome.failed.append((row["id"], error))
                continue
            delay = min(self.options.max_backoff, self.options.min_backoff * 2 ** min(attempts, 10))
            outcome.retry.append((row["id"], error, delay, 1 if counted else 0))

    async def _settle(self, outcome: Outcome) -> None:
        """Writes what became of the batch: delivered rows leave (unless a newer change
        joined them meanwhile), the rest are rescheduled or parked."""
        if outcome.missing:
            # A signal to an enrollment that finished (or was never started) is moot; one
            # whose row says it runs is not started yet: try again shortly.
            ids = sorted({r["workflow_id"] for r, _ in outcome.missing})
            statuses: dict[str, str] = {
                r["workflow_id"]: r["status"]
                for r in await enrollments_store.select_statuses(self.pool, ids)
            }
            for row, error in outcome.missing:
                if statuses.get(row["workflow_id"]) in (None, "completed"):
                    outcome.done.append((row["id"], row["generation"]))
                else:
                    self._retry_rows([row], outcome, error, counted=True)
        if not (outcome.retry or outcome.failed):
            if not outcome.done:
                return
            # the usual pass: the next claim deletes them, in its own statement
            self._delivered += outcome.done
            return
        async with self.pool.acquire() as conn, conn.transaction():
            if outcome.done:
                await changes_store.delete_done(conn, outcome.done)
            if outcome.retry:
                await changes_store.retry_later(conn, outcome.retry)
            if outcome.failed:
                log.error(
                    "relay: %d deliveries given up: %s", len(outcome.failed), outcome.failed[0][1]
                )
                await changes_store.give_up(conn, outcome.failed)


def _event_columns(event: ContactEvent) -> dict[str, Any]:
    """An event as a claimed delivery's row carries it (`changes_store.claimed_event`)."""
    return {
        "event_id": event.id,
        "event_type": event.type,
        "event_target": event.target,
        "event_properties": event.properties,
        "event_occurred_at": event.occurred_at,
    }


def _is_connection_error(exc: Exception) -> bool:
    """A lazy client that cannot reach the server raises plain errors before any RPC."""
    return isinstance(exc, (RuntimeError, OSError, TimeoutError, ConnectionError))


async def run_relay(
    pool: asyncpg.Pool,
    client: Client,
    stop: asyncio.Event,
    settings: Settings | None = None,
    options: RelayOptions | None = None,
    claims: asyncpg.Pool | None = None,
) -> None:
    """Runs the relay until `stop` is set (the API runs it in its lifespan)."""
    await Relay(pool, client, settings or Settings(), options, claims).run(stop)
