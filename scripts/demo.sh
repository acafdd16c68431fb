#!/usr/bin/env bash
# Set up and run the main job on the embedded default: virtual cameras, a local bucket.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/bodycam-sync demo "$@"
