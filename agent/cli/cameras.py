"""Cameras on this dock: listing them, enrolling their keys, allocating them to officers, their clocks
(and the dock's own agreement clock mark, which a clock set wrongly can leave in the future)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from bodycam.agent.cli.common import (
    NO_CAMERAS,
    Context,
    agent_journal,
    command_name,
    complete_serial,
    emit_json,
    enrolled_lookup,
    pass_ctx,
)
from bodycam.agent.cli.render import iso, size_text
from bodycam.drivers.errors import BodycamError, ConfigError

if TYPE_CHECKING:
    from bodycam.agent.pipeline.inventory import CameraSummary


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--usbip", multiple=True, metavar="HOST:PORT", help="A USB/IP server exporting cameras.")
@click.option("--serial-port", multiple=True, metavar="PATH", help="A serial port with a camera.")
@pass_ctx
def devices(ctx: Context, as_json: bool, usbip: tuple[str, ...], serial_port: tuple[str, ...]) -> None:
    """The cameras reachable now."""
    from bodycam.agent.pipeline.inventory import survey

    explicit = bool(usbip or serial_port)
    if not explicit:
        cfg = ctx.config
        usbip, serial_port = cfg.usbip, cfg.serial
    result = survey(usbip, serial_port, discover=not explicit, enrolled=enrolled_lookup(ctx))
    if as_json:
        emit_json(
            {"cameras": [r.to_json() for r in result.cameras], "problems": [p.to_json() for p in result.problems]}
        )
    else:
        _print_devices(result.cameras)
    for problem in result.problems:  # an address the operator named fails the command; discovery's only warn
        click.echo(f"bodycam-sync: {'error' if problem.explicit else 'warning'}: {problem.error}", err=True)
    if not result.ok:
        sys.exit(1)


def _print_devices(rows: list[CameraSummary]) -> None:
    if not rows:
        click.echo(NO_CAMERAS)
        return
    header = (
        "SERIAL", "MODEL", "FIRMWARE", "LINK", "BATTERY", "STORAGE USED", "CLOCK OFFSET", "RECS", "ENROLLED", "PAIRED",
        "DEVICE KEY",
    )  # fmt: skip
    table = [header] + [
        (
            r.serial,
            r.model,
            r.firmware,
            f"{r.transport}:{r.address}",
            f"{r.battery_percent}%",
            size_text(r.storage_used_bytes),
            f"{r.clock_offset_s:+.1f} s",
            str(r.recordings),
            {True: "yes", False: "NO", None: "?"}[r.enrolled],
            {"paired": "yes", "unpaired": "no", "unsupported": "cannot"}.get(r.pairing, "?"),
            r.device_key_fingerprint,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@click.command()
@click.argument("serial", shell_complete=complete_serial)
@click.option(
    "--key",
    "device_key",
    required=True,
    help="The camera's Ed25519 device public key (64 hex digits) from the vendor's enrolment sheet.",
)
@click.option("--model", default=None, help="The camera's model, as on the enrolment sheet (kept on the dock).")
@click.option("--replace", is_flag=True, help="Trust this key instead of the one the serial is enrolled with.")
@pass_ctx
def enroll(ctx: Context, serial: str, device_key: str, model: str | None, replace: bool) -> None:
    """Enrol a camera with the key on the vendor's enrolment sheet (never the key a camera presents).

    The dock talks only to cameras that prove they hold their enrolled key. Enrolments, and a
    replaced key, are custody entries."""
    from bodycam.drivers.protocol.messages import serial_problem, valid_serial

    if not valid_serial(serial):  # the alphabet IDENTIFY enforces: a serial it refuses could never authenticate
        raise ConfigError(serial_problem(serial))
    try:
        raw = bytes.fromhex(device_key)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            "--key must be 64 hex digits (the camera's Ed25519 public key, from the vendor's enrolment sheet)"
        )
    from bodycam.agent.pipeline.enrolment import enroll as enroll_camera
    from bodycam.agent.storage.custody_log import CustodyLog
    from bodycam.drivers.device.camera import key_fingerprint

    with agent_journal(ctx) as journal:
        done = enroll_camera(journal, CustodyLog.for_operator(journal, ctx.config), serial, raw, model, replace=replace)
    what = {"enrolled": "enrolled", "replaced": "re-enrolled", "unchanged": "already enrolled"}[done]
    click.echo(f"{what} camera {serial} with device key {key_fingerprint(raw)}")


@click.command()
@click.argument("serial", shell_complete=complete_serial)
@click.option(
    "--officer", default=None, help="Officer id (kept on the dock; the bucket sees a pseudonym). Omit to show history."
)
@click.option("--at", "at_text", default=None, help="Allocation time, ISO 8601 (default: now).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def allocate(ctx: Context, serial: str, officer: str | None, at_text: str | None, as_json: bool) -> None:
    """Allocate an enrolled camera to an officer, and show the camera's allocation history.

    Without --officer, only shows the history."""
    import time

    from bodycam.agent.formats.manifest import load_pseudonym_key
    from bodycam.agent.pipeline.enrolment import allocate as allocate_camera
    from bodycam.agent.pipeline.enrolment import consulted
    from bodycam.agent.pipeline.fleet import enrolled_lookup as fleet_enrolled
    from bodycam.agent.pipeline.policy import parse_time
    from bodycam.agent.storage.custody_log import CustodyLog

    if officer is not None and (not officer.strip() or len(officer) > 64):
        raise ConfigError("--officer must be 1-64 characters")
    if officer is None and at_text is not None:
        raise ConfigError("--at needs --officer (without --officer, allocate only shows the history)")
    when = parse_time(at_text, "--at") if at_text else time.time()
    with agent_journal(ctx) as journal:
        if officer is not None:
            if fleet_enrolled(ctx.config, journal)(serial) is None:  # this dock's, or the fleet register's
                raise ConfigError(
                    f"camera {serial} is not enrolled on this dock; check the serial, or enrol it first "
                    f"('bodycam-sync enroll {serial} --key HEX' with the key from the vendor's enrolment sheet)"
                )
            custody = CustodyLog.for_operator(journal, ctx.config)
            secret = load_pseudonym_key(ctx.config.pseudonym_key_path, create=True)
            allocate_camera(journal, custody, serial, officer.strip(), when, secret)
        history = [
            {"serial": r["serial"], "officer": r["officer"], "at": iso(r["at"])} for r in journal.allocations(serial)
        ]
        if history:  # officer ids shown: a s.62 consultation
            consulted(CustodyLog.for_operator(journal, ctx.config), "allocations", serial)
    if as_json:
        emit_json({"allocations": history})
    elif not history:
        click.echo(f"camera {serial} has never been allocated")
    else:
        if officer is not None:  # say what was done before the bare rows of the history
            click.echo(f"allocated {serial} to {officer.strip()} (kept on this dock; the bucket sees a pseudonym)")
        click.echo(f"allocation history of {serial} (from, camera, officer):")
        for item in history:
            click.echo(f"  {item['at']}  {item['serial']}  {item['officer']}")


@click.group()
def clock() -> None:
    """Camera clocks, and the dock's agreement clock mark."""


