"""Benchmarks: scripts that print figures (timing goals live here, not in tests).

`python -m bench` (or `nurture bench`) starts its own stack on free ports, measures the
product next to a bare-Temporal baseline run on the same server with the same worker
settings, prints a table and writes a JSON report. Ratios are what to compare between
machines; absolute rates depend on the machine.
"""

from __future__ import annotations

DEFAULT_SIZE = 400
"""Enrollments per throughput run at the default size; the other figures scale with it."""
