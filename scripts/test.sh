#!/usr/bin/env bash
# Set up, lint, type-check and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh age openssh-client systemd restic jq udev man-db chromium poppler-utils golang-go \
  golang-golang-x-mod-dev nodejs npm
# A second age implementation for tests/test_age_interop.py (npm age-encryption 0.3.x, git-ignored).
npm install --prefix tests/interop --no-package-lock --no-audit --no-fund --loglevel=error
.venv/bin/ruff check .
.venv/bin/ruff format --check .
bash scripts/typecheck.sh
# Two worker processes, a test file each at a time (module fixtures built once): the suite mostly waits
# (cameras, timeouts, polling), so two overlap on 2 cores; pass -n 0 to run in this one process.
.venv/bin/python -m pytest -q --durations=25 -n 2 --dist loadfile "$@"