@clock.command("sync")
@click.option("--camera", "serial", default=None, help="Only this camera.", shell_complete=complete_serial)
@click.option("--usbip", multiple=True, metavar="HOST:PORT", help="A USB/IP server exporting cameras.")
@click.option("--serial-port", multiple=True, metavar="PATH", help="A serial port with a camera.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def clock_sync(
    ctx: Context, serial: str | None, usbip: tuple[str, ...], serial_port: tuple[str, ...], as_json: bool
) -> None:
    """Measure each camera's clock drift and set it to the dock's clock.

    Both readings are journaled (with the camera's clock epoch) and each recording's first-listing
    offset is noted, so footage stamped before this set is still placed at the next ingest."""
    from bodycam.agent.pipeline import clocks
    from bodycam.agent.pipeline.dockauth import load_credentials, secure_link
    from bodycam.agent.pipeline.fleet import enrolled_lookup as fleet_enrolled
    from bodycam.agent.pipeline.intake import Intake
    from bodycam.agent.pipeline.inventory import opened_cameras
    from bodycam.agent.storage.custody_log import CustodyLog

    cfg = ctx.config
    credentials = load_credentials(cfg)
    explicit = bool(usbip or serial_port)
    results = []
    with (
        agent_journal(ctx) as journal,
        opened_cameras(usbip or cfg.usbip, serial_port or cfg.serial, discover=not explicit) as cams,
    ):
        for cam in cams:
            ident = cam.open()
            if serial and ident.serial != serial:
                continue
            cam.authenticate(fleet_enrolled(cfg, journal)(ident.serial))
            secure_link(cam, credentials, CustodyLog.for_operator(journal, cfg).append, record_unprotected=False)
            intake = Intake.open(journal, ident.serial, cfg)
            custody = CustodyLog.for_operator(journal, cfg)
            docked = clocks.read_list_and_set(journal, custody, ident.serial, cam, intake)
            held = intake.error()
            if held is not None:  # the clock was left as it was: the recordings held back were stamped under it
                custody.error(held, camera=ident.serial)
                raise held
            before, after = docked.before, docked.after
            results.append(
                {"camera": ident.serial, "drift_s": round(before.offset_s, 3), "after_s": round(after.offset_s, 3)}
            )
    if serial and not results:
        raise BodycamError(f"camera {serial} is not reachable")
    if as_json:
        emit_json({"cameras": results})
    elif not results:
        click.echo(NO_CAMERAS)
    else:
        for r in results:
            click.echo(f"{r['camera']}: drift {r['drift_s']:+.3f} s, now {r['after_s']:+.3f} s")


