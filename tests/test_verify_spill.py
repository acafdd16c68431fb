"""verify keeps its batch summaries in memory up to a budget, then spills them to a private temporary
SQLite database (agent/audit/batchstore.py), so a bucket of any number of batches verifies under
``--max-memory``. The findings, ``--json`` and ``--report`` must not depend on where they were kept; the
database must be private (0700 directory, 0600 file, whatever the umask) and gone once verify ends, on
success, on error and on Ctrl-C. No test here asserts on time."""

from __future__ import annotations

import gc
import json
import os
import signal
import stat
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bodycam.agent.audit import report as html_report
from bodycam.agent.audit import verify as v
from bodycam.agent.audit.batchstore import BatchStore
from bodycam.agent.cli.render import print_verify
from bodycam.agent.formats.sshsig import parse_allowed_signers
from bodycam.agent.storage.bucket import Bucket, LocalBucket, ObjectReader, open_bucket
from bodycam.agent.storage.wrapper import BucketWrapper

from . import hostile
from .dock import CLI
from .fleet import build_fleet


def _outputs(verifier: v.Verifier, capsys: pytest.CaptureFixture[str], spilled: bool | None) -> tuple[str, str, str]:
    """The three things a user reads of one run: ``--json``, ``--report`` and the text table."""
    with verifier.run() as report:
        report.audit = v.AuditContext(
            verifier.bucket.url, "allowed_signers", "0" * 64, tuple(verifier.signers), bool(verifier.identities),
            "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "test",
        )  # fmt: skip
        if spilled is not None:
            assert report.batches.spilled is spilled
        doc = json.dumps(report.to_json(), indent=2, sort_keys=True, default=str)
        page = html_report.render(report)
        capsys.readouterr()
        print_verify(report)
        text = capsys.readouterr().out
    return doc, page, text


def _tamper_fleet(bucket: Bucket) -> None:
    keys = sorted(o.key for o in bucket.iter_objects() if "/recordings/" in o.key)
    data = bytearray(bucket.get_bytes(keys[1], 1 << 20))
    data[len(data) // 2] ^= 0x40
    bucket.put_object(keys[1], bytes(data), create_only=False)
    bucket.delete(keys[5])
    bucket.put_object(keys[9].replace("/recordings/", "/recordings/extra-"), b"stray")


@pytest.mark.parametrize("decrypt", [False, True])
def test_spilled_summaries_give_the_same_findings_json_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], decrypt: bool
) -> None:
    """A tampered fleet of four docks (report rows; with ``decrypt`` the personal sidecars too): the run
    kept in memory, the run spilled from the first batch, and one spilled after two batches agree byte
    for byte on the JSON, the HTML report and the table."""
    bucket = LocalBucket(tmp_path / "bucket")
    fleet = build_fleet(tmp_path / "docks", bucket, docks=4, per_dock=6, size=1500)
    _tamper_fleet(bucket)
    signers = parse_allowed_signers(fleet.allowed_signers.read_text())
    identities = [fleet.identity] if decrypt else []
    runs = [
        _outputs(
            v.Verifier(bucket, signers, identities, workers=2, batch_budget=budget, work_dir=tmp_path), capsys, spilled
        )
        for budget, spilled in ((None, False), (0, True), (2 * v.BATCH_COST + 6 * v.ROW_COST + 4096, True))
    ]
    doc = json.loads(runs[0][0])
    assert {"object_altered", "object_missing", "unlisted_object"} <= {f["problem"] for f in doc["findings"]}
    assert len(doc["batches"]) == 4 and sum(b["problems"] for b in doc["batches"]) >= 3
    assert "officer id (clear)" in runs[0][1] if decrypt else "PERSONAL DATA" not in runs[0][1]
    assert runs[1] == runs[0]
    assert runs[2] == runs[0]
    assert not list(tmp_path.glob("bodycam-verify-*"))  # each run's database is gone with its report


