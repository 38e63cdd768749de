#!/usr/bin/env bash
# Runs the test suite (8 simulated CPU devices), creating/updating .venv first. Extra args go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/venv.sh"
cd "$ROOT"
exec python -m pytest tests "$@"
