"""``bodycam-sync retention list|apply``: what is past every covering agreement's retention, and erasing
it with a custody entry that proves it (agent/pipeline/retention.py, docs/formats.md "Retention")."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import click

from bodycam.agent.cli.common import Context, agent_journal, emit_json, pass_ctx
from bodycam.drivers.errors import ConfigError

if TYPE_CHECKING:
    from bodycam.agent.pipeline.ingest import Agent
    from bodycam.agent.pipeline.retention import Due
    from bodycam.agent.storage.custody_log import CustodyLog


@click.group()
def retention() -> None:
    """Retention under the data-sharing agreements: what is due for erasure from the bucket, and erasing it."""


def _line(d: Due) -> str:
    from bodycam.agent.formats.retention import iso

    what = f"recording {d.camera} #{d.recording}" if d.camera else f"personal sidecar of batch {d.batch}"
    state = " (erasure interrupted: apply finishes it)" if d.state == "deleting" else ""
    return f"  {d.key}  {what}, retained until {iso(d.retain_until)} under {', '.join(d.agreements)}{state}"


@retention.command("list")
@click.option("--at", "at_text", default=None, help="Judge at this time (ISO 8601, to preview), not now.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def retention_list(ctx: Context, at_text: str | None, as_json: bool) -> None:
    """What this dock uploaded that is past every covering agreement's retention (ids, dates, agreement ids)."""
    from bodycam.agent.formats.retention import iso, parse_iso
    from bodycam.agent.pipeline.retention import due

    now = time.time() if at_text is None else parse_iso(at_text)
    if now is None:
        raise ConfigError(f"--at {at_text!r} is not an ISO 8601 time with a time zone (e.g. 2027-01-01T00:00:00Z)")
    with agent_journal(ctx) as journal:
        items = due(journal, ctx.config.dock_id, now)
    if as_json:
        emit_json({"at": iso(now), "due": [d.to_json() for d in items]})
        return
    if not items:
        click.echo(f"nothing is past its retention at {iso(now)}")
        return
    click.echo(f"{len(items)} objects past every covering agreement's retention at {iso(now)}:")
    for d in items:
        click.echo(_line(d))
    click.echo("'bodycam-sync retention apply' erases them and logs each erasure in custody")


@retention.command("apply")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def retention_apply(ctx: Context, as_json: bool) -> None:
    """Erase what is past its retention (ciphertext, every version, and sidecars), log each erasure in
    custody and publish it; exit 0 when all is erased and published, 1 otherwise (run again to resume)."""
    from bodycam.agent.pipeline.ingest import Agent
    from bodycam.agent.pipeline.retention import apply

    agent = Agent(ctx.config)
    try:
        report = apply(agent, custody=_operator_log(agent))
    finally:
        agent.close()
    if as_json:
        emit_json(report.to_json())
    else:
        for d in report.erased:
            click.echo("erased" + _line(d)[1:])
        for err in report.errors:
            click.echo(f"error: {err}", err=True)
        if report.unpublished:
            click.echo(
                f"{report.unpublished} erasure entries wait for a batch (one is being filled): run again", err=True
            )
        elif report.erased:
            click.echo(f"{len(report.erased)} erased; the erasure entries are in batch {report.batch_id}")
        else:
            click.echo("nothing is past its retention")
    if not report.ok:
        sys.exit(1)


def _operator_log(agent: Agent) -> CustodyLog:
    """The custody log that names the operator (pseudonymised) as the actor of the erasures."""
    from bodycam.agent.storage.custody_log import CustodyLog

    return CustodyLog.for_operator(agent.journal, agent.config)
