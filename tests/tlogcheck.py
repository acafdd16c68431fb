"""Go's golang.org/x/mod/sumdb/{note,tlog} as the independent verifier of our log (tests/go/tlogcheck).

The Go program is built once per test session with the Debian packages golang-go and
golang-golang-x-mod-dev (GOPATH mode, no network). Without go the tests skip, except under CI
(``CI`` set), where a missing verifier must fail the run rather than pass it silently.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats import note, tlog

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "go" / "tlogcheck"
GOPATH = "/usr/share/gocode"
_built: dict[str, Path] = {}


def binary() -> Path:
    """The built verifier (cached for the session); skips, or fails under CI, when go is missing."""
    if "bin" in _built:
        return _built["bin"]
    go = shutil.which("go")
    missing = None
    if go is None:
        missing = "go is not installed (Debian golang-go)"
    elif not (Path(GOPATH) / "src/golang.org/x/mod/sumdb/tlog").is_dir():
        missing = "golang.org/x/mod/sumdb is not installed (Debian golang-golang-x-mod-dev)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"Go interop check cannot run under CI: {missing}")
        pytest.skip(missing)
    out = Path(tempfile.mkdtemp(prefix="tlogcheck-"))
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(out / "cache"), "GOFLAGS": ""}
    subprocess.run([str(go), "build", "-o", str(out / "tlogcheck"), "."], cwd=SOURCE, env=env, check=True, timeout=600)
    _built["bin"] = out / "tlogcheck"
    return _built["bin"]


def run(request: dict[str, Any]) -> list[str]:
    """One line per check: ``<what> OK`` or ``<what> FAIL: <error>``."""
    proc = subprocess.run(
        [str(binary())], input=json.dumps(request).encode(), capture_output=True, timeout=600, check=False
    )
    assert proc.returncode in (0, 1), proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert (proc.returncode == 0) == all(line.endswith(" OK") for line in lines), lines
    return lines


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def proof_list(proof: Sequence[bytes]) -> list[str]:
    return [b64(p) for p in proof]


def entry(i: int) -> bytes:
    """Deterministic, varied entries (some empty, some long)."""
    return b"" if i % 97 == 0 else f"entry {i} ".encode() * (1 + i % 5)


def build_tree(size: int, make: Callable[[int], bytes] = entry) -> tlog.Tree:
    tree = tlog.Tree(tlog.MemoryHashStore())
    for i in range(size):
        tree.append(make(i))
    return tree


def write_log(
    tree: tlog.Tree, directory: Path, key: Ed25519PrivateKey, origin: str, make: Callable[[int], bytes] = entry
) -> bytes:
    """Every tile and entry bundle of ``tree`` plus its signed checkpoint under ``directory``."""
    for path, data in tlog.tile_objects(tree, 0, tree.size, lambda lo, hi: [make(i) for i in range(lo, hi)]):
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    signed = note.sign_checkpoint(note.Checkpoint(origin, tree.size, tree.root()), origin, key)
    (directory / "checkpoint").write_bytes(signed)
    return signed
