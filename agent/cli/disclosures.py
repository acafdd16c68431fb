"""``bodycam-sync disclosures``: the s.62 disclosure log per party, checked against the signed manifests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bodycam.agent.audit.wording import counted
from bodycam.drivers.errors import ConfigError
from bodycam.drivers.files import create_private


@click.command("disclosures")
@click.option("--bucket", "bucket_url", required=True, help="s3://bucket/prefix, file:///dir or a directory path")
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint.")
@click.option("--allowed-signers", required=True, type=click.Path(path_type=Path), help="Who may sign manifests.")
@click.option("--party", default=None, help="Only this party's disclosures (its name in the agreements).")
@click.option("--from", "start", default=None, metavar="TIME", help="Disclosures at or after (ISO 8601, UTC).")
@click.option("--to", "end", default=None, metavar="TIME", help="Disclosures at or before (ISO 8601, UTC).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout: one row per party, disclosure and agreement.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Write an HTML report.")
@click.option("--max-memory", type=int, default=256, show_default=True, metavar="MiB", help="As for verify.")
def disclosures(
    bucket_url: str,
    endpoint_url: str | None,
    allowed_signers: Path,
    party: str | None,
    start: str | None,
    end: str | None,
    as_json: bool,
    as_csv: bool,
    html_path: Path | None,
    max_memory: int,
) -> None:
    """Per party: what was disclosed, under which agreement, when, with hashes (DPA 2018 s.62).

    Reads the bucket like verify (signatures, custody chains, every disclosure entry against its
    signed manifest) without hashing footage; exit 0 checked, 1 problems found (the report lists them),
    2 usage or configuration error."""
    from bodycam.agent.audit import disclosure_report as dr

    if sum((as_json, as_csv, html_path is not None)) > 1:
        raise click.UsageError("choose one of --json, --csv and --html")
    if html_path is not None and not html_path.parent.is_dir():
        raise ConfigError(f"--html {html_path}: no such directory {html_path.parent}")
    chosen = dr.Filter(
        party,
        None if start is None else dr.parse_time(start, "--from"),
        None if end is None else dr.parse_time(end, "--to"),
    )
    with dr.open_workdir() as workdir:
        report = dr.run_report(bucket_url, endpoint_url, allowed_signers, max_memory, chosen, Path(workdir))
        try:
            if as_json:
                dr.write_json(report, sys.stdout)
            elif as_csv:
                dr.write_csv(report, sys.stdout)
            elif html_path is not None:
                _write_html(report, html_path)
            else:
                _print_summary(report)
        finally:
            report.spool.close()
    if not report.ok:
        sys.exit(1)


def _write_html(report: object, path: Path) -> None:
    from bodycam.agent.audit import disclosure_report as dr

    assert isinstance(report, dr.DisclosureReport)
    try:  # 0600 whatever the umask: it names each party's recordings
        with os.fdopen(create_private(path), "w", encoding="utf-8") as out:
            dr.write_html(report, out)
    except OSError as err:
        raise ConfigError(f"cannot write --html {path}: {err}") from err
    click.echo(f"wrote {path}")


def _print_summary(report: object) -> None:
    from bodycam.agent.audit import disclosure_report as dr
    from bodycam.agent.cli.render import shown

    assert isinstance(report, dr.DisclosureReport)
    parties = list(report.spool.parties())
    for name, count in parties:
        click.echo(shown(f"{name}: {count} disclosure{'s' if count != 1 else ''}"))
        for row in report.spool.rows(name):
            what = (
                f"sidecar ({' '.join(row['data_items'] or [])})"
                if row["object"] == "sidecar"
                else f"{row['camera_serial']} #{row['recording_id']}"
            )
            under = ", ".join(f"{a['id']} v{a['version']}" for a in row["agreements"])
            click.echo(shown(f"  {row['time']}  {what}  under {under}  sha256 {row['ciphertext_sha256']}"))
    if not parties:
        click.echo("no disclosures")
    for f in report.verify.findings:
        click.echo(shown(f"PROBLEM {f.problem}: {f.message}"))
    click.echo(
        "checked against the signed manifests"
        if report.ok
        else f"{counted(len(report.verify.findings), 'problem')} found"
    )
