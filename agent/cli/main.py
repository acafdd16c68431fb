"""``bodycam-sync``: a thin click shim over the library (esptool's ``*_cli`` -> ``cmds``).

One ``main()`` turns every BodycamError into one line on stderr and the exit codes of
docs/cli.md (1 work failed or found problems, 2 usage or configuration), Ctrl-C into 130.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bodycam.agent import __version__
from bodycam.agent import config as config_mod
from bodycam.agent.cli.logsetup import error_line
from bodycam.drivers.errors import BodycamError, ConfigError

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


def _complete_from_journal(table: str) -> Any:
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


def emit_json(doc: Any) -> None:
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


# -- devices -------------------------------------------------------------------------------------
@cli.command()
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
    result = survey(usbip, serial_port, discover=not explicit, enrolled=_enrolled_lookup(ctx))
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


def _print_devices(rows: list[Any]) -> None:
    if not rows:
        click.echo("no cameras found")
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
            _size(r.storage_used_bytes),
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


# -- keys, cameras, exercises, recipients ---------------------------------------------------------
@cli.group()
def keys() -> None:
    """The dock's signing key."""


@keys.command("init")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Key path (default: the config's signing.key, else STATE_DIR/keys/dock_ed25519).",
)
@pass_ctx
def keys_init(ctx: Context, out: Path | None) -> None:
    """Write a new Ed25519 dock key (OpenSSH format, 0600) and PATH.pub; print its allowed_signers line.

    The line goes to stdout (for an allowed_signers file); where the key was written goes to stderr."""
    from bodycam.agent.formats.sshsig import allowed_signers_line, generate_key, parse_public_key_line
    from bodycam.agent.storage.journal import private_dir

    cfg = ctx.config
    path = out or cfg.key_path
    if path.exists():
        raise ConfigError(
            f"a dock key already exists at {path}; to replace it use 'bodycam-sync keys rotate --out NEW_PATH' "
            "(the old key co-signs the hand-over), or 'bodycam-sync keys show' to print its allowed_signers line"
        )
    if path.is_relative_to(cfg.state_dir):
        private_dir(cfg.state_dir)  # else mkdir(parents=True) would create it with the umask's mode
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = generate_key(path, cfg.dock_id)
    click.echo(allowed_signers_line(cfg.dock_id, parse_public_key_line(line)))
    click.echo(f"wrote {path} (private, 0600) and {path}.pub", err=True)


@keys.command("show")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_show(ctx: Context, as_json: bool) -> None:
    """Print the dock key's allowed_signers line again (for an auditor's allowed_signers file)."""
    from bodycam.agent.formats.sshsig import allowed_signers_line, fingerprint, load_private_key
    from bodycam.agent.storage.docklog import verifier_key

    cfg = ctx.config
    private = load_private_key(cfg.key_path)
    public = private.public_key()
    line = allowed_signers_line(cfg.dock_id, public)
    if as_json:
        emit_json(
            {
                "dock_id": cfg.dock_id,
                "key": str(cfg.key_path),
                "fingerprint": fingerprint(public),
                "line": line,
                "log_verifier_key": verifier_key(cfg.dock_id, private),
            }
        )
    else:
        click.echo(line)


@keys.command("rotate")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Path of the new key.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_rotate(ctx: Context, out: Path, as_json: bool) -> None:
    """Write a new dock key; the next manifest is signed by the new and the old key (docs/formats.md).

    Prints the new allowed_signers line, then what to do as '#' comments."""
    from bodycam.agent.pipeline.keys import rotate

    cfg = ctx.config
    with _agent_journal(ctx) as journal:
        rotation = rotate(journal, cfg.dock_id, cfg.key_path, out)
    if as_json:
        emit_json(rotation.to_json())
    else:
        click.echo("\n".join(rotation.instructions(cfg.source)))


@keys.command("dock-auth")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Key path (default: dock_auth.key).")
@pass_ctx
def keys_dock_auth(ctx: Context, out: Path | None) -> None:
    """Write the dock's proof key (OpenSSH Ed25519, 0600); print its public key for 'authority issue --dock-key'."""
    from bodycam.agent.pipeline.dockauth import init_dock_key
    from bodycam.agent.storage.journal import private_dir

    cfg = ctx.config
    path = out or cfg.dock_auth_key_path
    if path.is_relative_to(cfg.state_dir):
        private_dir(cfg.state_dir)  # else mkdir(parents=True) would create it with the umask's mode
    click.echo(init_dock_key(path, cfg.dock_id))
    click.echo(f"wrote {path} (private, 0600) and {path}.pub", err=True)


# -- the force's dock authority (run where the force keeps its authority key, never on a dock) -----
@cli.group()
def authority() -> None:
    """The force's dock authority: certifies docks, so paired cameras release footage only to them."""


@authority.command("init")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Authority key path.")
def authority_init(out: Path) -> None:
    """Write a new authority key (0600); print the 'authority = ...' line for every dock's [dock_auth]."""
    from bodycam.agent.pipeline.dockauth import init_authority

    click.echo(f'authority = "{init_authority(out)}"')