@clock.command("reset-mark")
@click.option("--yes", is_flag=True, help="Reset the mark; without it, only say what would be reset (exit 2).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def clock_reset_mark(ctx: Context, yes: bool, as_json: bool) -> None:
    """Reset the dock's agreement clock mark to the dock's clock, when the clock reads behind it.

    The dock never judges data-sharing agreements by a time earlier than the latest it judged them by
    (so an expired agreement cannot cover footage again), and discloses nothing while its clock reads
    over 120 s behind that mark. A clock once set ahead by mistake and then corrected leaves the mark in
    the future, and the footage on the cameras until real time reaches it: check the dock's clock is
    right (chronyc tracking), then reset the mark to it. Recorded in custody (agreement_clock_reset,
    with the old and new mark). Refused (exit 2) when the mark is not ahead of the clock."""
    import time

    from bodycam.agent.pipeline import agreementclock
    from bodycam.agent.storage.custody_log import CustodyLog

    with agent_journal(ctx) as journal:
        if not yes:
            shown = agreementclock.pending(journal, time.time())
            raise ConfigError(
                f"the agreement clock mark is {agreementclock.readable(shown.previous)}, "
                f"{shown.previous - shown.mark:.0f} s ahead of the dock's clock ({agreementclock.readable(shown.mark)}); "
                f"if the clock is right (chronyc tracking), run '{command_name()} clock reset-mark --yes' to reset "
                "the mark to it (recorded in custody)"
            )
        done = agreementclock.reset(journal, CustodyLog.for_operator(journal, ctx.config), time.time())
    was, now = agreementclock.readable(done.previous), agreementclock.readable(done.mark)
    if as_json:
        emit_json({"previous_mark": was, "mark": now})
    else:
        click.echo(
            f"agreement clock mark reset from {was} to {now} (custody agreement_clock_reset); "
            "the next docking judges agreements by the dock's clock again"
        )
