"""What an edit of a journey changed, by path, for its version history. Pure."""

from __future__ import annotations

from typing import Any

MAX_CHANGES = 100
"""Changes listed per version; more are summed up in one last entry."""


def changes_between(before: Any, after: Any) -> list[dict[str, Any]]:
    """What an edit changed, by path (`stages[onboarding].actions[1].duration`): stages
    are matched by key, other lists by position; scalar changes carry before and after."""
    found: list[dict[str, Any]] = []
    _diff(before, after, "", found)
    if len(found) > MAX_CHANGES:
        more = len(found) - MAX_CHANGES + 1
        found = [*found[: MAX_CHANGES - 1], {"path": "", "change": f"{more} more changes"}]
    return found


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(not isinstance(v, dict | list) for v in value)
    return not isinstance(value, dict)


def _diff(before: Any, after: Any, path: str, found: list[dict[str, Any]]) -> None:
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            if key not in after:
                found.append({"path": _join(path, key), "change": "removed"})
            elif key not in before:
                found.append({"path": _join(path, key), "change": "added"})
            else:
                _diff(before[key], after[key], _join(path, key), found)
        return
    if isinstance(before, list) and isinstance(after, list) and not _plain(before + after):
        keyed = all(isinstance(v, dict) and "key" in v for v in before + after)
        if keyed:
            old = {v["key"]: v for v in before}
            new = {v["key"]: v for v in after}
            for key in [*old, *(k for k in new if k not in old)]:
                where = f"{path}[{key}]"
                if key not in new:
                    found.append({"path": where, "change": "removed"})
                elif key not in old:
                    found.append({"path": where, "change": "added"})
                else:
                    _diff(old[key], new[key], where, found)
            return
        for i in range(max(len(before), len(after))):
            where = f"{path}[{i}]"
            if i >= len(after):
                found.append({"path": where, "change": "removed"})
            elif i >= len(before):
                found.append({"path": where, "change": "added"})
            else:
                _diff(before[i], after[i], where, found)
        return
    change: dict[str, Any] = {"path": path, "change": "changed"}
    if _plain(before) and _plain(after):
        change.update(before=before, after=after)
    found.append(change)
