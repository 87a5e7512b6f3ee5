#!/usr/bin/env bash
# Runs the whole check: lint, types, and the test suite against real servers.
source "$(dirname "$0")/scripts/venv.sh"
ruff check .
ruff format --check .
mypy
exec pytest "$@"
