#!/usr/bin/env bash
# Writes requirements.lock: every runtime dependency of pyproject.toml, pinned, with the
# hashes of its files. Run after changing `dependencies`; the image and ./test.sh install
# from it (pip --require-hashes) and tests/test_compose.py checks it matches.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$(mktemp -d)"
python3 -m venv "$tools"
"$tools/bin/pip" install --quiet pip-tools
"$tools/bin/pip-compile" --quiet --generate-hashes --strip-extras --no-emit-index-url \
  --no-emit-find-links --output-file requirements.lock pyproject.toml
rm -rf "$tools"
