"""The journey's own writes against the caller's snapshots (docs/design.md, "Stage
moves").

The journey writes the stage property (and end lists) itself, and hears of every contact
change as a full snapshot of the contact. A snapshot older than one of the journey's own
writes must not undo it, nor read as the caller moving the contact; a caller's value that
raced a write of the journey's still in flight wins (the database refuses the write, or a
snapshot held back meanwhile turns out newer). These functions keep that bookkeeping on
the enrollment's state; they are pure, and the workflow calls them from its handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.enrollment import ContactChanged, EnrollmentState, HeldValue, OwnWrite, WriteProperty

LIST_PREFIX = "list:"


def write_locally(state: EnrollmentState, prop: str, value: Any) -> None:
    """The journey sets a property: the contact shows it at once, and it is an own write
    until its commit's sequence is known."""
    state.contact = state.contact.model_copy(
        update={"properties": {**state.contact.properties, prop: value}}
    )
    state.own_writes[prop] = OwnWrite(value=value)


def stage_write(state: EnrollmentState, prop: str, value: Any) -> list[WriteProperty]:
    """The journey writes `value` to the stage property unless the contact holds it: a
    conditional write (a caller's value committed first wins), shown locally at once."""
    was = state.contact.properties.get(prop)
    if was == value:
        return []
    write = WriteProperty(property=prop, value=value, conditional=True, expected=was)
    write_locally(state, prop, value)
    return [write]


def join_locally(state: EnrollmentState, name: str) -> None:
    """The journey adds the contact to a list (an end's `add_to_list`)."""
    state.contact = state.contact.with_lists({*state.contact.lists, name})
    state.own_writes[f"{LIST_PREFIX}{name}"] = OwnWrite(value=True)


def dated(state: EnrollmentState, key: str, value: Any, seq: int | None) -> None:
    """An own write committed with sequence `seq`: snapshots at or above it reflect it."""
    own = state.own_writes.get(key)
    if own is not None and own.seq is None and own.value == value and seq is not None:
        own.seq = seq


def apply_snapshot(state: EnrollmentState, change: ContactChanged) -> None:
    """Takes a newer snapshot of the contact's properties and lists, keeping the journey's
    own writes the snapshot does not reflect yet (and remembering, for a write still in
    flight, what the snapshot held instead, for `settle`)."""
    state.snapshot_seq = change.seq
    properties = dict(change.properties)
    lists = set(change.lists)
    for key, own in list(state.own_writes.items()):
        if own.seq is not None and own.seq <= change.seq:
            del state.own_writes[key]  # the snapshot already reflects it
        elif key.startswith(LIST_PREFIX):
            lists.add(key.removeprefix(LIST_PREFIX))
        else:
            if own.seq is None:  # in flight: settled by `settle`
                own.held = (
                    HeldValue(seq=change.seq, value=properties.get(key), present=True)
                    if key in properties and properties[key] != own.value
                    else HeldValue(seq=change.seq)
                    if key not in properties
                    else None
                )
            properties[key] = own.value
    state.contact = state.contact.model_copy(
        update={
            "properties": properties,
            "lists": sorted(lists),
            "event_seq": max(state.contact.event_seq, change.seq),
        }
    )


def settle(
    state: EnrollmentState,
    refused: dict[str, Any],
    patched: Callable[[], bool],
    caller_value: Callable[[str, HeldValue], None],
) -> None:
    """After a commit: an own write the database refused (`refused`: property → value),
    or one a held-back snapshot turns out newer than, gives way to the caller's value,
    which `caller_value` applies as if its snapshot arrived now. `patched` says whether
    this run has the behaviour (older histories kept the journey's value); it is asked
    exactly where a decision needs it."""
    for key, own in list(state.own_writes.items()):
        lost = key in refused and own.seq is None and own.value == refused[key]
        held = own.held
        if not lost:
            if held is None or own.seq is None:
                continue
            if held.seq <= own.seq:  # the snapshot predates the write
                own.held = None
                continue
        if not patched():
            continue
        del state.own_writes[key]
        if held is not None:
            caller_value(key, held)


def take_held(state: EnrollmentState, key: str, held: HeldValue) -> Any:
    """Applies a caller's held value of a property; the value it had before."""
    properties = dict(state.contact.properties)
    before = properties.get(key)
    if held.present:
        properties[key] = held.value
    else:
        properties.pop(key, None)
    state.contact = state.contact.model_copy(update={"properties": properties})
    return before
