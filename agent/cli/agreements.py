"""Who receives footage: the recipients list and the signed data-sharing agreements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bodycam.agent.cli.common import (
    Context,
    agent_journal,
    emit_json,
    pass_ctx,
)
from bodycam.agent.cli.render import iso
from bodycam.drivers.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from bodycam.agent.formats.agreements import Agreement


@click.group()
def recipients() -> None:
    """Parties of the data-sharing agreement (age public keys: X25519 or post-quantum)."""


@recipients.command("add")
@click.argument("name")
@click.argument("age_pubkey")
@pass_ctx
def recipients_add(ctx: Context, name: str, age_pubkey: str) -> None:
    """Add a recipient by its age public key (age1... or post-quantum age1pq1...); the dock never holds a
    recipient's private key."""
    from bodycam.agent.formats.agecrypt import check_recipients, parse_recipient

    parse_recipient(age_pubkey)
    if not name or len(name) > 64:
        raise ConfigError("recipient NAME must be 1-64 characters")
    with agent_journal(ctx) as journal:
        journal.add_recipient(name, age_pubkey)
        parties = {r.name: r.age for r in ctx.config.recipients}
        for other, age in journal.recipients():
            parties.setdefault(other, age)
    click.echo(f"added recipient {name}")
    try:
        check_recipients(list(parties.values()), list(parties))
    except ConfigError as err:  # kept: replacing keys party by party passes through a mixed agreement
        click.echo(f"bodycam-sync: warning: ingest refuses until this is fixed: {err}", err=True)


@recipients.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def recipients_list(ctx: Context, as_json: bool) -> None:
    """Recipients from the config and the journal."""
    cfg = ctx.config
    items = {r.name: {"name": r.name, "age": r.age, "source": "config"} for r in cfg.recipients}
    if cfg.journal_path.exists():
        with agent_journal(ctx) as journal:
            for name, age in journal.recipients():
                items.setdefault(name, {"name": name, "age": age, "source": "journal"})
    if as_json:
        emit_json({"recipients": list(items.values())})
        return
    for item in items.values():
        click.echo(f"{item['name']}  {item['age']}  ({item['source']})")


# -- ingest --------------------------------------------------------------------------------------
@click.group()
def agreement() -> None:
    """Data-sharing agreements signed by the controller: who receives which footage, why, until when."""


