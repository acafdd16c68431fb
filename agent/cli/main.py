"""``bodycam-sync``: a thin click shim over the library (esptool's ``*_cli`` -> ``cmds``).

One ``main()`` turns every BodycamError into one line on stderr and the exit codes of
docs/cli.md (1 work failed or found problems, 2 usage or configuration), Ctrl-C into 130.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from bodycam.agent import __version__
from bodycam.agent.cli import (
    agreements,
    cameras,
    exercise,
    firmware,
    fleet,
    ingest,
    keys,
    proof,
    receive,
    retention,
    service,
    sim,
    verify,
    witness,
)
from bodycam.agent.cli.common import Context
from bodycam.agent.cli.disclosures import disclosures
from bodycam.agent.cli.logsetup import error_line
from bodycam.drivers.errors import BodycamError

LOG = logging.getLogger("bodycam")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    signed, verifiable evidence in a shared bucket."""
    from bodycam.agent.cli.logsetup import configure

    configure(max(logging.WARNING - 10 * verbose, logging.DEBUG))
    ctx.obj = Context(config_path)


#: one module per command group (docs/ARCHITECTURE.md); each command is a thin shim over the library
COMMANDS: tuple[click.Command, ...] = (
    sim.sim,
    cameras.devices,
    keys.keys,
    keys.authority,
    keys.dock,
    cameras.enroll,
    cameras.allocate,
    firmware.firmware,
    exercise.exercise,
    agreements.recipients,
    agreements.agreement,
    fleet.fleet,
    ingest.ingest,
    verify.verify_cmd,
    receive.receive,
    proof.proof_cmd,
    proof.verify_proof_cmd,
    ingest.demo,
    service.daemon,
    service.status,
    service.sync,
    service.eject,
    service.watch,
    cameras.clock,
)
for _command in COMMANDS:
    cli.add_command(_command)
cli.add_command(witness.witness)
agreements.agreement.add_command(fleet.agreement_publish)
cli.add_command(retention.retention)
cli.add_command(disclosures)


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit codes per docs/cli.md, one line per error, never a traceback."""
    try:
        cli.main(args=argv, prog_name="bodycam-sync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("bodycam-sync: interrupted", err=True)
        sys.exit(130)
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
    sys.exit(0)
