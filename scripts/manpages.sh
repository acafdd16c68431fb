#!/usr/bin/env bash
# Regenerate the man pages in docs/man from the click commands (click-man); tests/test_manpages.py checks they are current.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f docs/man/*.1
.venv/bin/python - <<'PY'
from click_man.core import write_man_pages

from bodycam.agent import __version__
from bodycam.agent.cli.main import cli
from bodycam.agent.cli.manpages import name_commands

name_commands(cli)  # each page's NAME: the command's first clause, not click's 45 characters and "..."
# a fixed date keeps the pages reproducible: they change only when the commands do
write_man_pages("bodycam-sync", cli, version=__version__, target_dir="docs/man", date="2026-12-01")
PY
