"""``bodycam-sync proof`` and ``verify-proof``: one recording's custody, proven to a party that sees nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import click

from bodycam.agent.cli.common import emit_json
from bodycam.drivers.errors import BodycamError, ConfigError
from bodycam.drivers.files import create_private


@click.command("proof")
@click.option("--bucket", "bucket_url", required=True, help="s3://bucket/prefix, file:///dir or a directory path")
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint.")
@click.option("--camera", "serial", required=True, help="The camera's serial number.")
@click.option("--recording", "recording_id", required=True, type=click.IntRange(0, (1 << 63) - 1), help="Its id.")
@click.option("--batch", "batch_id", default=None, help="The batch, when the recording is in several.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Bundle to write.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def proof_cmd(
    bucket_url: str,
    endpoint_url: str | None,
    serial: str,
    recording_id: int,
    batch_id: str | None,
    out: Path,
    as_json: bool,
) -> None:
    """Write one recording's proof bundle (C2SP tlog-proof): its manifest entry, its custody entries,
    inclusion proofs and the dock's latest checkpoint with its cosignatures, and nothing about other
    recordings. Reads the bucket only; exit 0 written, 1 the bucket cannot prove it, 2 usage."""
    from bodycam.agent.audit.disclose import build
    from bodycam.agent.audit.inputs import open_read_only

    if out.exists():
        raise ConfigError(f"--out {out} already exists; a proof bundle is never overwritten")
    bucket = open_read_only(bucket_url, endpoint_url)
    try:
        made = build(bucket, serial, recording_id, batch_id)
    finally:
        bucket.close()
    try:
        fd = create_private(out, exclusive=True)  # 0600 whatever the umask: the recording's entry and custody
    except OSError as err:
        raise ConfigError(f"--out {out}: {err.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(made.bundle)
    summary = {
        "out": str(out),
        "dock_id": made.dock_id,
        "batch_id": made.batch_id,
        "log_index": made.log_index,
        "tree_size": made.tree_size,
        "custody_entries": made.custody_entries,
        "bytes": len(made.bundle),
    }
    if as_json:
        emit_json(summary)
    else:
        click.echo(
            f"{out}: recording {recording_id} of camera {serial} in {made.dock_id}/{made.batch_id}, log entry "
            f"{made.log_index} of {made.tree_size}, {made.custody_entries} custody entries ({len(made.bundle)} bytes)"
        )
        click.echo(
            f"next: hand it over with the recording object; it is checked offline with "
            f"bodycam-sync verify-proof {out} --policy POLICY (docs/auditing.md)",
            err=True,
        )


@click.command("verify-proof")
@click.argument("bundle_path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Witness policy: the dock's log key, witnesses and quorum (docs/formats.md).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def verify_proof_cmd(bundle_path: Path, policy_path: Path, as_json: bool) -> None:
    """Check a proof bundle offline against a witness policy: signatures and quorum, the inclusion of
    the log entry, of the recording and of each custody entry. Exit 0 verified, 1 it does not hold, 2 usage."""
    from bodycam.agent.audit.proofcheck import check
    from bodycam.agent.formats import proofbundle, witnesspolicy

    policy = witnesspolicy.load(policy_path)
    try:
        with bundle_path.open("rb") as f:
            data = f.read(proofbundle.MAX_BUNDLE + 1)
    except OSError as err:
        raise ConfigError(f"cannot read {bundle_path}: {err.strerror or err}") from None
    try:
        report = check(data, policy)
    except BodycamError as err:
        if as_json:
            emit_json({"ok": False, "error": str(err)})
        raise
    if as_json:
        emit_json(report.to_json())
        return
    rec = report.recording
    witnessed = ", ".join(sorted(report.witnesses)) or "no witness"
    click.echo(
        f"VERIFIED: recording {rec['recording_id']} of camera {rec['camera_serial']} "
        f"({rec.get('plaintext_sha256')}) is in batch {report.entry['batch_id']}, log entry {report.log_index} "
        f"of {report.tree_size} of {report.origin}, signed by the dock and cosigned by {witnessed}; "
        f"{len(report.custody)} custody entries"
    )
