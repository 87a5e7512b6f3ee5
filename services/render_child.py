"""A render process of services/rendering.py: reads one JSON request per line on stdin
(`{"parts": {...}, "contact": {...}}`), answers one line on stdout (`{"ok": {...}}` or
`{"error": {"part", "message", "reason"}}`), with its address space capped. Ends when
stdin closes (its parent ended)."""

from __future__ import annotations

import json
import resource
import sys

from shared.templates import TOO_COSTLY, RenderError, render_parts


def _answer(line: bytes, output_chars: int) -> dict[str, object]:
    try:
        request = json.loads(line)
        given = request.get("variables")
        return {"ok": render_parts(request["parts"], request["contact"], output_chars, given)}
    except RenderError as exc:
        return {"error": {"part": exc.part, "message": exc.message, "reason": exc.reason}}
    except MemoryError:
        why = "it needs more memory than a message may"
        return {"error": {"part": "template", "message": why, "reason": TOO_COSTLY}}


def main(memory_mb: int, output_chars: int) -> None:
    cap = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        answer = _answer(line, output_chars)
        del line
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