def _chain_tampered(root: Path) -> tuple[hostile.Hostile, str]:
    """One dock's chain of 40 batches with batch 10 deleted, batch 20's manifest edited and batch 30's
    custody segment cut short; returns the bucket and batch 35's manifest SHA-256 (an expected head)."""
    import hashlib

    h = hostile.build(root, batches=40, commitments=True)
    dock_dir = root / h.manifest_key.split("/")[0]
    batches = sorted(p for p in dock_dir.iterdir() if p.is_dir() and p.name != "log")
    for p in (batches[9]).iterdir():
        p.unlink()
    batches[9].rmdir()
    manifest = batches[19] / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"format"', b'"format" ', 1))
    custody = batches[29] / "custody.jsonl"
    custody.write_bytes(custody.read_bytes()[:-10])
    return h, hashlib.sha256((batches[34] / "manifest.json").read_bytes()).hexdigest()


def test_a_spilled_chain_is_checked_as_one_kept_in_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The checks across batches read the summaries back from the database: a missing batch, an edited
    manifest, a cut custody segment and ``--expect-head`` (one present, one not) give the same findings."""
    h, head = _chain_tampered(tmp_path / "bucket")
    signers = parse_allowed_signers(h.allowed_signers.read_text())
    heads = {h.manifest_key.split("/")[0]: head, "dock-gone": "0" * 64}
    runs = [
        _outputs(
            v.Verifier(open_bucket(h.url), signers, expected_heads=heads, workers=1, batch_budget=budget),
            capsys,
            spilled,
        )
        for budget, spilled in ((None, False), (0, True), (13 * v.BATCH_COST, True))
    ]
    found = [(f["problem"], f["batch"]) for f in json.loads(runs[0][0])["findings"]]
    problems = {p for p, _ in found}
    assert {"batch_missing", "signature_mismatch", "custody_altered", "expected_head_missing"} <= problems, found
    assert [p for p, _ in found].count("expected_head_missing") == 1  # dock-gone's; the dock's own head is there
    assert runs[1] == runs[0]
    assert runs[2] == runs[0]


@dataclass
class _Item:
    dock: str
    batch: str
    seq: int | None
    problems: int = 0
    to: str | None = None


def _encode(item: _Item) -> tuple[bytes, bytes | None]:
    return json.dumps([item.dock, item.batch, item.seq, item.to]).encode(), None


def _decode(data: bytes, extra: bytes | None) -> _Item:
    dock, batch, seq, to = json.loads(data)
    return _Item(dock, batch, seq, 0, to)


def _items() -> Iterator[_Item]:
    """Docks whose names sort awkwardly as bytes (a NUL, a prefix of another, a lone surrogate from a
    hostile key, non-ASCII) and sequence numbers from none to 2^63-1, added out of order."""
    docks = ["d", "d\0", "d\0x", "d-1", "d/", "\udcff", "é", "", "dd"]
    seqs = [None, 0, 1, 2, 255, 256, 2**63 - 1, 7]
    for n in range(120):
        dock = docks[(n * 7) % len(docks)]
        to = docks[(n + 3) % len(docks)] if n % 11 == 0 else None
        yield _Item(dock, f"b{(n * 37) % 101:03d}-{n}", seqs[(n * 5) % len(seqs)], to=to)


def _added(items: list[_Item], kept: int) -> list[_Item]:
    """The order the store numbers summaries in: those kept in memory (the first ``kept``) dock by dock,
    docks in the order first seen (as verify's dict of docks went before the store), then the rest."""
    docks: dict[str, list[_Item]] = {}
    for item in items[:kept]:
        docks.setdefault(item.dock, []).append(item)
    return [i for group in docks.values() for i in group] + items[kept:]


@pytest.mark.parametrize("budget", [1 << 40, 0, 50])
def test_the_store_reads_back_in_python_order_in_memory_or_spilled(tmp_path: Path, budget: int) -> None:
    """The database's key order is Python's ``(dock, seq or 0, batch)`` order, for any dock name."""
    store: BatchStore[_Item] = BatchStore(_encode, _decode, lambda i: i.to, budget, tmp_path)
    items = list(_items())
    with store:
        for item in items:
            store.add(item, cost=1)
        assert store.spilled is (budget < len(items))
        key = lambda i: (i.dock, i.seq or 0, i.batch)  # noqa: E731
        want = sorted(items, key=key)
        assert [key(i) for i in store] == [key(i) for i in want]
        assert list(store.docks()) == sorted({i.dock for i in items})
        for dock in {i.dock for i in items}:
            assert [key(i) for i in store.ordered(dock)] == [key(i) for i in want if i.dock == dock]
            last = [i for i in _added(items, budget) if i.to == dock]
            found = store.handover_to(dock)
            assert (found and key(found)) == (last and key(last[-1]))
        assert store.has(items[3].dock, items[3].batch) and not store.has("d", "nope")
        assert len(store) == len(items)
    assert not list(tmp_path.iterdir())


class _Interrupting(BucketWrapper):
    """The bucket, with ``raise_at``'s custody segment raising ``error`` when opened, after noting what
    the batch store's temporary directory looked like then."""

    def __init__(self, inner: Bucket, raise_at: str, error: BaseException) -> None:
        super().__init__(inner)
        self.raise_at, self.error = raise_at, error
        self.store: BatchStore[Any] | None = None
        self.seen: dict[str, int] = {}

    def open_read(self, key: str, *, version_id: str | None = None) -> ObjectReader:
        if key == self.raise_at:
            assert self.store is not None and self.store.directory is not None
            directory = self.store.directory
            self.seen = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [directory, *directory.iterdir()]}
            raise self.error
        return self.inner.open_read(key, version_id=version_id)


