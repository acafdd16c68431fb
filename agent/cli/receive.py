"""``bodycam-sync receive``: what a party runs to fetch, check and decrypt its share (agent/audit/receive.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bodycam.agent.audit.wording import counted
from bodycam.agent.cli.common import emit_json


@click.command("receive")
@click.option("--bucket", "bucket_url", required=True, help="s3://BUCKET[/PREFIX], file:///DIR or a directory.")
@click.option("--endpoint-url", default=None, help="For S3-compatible servers.")
@click.option("--allowed-signers", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The docks' keys (OpenSSH allowed_signers), as for verify.")  # fmt: skip
@click.option("--identity", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The party's age identity file (X25519 or post-quantum).")  # fmt: skip
@click.option("--agreement", "agreement_id", required=True, help="The data-sharing agreement's id.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the recordings and SHA256SUMS.")  # fmt: skip
@click.option("--agreement-file", "agreement_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The signed agreement file, when it is not published in the bucket's _fleet/agreements/.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def receive(
    bucket_url: str,
    endpoint_url: str | None,
    allowed_signers: Path,
    identity: Path,
    agreement_id: str,
    out: Path,
    agreement_files: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Fetch, check against the signed manifests, and decrypt every recording the agreement discloses to
    the party holding IDENTITY; write each file and SHA256SUMS (check with 'sha256sum -c SHA256SUMS' in OUT).
    Resumable: files already received and matching are skipped. Exit 1 if anything was missing or altered."""
    from bodycam.agent.audit.receive import SUMS, run_receive

    report = run_receive(bucket_url, endpoint_url, allowed_signers, identity, agreement_id, out, agreement_files)
    if as_json:
        emit_json(report.to_json())
    else:
        who = f"party {report.party}" if report.party else "this identity"
        # the check a party runs next, only when SHA256SUMS lists a file (an empty one fails sha256sum -c)
        check = f"; check them: cd {out} && sha256sum -c {SUMS}" if report.received or report.already else ""
        click.echo(
            f"agreement {agreement_id}, {who}: {counted(len(report.received), 'recording')} received, "
            f"{len(report.already)} already here, {counted(len(report.problems), 'problem')}{check}"
        )
        if report.past_retention:
            gone = len(report.past_retention)
            click.echo(
                f"{counted(gone, 'recording')} gone from the bucket after {'its' if gone == 1 else 'their'} retention"
            )
    from bodycam.agent.cli.render import shown

    for problem in report.problems:
        click.echo(f"bodycam-sync: error: {shown(problem)}", err=True)
    if report.untold:
        click.echo(f"bodycam-sync: error: {counted(report.untold, 'more problem')} not listed", err=True)
    if not report.received and not report.already and not report.problems:
        click.echo(
            f"bodycam-sync: note: no signed manifest discloses a recording under agreement {agreement_id} "
            "to a party holding this identity: nothing to receive",
            err=True,
        )
    if not report.ok:
        sys.exit(1)
