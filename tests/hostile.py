"""Hostile evidence buckets, built by hand for ``verify`` tests and ``bench/verify.py``.

An auditor runs ``verify`` on data another organisation hands over, so the worst case is a bucket whose
manifests are validly signed (the other party's dock signed them) yet built to exhaust the verifier:
a custody range that claims 10^15 entries, a manifest of millions of ``{}`` recordings, a custody
segment of many thousand entries. :func:`build` writes one batch of one dock as a file bucket, signed
by a fresh key that the returned ``allowed_signers`` file trusts, so every finding is about the
hostile content itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats import commitment
from bodycam.agent.formats.custody import GENESIS, canonical, line_hash
from bodycam.agent.formats.sshsig import allowed_signers_line, public_key_line, sign

DOCK = "dock-hostile"
MiB = 1024 * 1024

# Runs the command with its output to files, then prints its exit code, wall time and the peak RSS of its
# only child (RUSAGE_CHILDREN's ru_maxrss, KiB). A launcher process, because Linux carries the parent's
# ru_maxrss over an exec, and the caller (pytest, the bench) holds memory of its own. An address-space
# limit keeps a verifier that does not bound itself from taking the shared machine down with it.
LAUNCHER = """
import json, resource, subprocess, sys, time
limit = int(sys.argv[1])
def cap():
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
started = time.perf_counter()
with open(sys.argv[2], "wb") as out, open(sys.argv[3], "wb") as err:
    try:
        rc = subprocess.run(sys.argv[4:], stdin=subprocess.DEVNULL, stdout=out, stderr=err, preexec_fn=cap,
                            timeout=float(600)).returncode
    except subprocess.TimeoutExpired:
        rc = -9
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "wall_s": wall, "ru_maxrss_kib": usage.ru_maxrss}), flush=True)
"""


@dataclass
class Measured:
    rc: int
    wall_s: float
    peak_rss_mib: float
    stdout: str
    stderr: str


def measure(cmd: list[str], work: Path, *, address_limit: int = 0, env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd`` under the launcher (``env``: variables set for it); its exit code, wall time, peak RSS
    and output."""
    out, err = work / "measured.out", work / "measured.err"
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(address_limit), str(out), str(err), *cmd],
        capture_output=True,
        text=True,
        check=True,
        env=None if env is None else {**os.environ, **env},
    )
    import json

    result = json.loads(launched.stdout)
    return Measured(
        result["rc"],
        result["wall_s"],
        result["ru_maxrss_kib"] / 1024,
        out.read_text(errors="replace"),
        err.read_text(errors="replace"),
    )


@dataclass
class Hostile:
    root: Path  # the bucket directory
    allowed_signers: Path
    manifest_key: str
    custody_key: str

    @property
    def url(self) -> str:
        return self.root.as_uri()


