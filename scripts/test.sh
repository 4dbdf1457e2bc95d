#!/usr/bin/env bash
# The README's test command: set up (idempotent), lint, type-check, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOXDISTILL_TEST_DATA=${TOXDISTILL_TEST_DATA:-$(cd .. && pwd)/shared/data/davidson/labeled_data.csv}
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy  # type check of src/ (settings in pyproject.toml)
# --durations: the suite's slowest tests and its total time land in every CI log.
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
