"""``bodycam-sync``: a thin click shim over the library (esptool's ``*_cli`` -> ``cmds``).

One ``main()`` turns every BodycamError into one line on stderr and the exit codes of
docs/cli.md (1 work failed or found problems, 2 usage or configuration), Ctrl-C into 130.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path

import click

from bodycam.agent import __version__
from bodycam.agent.cli.common import Context
from bodycam.agent.cli.logsetup import error_line
from bodycam.agent.cli.startup import started
from bodycam.drivers.errors import BodycamError

LOG = logging.getLogger("bodycam")


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's subcommands by name, each imported from its module the first time it is looked up.

    click's LazyGroup pattern, made a mapping: ``bodycam-sync ingest`` imports ``cli/ingest.py`` only,
    while ``--help``, shell completion and click-man (which walks ``group.commands`` itself) look every
    command up and so see exactly what they saw when every module was imported up front, in the same
    order. A spec is ``"module:attribute"`` under ``bodycam.agent.cli``, or a function returning the command.
    """

    def __init__(self, specs: tuple[tuple[str, str | Callable[[], click.Command]], ...]) -> None:
        self._entries: dict[str, click.Command | str | Callable[[], click.Command]] = dict(specs)

    def __getitem__(self, name: str) -> click.Command:
        entry = self._entries[name]
        if isinstance(entry, click.Command):
            return entry
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            command = getattr(importlib.import_module(f"bodycam.agent.cli.{module}"), attribute)
        else:
            command = entry()
        if not isinstance(command, click.Command) or command.name != name:
            raise TypeError(f"COMMANDS entry {name!r} -> {entry!r} is not the command {name!r}")
        self._entries[name] = command  # replaces the value in place: the order stays the registration order
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._entries[name] = command

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _agreement() -> click.Command:
    """``agreement``, with ``agreement publish`` from the fleet module (it writes to the fleet's prefix)."""
    from bodycam.agent.cli import agreements, fleet

    agreements.agreement.add_command(fleet.agreement_publish)
    return agreements.agreement


#: one module per command group (docs/ARCHITECTURE.md); each command is a thin shim over the library.
#: (name, "module:attribute" under bodycam.agent.cli): a module is imported only when its command runs
#: (or --help, completion or the man pages list it); tests/test_startup.py checks every entry.
COMMANDS: tuple[tuple[str, str | Callable[[], click.Command]], ...] = (
    ("sim", "sim:sim"),
    ("devices", "cameras:devices"),
    ("keys", "keys:keys"),
    ("authority", "keys:authority"),
    ("dock", "keys:dock"),
    ("enroll", "cameras:enroll"),
    ("allocate", "cameras:allocate"),
    ("firmware", "firmware:firmware"),
    ("exercise", "exercise:exercise"),
    ("recipients", "agreements:recipients"),
    ("agreement", _agreement),
    ("fleet", "fleet:fleet"),
    ("ingest", "ingest:ingest"),
    ("verify", "verify:verify_cmd"),
    ("receive", "receive:receive"),
    ("proof", "proof:proof_cmd"),
    ("verify-proof", "proof:verify_proof_cmd"),
    ("demo", "ingest:demo"),
    ("daemon", "service:daemon"),
    ("status", "service:status"),
    ("sync", "service:sync"),
    ("eject", "service:eject"),
    ("watch", "service:watch"),
    ("clock", "cameras:clock"),
    ("witness", "witness:witness"),
    ("retention", "retention:retention"),
    ("disclosures", "disclosures:disclosures"),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, commands=LazyCommands(COMMANDS))
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML config (default: $BODYCAM_CONFIG, then /etc/bodycam/agent.toml, else the embedded default).",
)
@click.option("-v", "--verbose", count=True, help="More log detail on stderr (-vv for debug).")
@click.version_option(__version__, prog_name="bodycam-sync")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """Docking-station agent for police body-worn cameras: training footage to encrypted,
    signed, verifiable evidence in a shared bucket.

    Exit status: 0 success, 1 the work failed or found problems, 2 usage or configuration error; an
    error is one line on stderr. COMMAND --help (or man bodycam-sync-COMMAND) for each command."""
    from bodycam.agent.cli.logsetup import configure

    configure(max(logging.WARNING - 10 * verbose, logging.DEBUG))
    ctx.obj = Context(config_path)


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit codes per docs/cli.md, one line per error, never a traceback."""
    try:
        cli.main(args=argv, prog_name="bodycam-sync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("bodycam-sync: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as err:  # `bodycam-sync`, `bodycam-sync keys`: the help, not an error
        click.echo(err.format_message(), err=True)
        sys.exit(2)
    except click.UsageError as err:
        command = err.ctx.command_path if err.ctx is not None else "bodycam-sync"
        click.echo(f"bodycam-sync: error: {err.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except click.ClickException as err:
        click.echo(f"bodycam-sync: error: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except BodycamError as err:
        click.echo(error_line(f"bodycam-sync: error: {err}"), err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("bodycam-sync: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        os._exit(1)
    except Exception as err:
        LOG.debug("internal error", exc_info=True)
        click.echo(f"bodycam-sync: internal error: {type(err).__name__}: {err} (rerun with -vv for details)", err=True)
        sys.exit(1)
    finally:
        started()
    sys.exit(0)
