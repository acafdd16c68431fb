"""``bodycam-sync firmware``: build signed images and push them to cameras."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bodycam.agent.cli.common import (
    Context,
    agent_journal,
    complete_serial,
    emit_json,
    pass_ctx,
)
from bodycam.drivers.errors import ConfigError


@click.group()
def firmware() -> None:
    """Vendor-signed camera firmware (docs/firmware.md)."""


@firmware.command("push")
@click.argument("image_path", metavar="IMAGE", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--camera",
    "cameras",
    multiple=True,
    metavar="SN",
    help="Camera serial to update, repeatable.",
    shell_complete=complete_serial,
)
@click.option("--all", "all_cameras", is_flag=True, help="Update every reachable camera the image is for.")
@click.option("--usbip", multiple=True, metavar="HOST:PORT", help="A USB/IP server exporting cameras.")
@click.option("--serial-port", multiple=True, metavar="PATH", help="A serial port with a camera.")
@click.option("--allow-downgrade", is_flag=True, help="Install even if the camera runs the same or a newer version.")
@click.option(
    "--vendor-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/etc/bodycam/vendor_ed25519.pub"),
    show_default=True,
    help="The vendor's firmware public key(s): ssh-ed25519 lines or 64 hex digits.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def firmware_push(
    ctx: Context,
    image_path: Path,
    cameras: tuple[str, ...],
    all_cameras: bool,
    usbip: tuple[str, ...],
    serial_port: tuple[str, ...],
    allow_downgrade: bool,
    vendor_key: Path,
    as_json: bool,
) -> None:
    """Install a signed firmware image; the image is verified before a byte is sent, rollback refused."""
    from bodycam.agent.pipeline import firmware as fw
    from bodycam.agent.pipeline.dockauth import load_credentials
    from bodycam.agent.pipeline.fleet import enrolled_lookup as fleet_enrolled

    if bool(cameras) == all_cameras:
        raise ConfigError("name the cameras to update: --camera SN (repeatable) or --all")
    keys = fw.load_vendor_keys(vendor_key)
    image = fw.load_image(image_path)
    fw.verify_image(image, keys)
    explicit = bool(usbip or serial_port)
    if not explicit:
        usbip, serial_port = tuple(ctx.config.usbip), tuple(ctx.config.serial)
    progress = None if as_json or not sys.stderr.isatty() else _firmware_progress
    from bodycam.agent.storage.custody_log import CustodyLog

    with agent_journal(ctx) as journal:
        report = fw.push_cameras(
            image,
            journal,
            CustodyLog.for_operator(journal, ctx.config),
            usbip=usbip,
            serial_ports=serial_port,
            discover=not explicit,
            cameras=cameras,
            all_cameras=all_cameras,
            allow_downgrade=allow_downgrade,
            on_progress=progress,
            credentials=load_credentials(ctx.config),
            enrolled=fleet_enrolled(ctx.config, journal),  # this dock's enrolment, else the fleet register's
        )
    if progress is not None:
        click.echo("", err=True)
    if as_json:
        emit_json(report.to_json())
    else:
        for r in report.results:
            if r.status == "installed":
                resumed = f", resumed at byte {r.resumed_from}" if r.resumed_from else ""
                click.echo(f"{r.serial}: firmware {r.previous_version} -> {r.version} (slot {r.slot}{resumed})")
            else:
                click.echo(f"{r.serial}: firmware {r.version} already installed")
        for skipped in report.skipped:
            click.echo(f"{skipped.camera}: skipped ({skipped.error})")
    for failure in report.failures:
        click.echo(f"bodycam-sync: error: {failure.error}", err=True)
    if not report.ok:
        sys.exit(1)


def _firmware_progress(serial: str, done: int, total: int) -> None:
    from bodycam.agent.cli.progress import _fmt_bytes, bar

    line = f"{serial}: [{bar(done / total if total else 1.0)}] {_fmt_bytes(done)}/{_fmt_bytes(total)}"
    click.echo(f"\r\x1b[K{line}", err=True, nl=False)


@firmware.command("build")
@click.argument("payload", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The vendor's Ed25519 private key (OpenSSH format, mode 0600).")  # fmt: skip
@click.option("--version", "version", required=True, help="Semantic version of the image, e.g. 1.5.0.")
@click.option("--model", "models", multiple=True, required=True, help="Camera model the image is for, repeatable.")
def firmware_build(payload: Path, out: Path, key_path: Path, version: str, models: tuple[str, ...]) -> None:
    """Build a signed image from PAYLOAD into OUT (vendors' test images)."""
    from bodycam.agent.formats.sshsig import load_private_key
    from bodycam.agent.pipeline.firmware import make_image
    from bodycam.drivers.models import MODELS

    known = {m.name for m in MODELS}
    for name in models:
        if name not in known:
            raise ConfigError(f"--model {name!r} is not a known camera model; known models: {', '.join(sorted(known))}")
    image = make_image(out, payload, version, models, load_private_key(key_path))
    click.echo(
        f"wrote {out}: firmware {image.version} for {', '.join(image.models)}, {image.size} bytes, "
        f"sha256 {image.sha256.hex()}"
    )
