"""A force's data-sharing set-up, as the agreement tests each need it: the controller's signing key,
each party's age identity, agreement drafts (docs/formats.md §10) and the dock's ``[agreements]`` table,
plus stock ``age -d`` to prove who can open what. One copy, so the tests differ only in their parties,
scopes and dates."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats.agecrypt import generate_identity
from bodycam.agent.formats.sshsig import generate_key

from .dock import Dock


@dataclass
class Force:
    keys: Path  # the controller's signing key (``controller``) and each party's ``<name>.agekey``
    controller_pub: str  # the controller's public key line
    identities: dict[str, Path]  # party -> age identity file
    recipients: dict[str, str]  # party -> age recipient


def make_force(root: Path, parties: Iterable[str]) -> Force:
    """The controller's key and an age identity for each of ``parties``, under ``root/force``."""
    keys = root / "force"
    keys.mkdir()
    controller_pub = generate_key(keys / "controller", "force")
    identities: dict[str, Path] = {}
    recipients: dict[str, str] = {}
    for name in parties:
        secret, recipients[name] = generate_identity()
        identities[name] = keys / f"{name}.agekey"
        identities[name].write_text(secret + "\n")
    return Force(keys, controller_pub, identities, recipients)


def share_under_agreements(dock: Dock, force: Force, agreements: Path) -> None:
    """The dock's ``[agreements]``: the controller's key, the directory of signed agreements and the
    archive recipient (the party named ``archive``)."""
    with dock.config_path.open("a") as f:
        f.write(
            f'[agreements]\ncontroller_keys = ["{force.controller_pub.strip()}"]\n'
            f'dir = "{agreements}"\narchive = "{force.recipients["archive"]}"\n'
        )


def draft(
    path: Path,
    ident: str,
    exercise: str | Sequence[str],
    parties: dict[str, str],
    not_after: float,
    *,
    items: Sequence[str] = ("footage", "times"),
    retention_days: int = 90,
    lawful_basis: str = "DPA 2018 s.35",
) -> Path:
    """An unsigned agreement draft disclosing ``exercise`` (one or several) to ``parties`` (name ->
    recipient), valid from a day ago until ``not_after``."""
    doc: dict[str, Any] = {
        "format": ag.FORMAT,
        "id": ident,
        "version": 1,
        "controller": {"name": "Example Constabulary"},
        "parties": [
            {
                "name": n,
                "role": "processor",
                "lawful_basis": lawful_basis,
                "recipients": [r],
                "retention_days": retention_days,
            }
            for n, r in parties.items()
        ],
        "purpose": "firearms-training review",
        "data_items": list(items),
        "scope": {"exercises": [exercise] if isinstance(exercise, str) else list(exercise)},
        "validity": {"not_before": ag._iso(time.time() - 86400), "not_after": ag._iso(not_after)},
        "review_date": "2030-01-01",
        "dpia": "DPIA-7",
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


def age_decrypt(identity: Path, obj: Path) -> bytes | None:
    """What stock ``age -d`` makes of ``obj`` with ``identity``: the plaintext, or None when it cannot."""
    proc = subprocess.run(["age", "-d", "-i", str(identity), str(obj)], capture_output=True, timeout=60)
    return proc.stdout if proc.returncode == 0 else None
