"""``bodycam-sync verify``: prove what the bucket holds."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TypeAlias

import click

from bodycam.agent.cli.common import (
    emit_json,
)
from bodycam.agent.cli.render import print_verify
from bodycam.drivers.errors import ConfigError


@click.command("verify")
@click.option("--bucket", "bucket_url", required=True, help="s3://bucket/prefix, file:///dir or a directory path")
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint.")
@click.option(  # checked by run_verify: one line, exit 2
    "--allowed-signers",
    required=True,
    type=click.Path(path_type=Path),
    help="The docks' keys, OpenSSH allowed_signers ('keys init' and 'keys show' print each dock's line).",
)
@click.option(
    "--identity",
    type=click.Path(path_type=Path),
    help="An age identity file of a recipient: also decrypt and check each recording's plaintext.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
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
    help="Memory verify may use; what does not fit is a named finding (docs/auditing.md, Limits). Past a share "
    "of it, the batch summaries go to a private temporary database under $TMPDIR (else /tmp), removed on exit.",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Witness policy file: check each dock's cosigned checkpoints and ask its witnesses (docs/auditing.md).",
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
    policy_path: Path | None,
) -> None:
    """Prove what the bucket holds: signatures, custody chain, objects; exit 0 verified, 1 problems found,
    2 usage or configuration error (docs/auditing.md)."""
    from bodycam.agent.audit.verify import run_verify

    if report_path is not None and not report_path.parent.is_dir():  # say so before a long verify, not after
        raise ConfigError(f"--report {report_path}: no such directory {report_path.parent}")
    from bodycam.agent.cli.progress import VerifyProgress

    previous = _on_sigterm(_terminated)  # unwinds, so the temporary database is removed
    try:
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
                policy_path=policy_path,
                report_rows=report_path is not None,  # rows only for the HTML report that lists them
            )
        finally:
            view.close()
        with report:  # the batches may be in a temporary database: written out, then removed
            if report_path is not None:
                from bodycam.agent.audit.report import write_html

                write_html(report, report_path)
            if as_json:
                emit_json(report.to_json())
            else:
                print_verify(report)
    finally:
        _on_sigterm(previous)
    if not report.ok:
        sys.exit(1)


_Handler: TypeAlias = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


def _on_sigterm(handler: _Handler) -> _Handler:
    """Set SIGTERM's handler, returning the one before (unchanged off the main thread, where Python
    cannot set one)."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return handler


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM ends verify as Ctrl-C does (exit 143), through the ``finally`` clauses that clean up."""
    raise SystemExit(128 + signum)
