"""What every command module shares: the click context that loads the config once, JSON output,
shell completion from the journal, and the journal opened with the dock's identity checked."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bodycam.agent import config as config_mod
from bodycam.agent.cli.startup import started
from bodycam.drivers.errors import BodycamError

if TYPE_CHECKING:
    from bodycam.agent.storage.journal import Journal


@dataclass
class Context:
    """What every command shares: the ``--config`` path and the config, loaded the first time a command asks."""

    config_path: Path | None
    _config: config_mod.Config | None = None

    @property
    def config(self) -> config_mod.Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path)
            started()  # a command asks for its config once it has imported what it runs
        return self._config


pass_ctx = click.make_pass_decorator(Context)

#: what ``devices``, ``ingest --once`` and ``clock sync`` say when they reach no camera: what to do next
NO_CAMERAS = (
    "no cameras found: dock one (USB or serial), or name it with --usbip HOST:PORT or --serial-port PATH "
    "(or cameras.usbip / cameras.serial in the config); 'bodycam-sync devices' lists what the dock reaches"
)


def _complete_from_journal(table: str) -> Callable[[click.Context, click.Parameter, str], list[str]]:
    """A click ``shell_complete`` callback listing enrolled serials or exercise ids from the journal."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        from bodycam.agent.storage.journal import peek_names

        root = ctx.find_root()
        try:
            cfg = config_mod.load(root.params.get("config_path"))
        except BodycamError:
            return []
        return peek_names(cfg.journal_path, table, incomplete)

    return complete


complete_serial = _complete_from_journal("cameras")
complete_exercise = _complete_from_journal("exercises")


def command_name() -> str:
    """How to run this CLI again from the user's shell, for the commands an output tells them to run.

    ``bodycam-sync`` when that name on ``PATH`` is this program; else this program's absolute path:
    after the README's ``bash scripts/demo.sh`` the CLI is ``.venv/bin/bodycam-sync``, not on ``PATH``."""
    import os
    import shutil
    import sys

    me = Path(sys.argv[0])
    if me.name != "bodycam-sync" or not me.exists():
        return "bodycam-sync"  # run some other way (python -m, a test harness): the documented name
    found = shutil.which("bodycam-sync")
    if found is not None and os.path.samefile(found, me):
        return "bodycam-sync"
    return str(me.absolute())


def emit_json(doc: object) -> None:
    """One JSON document on stdout, written as it is encoded (a large verify report is never one string)."""
    pending: list[str] = []
    size = 0
    for chunk in json.JSONEncoder(indent=2, sort_keys=True, default=str).iterencode(doc):
        pending.append(chunk)
        size += len(chunk)
        if size >= 65536:
            click.echo("".join(pending), nl=False)
            pending, size = [], 0
    click.echo("".join(pending))


@contextlib.contextmanager
def agent_journal(ctx: Context) -> Iterator[Journal]:
    from bodycam.agent.pipeline.handover import check_identity
    from bodycam.agent.storage.journal import Journal

    cfg = ctx.config
    journal = Journal(cfg.journal_path)
    try:
        check_identity(journal, cfg)
        yield journal
    finally:
        journal.close()


def enrolled_lookup(ctx: Context) -> Callable[[str], bytes | None] | None:
    try:
        from bodycam.agent.storage.journal import Journal

        cfg = ctx.config
        if not cfg.journal_path.exists():
            return None
        from bodycam.agent.pipeline.fleet import enrolled_lookup as fleet_enrolled

        return fleet_enrolled(cfg, Journal(cfg.journal_path))  # this dock's enrolments, then the fleet register's
    except (ImportError, BodycamError):
        return None
