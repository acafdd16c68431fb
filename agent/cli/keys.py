"""Keys and trust: the dock's signing and proof keys, the force's dock authority, dock handover."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click

from bodycam.agent.cli.common import (
    Context,
    agent_journal,
    emit_json,
    pass_ctx,
)
from bodycam.agent.cli.render import iso
from bodycam.drivers.errors import ConfigError


@click.group()
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
    click.echo("next: give the line on stdout to the auditors, for their allowed_signers file", err=True)


@keys.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def keys_show(ctx: Context, as_json: bool) -> None:
    """Print the dock key's allowed_signers line again (for an auditor's allowed_signers file)."""
    from bodycam.agent.formats.sshsig import allowed_signers_line, fingerprint, load_private_key
    from bodycam.agent.storage.docklog import verifier_key

    cfg = ctx.config
    private = load_private_key(cfg.key_path, cfg.KEY_MISSING)
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
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def keys_rotate(ctx: Context, out: Path, as_json: bool) -> None:
    """Write a new dock key; the next manifest is signed by the new and the old key (docs/formats.md).

    Prints the new allowed_signers line, then what to do as '#' comments."""
    from bodycam.agent.pipeline.keys import rotate

    cfg = ctx.config
    with agent_journal(ctx) as journal:
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
    click.echo(
        f"next: the force's dock authority certifies it: bodycam-sync authority issue --dock-id {cfg.dock_id} "
        "--dock-key HEX (the line on stdout) ...; then set dock_auth.certificate on this dock",
        err=True,
    )


# -- the force's dock authority (run where the force keeps its authority key, never on a dock) -----
@click.group()
def authority() -> None:
    """The force's dock authority: certifies docks, so paired cameras release footage only to them."""


@authority.command("init")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Authority key path.")
def authority_init(out: Path) -> None:
    """Write a new authority key (0600); print the 'authority = ...' line for every dock's [dock_auth]."""
    from bodycam.agent.pipeline.dockauth import init_authority

    click.echo(f'authority = "{init_authority(out)}"')
    click.echo(f"next: put that line in every dock's [dock_auth]; keep {out} off the docks", err=True)


#: the --key option of the commands that sign with the force's authority key
_AUTHORITY_KEY: Final = click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The force's authority key ('authority init --out').",
)


@authority.command("issue")
@_AUTHORITY_KEY
@click.option("--dock-id", required=True, help="The dock's dock_id.")
@click.option("--dock-key", required=True, help="The dock's proof key, 64 hex digits ('keys dock-auth' prints it).")
@click.option(
    "--days",
    type=click.FloatRange(0, 3660, min_open=True),
    default=365,
    show_default=True,
    help="How long the certificate is valid, from now.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Certificate path.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def authority_issue(key_path: Path, dock_id: str, dock_key: str, days: float, out: Path, as_json: bool) -> None:
    """Certify a dock's proof key for DAYS; the dock names the file in dock_auth.certificate."""
    from bodycam.agent.pipeline.dockauth import issue

    cert = issue(key_path, dock_id, dock_key, days, out)
    doc = {
        "certificate": str(out),
        "dock_id": cert.dock_id,
        "serial_number": f"{cert.serial_number:016x}",
        "not_before": iso(cert.not_before_us / 1e6),
        "not_after": iso(cert.not_after_us / 1e6),
    }
    if as_json:
        emit_json(doc)
    else:
        click.echo(f"{out}: dock {cert.dock_id}, serial {doc['serial_number']}, valid to {doc['not_after']}")
        click.echo(f"next: copy {out} to dock {cert.dock_id} and name it in its dock_auth.certificate", err=True)


@authority.command("revoke")
@click.argument("dock_ids", nargs=-1, required=True)
@_AUTHORITY_KEY
@click.option(
    "--list",
    "list_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The signed revocation list: read if it exists, written back with these docks added.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def authority_revoke(dock_ids: tuple[str, ...], key_path: Path, list_path: Path, as_json: bool) -> None:
    """Revoke docks (a stolen dock): signs the list anew; copy it to every dock's dock_auth.revocations."""
    from bodycam.agent.pipeline.dockauth import revoke

    signed = revoke(key_path, list_path, list(dock_ids))
    if as_json:
        emit_json({"list": str(list_path), "sequence": signed.sequence, "revoked": list(signed.revoked)})
    else:
        click.echo(f"{list_path}: sequence {signed.sequence}, revoked: {', '.join(signed.revoked)}")
        click.echo(f"next: copy {list_path} to every dock, as its dock_auth.revocations", err=True)


@click.group()
def dock() -> None:
    """This dock's identity in the evidence: its dock_id and bucket."""


@dock.command("handover")
@click.option("--dock-id", "dock_id", default=None, help="The new dock_id (already set in the config).")
@click.option("--bucket", "bucket_url", default=None, help="The new bucket.url (already set in the config).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
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
