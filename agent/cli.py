"""``bodycam-sync``: a thin click shim over the library (esptool's ``*_cli`` -> ``cmds``).

One ``main()`` turns every BodycamError into one line on stderr and the exit codes of
CONTRACT.md (1 work failed or found problems, 2 usage or configuration), Ctrl-C into 130.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bodycam.drivers.errors import BodycamError, ConfigError

from . import __version__
from . import config as config_mod

LOG = logging.getLogger("bodycam")


@dataclass
class Context:
    config_path: Path | None
    _config: config_mod.Config | None = None

    @property
    def config(self) -> config_mod.Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path)
        return self._config


pass_ctx = click.make_pass_decorator(Context)


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


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
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = Context(config_path)


# -- sim -----------------------------------------------------------------------------------------
@cli.group()
def sim() -> None:
    """Virtual cameras (the firmware emulator every test and the demo use)."""


@sim.command("serve")
@click.option("--transport", "medium", type=click.Choice(["usbip", "serial"]), required=True)
@click.option("--serial", "serial_number", required=True, help="Camera serial number.")
@click.option("--model", default=None, help="Camera model name from the registry.")
@click.option("--recordings", type=click.IntRange(0, 10_000), default=5, show_default=True)
@click.option("--training", type=click.IntRange(0, 10_000), default=3, show_default=True)
@click.option("--size", type=click.IntRange(0, 64 * 1024**3), default=4 * 1024 * 1024, show_default=True)
@click.option("--exercise", default=None, help="Exercise window START/END (ISO 8601); default the last two hours.")
@click.option("--clock-drift", type=float, default=0.0, show_default=True, help="Camera clock minus true time, s.")
@click.option("--fault", "faults", multiple=True, help="Inject a fault (see docs/protocol.md), repeatable.")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), help="Write the ground truth as JSON.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="USB/IP TCP port (0: any free port).")
@click.option("--link", type=click.Path(dir_okay=False, path_type=Path), help="Serial: stable symlink to the pty.")
def sim_serve(
    medium: str,
    serial_number: str,
    model: str | None,
    recordings: int,
    training: int,
    size: int,
    exercise: str | None,
    clock_drift: float,
    faults: tuple[str, ...],
    truth: Path | None,
    port: int,
    link: Path | None,
) -> None:
    """Run one virtual camera until SIGTERM/SIGINT; the first stdout line is JSON."""
    from bodycam.drivers import models
    from bodycam.drivers.virtual import server
    from bodycam.drivers.virtual.faults import parse_faults

    if training > recordings:
        raise ConfigError("--training must not exceed --recordings")
    try:
        camera_model = models.by_name(model) if model else models.DEFAULT_MODEL
        spec = server.SimSpec(
            serial_number, camera_model, recordings, training, size, exercise, clock_drift, parse_faults(list(faults))
        )
        camera = server.build_camera(spec)
    except (KeyError, ValueError) as err:
        raise ConfigError(str(err).strip("'\"")) from err
    if truth:
        server.write_truth(camera, truth)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    info: dict[str, Any] = {"transport": medium, "serial": serial_number}
    if medium == "usbip":
        from bodycam.drivers.virtual.usbip_device import UsbipCameraServer

        usb_server = UsbipCameraServer(
            camera,
            vid=camera_model.vid,
            pid=camera_model.pid,
            manufacturer="Bodycam Project",
            product=camera_model.name,
            serial=serial_number,
            port=port,
        )
        host, bound = usb_server.start()
        info.update(address=f"{host}:{bound}", busid=usb_server.busid)
        stopper = usb_server.stop
    else:
        from bodycam.drivers.virtual.pty_device import PtyCameraServer

        pty_server = PtyCameraServer(camera, link_path=link)
        info["device"] = pty_server.start()
        if link:
            info["link"] = str(link)
        stopper = pty_server.stop
    info["device_key"] = server.device_key_hex(serial_number)
    click.echo(json.dumps(info))
    sys.stdout.flush()
    try:
        stop.wait()
    finally:
        stopper()


# -- devices -------------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--usbip", multiple=True, metavar="HOST:PORT", help="A USB/IP server exporting cameras.")
@click.option("--serial-port", multiple=True, metavar="PATH", help="A serial port with a camera.")
@pass_ctx
def devices(ctx: Context, as_json: bool, usbip: tuple[str, ...], serial_port: tuple[str, ...]) -> None:
    """The cameras reachable now."""
    from .inventory import survey

    explicit = bool(usbip or serial_port)
    if not explicit:
        cfg = ctx.config
        usbip, serial_port = cfg.usbip, cfg.serial
    rows = survey(usbip, serial_port, discover=not explicit, enrolled=_enrolled_lookup(ctx))
    if as_json:
        emit_json({"cameras": [r.to_json() for r in rows]})
        return
    if not rows:
        click.echo("no cameras found")
        return
    header = ("SERIAL", "MODEL", "FIRMWARE", "LINK", "BATTERY", "STORAGE USED", "CLOCK OFFSET", "RECS", "ENROLLED")
    table = [header] + [
        (
            r.serial,
            r.model,
            r.firmware,
            f"{r.transport}:{r.address}",
            f"{r.battery_percent}%",
            _size(r.storage_used_bytes),
            f"{r.clock_offset_s:+.1f} s",
            str(r.recordings),
            {True: "yes", False: "NO", None: "?"}[r.enrolled],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _enrolled_lookup(ctx: Context) -> Any:
    try:
        from .journal import Journal

        cfg = ctx.config
        if not cfg.journal_path.exists():
            return None
        journal = Journal(cfg.journal_path)
        return journal.enrolled_key
    except (ImportError, BodycamError):
        return None


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit codes per CONTRACT.md, one line per error, never a traceback."""
    try:
        cli.main(args=argv, prog_name="bodycam-sync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("bodycam-sync: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(2 if isinstance(err, click.UsageError) else err.exit_code)
    except BodycamError as err:
        click.echo(f"bodycam-sync: error: {err}", err=True)
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
