# Sourced by ./dev.sh and ./test.sh: make .venv exist and hold this checkout, installed.
# Only Python >= 3.11 and pip are assumed on the machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.nurture-installed
want="$(cat pyproject.toml requirements.lock client/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # what the product runs on, exactly as locked and hash-checked (scripts/lock.sh makes
  # the lock); then the project itself and its test tools
  .venv/bin/python -m pip install --quiet --require-hashes -r requirements.lock
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  # the Python client is a package of its own (httpx only); the suite tests it
  .venv/bin/python -m pip install --quiet -e ./client
  echo "$want" > "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
