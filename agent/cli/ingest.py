"""``bodycam-sync ingest`` and ``demo``: pull footage into the bucket, once or as the README's main job."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bodycam.agent.cli.common import (
    NO_CAMERAS,
    Context,
    emit_json,
    pass_ctx,
)
from bodycam.agent.cli.render import print_verify, stayed_text
from bodycam.drivers.errors import ConfigError


@click.command()
@click.option("--once", is_flag=True, required=True, help="Ingest every reachable camera, then exit.")
@click.option("--json", "as_json", is_flag=True, help="A JSON summary on stdout.")
@click.option(
    "--usbip",
    multiple=True,
    metavar="HOST:PORT",
    help="A USB/IP server exporting cameras (instead of the config's and discovery).",
)
@click.option(
    "--serial-port", multiple=True, metavar="PATH", help="A serial port with a camera (instead of the config's)."
)
@pass_ctx
def ingest(ctx: Context, once: bool, as_json: bool, usbip: tuple[str, ...], serial_port: tuple[str, ...]) -> None:
    """Pull in-scope footage from every reachable camera into the bucket; exit 0 only when all of it is verified,
    1 when something is left to do (run it again: it resumes), 2 usage or configuration error."""
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
        if not report.cameras and not report.errors:
            click.echo(NO_CAMERAS)
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


# -- demo ----------------------------------------------------------------------------------------
@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Default: ./bodycam-demo/run-TIME")
@click.option("--cameras", type=click.IntRange(1, 8), default=3, show_default=True, help="Virtual cameras.")
@click.option(
    "--recordings", type=click.IntRange(1, 100), default=6, show_default=True, help="Recordings on each camera."
)
@click.option(
    "--training",
    type=click.IntRange(0, 100),
    default=3,
    show_default=True,
    help="Of those, training footage inside its exercise's window.",
)
@click.option(
    "--size",
    type=click.IntRange(0, 4 * 1024**3),
    default=8 * 1024 * 1024,
    show_default=True,
    help="Bytes of each recording.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def demo(workdir: Path | None, cameras: int, recordings: int, training: int, size: int, as_json: bool) -> None:
    """The main job on the embedded default: virtual cameras, two exercises, two parties under different
    signed agreements, ingest, who received what, verify, a summary."""
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
        emit_json(result.to_json())
    else:
        from bodycam.agent.cli.demo import check_lines, summary_lines

        for line in summary_lines(result):
            click.echo(line)
        print_verify(result.verify)
        for line in check_lines(result):
            click.echo(line)
        click.echo("DEMO OK" if result.ok else "DEMO FAILED")
    if not result.ok:
        sys.exit(1)
