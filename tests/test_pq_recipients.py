"""Post-quantum (MLKEM768-X25519, ``age1pq1``) recipients through the config, the CLI and a real docking.

Issue 12 item 4: footage kept for years must not be exposed later by a quantum computer. The agecrypt
unit tests and the CCTV vectors are in test_agecrypt.py; the second implementation is in
test_age_interop.py.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bodycam.agent.config import load
from bodycam.agent.formats.agecrypt import Decryptor, generate_hybrid_identity, generate_identity
from bodycam.drivers.errors import ConfigError

from .dock import CLI, iso_window, make_dock, window
from .sims import SimProcess

PQ_ID, PQ_RCPT = generate_hybrid_identity()
X_ID, X_RCPT = generate_identity()


def _config(tmp_path: Path, *ages: str) -> Path:
    lines = ['dock_id = "d"', f'state_dir = "{tmp_path / "state"}"']
    for i, age in enumerate(ages):
        lines += ["[[recipients]]", f'name = "party-{i}"', f'age = "{age}"']
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_config_accepts_both_recipient_kinds_and_bounds_their_length(tmp_path: Path) -> None:
    assert [r.age for r in load(_config(tmp_path, PQ_RCPT)).recipients] == [PQ_RCPT]
    assert [r.age for r in load(_config(tmp_path, X_RCPT)).recipients] == [X_RCPT]
    for bad in (PQ_RCPT + "q", PQ_RCPT[:-1], "age1pq1" + "q" * 100_000, X_RCPT[:-1], "AGE-SECRET-KEY-PQ-1X"):
        with pytest.raises(ConfigError, match=r"recipients\[0\]\.age.*age1pq1\.\.\. \(post-quantum"):
            load(_config(tmp_path, bad))


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "--config", str(config), *args], capture_output=True, text=True, timeout=120)


def test_recipients_add_takes_a_post_quantum_key_and_warns_when_the_agreement_mixes(tmp_path: Path) -> None:
    config = _config(tmp_path)
    added = _cli(config, "recipients", "add", "pq-party", PQ_RCPT)
    assert added.returncode == 0 and added.stderr == "", added.stderr
    listed = json.loads(_cli(config, "recipients", "list", "--json").stdout)["recipients"]
    assert listed == [{"name": "pq-party", "age": PQ_RCPT, "source": "journal"}]
    mixed = _cli(config, "recipients", "add", "classic-party", X_RCPT)
    assert mixed.returncode == 0, mixed.stderr
    assert "warning: ingest refuses" in mixed.stderr and "classic-party" in mixed.stderr
    assert len(mixed.stderr.strip().splitlines()) == 1
    broken = _cli(config, "recipients", "add", "typo", PQ_RCPT[:-1] + ("q" if PQ_RCPT[-1] != "q" else "p"))
    assert broken.returncode == 2 and "checksum" in broken.stderr and "Traceback" not in broken.stderr


def test_a_mixed_agreement_stops_ingest_before_any_camera_is_touched(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri(), post_quantum=True)
    assert dock.cli("recipients", "add", "classic-party", X_RCPT).returncode == 0
    proc = dock.cli("ingest", "--once", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "mix 1 post-quantum" in proc.stderr and "party-a" in proc.stderr and "Traceback" not in proc.stderr


def test_a_hybrid_recipient_receives_a_docking_and_verify_decrypts_it_with_the_pq_identity(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri(), post_quantum=True)
    assert dock.identity.startswith("AGE-SECRET-KEY-PQ-1")
    win = window()
    dock.enroll("CAM-PQ1")
    dock.exercise("EX-PQ", win, "CAM-PQ1")
    args = ("--recordings", "3", "--training", "2", "--size", str(3 * 65536), "--exercise", iso_window(win))
    with SimProcess("usbip", "CAM-PQ1", *args, truth_dir=tmp_path) as cam:
        rc, report = dock.ingest_json(cam.address)
        assert rc == 0, report
        expected = cam.training()
    objects = sorted(p for p in bucket.rglob("*.age") if "recordings" in p.parts)
    assert len(objects) == len(expected) == 2
    for path in objects:
        data = path.read_bytes()
        header = data[: data.index(b"\n---")]
        assert header.count(b"\n-> mlkem768x25519 ") == 1 and b"X25519" not in header
        dec = Decryptor([dock.identity])
        plain = dec.update(data) + dec.finalize()
        assert hashlib.sha256(plain).hexdigest() in expected.values()
    verified = dock.cli(
        "verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers),
        "--identity", str(dock.identity_path), "--json",
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    result = json.loads(verified.stdout)
    assert result["verified"] is True and result["audit"]["decrypted"] is True
    stranger = tmp_path / "stranger.agekey"
    stranger.write_text(generate_hybrid_identity()[0] + "\n")
    refused = dock.cli(
        "verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers),
        "--identity", str(stranger), "--json",
    )  # fmt: skip
    assert refused.returncode == 1, refused.stdout + refused.stderr


def _wait_for(log: Path, text: str, within: float = 60) -> str:
    deadline = time.monotonic() + within
    while text not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    content = log.read_text()
    assert text in content, content[-2000:]
    return content


def test_the_daemon_refuses_a_reload_that_would_mix_recipient_kinds(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri(), post_quantum=True)
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "0.3"], stderr=log.open("ab")
    )
    try:
        _wait_for(log, "daemon ready")
        with dock.config_path.open("a") as f:
            f.write(f'[[recipients]]\nname = "classic"\nage = "{X_RCPT}"\n')
        daemon.send_signal(signal.SIGHUP)
        refused = _wait_for(log, "reload refused")
        assert "mix 1 post-quantum" in refused.split("reload refused", 1)[1]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