@pytest.mark.parametrize("umask", [0o000, 0o777])
@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("boom")])
def test_the_temporary_database_is_private_and_removed_on_error_and_ctrl_c(
    tmp_path: Path, umask: int, error: BaseException
) -> None:
    """Spilled from the first batch under a umask that would make it world-readable (or unreadable to
    its owner), the database is 0600 in a 0700 directory of its own; an error or Ctrl-C in the middle of
    the listing removes both."""
    h = hostile.build(tmp_path / "bucket", batches=6)
    work = tmp_path / "work"
    work.mkdir()
    cut = h.custody_key.replace(h.custody_key.split("/")[1], "20260101T000000Z-000004")
    bucket = _Interrupting(open_bucket(h.url), cut, error)
    signers = parse_allowed_signers(h.allowed_signers.read_text())
    verifier = v.Verifier(bucket, signers, workers=1, batch_budget=0, work_dir=work)
    bucket.store = verifier.report.batches
    before = os.umask(umask)
    try:
        with pytest.raises(type(error)):
            verifier.run()
    finally:
        os.umask(before)
    directory = bucket.store.directory
    assert directory is not None and directory.parent == work
    assert bucket.seen == {directory.name: 0o700, "batches.sqlite": 0o600}  # no journal beside it
    assert not list(work.iterdir())


def _kept_bytes(h: hostile.Hostile, limits: v.Limits, budget: int | None) -> tuple[int, v.VerifyReport]:
    """Traced bytes verify holds when its listing of the bucket at ``root`` is done (bench/verify_memory.py)."""
    kept = 0

    class Measured(v.Verifier):
        def _finish(self, store: BatchStore[v.BatchResult]) -> None:
            nonlocal kept
            gc.collect()  # also empties CPython's free lists (of tuples, ...), which hold what was freed
            snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, "*pathlib.py")])
            kept = sum(stat.size for stat in snap.statistics("filename"))
            super()._finish(store)

    signers = parse_allowed_signers(h.allowed_signers.read_text())
    gc.collect()
    tracemalloc.start()
    try:
        report = Measured(open_bucket(h.url), signers, limits=limits, workers=1, batch_budget=budget).run()
    finally:
        tracemalloc.stop()
    return kept, report


def test_many_batches_verify_in_bounded_memory_past_the_old_limit(tmp_path: Path) -> None:
    """Under a small budget (``Limits(65)``: 262,144 bytes kept, 204 batches at ``BATCH_COST``) verify
    stopped with ``bucket_too_large``; now 1,200 batches all verify, and what it holds at the end of the
    listing grows by less than a tenth of a summary a batch from 400 to 1,200 batches (spilled)."""
    limits = v.Limits(65)
    kept = []
    for batches in (400, 1200):
        h = hostile.build(tmp_path / f"b{batches}" / "bucket", batches=batches, commitments=True)
        size, report = _kept_bytes(h, limits, None)
        with report:
            assert report.batches.spilled
            # a dock of format 1.1 manifests keeps a transparency log, which this synthetic one lacks
            assert [f.problem for f in report.findings] == ["log_missing"] and len(report.batches) == batches
            assert all(b.signature_ok and b.custody_entries == 3 for b in report.batches)
        kept.append(size)
    per_batch = (kept[1] - kept[0]) / 800
    assert per_batch < v.BATCH_COST / 10, (kept, per_batch)


