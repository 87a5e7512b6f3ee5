"""The I/O services: enrolling, the relay, triggers, audiences and the sender (see
docs/design.md, "Processes")."""
