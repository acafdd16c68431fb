"""``bodycam-sync exercise``: the register of training exercises that decides what is in scope."""

from __future__ import annotations

import click

from bodycam.agent.cli.common import (
    Context,
    agent_journal,
    complete_exercise,
    complete_serial,
    emit_json,
    pass_ctx,
)
from bodycam.agent.cli.render import iso, size_text


@click.group()
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
    with agent_journal(ctx) as journal:
        add_exercise(journal, ex)
    click.echo(f"registered exercise {exercise_id}")


@exercise.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def exercise_list(ctx: Context, as_json: bool) -> None:
    """Registered exercises."""
    from bodycam.agent.pipeline.policy import Caught, caught_by_exercise, list_exercises

    with agent_journal(ctx) as journal:
        caught = caught_by_exercise(journal)
        exercises = [(e, caught.get(e.id, Caught())) for e in list_exercises(journal)]
        if any(e.site for e, _got in exercises):  # sites shown: a s.62 consultation
            from bodycam.agent.pipeline.enrolment import consulted
            from bodycam.agent.storage.custody_log import CustodyLog

            consulted(CustodyLog.for_operator(journal, ctx.config), "exercises")
    if as_json:
        emit_json(
            {
                "exercises": [
                    {
                        "id": e.id,
                        "site": e.site,
                        "start": iso(e.start),
                        "end": iso(e.end),
                        "cameras": sorted(e.cameras),
                        "caught": got.to_json(),
                    }
                    for e, got in exercises
                ]
            }
        )
        return
    if not exercises:
        click.echo("no exercises registered")
    for e, got in exercises:
        click.echo(
            f"{e.id}  {iso(e.start)} .. {iso(e.end)}  cameras: {', '.join(sorted(e.cameras))}  "
            f"caught {got.recordings} recordings ({size_text(got.bytes)}): {got.verified} verified, "
            f"{got.in_progress} in progress"
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
    with agent_journal(ctx) as journal:
        old = find_exercise(journal, exercise_id)
        new = Exercise(
            old.id,
            old.site if site is None else site,
            old.start if start is None else parse_time(start, "--start"),
            old.end if end is None else parse_time(end, "--end"),
            frozenset(cameras) if cameras else old.cameras,
        )
        amend_exercise(journal, CustodyLog.for_operator(journal, ctx.config), new)
    click.echo(
        f"amended exercise {exercise_id}: {iso(new.start)} .. {iso(new.end)}, cameras: {', '.join(sorted(new.cameras))}"
    )


@exercise.command("remove")
@click.argument("exercise_id", shell_complete=complete_exercise)
@pass_ctx
def exercise_remove(ctx: Context, exercise_id: str) -> None:
    """Unregister an exercise (custody entry exercise_removed); refused once footage has left under it."""
    from bodycam.agent.pipeline.policy import remove_exercise
    from bodycam.agent.storage.custody_log import CustodyLog

    with agent_journal(ctx) as journal:
        remove_exercise(journal, CustodyLog.for_operator(journal, ctx.config), exercise_id)
    click.echo(f"removed exercise {exercise_id}")
