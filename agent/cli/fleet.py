"""``agreement publish``, ``fleet publish`` and ``fleet show``: the force's documents in the shared bucket
(issue 12 item 2; the library is agent/pipeline/fleet.py, the format agent/formats/fleet.py).

Registered by agent/cli/main.py (``agreement publish`` joins the agreement group there).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bodycam.agent.cli.common import Context, emit_json
from bodycam.drivers.errors import ConfigError

if TYPE_CHECKING:
    from bodycam.agent.config import Config
    from bodycam.agent.storage.bucket import Bucket
    from bodycam.agent.storage.journal import Journal


def _controller_lines(config: Config) -> tuple[str, ...]:
    if config.fleet is not None:
        return config.fleet.controller_keys
    if config.agreements is not None:
        return config.agreements.controller_keys
    raise ConfigError("no controller key to check against: set [fleet] or [agreements] controller_keys")


def _bucket(config: Config) -> Bucket:
    from bodycam.agent.storage.bucket import open_bucket

    return open_bucket(config.bucket_url, config.bucket_endpoint_url, retention_days=config.retention_days)


def _journal(config: Config) -> Journal | None:
    from bodycam.agent.storage.journal import Journal

    return Journal(config.journal_path) if config.journal_path.exists() else None


@click.command("publish")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--dir", "directory", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Publish every signed agreement and revocation in this directory.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_obj
def agreement_publish(obj: Context, files: tuple[Path, ...], directory: Path | None, as_json: bool) -> None:
    """Put signed agreements and revocations (FILE and FILE.sig) in the shared bucket under _fleet/agreements/,
    where every dock with [fleet] loads them. Each is checked first as a dock will check it."""
    from bodycam.agent.formats.agreements import SIG_SUFFIX, controller_keys
    from bodycam.agent.pipeline.fleet import personal_references, publish_agreement

    cfg = obj.config
    paths = list(files)
    if directory is not None:
        paths += sorted(p for p in directory.iterdir() if p.name.endswith(".json") and not p.name.endswith(SIG_SUFFIX))
    if not paths:
        raise click.UsageError("name the signed agreement files to publish, or --dir DIR")
    trusted = controller_keys(_controller_lines(cfg))
    journal = _journal(cfg)
    try:
        personal = personal_references(journal)
    finally:
        if journal is not None:
            journal.close()
    results = []
    with _bucket(cfg) as bucket:
        for path in paths:
            name, state = publish_agreement(bucket, path, trusted, personal)
            results.append({"file": name, "state": state})
            if not as_json:
                click.echo(f"{name}: {state} in {bucket.url}/_fleet/agreements/")
    if as_json:
        emit_json({"published": results})


@click.group("fleet")
def fleet() -> None:
    """The force's exercise register and camera enrolments, shared by every dock through the bucket."""


@fleet.command("publish")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The controller's OpenSSH Ed25519 private key.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_obj
def fleet_publish(obj: Context, key_path: Path, as_json: bool) -> None:
    """Sign this machine's exercises (ids, windows, cameras: no site) and enrolled cameras as the next
    version of the fleet register and put it in the bucket; every dock with [fleet] loads it."""
    from bodycam.agent.formats.agreements import controller_keys
    from bodycam.agent.formats.sshsig import load_private_key
    from bodycam.agent.pipeline.fleet import publish_register
    from bodycam.agent.storage.journal import Journal

    cfg = obj.config
    trusted = controller_keys(_controller_lines(cfg))
    key = load_private_key(key_path)
    journal = Journal(cfg.journal_path)
    try:
        with _bucket(cfg) as bucket:
            register = publish_register(bucket, journal, key, trusted, now=time.time())
    finally:
        journal.close()
    doc = {
        "version": register.version,
        "sha256": register.sha256,
        "exercises": len(register.exercises),
        "cameras": len(register.cameras),
    }
    if as_json:
        emit_json(doc)
    else:
        click.echo(
            f"fleet register version {register.version} published: {doc['exercises']} exercise(s), "
            f"{doc['cameras']} camera(s), sha256 {register.sha256}"
        )


@fleet.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_obj
def fleet_show(obj: Context, as_json: bool) -> None:
    """Refresh this dock's cache from the bucket (when reachable) and show what the dock will use: the
    register's version, exercises and cameras, the agreements, and what was refused and why."""
    from bodycam.agent.pipeline.fleet import fleet_source

    cfg = obj.config
    source = fleet_source(cfg)
    if source is None:
        raise ConfigError(
            "no [fleet] in the config: this dock reads no documents from the bucket; add a [fleet] table "
            "(with controller_keys, or [agreements]' ones) to use the force's register (docs/configuration.md)"
        )
    source.refresh_s = 0.0
    with _bucket(cfg) as bucket:
        view = source.view(bucket)
    register = view.register
    refused = [*view.agreements.refused, *view.refused]
    doc: dict[str, object] = {
        "bucket_error": view.bucket_error,
        "cache": str(source.cache),
        "register": None
        if register is None
        else {
            "version": register.version,
            "sha256": register.sha256,
            "issued": register.issued,
            "exercises": [{"id": e.id, "cameras": sorted(e.cameras)} for e in register.exercises],
            "cameras": [c.serial for c in register.cameras],
        },
        "agreements": [
            {"id": a.id, "version": a.version, "sha256": a.sha256, "revoked": a.id in view.agreements.revoked}
            for a in view.agreements.agreements
        ],
        "revoked": sorted(view.agreements.revoked),
        "refused": [{"object": n, "reason": r} for n, r in refused],
    }
    if as_json:
        emit_json(doc)
        return
    if view.bucket_error:
        click.echo(f"bucket unreachable ({view.bucket_error}); showing the cache in {source.cache}")
    if register is None:
        click.echo("register: none")
    else:
        click.echo(f"register version {register.version}: {len(register.exercises)} exercise(s), "
                   f"{len(register.cameras)} camera(s), sha256 {register.sha256[:16]}")  # fmt: skip
    for a in view.agreements.agreements:
        revoked = " (revoked)" if a.id in view.agreements.revoked else ""
        click.echo(f"agreement {a.id} v{a.version}{revoked}  {a.sha256[:16]}")
    from bodycam.agent.cli.render import shown  # names are the bucket's: escaped, never obeyed

    for name, reason in refused:
        click.echo(shown(f"refused {name}: {reason}"))