@authority.command("issue")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dock-id", required=True, help="The dock's dock_id.")
@click.option("--dock-key", required=True, help="The dock's proof key, 64 hex digits ('keys dock-auth' prints it).")
@click.option("--days", type=click.FloatRange(0, 3660, min_open=True), default=365, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Certificate path.")
@click.option("--json", "as_json", is_flag=True)
def authority_issue(key_path: Path, dock_id: str, dock_key: str, days: float, out: Path, as_json: bool) -> None:
    """Certify a dock's proof key for DAYS; the dock names the file in dock_auth.certificate."""
    from bodycam.agent.pipeline.dockauth import issue

    cert = issue(key_path, dock_id, dock_key, days, out)
    doc = {
        "certificate": str(out),
        "dock_id": cert.dock_id,
        "serial_number": f"{cert.serial_number:016x}",
        "not_before": _iso(cert.not_before_us / 1e6),
        "not_after": _iso(cert.not_after_us / 1e6),
    }
    if as_json:
        emit_json(doc)
    else:
        click.echo(f"{out}: dock {cert.dock_id}, serial {doc['serial_number']}, valid to {doc['not_after']}")


@authority.command("revoke")
@click.argument("dock_ids", nargs=-1, required=True)
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def authority_revoke(dock_ids: tuple[str, ...], key_path: Path, list_path: Path, as_json: bool) -> None:
    """Revoke docks (a stolen dock): signs the list anew; copy it to every dock's dock_auth.revocations."""
    from bodycam.agent.pipeline.dockauth import revoke

    signed = revoke(key_path, list_path, list(dock_ids))
    if as_json:
        emit_json({"list": str(list_path), "sequence": signed.sequence, "revoked": list(signed.revoked)})
    else:
        click.echo(f"{list_path}: sequence {signed.sequence}, revoked: {', '.join(signed.revoked)}")


@cli.group()
def dock() -> None:
    """This dock's identity in the evidence: its dock_id and bucket."""


@dock.command("handover")
@click.option("--dock-id", "dock_id", default=None, help="The new dock_id (already set in the config).")
@click.option("--bucket", "bucket_url", default=None, help="The new bucket.url (already set in the config).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def dock_handover(ctx: Context, dock_id: str | None, bucket_url: str | None, as_json: bool) -> None:
    """Continue this journal's custody chain under the config's new dock_id and/or bucket.url.

    Seals a batch under the old identity whose custody records the handover (in the new bucket too),
    which verify follows; any other change of dock_id or bucket.url is refused."""
    from bodycam.agent.pipeline.handover import handover

    done = handover(ctx.config, dock_id=dock_id, bucket_url=bucket_url)
    if as_json:
        emit_json(done.to_json())
        return
    before, after = done.before, done.after
    click.echo(
        f"dock {before.dock_id} at {before.bucket_url} handed over to dock {after.dock_id} at {after.bucket_url} "
        f"(custody entry sealed in batch {done.batch_id})"
    )
    if after.dock_id != before.dock_id:
        from bodycam.agent.formats.sshsig import allowed_signers_line, load_private_key

        line = allowed_signers_line(after.dock_id, load_private_key(ctx.config.key_path).public_key())
        click.echo(f"# add this line to the auditors' allowed_signers (the dock signs as {after.dock_id} now):")
        click.echo(line)
        if ctx.config.dock_auth is not None:
            click.echo(
                f"# paired cameras know the dock by its certificate: have the force issue one for {after.dock_id} "
                f"('bodycam-sync authority issue --dock-id {after.dock_id} ...') and set dock_auth.certificate"
            )


@cli.command()
@click.argument("serial", shell_complete=complete_serial)
@click.option(
    "--key",
    "device_key",
    required=True,
    help="The camera's Ed25519 device public key (64 hex digits) from the vendor's enrolment sheet.",
)
@click.option("--model", default=None)
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

    with _agent_journal(ctx) as journal:
        done = enroll_camera(journal, CustodyLog(journal, ctx.config.dock_id), serial, raw, model, replace=replace)
    what = {"enrolled": "enrolled", "replaced": "re-enrolled", "unchanged": "already enrolled"}[done]
    click.echo(f"{what} camera {serial} with device key {key_fingerprint(raw)}")


@cli.command()
@click.argument("serial", shell_complete=complete_serial)
@click.option(
    "--officer", default=None, help="Officer id (kept on the dock; the bucket sees a pseudonym). Omit to show history."
)
@click.option("--at", "at_text", default=None, help="Allocation time, ISO 8601 (default: now).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def allocate(ctx: Context, serial: str, officer: str | None, at_text: str | None, as_json: bool) -> None:
    """Allocate an enrolled camera to an officer, and show the camera's allocation history.

    Without --officer, only shows the history."""
    import time

    from bodycam.agent.pipeline.policy import parse_time

    if officer is not None and (not officer.strip() or len(officer) > 64):
        raise ConfigError("--officer must be 1-64 characters")
    if officer is None and at_text is not None:
        raise ConfigError("--at needs --officer (without --officer, allocate only shows the history)")
    when = parse_time(at_text, "--at") if at_text else time.time()
    with _agent_journal(ctx) as journal:
        if officer is not None:
            if journal.enrolled_key(serial) is None:
                raise ConfigError(
                    f"camera {serial} is not enrolled on this dock; check the serial, or enrol it first "
                    f"('bodycam-sync enroll {serial} --key HEX' with the key from the vendor's enrolment sheet)"
                )
            journal.allocate(serial, officer.strip(), when)
        history = [
            {"serial": r["serial"], "officer": r["officer"], "at": _iso(r["at"])} for r in journal.allocations(serial)
        ]
    if as_json:
        emit_json({"allocations": history})
    elif not history:
        click.echo(f"camera {serial} has never been allocated")
    else:
        for item in history:
            click.echo(f"{item['at']}  {item['serial']}  {item['officer']}")


@cli.group()
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

    with _agent_journal(ctx) as journal:
        report = fw.push_cameras(
            image,
            journal,
            CustodyLog(journal, ctx.config.dock_id),
            usbip=usbip,
            serial_ports=serial_port,
            discover=not explicit,
            cameras=cameras,
            all_cameras=all_cameras,
            allow_downgrade=allow_downgrade,
            on_progress=progress,
            credentials=load_credentials(ctx.config),
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


@cli.group()
def exercise() -> None:
    """The register of training exercises (the scope policy's only allow-list)."""


@exercise.command("add")
@click.argument("exercise_id")
@click.option("--start", required=True, help="ISO 8601 with time zone.")
@click.option("--end", required=True, help="ISO 8601 with time zone.")
@click.option(
    "--camera",
    "cameras",
    multiple=True,
    required=True,
    help="Allocated camera serial, repeatable.",
    shell_complete=complete_serial,
)
@click.option("--site", default="", help="Free text; kept on the dock and only in the encrypted sidecar.")
@pass_ctx
def exercise_add(ctx: Context, exercise_id: str, start: str, end: str, cameras: tuple[str, ...], site: str) -> None:
    """Register a training exercise."""
    from bodycam.agent.pipeline.policy import Exercise, add_exercise, parse_time

    ex = Exercise(exercise_id, site, parse_time(start, "--start"), parse_time(end, "--end"), frozenset(cameras))
    with _agent_journal(ctx) as journal:
        add_exercise(journal, ex)
    click.echo(f"registered exercise {exercise_id}")


@exercise.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def exercise_list(ctx: Context, as_json: bool) -> None:
    """Registered exercises."""
    from bodycam.agent.pipeline.policy import Caught, caught_by_exercise, list_exercises

    with _agent_journal(ctx) as journal:
        caught = caught_by_exercise(journal)
        items: list[dict[str, Any]] = [
            {
                "id": e.id,
                "site": e.site,
                "start": _iso(e.start),
                "end": _iso(e.end),
                "cameras": sorted(e.cameras),
                "caught": caught.get(e.id, Caught()).to_json(),
            }
            for e in list_exercises(journal)
        ]
    if as_json:
        emit_json({"exercises": items})
        return
    if not items:
        click.echo("no exercises registered")
    for item in items:
        got = item["caught"]
        click.echo(
            f"{item['id']}  {item['start']} .. {item['end']}  cameras: {', '.join(item['cameras'])}  "
            f"caught {got['recordings']} recordings ({_size(got['bytes'])}): {got['verified']} verified, "
            f"{got['in_progress']} in progress"
        )


@exercise.command("amend")
@click.argument("exercise_id", shell_complete=complete_exercise)
@click.option("--start", default=None, help="New start, ISO 8601 with time zone.")
@click.option("--end", default=None, help="New end, ISO 8601 with time zone.")
@click.option(
    "--camera",
    "cameras",
    multiple=True,
    help="Allocated camera serial, repeatable: replaces the exercise's cameras.",
    shell_complete=complete_serial,
)
@click.option("--site", default=None, help="New site (free text; kept on the dock and only in the encrypted sidecar).")
@pass_ctx
def exercise_amend(
    ctx: Context, exercise_id: str, start: str | None, end: str | None, cameras: tuple[str, ...], site: str | None
) -> None:
    """Correct a registered exercise's window, cameras or site (custody entry exercise_amended).

    Footage already decided stays as decided; the next docking decides the rest with the new window."""
    from bodycam.agent.pipeline.policy import Exercise, amend_exercise, find_exercise, parse_time
    from bodycam.agent.storage.custody_log import CustodyLog

    if start is None and end is None and not cameras and site is None:
        raise click.UsageError("nothing to amend: give --start, --end, --camera or --site")
    with _agent_journal(ctx) as journal:
        old = find_exercise(journal, exercise_id)
        new = Exercise(
            old.id,
            old.site if site is None else site,
            old.start if start is None else parse_time(start, "--start"),
            old.end if end is None else parse_time(end, "--end"),
            frozenset(cameras) if cameras else old.cameras,
        )
        amend_exercise(journal, CustodyLog(journal, ctx.config.dock_id), new)
    click.echo(
        f"amended exercise {exercise_id}: {_iso(new.start)} .. {_iso(new.end)}, cameras: {', '.join(sorted(new.cameras))}"
    )


@exercise.command("remove")
@click.argument("exercise_id", shell_complete=complete_exercise)
@pass_ctx
def exercise_remove(ctx: Context, exercise_id: str) -> None:
    """Unregister an exercise (custody entry exercise_removed); refused once footage has left under it."""
    from bodycam.agent.pipeline.policy import remove_exercise
    from bodycam.agent.storage.custody_log import CustodyLog

    with _agent_journal(ctx) as journal:
        remove_exercise(journal, CustodyLog(journal, ctx.config.dock_id), exercise_id)
    click.echo(f"removed exercise {exercise_id}")


@cli.group()
def recipients() -> None:
    """Parties of the data-sharing agreement (age public keys: X25519 or post-quantum)."""


@recipients.command("add")
@click.argument("name")
@click.argument("age_pubkey")
@pass_ctx
def recipients_add(ctx: Context, name: str, age_pubkey: str) -> None:
    """Add a recipient by its age public key (age1... or post-quantum age1pq1...); the dock never holds a
    recipient's private key."""
    from bodycam.agent.formats.agecrypt import check_recipients, parse_recipient

    parse_recipient(age_pubkey)
    if not name or len(name) > 64:
        raise ConfigError("recipient NAME must be 1-64 characters")
    with _agent_journal(ctx) as journal:
        journal.add_recipient(name, age_pubkey)
        parties = {r.name: r.age for r in ctx.config.recipients}
        for other, age in journal.recipients():
            parties.setdefault(other, age)
    click.echo(f"added recipient {name}")
    try:
        check_recipients(list(parties.values()), list(parties))
    except ConfigError as err:  # kept: replacing keys party by party passes through a mixed agreement
        click.echo(f"bodycam-sync: warning: ingest refuses until this is fixed: {err}", err=True)


@recipients.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def recipients_list(ctx: Context, as_json: bool) -> None:
    """Recipients from the config and the journal."""
    cfg = ctx.config
    items = {r.name: {"name": r.name, "age": r.age, "source": "config"} for r in cfg.recipients}
    if cfg.journal_path.exists():
        with _agent_journal(ctx) as journal:
            for name, age in journal.recipients():
                items.setdefault(name, {"name": name, "age": age, "source": "journal"})
    if as_json:
        emit_json({"recipients": list(items.values())})
        return
    for item in items.values():
        click.echo(f"{item['name']}  {item['age']}  ({item['source']})")


# -- ingest --------------------------------------------------------------------------------------
@cli.group()
def agreement() -> None:
    """Data-sharing agreements signed by the controller: who receives which footage, why, until when."""


def _controller_keys(ctx: Context, extra: tuple[Path, ...]) -> list[Any]:
    from bodycam.agent.formats.agreements import controller_keys

    lines = list(ctx.config.agreements.controller_keys) if ctx.config.agreements else []
    for path in extra:
        try:
            lines.append(path.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read --controller-key {path}: {err}") from err
    if not lines:
        raise ConfigError("no controller key to check against: set [agreements] controller_keys or --controller-key")
    return controller_keys(lines)


def _agreement_json(a: Any, now: float, revoked: frozenset[str] = frozenset()) -> dict[str, Any]:
    from bodycam.agent.formats.agreements import EXPIRED, NOT_YET_VALID, REVOKED, file_name

    state = "in force"
    if a.id in revoked:
        state = REVOKED
    elif now < a.not_before:
        state = NOT_YET_VALID
    elif now > a.not_after:
        state = EXPIRED
    return {
        "file": file_name(a),
        "id": a.id,
        "version": a.version,
        "sha256": a.sha256,
        "state": state,
        "review_overdue": _iso(now)[:10] > a.review_date,
        "document": json.loads(a.raw),
    }


@agreement.command("sign")
@click.argument("draft", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The controller's OpenSSH Ed25519 private key.")  # fmt: skip
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for ID.vVERSION.json and its .sig (a dock's agreements.dir).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
def agreement_sign(draft: Path, key_path: Path, out_dir: Path, as_json: bool) -> None:
    """Check a draft agreement and sign it (SSHSIG, namespace bodycam-agreement) in canonical form."""
    from bodycam.agent.formats.agreements import sign_draft
    from bodycam.agent.formats.sshsig import load_private_key

    signed, path = sign_draft(draft, load_private_key(key_path), out_dir)
    if as_json:
        emit_json({"file": str(path), "id": signed.id, "version": signed.version, "sha256": signed.sha256})
    else:
        click.echo(f"{path}: agreement {signed.id} version {signed.version}, sha256 {signed.sha256}")


@agreement.command("show")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--controller-key", "extra", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A controller public key file (.pub) to trust besides [agreements] controller_keys.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def agreement_show(ctx: Context, file: Path, extra: tuple[Path, ...], as_json: bool) -> None:
    """Verify a signed agreement against the controller keys and show it (exit 1 if it is refused)."""
    import time

    from bodycam.agent.formats.agreements import load_signed

    doc = _agreement_json(load_signed(file, _controller_keys(ctx, extra)), time.time())
    if as_json:
        emit_json(doc)
        return
    body = doc["document"]
    click.echo(f"agreement {doc['id']} version {doc['version']} ({doc['state']}), sha256 {doc['sha256']}")
    click.echo(f"  controller: {body['controller']['name']}; DPIA {body['dpia']}; review {body['review_date']}"
               + (" (overdue)" if doc["review_overdue"] else ""))  # fmt: skip
    click.echo(f"  purpose: {body['purpose']}")
    click.echo(f"  valid {body['validity']['not_before']} .. {body['validity']['not_after']}")
    click.echo(f"  data items: {', '.join(body['data_items'])}")
    click.echo(f"  scope: {json.dumps(body['scope'], sort_keys=True)}")
    for party in body["parties"]:
        click.echo(f"  party {party['name']} ({party['role']}): {party['lawful_basis']}; "
                   f"retention {party['retention_days']} days; {len(party['recipients'])} recipient(s)")  # fmt: skip


@agreement.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def agreement_list(ctx: Context, as_json: bool) -> None:
    """The agreements in this dock's agreements.dir: in force, expired, revoked, or refused and why."""
    import time

    from bodycam.agent.formats.agreements import load_dir

    cfg = ctx.config.agreements
    if cfg is None:
        raise ConfigError("no [agreements] in the config: every in-scope recording goes to [[recipients]]")
    loaded = load_dir(cfg.dir, _controller_keys(ctx, ()))
    now = time.time()
    items = [_agreement_json(a, now, loaded.revoked) for a in loaded.agreements]
    refused = [{"file": name, "reason": reason} for name, reason in loaded.refused]
    if as_json:
        for item in items:
            item.pop("document")
        emit_json({"agreements": items, "revoked": sorted(loaded.revoked), "refused": refused})
        return
    for item in items:
        overdue = ", review overdue" if item["review_overdue"] else ""
        click.echo(f"{item['id']}  v{item['version']}  {item['state']}{overdue}  {item['sha256'][:16]}")
    for r in refused:
        click.echo(f"refused: {r['reason']}")


@agreement.command("revoke")
@click.argument("agreement_id")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The controller's OpenSSH Ed25519 private key.")  # fmt: skip
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for ID.revoked.json and its .sig (a dock's agreements.dir).")  # fmt: skip
def agreement_revoke(agreement_id: str, key_path: Path, out_dir: Path) -> None:
    """Revoke every version of an agreement: no new recording is disclosed under it. Forward only: what
    a party already received stays readable to it (age cannot take a delivered file back)."""
    import time

    from bodycam.agent.formats.agreements import revoke
    from bodycam.agent.formats.sshsig import load_private_key

    path = revoke(agreement_id, load_private_key(key_path), out_dir, now=time.time())
    click.echo(f"{path}: agreement {agreement_id} revoked for new disclosures (what was delivered stays delivered)")


@cli.command()
@click.option("--once", is_flag=True, required=True, help="Ingest every reachable camera, then exit.")
@click.option("--json", "as_json", is_flag=True, help="A JSON summary on stdout.")
@click.option("--usbip", multiple=True, metavar="HOST:PORT")
@click.option("--serial-port", multiple=True, metavar="PATH")
@pass_ctx
def ingest(ctx: Context, once: bool, as_json: bool, usbip: tuple[str, ...], serial_port: tuple[str, ...]) -> None:
    """Pull in-scope footage from every reachable camera into the bucket; exit 0 only when all of it is verified."""
    from bodycam.agent.cli.progress import ProgressView
    from bodycam.agent.pipeline.ingest import Agent, ingest_once

    cfg = ctx.config
    explicit = bool(usbip or serial_port)
    agent = Agent(cfg)
    view = ProgressView(enabled=None if not as_json else False)
    try:
        report = ingest_once(
            agent,
            usbip or cfg.usbip,
            serial_port or cfg.serial,
            discover=not explicit,
            progress=view,
        )
    finally:
        view.close()
        agent.close()
    if as_json:
        emit_json(report.to_json())
    else:
        for cam in report.cameras:
            click.echo(
                f"{cam.serial}: {cam.recordings} recordings, {cam.in_scope} in scope, "
                f"{cam.verified} uploaded and verified, {cam.already_done} already done, {cam.erased} erased"
            )
            stayed = stayed_text(cam.stayed_json())
            if stayed:
                click.echo(f"  {stayed}")
            for err in cam.errors:
                click.echo(f"  error: {err}", err=True)
        for err in report.errors:
            click.echo(f"error: {err}", err=True)
        outcome = "complete" if report.ok else "INCOMPLETE (run again to resume)"
        if report.batch_id is None:  # nothing new: the custody entries wait for the next batch with recordings
            click.echo(f"no new batch (nothing new to sign): {outcome}")
        else:
            click.echo(f"batch {report.batch_id}: {outcome}")
    if not report.ok:
        sys.exit(1)


# -- verify --------------------------------------------------------------------------------------
@cli.command("verify")
@click.option("--bucket", "bucket_url", required=True, help="s3://bucket/prefix, file:///dir or a directory path")
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint.")
@click.option("--allowed-signers", required=True, type=click.Path(path_type=Path))  # checked by run_verify:
@click.option("--identity", type=click.Path(path_type=Path), help="age identity file.")  # one line, exit 2
@click.option("--json", "as_json", is_flag=True)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Write an HTML report.")
@click.option(
    "--expect-head",
    multiple=True,
    metavar="DOCK=SHA256",
    help="A manifest's sha256sum recorded at an earlier audit: it must still be in the chain (repeatable).",
)
@click.option(
    "--max-memory",
    "max_memory",
    type=int,
    default=256,
    show_default=True,
    metavar="MiB",
    help="Memory verify may use; what does not fit is a named finding (docs/auditing.md, Limits).",
)
def verify_cmd(
    bucket_url: str,
    endpoint_url: str | None,
    allowed_signers: Path,
    identity: Path | None,
    as_json: bool,
    report_path: Path | None,
    expect_head: tuple[str, ...],
    max_memory: int,
) -> None:
    """Prove what the bucket holds: signatures, custody chain, objects; exit 0 verified, 1 problems found."""
    from bodycam.agent.audit.verify import run_verify

    if report_path is not None and not report_path.parent.is_dir():  # say so before a long verify, not after
        raise ConfigError(f"--report {report_path}: no such directory {report_path.parent}")
    from bodycam.agent.cli.progress import VerifyProgress

    view = VerifyProgress()  # stderr, only on a terminal
    try:
        report = run_verify(
            bucket_url,
            endpoint_url,
            allowed_signers,
            identity,
            expect_head,
            max_memory,
            on_progress=view if view.enabled else None,  # off a terminal the bucket is read as ever
        )
    finally:
        view.close()
    if report_path is not None:
        from bodycam.agent.audit.report import write_html

        write_html(report, report_path)
    if as_json:
        emit_json(report.to_json())
    else:
        print_verify(report)
    if not report.ok:
        sys.exit(1)


def print_verify(report: Any) -> None:
    header = ("DOCK", "BATCH", "SEQ", "RECORDINGS", "OBJECTS OK", "DECRYPTED OK", "CUSTODY", "SIGNATURE", "PROBLEMS")
    rows = [header] + [
        (
            b.dock,
            b.batch,
            str(b.seq),
            str(b.recordings),
            str(b.objects_ok),
            str(b.plaintext_ok),
            str(b.custody_entries),
            "ok" if b.signature_ok else "BAD",
            str(b.problems),
        )
        for b in report.batches
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for f in report.findings:
        where = ", ".join(
            f"{k} {v}"
            for k, v in (("batch", f.batch), ("key", f.key), ("custody entry", f.custody_seq))
            if v is not None
        )
        click.echo(f"PROBLEM {f.problem}: {f.message}" + (f" [{where}]" if where else ""))
    if report.ok:
        click.echo(f"VERIFIED: {len(report.batches)} batches, {report.objects_seen} objects, no problems")
    else:
        click.echo(f"FAILED: {len(report.findings)} problems in {report.objects_seen} objects")


# -- demo ----------------------------------------------------------------------------------------
@cli.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Default: ./bodycam-demo/run-TIME")
@click.option("--cameras", type=click.IntRange(1, 8), default=3, show_default=True)
@click.option("--recordings", type=click.IntRange(1, 100), default=6, show_default=True)
@click.option("--training", type=click.IntRange(0, 100), default=3, show_default=True)
@click.option("--size", type=click.IntRange(0, 4 * 1024**3), default=8 * 1024 * 1024, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def demo(workdir: Path | None, cameras: int, recordings: int, training: int, size: int, as_json: bool) -> None:
    """The main job on the embedded default: virtual cameras, an exercise, ingest, verify, a summary."""
    import time

    from bodycam.agent.cli.demo import run_demo
    from bodycam.agent.cli.progress import ProgressView

    if training > recordings:
        raise ConfigError("--training must not exceed --recordings")
    workdir = workdir or Path("bodycam-demo") / time.strftime("run-%Y%m%dT%H%M%S")
    view = ProgressView(enabled=None if not as_json else False)
    try:
        result = run_demo(
            workdir.resolve(), cameras=cameras, recordings=recordings, training=training, size=size, progress=view
        )
    finally:
        view.close()
    if as_json:
        emit_json({"ok": result.ok, "ingest": result.ingest.to_json(), "verify": result.verify.to_json()})
    else:
        click.echo(f"Demo dock {result.workdir}")
        for cam in result.ingest.cameras:
            click.echo(
                f"  {cam.serial:<13} {cam.address:<24} {cam.recordings} recordings: {cam.verified} training "
                f"uploaded and verified, {cam.out_of_scope} out of scope (never left the dock)"
            )
            for err in cam.errors:
                click.echo(f"    error: {err}")
        click.echo(
            f"  {len(result.paired)} of {len(result.ingest.cameras)} cameras paired with the demo force's dock "
            "authority: they now refuse any host without a dock certificate"
        )
        click.echo(f"  batch {result.ingest.batch_id} in {result.bucket_dir}")
        print_verify(result.verify)
        batch_dir = result.bucket_dir / "dock-demo" / str(result.ingest.batch_id)
        click.echo("Check it with stock tools:")
        click.echo(
            f"  ssh-keygen -Y verify -f {result.allowed_signers} -I dock-demo -n bodycam-manifest "
            f"-s {batch_dir}/manifest.json.sig < {batch_dir}/manifest.json"
        )
        click.echo(f"  age -d -i {result.identity_path} {batch_dir}/recordings/<SERIAL>/<ID>.age | sha256sum")
        click.echo(
            f"  bodycam-sync verify --bucket {result.bucket_dir.resolve().as_uri()} "
            f"--allowed-signers {result.allowed_signers} --identity {result.identity_path}"
        )
        click.echo("DEMO OK" if result.ok else "DEMO FAILED")
    if not result.ok:
        sys.exit(1)


# -- service -------------------------------------------------------------------------------------
@cli.command()
@click.option("--rescan", type=click.FloatRange(0.1, 60), default=2.0, show_default=True, help="Seconds between scans.")
@pass_ctx
def daemon(ctx: Context, rescan: float) -> None:
    """The docking-station service in the foreground (systemd runs this)."""
    from bodycam.agent.service.daemon import Daemon

    root = logging.getLogger()
    root.setLevel(min(root.level, logging.INFO))  # journald keeps one event per line
    sys.exit(Daemon(ctx.config_path, rescan_s=rescan).run())


def _control(ctx: Context, doc: dict[str, Any]) -> dict[str, Any]:
    from bodycam.agent.service.control import request, socket_path

    return request(socket_path(ctx.config.state_dir), doc)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """What each bay of the running daemon is doing."""
    reply = _control(ctx, {"cmd": "status"})
    if as_json:
        emit_json(reply)
        return
    click.echo(f"dock {reply.get('dock_id')}: {reply.get('summary')}")
    bucket = reply.get("bucket", {})
    reachable = {True: "reachable", False: "UNREACHABLE", None: "not tried yet"}[bucket.get("reachable")]
    click.echo(f"bucket {bucket.get('url')}: {reachable}; uploads in progress: {reply['queue']['uploads_in_progress']}")
    for bay in reply.get("bays", []):
        click.echo(_bay_line(bay))
        stayed = stayed_text(bay)
        if stayed:
            click.echo(f"  {stayed}")


#: how each reason code reads on the dock's terminal
STAYED_WORDS = {
    "operational": "tagged operational",
    "no_exercise": "no exercise for this camera",
    "outside_window": "outside every window",
    "clock_unplaceable": "clock not placeable",
    "no_agreement": "covered by no data-sharing agreement",
}


def stayed_text(doc: dict[str, Any]) -> str | None:
    """``stayed on the dock: 2 tagged operational, 1 outside every window (nearest EX-1: 14 min outside,
    ends after it closes)`` from a camera's ``out_of_scope_reasons`` and ``nearest_window``; None if none stayed."""
    from bodycam.agent.pipeline.policy import Miss

    reasons = doc.get("out_of_scope_reasons") or {}
    parts = []
    for code, words in STAYED_WORDS.items():
        count = int(reasons.get(code, 0))
        if not count:
            continue
        text = f"{count} {words}"
        near = doc.get("nearest_window")
        if code == "outside_window" and near:
            text += f" ({Miss(near['exercise'], float(near['off_by_s']), near['side']).describe()})"
        parts.append(text)
    parts += [f"{n} {code}" for code, n in sorted(reasons.items()) if code not in STAYED_WORDS and n]
    return "stayed on the dock: " + ", ".join(parts) if parts else None


def _bay_line(bay: dict[str, Any]) -> str:
    from bodycam.agent.cli.progress import _fmt_bytes, _fmt_eta, bar

    total = bay.get("bytes_total") or 0
    done = bay.get("bytes_done") or 0
    line = f"{bay['camera']:<14} {bay['state']:<8} {bay['address']:<28}"
    if total:  # the daemon sends a total only for a transfer that runs or was cut short
        line += f" [{bar(done / total, 20)}] {_fmt_bytes(done)}/{_fmt_bytes(total)}"
    if bay.get("rate_bytes_per_s"):  # and a speed only while it runs
        line += f" {_fmt_bytes(bay['rate_bytes_per_s'])}/s ETA {_fmt_eta(bay.get('eta_s') or 0)}"
    if bay.get("recording") is not None:
        line += f" rec #{bay['recording']}"
    if bay.get("note"):
        line += f"  ({bay['note']})"
    if bay.get("last_error"):
        line += f"  last error: {bay['last_error']}"
    return line


@cli.command()
@click.option("--camera", "serial", required=True, shell_complete=complete_serial)
@click.option("--wait", is_flag=True, help="Wait for the sync to end; show what moved and why footage stayed.")
@click.option("--timeout", type=click.FloatRange(1, 86400), default=3600, show_default=True, help="With --wait, s.")
@click.option("--json", "as_json", is_flag=True, help="With --wait: the bay as JSON (as 'status --json' has it).")
@pass_ctx
def sync(ctx: Context, serial: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Ask the daemon to sync a docked camera now.

    With --wait, wait until that sync ends, then show the bay and how many recordings stayed on the
    dock for each reason; exit 1 if the sync failed."""
    if as_json and not wait:
        raise click.UsageError("--json needs --wait (without it, sync only asks the daemon)")
    before = _bay_of(ctx, serial) if wait else None
    _control(ctx, {"cmd": "sync", "camera": serial})
    if not wait:
        click.echo(f"sync of {serial} requested")
        return
    bay = _wait_for_sync(ctx, serial, int((before or {}).get("sessions", 0)), timeout)
    if as_json:
        emit_json(bay)
    else:
        click.echo(_bay_line(bay))
        click.echo(f"  {stayed_text(bay) or 'stayed on the dock: nothing'}")
    if bay.get("state") == "error":
        sys.exit(1)


def _bay_of(ctx: Context, serial: str) -> dict[str, Any] | None:
    found = [b for b in _control(ctx, {"cmd": "status"}).get("bays", []) if b.get("camera") == serial]
    return found[0] if found else None


def _wait_for_sync(ctx: Context, serial: str, sessions_before: int, timeout: float) -> dict[str, Any]:
    """Poll the daemon until a session started after the request has ended on ``serial``'s bay."""
    import time

    from bodycam.drivers.errors import ServiceError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bay = _bay_of(ctx, serial)
        if bay is None:
            raise ServiceError(f"camera {serial} was undocked before its sync ended")
        if int(bay.get("sessions", 0)) > sessions_before and bay.get("state") not in ("syncing", "ejecting"):
            return bay
        time.sleep(0.2)
    raise ServiceError(f"the sync of {serial} did not end within {timeout:g} s; see 'bodycam-sync status'")


@cli.command()
@click.option("--camera", "serial", required=True, shell_complete=complete_serial)
@pass_ctx
def eject(ctx: Context, serial: str) -> None:
    """Ask the daemon to stop a camera's session safely (it resumes at the next docking)."""
    _control(ctx, {"cmd": "eject", "camera": serial})
    click.echo(f"eject of {serial} requested; wait for state 'ejected' before pulling it")


@cli.command()
@click.option("--interval", type=click.FloatRange(0.1, 10), default=0.5, show_default=True)
@click.option("--count", type=click.IntRange(0), default=0, help="Stop after N refreshes (0: until Ctrl-C).")
@pass_ctx
def watch(ctx: Context, interval: float, count: int) -> None:
    """A live view of the bays with progress bars."""
    import time

    shown = 0
    tty = sys.stdout.isatty()
    while True:
        reply = _control(ctx, {"cmd": "status"})
        lines = [f"dock {reply.get('dock_id')}: {reply.get('summary')}  ({time.strftime('%H:%M:%S')})"]
        for bay in reply.get("bays", []):
            lines.append(_bay_line(bay))
            stayed = stayed_text(bay)
            if stayed:
                lines.append(f"  {stayed}")
        if not reply.get("bays"):
            lines.append("  no cameras docked")
        if tty:
            click.echo("\x1b[H\x1b[J" + "\n".join(lines))
        else:
            click.echo("\n".join(lines))
        shown += 1
        if count and shown >= count:
            return
        time.sleep(interval)


@cli.group()
def clock() -> None:
    """Camera clocks."""


@clock.command("sync")
@click.option("--camera", "serial", default=None, help="Only this camera.", shell_complete=complete_serial)
@click.option("--usbip", multiple=True, metavar="HOST:PORT")
@click.option("--serial-port", multiple=True, metavar="PATH")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def clock_sync(
    ctx: Context, serial: str | None, usbip: tuple[str, ...], serial_port: tuple[str, ...], as_json: bool
) -> None:
    """Measure each camera's clock drift and set it to the dock's clock.

    Both readings are journaled (with the camera's clock epoch) and each recording's first-listing
    offset is noted, so footage stamped before this set is still placed at the next ingest."""
    from bodycam.agent.pipeline import clocks
    from bodycam.agent.pipeline.dockauth import load_credentials, secure_link
    from bodycam.agent.pipeline.inventory import opened_cameras
    from bodycam.agent.storage.custody_log import CustodyLog

    cfg = ctx.config
    credentials = load_credentials(cfg)
    explicit = bool(usbip or serial_port)
    results = []
    with (
        _agent_journal(ctx) as journal,
        opened_cameras(usbip or cfg.usbip, serial_port or cfg.serial, discover=not explicit) as cams,
    ):
        for cam in cams:
            ident = cam.open()
            if serial and ident.serial != serial:
                continue
            cam.authenticate(journal.enrolled_key(ident.serial))
            secure_link(cam, credentials, CustodyLog(journal, cfg.dock_id).append, record_unprotected=False)
            docked = clocks.read_list_and_set(journal, CustodyLog(journal, cfg.dock_id), ident.serial, cam)
            before, after = docked.before, docked.after
            results.append(
                {"camera": ident.serial, "drift_s": round(before.offset_s, 3), "after_s": round(after.offset_s, 3)}
            )
    if serial and not results:
        raise BodycamError(f"camera {serial} is not reachable")
    if as_json:
        emit_json({"cameras": results})
    else:
        for r in results:
            click.echo(f"{r['camera']}: drift {r['drift_s']:+.3f} s, now {r['after_s']:+.3f} s")


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


@contextlib.contextmanager
def _agent_journal(ctx: Context) -> Iterator[Any]:
    from bodycam.agent.pipeline.handover import check_identity
    from bodycam.agent.storage.journal import Journal

    cfg = ctx.config
    journal = Journal(cfg.journal_path)
    try:
        check_identity(journal, cfg)
        yield journal
    finally:
        journal.close()


def _enrolled_lookup(ctx: Context) -> Any:
    try:
        from bodycam.agent.storage.journal import Journal

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
