#!/usr/bin/env bash
# Runs the whole check: lint, types, and the test suite against real servers.
source "$(dirname "$0")/scripts/venv.sh"
# the web view's tests drive the distribution's Chromium (never a downloaded browser)
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test.sh: install chromium (apt-get install chromium) for tests/web" >&2
  fi
fi
ruff check .
ruff format --check .
mypy
exec pytest "$@"
