"""The running daemon and the commands that talk to it over its control socket."""

from __future__ import annotations

import logging
import sys

import click

from bodycam.agent.cli.common import (
    Context,
    complete_serial,
    emit_json,
    pass_ctx,
)
from bodycam.agent.cli.render import bay_line, stayed_text
from bodycam.drivers.strictjson import JSONObject, JSONValue


@click.command()
@click.option("--rescan", type=click.FloatRange(0.1, 60), default=2.0, show_default=True, help="Seconds between scans.")
@pass_ctx
def daemon(ctx: Context, rescan: float) -> None:
    """The docking-station service in the foreground (systemd runs this)."""
    from bodycam.agent.service.daemon import Daemon

    root = logging.getLogger()
    root.setLevel(min(root.level, logging.INFO))  # journald keeps one event per line
    sys.exit(Daemon(ctx.config_path, rescan_s=rescan).run())


def _control(ctx: Context, doc: dict[str, object]) -> JSONObject:
    from bodycam.agent.service.control import client_socket_paths, find_socket, request
    from bodycam.drivers.errors import ServiceError

    candidates = client_socket_paths(ctx.config.state_dir)
    path = find_socket(candidates)
    if path is None:
        where = " or ".join(str(p) for p in candidates)
        raise ServiceError(
            f"the daemon is not running (no control socket at {where}); start it with 'systemctl start bodycam-agent'"
        )
    return request(path, doc)


def _object(value: JSONValue) -> JSONObject:
    """A member of the daemon's reply that is a JSON object ({} when it is missing)."""
    return value if isinstance(value, dict) else {}


def _bays(reply: JSONObject) -> list[JSONObject]:
    """The bays of a status reply, as the daemon's ``Bay.to_json`` writes them."""
    bays = reply.get("bays", [])
    return [b for b in bays if isinstance(b, dict)] if isinstance(bays, list) else []


def _sessions(bay: JSONObject | None) -> int:
    """How many sessions a bay has run (0 for no bay)."""
    value = bay.get("sessions", 0) if bay is not None else 0
    return value if isinstance(value, int) else 0


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """What each bay of the running daemon is doing."""
    reply = _control(ctx, {"cmd": "status"})
    if as_json:
        emit_json(reply)
        return
    click.echo(f"dock {reply.get('dock_id')}: {reply.get('summary')}")
    bucket = _object(reply.get("bucket"))
    tried = bucket.get("reachable")
    reachable = "reachable" if tried is True else "UNREACHABLE" if tried is False else "not tried yet"
    in_progress = _object(reply.get("queue"))["uploads_in_progress"]
    click.echo(f"bucket {bucket.get('url')}: {reachable}; uploads in progress: {in_progress}")
    for bay in _bays(reply):
        click.echo(bay_line(bay))
        stayed = stayed_text(bay)
        if stayed:
            click.echo(f"  {stayed}")


#: how each reason code reads on the dock's terminal


@click.command()
@click.option("--camera", "serial", required=True, help="The camera's serial.", shell_complete=complete_serial)
@click.option("--wait", is_flag=True, help="Wait for the sync to end; show what moved and why footage stayed.")
@click.option("--timeout", type=click.FloatRange(1, 86400), default=3600, show_default=True, help="With --wait, s.")
@click.option("--json", "as_json", is_flag=True, help="With --wait: the bay as JSON (as 'status --json' has it).")
@pass_ctx
def sync(ctx: Context, serial: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Ask the daemon to sync a docked camera now.

    With --wait, wait until that sync ends, then show the bay and how many recordings stayed on the
    camera for each reason; exit 1 if the sync failed."""
    if as_json and not wait:
        raise click.UsageError("--json needs --wait (without it, sync only asks the daemon)")
    before = _bay_of(ctx, serial) if wait else None
    _control(ctx, {"cmd": "sync", "camera": serial})
    if not wait:
        click.echo(f"sync of {serial} requested")
        return
    bay = _wait_for_sync(ctx, serial, _sessions(before), timeout)
    if as_json:
        emit_json(bay)
    else:
        click.echo(bay_line(bay))
        click.echo(f"  {stayed_text(bay) or 'stayed on the camera: nothing'}")
    if bay.get("state") == "error":
        sys.exit(1)


def _bay_of(ctx: Context, serial: str) -> JSONObject | None:
    found = [b for b in _bays(_control(ctx, {"cmd": "status"})) if b.get("camera") == serial]
    return found[0] if found else None


def _wait_for_sync(ctx: Context, serial: str, sessions_before: int, timeout: float) -> JSONObject:
    """Poll the daemon until a session started after the request has ended on ``serial``'s bay."""
    import time

    from bodycam.drivers.errors import ServiceError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bay = _bay_of(ctx, serial)
        if bay is None:
            raise ServiceError(f"camera {serial} was undocked before its sync ended")
        if _sessions(bay) > sessions_before and bay.get("state") not in ("syncing", "ejecting"):
            return bay
        time.sleep(0.2)
    raise ServiceError(f"the sync of {serial} did not end within {timeout:g} s; see 'bodycam-sync status'")


@click.command()
@click.option("--camera", "serial", required=True, help="The camera's serial.", shell_complete=complete_serial)
@pass_ctx
def eject(ctx: Context, serial: str) -> None:
    """Ask the daemon to stop a camera's session safely (it resumes at the next docking)."""
    _control(ctx, {"cmd": "eject", "camera": serial})
    click.echo(f"eject of {serial} requested; wait for state 'ejected' before pulling it")


@click.command()
@click.option(
    "--interval", type=click.FloatRange(0.1, 10), default=0.5, show_default=True, help="Seconds between refreshes."
)
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
        for bay in _bays(reply):
            lines.append(bay_line(bay))
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
