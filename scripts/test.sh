#!/usr/bin/env bash
# Lints (ruff, configured in pyproject.toml) and runs the test suite (8 simulated CPU devices), creating/updating
# .venv first. Extra args go to pytest; the ten slowest tests are listed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/venv.sh"
cd "$ROOT"
ruff check .
exec python -m pytest tests "$@"
