"""Man pages are generated from the click commands (click-man) and installed with the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# click-man 0.6 calls a click helper that click 8.2+ marks deprecated; the pages it writes are unaffected
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:click_man.core")

ROOT = Path(__file__).resolve().parent.parent


def test_man_pages_are_current_with_the_commands(tmp_path: Path) -> None:
    from click_man.core import write_man_pages

    from bodycam.agent import __version__
    from bodycam.agent.cli.main import cli
    from bodycam.agent.cli.manpages import name_commands

    name_commands(cli)  # as scripts/manpages.sh does
    write_man_pages("bodycam-sync", cli, version=__version__, target_dir=str(tmp_path), date="2026-12-01")
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.1")}
    shipped = {p.name: p.read_text() for p in (ROOT / "docs" / "man").glob("*.1")}
    assert sorted(fresh) == sorted(shipped), "run 'bash scripts/manpages.sh' after changing the commands"
    stale = [name for name in fresh if fresh[name] != shipped[name]]
    assert stale == [], f"stale man pages {stale}: run 'bash scripts/manpages.sh'"
    assert "bodycam-sync-verify.1" in fresh and ".SH OPTIONS" in fresh["bodycam-sync-verify.1"]


def test_set_up_installs_the_man_pages_beside_the_command() -> None:
    man1 = Path(sys.executable).parent.parent / "share" / "man" / "man1"
    assert (man1 / "bodycam-sync.1").is_file() and (man1 / "bodycam-sync-ingest.1").is_file()
    setup = (ROOT / "setup.cfg").read_text()
    assert "share/man/man1 = docs/man/*.1" in setup  # what a wheel install puts there


def test_man_renders_the_page() -> None:
    page = ROOT / "docs" / "man" / "bodycam-sync-ingest.1"
    proc = subprocess.run(
        ["man", "-l", str(page)],
        capture_output=True,
        text=True,
        env={"MANPAGER": "cat", "COLUMNS": "100", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--once" in proc.stdout


def test_a_page_is_named_by_its_command_s_first_clause_not_cut_at_45_characters() -> None:
    """`man -k bodycam` listed 'Pull in-scope footage from every reachable...', each page's NAME cut by click."""
    names = {}
    for page in (ROOT / "docs" / "man").glob("*.1"):
        text = page.read_text()
        names[page.name] = text.split(".SH NAME\n", 1)[1].split("\n", 1)[0]
    assert not [n for n in names.values() if n.endswith("...")], names
    assert names["bodycam-sync-ingest.1"].endswith("Pull in-scope footage from every reachable camera into the bucket")