def custody_lines(count: int, first: int = 1, prev: str = GENESIS) -> Iterator[bytes]:
    """A valid custody chain of ``count`` entries from ``first``, linked from ``prev``."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for seq in range(first, first + count):
        ts = (start + dt.timedelta(seconds=seq)).isoformat().replace("+00:00", "Z")
        line = canonical({"seq": seq, "ts": ts, "dock": DOCK, "event": "listed", "camera": "CAM-H", "prev": prev})
        prev = line_hash(line)
        yield line


def build(
    root: Path,
    *,
    custody_entries: int = 3,
    last_seq: int | None = None,
    empty_recordings: int = 0,
    batches: int = 1,
    stray_objects: int = 0,
    commitments: bool = False,
) -> Hostile:
    """A dock's chain of ``batches`` signed batches in a file bucket at ``root``; returns the first's keys.

    Each batch holds ``custody_entries`` valid entries continuing the chain; the first batch's manifest
    claims ``last_seq`` (default: the true last one). ``empty_recordings`` fills every manifest's
    ``recordings`` with that many ``{}``. ``stray_objects`` small objects lie outside any batch.
    ``commitments``: format 1.1 manifests (``recordings_root`` and the custody ``root``), which verify
    keeps for the log check.
    """
    key = Ed25519PrivateKey.generate()
    head, last, previous = GENESIS, 0, None
    first: tuple[str, str] | None = None
    for number in range(1, batches + 1):
        batch = f"20260101T000000Z-{number:06d}"
        mkey, ckey, head, last, previous = _batch(
            root, key, batch, number, custody_entries, head, last, previous,
            last_seq if number == 1 else None, empty_recordings, commitments,
        )  # fmt: skip
        first = first or (mkey, ckey)
    if stray_objects:
        stray = root / DOCK / "stray"
        stray.mkdir(parents=True)
        for n in range(stray_objects):
            (stray / f"{n:08d}").write_bytes(b"x")
    allowed = root.parent / f"{root.name}.allowed_signers"
    allowed.write_text(allowed_signers_line(DOCK, key.public_key()) + "\n")
    assert first is not None
    return Hostile(root, allowed, first[0], first[1])


def _batch(
    root: Path,
    key: Ed25519PrivateKey,
    batch: str,
    seq: int,
    entries: int,
    prev_head: str,
    prev_last: int,
    previous: str | None,
    claimed_last: int | None,
    empty_recordings: int,
    commitments: bool = False,
) -> tuple[str, str, str, int, str]:
    """Write one batch; returns (manifest key, custody key, custody head, last seq, manifest SHA-256)."""
    batch_dir = root / DOCK / batch
    batch_dir.mkdir(parents=True)
    custody = hashlib.sha256()
    head, last = prev_head, prev_last
    lines: list[bytes] = []
    with open(batch_dir / "custody.jsonl", "wb") as f:
        for line in custody_lines(entries, prev_last + 1, prev_head):
            if commitments:
                lines.append(line)
            data = line + b"\n"
            f.write(data)
            custody.update(data)
            head, last = line_hash(line), last + 1
    personal = b"not opened without an identity"
    (batch_dir / "personal.json.age").write_bytes(personal)
    prefix = f"{DOCK}/{batch}"
    sealed = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=seq)
    doc: dict[str, Any] = {
        "format": "bodycam-manifest/1",
        "dock_id": DOCK,
        "agent_version": "hostile",
        "batch_id": batch,
        "batch_seq": seq,
        "opened": "2026-01-01T00:00:00.000000Z",
        "sealed": sealed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "previous_manifest_sha256": previous,
        "signing_key": public_key_line(key.public_key()),
        "custody": {
            "key": f"{prefix}/custody.jsonl",
            "first_seq": prev_last + 1,
            "last_seq": last if claimed_last is None else claimed_last,
            "prev": prev_head,
            "head": head,
            "sha256": custody.hexdigest(),
        },
        "personal": {"key": f"{prefix}/personal.json.age", "sha256": hashlib.sha256(personal).hexdigest()},
        "recipients": [],
        "recordings": [],
    }
    if commitments:
        doc["recordings_root"] = commitment.recordings_root([])
        doc["custody"]["root"] = commitment.custody_root(lines)
    manifest = canonical(doc)
    if empty_recordings:  # spliced in as bytes: building 10^7 dicts here would cost what verify must not
        head_part, tail = manifest.split(b'"recordings":[]', 1)
        body = b",".join([b"{}"] * empty_recordings)
        manifest = head_part + b'"recordings":[' + body + b"]" + tail
    (batch_dir / "manifest.json").write_bytes(manifest)
    (batch_dir / "manifest.json.sig").write_text(sign(manifest, key, "bodycam-manifest"))
    return f"{prefix}/manifest.json", f"{prefix}/custody.jsonl", head, last, hashlib.sha256(manifest).hexdigest()


def address_limit(mib: int) -> int:
    """RLIMIT_AS bytes for a child, never above what this process may already use."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    want = mib * MiB
    return want if soft == resource.RLIM_INFINITY else min(want, soft)