def _controller_keys(ctx: Context, extra: tuple[Path, ...]) -> list[Ed25519PublicKey]:
    from bodycam.agent.formats.agreements import controller_keys

    lines = list(ctx.config.agreements.controller_keys) if ctx.config.agreements else []
    for path in extra:
        try:
            lines.append(path.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read --controller-key {path}: {err}") from err
    if not lines:
        raise ConfigError("no controller key to check against: set [agreements] controller_keys or --controller-key")
    return controller_keys(lines)


def _agreement_json(a: Agreement, now: float, revoked: frozenset[str] = frozenset()) -> dict[str, Any]:
    from bodycam.agent.formats.agreements import EXPIRED, NOT_YET_VALID, REVOKED, file_name

    state = "in force"
    if a.id in revoked:
        state = REVOKED
    elif now < a.not_before:
        state = NOT_YET_VALID
    elif now > a.not_after:
        state = EXPIRED
    return {
        "file": file_name(a),
        "id": a.id,
        "version": a.version,
        "sha256": a.sha256,
        "state": state,
        "review_overdue": iso(now)[:10] > a.review_date,
        "document": json.loads(a.raw),
    }


@agreement.command("sign")
@click.argument("draft", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The controller's OpenSSH Ed25519 private key.")  # fmt: skip
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for ID.vVERSION.json and its .sig (a dock's agreements.dir).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def agreement_sign(draft: Path, key_path: Path, out_dir: Path, as_json: bool) -> None:
    """Check a draft agreement and sign it (SSHSIG, namespace bodycam-agreement) in canonical form."""
    from bodycam.agent.formats.agreements import sign_draft
    from bodycam.agent.formats.sshsig import load_private_key

    signed, path = sign_draft(draft, load_private_key(key_path), out_dir)
    if as_json:
        emit_json({"file": str(path), "id": signed.id, "version": signed.version, "sha256": signed.sha256})
    else:
        click.echo(f"{path}: agreement {signed.id} version {signed.version}, sha256 {signed.sha256}")


@agreement.command("show")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--controller-key", "extra", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A controller public key file (.pub) to trust besides [agreements] controller_keys.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def agreement_show(ctx: Context, file: Path, extra: tuple[Path, ...], as_json: bool) -> None:
    """Verify a signed agreement against the controller keys and show it (exit 1 if it is refused)."""
    import time

    from bodycam.agent.formats.agreements import load_signed

    doc = _agreement_json(load_signed(file, _controller_keys(ctx, extra)), time.time())
    if as_json:
        emit_json(doc)
        return
    from bodycam.agent.cli.render import shown  # prose may hold newlines: one line per field, escaped

    body = doc["document"]
    click.echo(f"agreement {doc['id']} version {doc['version']} ({doc['state']}), sha256 {doc['sha256']}")
    click.echo(f"  controller: {body['controller']['name']}; DPIA {body['dpia']}; review {body['review_date']}"
               + (" (overdue)" if doc["review_overdue"] else ""))  # fmt: skip
    click.echo(f"  purpose: {shown(body['purpose'])}")
    click.echo(f"  valid {body['validity']['not_before']} .. {body['validity']['not_after']}")
    click.echo(f"  data items: {', '.join(body['data_items'])}")
    click.echo(f"  scope: {json.dumps(body['scope'], sort_keys=True)}")
    for party in body["parties"]:
        click.echo(f"  party {party['name']} ({party['role']}): {shown(party['lawful_basis'])}; "
                   f"retention {party['retention_days']} days; {len(party['recipients'])} recipient(s)")  # fmt: skip


@agreement.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_ctx
def agreement_list(ctx: Context, as_json: bool) -> None:
    """The agreements in this dock's agreements.dir: in force, expired, revoked, or refused and why."""
    import time

    from bodycam.agent.formats.agreements import Loaded, load_dir

    cfg = ctx.config.agreements
    if cfg is None:
        raise ConfigError(
            "no [agreements] in the config: every in-scope recording goes to [[recipients]]; to disclose under "
            "signed agreements, add [agreements] with controller_keys, dir and archive (docs/configuration.md)"
        )
    loaded = load_dir(cfg.dir, _controller_keys(ctx, ())) if cfg.dir else Loaded()
    if ctx.config.fleet is not None:  # and those cached from the bucket ('fleet show' refreshes them)
        from bodycam.agent.pipeline.fleet import fleet_source, merge

        source = fleet_source(ctx.config)
        loaded = merge(loaded, source.view(None).agreements) if source else loaded
    now = time.time()
    items = [_agreement_json(a, now, loaded.revoked) for a in loaded.agreements]
    refused = [{"file": name, "reason": reason} for name, reason in loaded.refused]
    if as_json:
        for item in items:
            item.pop("document")
        emit_json({"agreements": items, "revoked": sorted(loaded.revoked), "refused": refused})
        return
    for item in items:
        overdue = ", review overdue" if item["review_overdue"] else ""
        click.echo(f"{item['id']}  v{item['version']}  {item['state']}{overdue}  {item['sha256'][:16]}")
    for r in refused:
        click.echo(f"refused: {r['reason']}")


@agreement.command("revoke")
@click.argument("agreement_id")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The controller's OpenSSH Ed25519 private key.")  # fmt: skip
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for ID.revoked.json and its .sig (a dock's agreements.dir).")  # fmt: skip
def agreement_revoke(agreement_id: str, key_path: Path, out_dir: Path) -> None:
    """Revoke every version of an agreement: no new recording is disclosed under it. Forward only: what
    a party already received stays readable to it (age cannot take a delivered file back)."""
    import time

    from bodycam.agent.formats.agreements import revoke
    from bodycam.agent.formats.sshsig import load_private_key

    path = revoke(agreement_id, load_private_key(key_path), out_dir, now=time.time())
    click.echo(f"{path}: agreement {agreement_id} revoked for new disclosures (what was delivered stays delivered)")
