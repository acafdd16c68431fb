"""``bodycam-sync sim``: virtual cameras for tests, demos and benches (never used by a dock)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import click

from bodycam.drivers.errors import ConfigError


@click.group()
def sim() -> None:
    """Virtual cameras (the firmware emulator every test and the demo use)."""


@sim.command("serve")
@click.option(
    "--transport",
    "medium",
    type=click.Choice(["usbip", "serial"]),
    required=True,
    help="Export the camera over USB/IP (a TCP port) or a serial pty.",
)
@click.option("--serial", "serial_number", required=True, help="Camera serial number.")
@click.option("--model", default=None, help="Camera model name from the registry.")
@click.option(
    "--recordings", type=click.IntRange(0, 10_000), default=5, show_default=True, help="Recordings on the camera."
)
@click.option(
    "--training",
    type=click.IntRange(0, 10_000),
    default=3,
    show_default=True,
    help="Of those, training footage inside --exercise; the rest operational or outside it.",
)
@click.option(
    "--size",
    type=click.IntRange(0, 64 * 1024**3),
    default=4 * 1024 * 1024,
    show_default=True,
    help="Bytes of each recording.",
)
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
    info: dict[str, object] = {"transport": medium, "serial": serial_number}
    if medium == "usbip":
        usb_server = server.usbip_server(camera, port=port)
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
    info["model"] = camera.model.name
    click.echo(json.dumps(info))
    sys.stdout.flush()
    try:
        stop.wait()
    finally:
        stopper()


@sim.command("vendor-key")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Private key path.")
def sim_vendor_key_cmd(out: Path) -> None:
    """Write the simulator vendor's firmware key pair (OUT, OUT.pub) for test images.

    Virtual cameras trust this key; its private half is public knowledge (docs/firmware.md), so it
    signs test images only. Real cameras trust only their vendor's key."""
    from bodycam.agent.formats.sshsig import write_key
    from bodycam.drivers.virtual.camera import sim_vendor_key

    line = write_key(out, sim_vendor_key(), "bodycam-sim-vendor")
    click.echo(line)
    click.echo(f"wrote {out} (private, 0600) and {out}.pub", err=True)
