"""A test docking station: keys, recipient, config file, enrolment, exercises (real parts throughout)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bodycam.agent.config import Config, Recipient, load
from bodycam.agent.formats.agecrypt import generate_hybrid_identity, generate_identity
from bodycam.agent.formats.sshsig import allowed_signers_line, generate_key, parse_public_key_line
from bodycam.agent.pipeline.ingest import Agent
from bodycam.agent.pipeline.policy import Exercise, add_exercise
from bodycam.agent.storage.journal import Journal
from bodycam.drivers.virtual.server import device_key_hex

CLI = str(Path(sys.executable).with_name("bodycam-sync"))
DOCK_ID = "dock-test"


def window(hours: float = 2.0) -> tuple[float, float]:
    now = time.time()
    return now - hours * 3600, now - 60


def iso_window(win: tuple[float, float]) -> str:
    return "/".join(dt.datetime.fromtimestamp(t, dt.UTC).isoformat() for t in win)


@dataclass
class Dock:
    root: Path
    config_path: Path
    identity: str
    identity_path: Path
    allowed_signers: Path
    bucket_url: str
    endpoint_url: str | None

    @property
    def config(self) -> Config:
        return load(self.config_path)

    def agent(self) -> Agent:
        return Agent(self.config)

    def journal(self) -> Journal:
        return Journal(self.config.journal_path)

    def custody(self, event: str | None = None) -> list[dict[str, Any]]:
        """The dock's whole custody log, in order (a docking with nothing to sign keeps its entries for a
        later batch), or only its ``event`` entries."""
        journal = self.journal()
        try:
            entries = [json.loads(row[0]) for row in journal.query("SELECT line FROM custody ORDER BY seq")]
        finally:
            journal.close()
        return entries if event is None else [e for e in entries if e["event"] == event]

    def enroll(self, *serials: str) -> None:
        j = self.journal()
        try:
            for sn in serials:
                j.enroll(sn, bytes.fromhex(device_key_hex(sn)))
                j.allocate(sn, f"OFFICER-{sn}", time.time() - 86400)
        finally:
            j.close()

    def exercise(self, ex_id: str, win: tuple[float, float], *serials: str, site: str = "Range 3") -> None:
        j = self.journal()
        try:
            add_exercise(j, Exercise(ex_id, site, win[0], win[1], frozenset(serials)))
        finally:
            j.close()

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [CLI, "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )

    def ingest_json(self, *addresses: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        args = ["ingest", "--once", "--json"]
        for a in addresses:
            args += ["--serial-port", a] if a.startswith("/") else ["--usbip", a]
        proc = self.cli(*args, **kw)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def make_dock(
    root: Path, bucket_url: str, endpoint_url: str | None = None, *, erase: bool = False, post_quantum: bool = False
) -> Dock:
    """A dock whose one party holds an X25519 key, or an ML-KEM hybrid (age1pq1) one with ``post_quantum``."""
    root.mkdir(parents=True, exist_ok=True)
    keys = root / "keys"
    keys.mkdir(mode=0o700)
    identity, recipient = generate_hybrid_identity() if post_quantum else generate_identity()
    identity_path = keys / "party.agekey"
    identity_path.write_text(identity + "\n")
    pub = generate_key(keys / "dock_ed25519", DOCK_ID)
    allowed = keys / "allowed_signers"
    allowed.write_text(allowed_signers_line(DOCK_ID, parse_public_key_line(pub)) + "\n")
    lines = [
        f'dock_id = "{DOCK_ID}"',
        f'state_dir = "{root / "state"}"',
        "[bucket]",
        f'url = "{bucket_url}"',
    ]
    if endpoint_url:
        lines.append(f'endpoint_url = "{endpoint_url}"')
    lines += [
        "[signing]",
        f'key = "{keys / "dock_ed25519"}"',
        "[[recipients]]",
        'name = "party-a"',
        f'age = "{recipient}"',
        "[policy]",
        f"erase_after_upload = {'true' if erase else 'false'}",
        "[upload]",
        "part_size = 5242880",
    ]
    config_path = root / "agent.toml"
    config_path.write_text("\n".join(lines) + "\n")
    return Dock(root, config_path, identity, identity_path, allowed, bucket_url, endpoint_url)


__all__ = ["CLI", "DOCK_ID", "Config", "Dock", "Recipient", "iso_window", "make_dock", "window"]
