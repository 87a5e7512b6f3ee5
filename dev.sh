#!/usr/bin/env bash
# Runs the whole product locally: Temporal dev server + UI, Postgres, worker, API.
source "$(dirname "$0")/scripts/venv.sh"
exec nurture dev "$@"
