#!/usr/bin/env bash
# mypy --strict on the installed namespace: agent/ and drivers/ are mapped to bodycam.agent and
# bodycam.drivers by setup.cfg, which mypy cannot follow, so check a symlinked view of them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
view=build/typecheck
mkdir -p "$view/bodycam"
ln -sfn "$root/agent" "$view/bodycam/agent"
ln -sfn "$root/drivers" "$view/bodycam/drivers"
cd "$view"
"$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" -p bodycam.agent -p bodycam.drivers
