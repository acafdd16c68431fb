"""docs/auditing.md's stock-tool walkthrough, run exactly as written against a freshly ingested bucket.

The blocks marked ``<!-- walkthrough -->`` in the doc are extracted and run with bash, parameters in the
environment ($BUCKET_DIR, $DOCK, $BATCH, $ALLOWED_SIGNERS, $IDENTITY): the per-batch audit for every
batch and the dock-chain audit once. The bucket holds two batches with a key rotation between them, so
the hand-over check runs too. Then one flipped byte in a recording, and a missing co-signature, must
each make the walkthrough fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .dock import DOCK_ID, Dock, iso_window, make_dock, window
from .sims import SimProcess

DOC = Path(__file__).resolve().parent.parent / "docs" / "auditing.md"
TOOLS = ("bash", "age", "ssh-keygen", "jq", "sha256sum", "diff", "find")
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS),
    reason=f"the walkthrough needs stock {', '.join(t for t in TOOLS if shutil.which(t) is None)}",
)


def walkthrough_blocks() -> list[str]:
    blocks = re.findall(r"<!-- walkthrough -->\s*\n```sh\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 2, "docs/auditing.md should mark two runnable blocks: one batch, the dock's chain"
    return blocks


def run_block(block: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", block], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def ingest(dock: Dock, tmp: Path, serial: str) -> str:
    win = window()
    dock.enroll(serial)
    dock.exercise(f"EX-{serial}", win, serial)
    with SimProcess("usbip", serial, "--recordings", "3", "--training", "2", "--size", str(200_000),
                    "--exercise", iso_window(win), truth_dir=tmp) as sim:  # fmt: skip
        rc, report = dock.ingest_json(sim.address)
    assert rc == 0, report
    return str(report["batch_id"])


def test_stock_tool_walkthrough_passes_then_catches_a_flipped_byte(tmp_path: Path) -> None:
    per_batch, chain = walkthrough_blocks()
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    first = ingest(dock, tmp_path, "CAM-W1")
    rotated = dock.cli("keys", "rotate", "--out", str(tmp_path / "dock" / "keys" / "dock_ed25519.next"))
    assert rotated.returncode == 0, rotated.stderr
    with dock.allowed_signers.open("a") as f:
        f.write(rotated.stdout)
    config = dock.config_path.read_text()
    dock.config_path.write_text(re.sub(r'(?m)^key = ".*"$', f'key = "{tmp_path}/dock/keys/dock_ed25519.next"', config))
    second = ingest(dock, tmp_path, "CAM-W2")
    assert (bucket / DOCK_ID / second / "manifest.json.sig.prev").exists()

    env = {
        "BUCKET_DIR": str(bucket),
        "DOCK": DOCK_ID,
        "ALLOWED_SIGNERS": str(dock.allowed_signers),
        "IDENTITY": str(dock.identity_path),
    }
    for batch in (first, second):
        proc = run_block(per_batch, {**env, "BATCH": batch})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.strip().endswith(f"batch {batch}: verified")
    proc = run_block(chain, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith(f"dock {DOCK_ID}: 2 batches, one unbroken chain")

    recording = next((bucket / DOCK_ID / second / "recordings").rglob("*.age"))
    original = recording.read_bytes()
    recording.write_bytes(original[:1000] + bytes([original[1000] ^ 0x04]) + original[1001:])
    proc = run_block(per_batch, {**env, "BATCH": second})
    assert proc.returncode != 0, proc.stdout
    assert f"batch {second}: verified" not in proc.stdout and "CHECK FAILED" in proc.stderr
    assert f"CHECK FAILED: {recording}: ciphertext SHA-256 differs" in proc.stderr, proc.stderr  # names the file
    recording.write_bytes(original)
    assert run_block(per_batch, {**env, "BATCH": second}).returncode == 0

    cosignature = bucket / DOCK_ID / second / "manifest.json.sig.prev"
    saved = cosignature.read_bytes()
    cosignature.unlink()
    proc = run_block(chain, env)
    assert proc.returncode != 0 and "one unbroken chain" not in proc.stdout
    assert f"CHECK FAILED: {cosignature}" in proc.stderr, proc.stderr  # names the file
    cosignature.write_bytes(saved)