@pytest.fixture(scope="module")
def spilling(tmp_path_factory: pytest.TempPathFactory) -> hostile.Hostile:
    """One dock's 4,000 signed batches: at ``--max-memory 128`` verify spills after 3,276."""
    return hostile.build(tmp_path_factory.mktemp("spilling") / "bucket", batches=4_000)


def test_ctrl_c_or_sigterm_during_a_spilled_cli_run_removes_its_database(
    tmp_path: Path, spilling: hostile.Hostile
) -> None:
    """``bodycam-sync verify`` at ``--max-memory 128`` over 4,000 batches spills after 3,276; interrupted
    once its database exists, by SIGINT (Ctrl-C: exit 130) or SIGTERM (exit 143, through the same
    clean-up), it leaves nothing in ``$TMPDIR``. (A whole spilled run:
    test_verify_hostile.py::test_five_thousand_batches_fit_the_minimum_max_memory.)"""
    h = spilling
    cmd = [CLI, "verify", "--bucket", h.url, "--allowed-signers", str(h.allowed_signers), "--max-memory", "128"]
    for signum, rc in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        tmp = tmp_path / f"tmp-{signum}"
        tmp.mkdir()
        env = {**os.environ, "TMPDIR": str(tmp)}
        child = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_ctrl_c_as_at_a_terminal,
        )
        try:
            seen = _wait_for_database(tmp, child)
            if seen:
                child.send_signal(signum)
            _, err = child.communicate(timeout=600)
        finally:
            if child.poll() is None:
                child.kill()
        assert seen, "the run ended before its database was seen"
        assert child.returncode == rc, (signum, child.returncode, err[-2000:])
        assert "Traceback" not in err and ("interrupted" in err or signum == signal.SIGTERM), err[-2000:]
        assert not list(tmp.iterdir()), signum


def test_no_room_for_the_database_is_a_finding_not_a_crash(tmp_path: Path, spilling: hostile.Hostile) -> None:
    """Files verify writes limited to 256 KiB (RLIMIT_FSIZE: a full disk under ``$TMPDIR``), the spill of
    3,276 summaries (~3 MB) fails: ``bucket_too_large`` naming the batch where it stopped, the 3,276
    batches kept in memory still reported, exit 1, no traceback, and nothing left in ``$TMPDIR``."""
    h = spilling
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    limit = "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (262144, 262144)); os.execv(sys.argv[1], sys.argv[1:])"
    cmd = [sys.executable, "-c", limit, CLI, "verify", "--bucket", h.url, "--allowed-signers", str(h.allowed_signers),
           "--max-memory", "128", "--json"]  # fmt: skip
    done = subprocess.run(cmd, env={**os.environ, "TMPDIR": str(tmp)}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert [(f["problem"], f["batch"]) for f in doc["findings"]] == [("bucket_too_large", "20260101T000000Z-003277")]
    assert "could not write its batch summaries" in doc["findings"][0]["message"]
    assert len(doc["batches"]) == 3_276
    assert not list(tmp.iterdir())


def _ctrl_c_as_at_a_terminal() -> None:
    """SIGINT back to its default in the child, as a terminal's foreground job has it: a suite started in
    the background by a non-interactive shell inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, so the child would ignore Ctrl-C, as Unix means background jobs to."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_database(tmp: Path, child: subprocess.Popen[str]) -> bool:
    """Poll (no fixed sleep) until the child's database exists; False if the child ended first."""
    import time

    deadline = time.monotonic() + 600
    while child.poll() is None and time.monotonic() < deadline:
        if any(p.name == "batches.sqlite" for p in tmp.glob("bodycam-verify-*/*")):
            return True
        time.sleep(0.005)
    return False
