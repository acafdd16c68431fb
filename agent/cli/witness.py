"""``bodycam-sync witness``: run a C2SP tlog-witness for docks' logs (any party of an agreement can)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import click

from bodycam.drivers.errors import ConfigError


@click.group()
def witness() -> None:
    """A transparency-log witness: cosigns docks' checkpoints that only grow (docs/deployment.md)."""


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen {value!r} must read HOST:PORT (PORT 0: any free port)")
    return host.strip("[]"), int(port)


@witness.command("init")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Private key path.")
@click.option("--name", required=True, help="The witness's name, a schema-less URL (witness.example/ho).")
def witness_init(out: Path, name: str) -> None:
    """Write the witness's Ed25519 key (OUT 0600, OUT.pub) and print its verifier key for policy files."""
    from bodycam.agent.formats import cosignature, note
    from bodycam.agent.formats.sshsig import generate_key, load_private_key

    if not note.valid_name(name):
        raise ConfigError(f"--name {name!r} must be non-empty without spaces or '+'")
    generate_key(out, name)
    click.echo(cosignature.verifier_key(name, load_private_key(out).public_key()))
    click.echo(f"wrote {out} (private, 0600) and {out}.pub", err=True)


@witness.command("serve")
@click.option("--listen", "listen", required=True, help="HOST:PORT to listen on (PORT 0: any free port).")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The witness's private key ('witness init --out').",
)
@click.option("--name", required=True, help="The witness's name, as given to 'witness init'.")
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for what the witness remembers (created 0700; back it up).",
)
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Policy file: one 'log' line per dock it cosigns for (docs/formats.md §11.2).",
)
def witness_serve(listen: str, key_path: Path, name: str, state_dir: Path, policy_path: Path) -> None:
    """Serve POST /add-checkpoint (C2SP tlog-witness) and GET /checkpoint/<origin> until SIGTERM/SIGINT.

    Cosigns checkpoints of the logs whose 'log' lines are in the policy file. The first stdout line is
    JSON: {"listen": "HOST:PORT", "name": ..., "vkey": ...}."""
    from bodycam.agent.formats import witnesspolicy
    from bodycam.agent.formats.sshsig import load_private_key
    from bodycam.agent.service.witness import Witness, serve
    from bodycam.agent.storage.witnessstate import WitnessState

    host, port = _listen(listen)
    policy = witnesspolicy.load(policy_path)
    if not policy.logs:
        raise ConfigError(f"witness policy {policy_path} has no 'log' line: this witness would cosign nothing")
    try:
        w = Witness(name, load_private_key(key_path), policy, WitnessState(state_dir))
    except ValueError as err:
        raise ConfigError(f"--name: {err}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def ready(address: str) -> None:
        click.echo(json.dumps({"listen": address, "name": name, "vkey": w.vkey()}))
        sys.stdout.flush()

    try:
        serve(w, host, port, ready=ready, stop=stop)
    except OSError as err:
        raise ConfigError(f"--listen {listen}: {err.strerror or err}") from None
    finally:
        w.state.close()
