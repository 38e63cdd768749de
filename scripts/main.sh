#!/usr/bin/env bash
# The main job on the embedded default (no downloads), creating/updating .venv first. Extra args go to the job.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/venv.sh"
cd "$ROOT"
exec python -m experiments.quickstart "$@"
