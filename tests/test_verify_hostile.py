"""``bodycam-sync verify`` on a hostile bucket stays bounded (guarantees 4 and 6 in docs/ARCHITECTURE.md; issue 8, item 4).

Auditors run verify on data from another organisation, so its manifests may be validly signed and still
built to exhaust the verifier. Each test builds such a bucket by hand (``tests/hostile.py``), runs the
real command as a subprocess under a launcher that reads its peak RSS (``RUSAGE_CHILDREN``), and expects
a named finding with memory under ``--max-memory``. The launcher also caps the child's address space, so
a verifier that does not bound itself fails these tests with a MemoryError instead of taking the shared
machine down. No test asserts on time: the linear-time figures are measured in ``bench/verify.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from . import hostile
from .dock import CLI

CAP_MIB = 256  # verify's default --max-memory
ADDRESS_LIMIT_MIB = 2048  # only a safety net for a verifier that does not bound itself


def verify(
    h: hostile.Hostile, work: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[hostile.Measured, dict[str, Any]]:
    cmd = [CLI, "verify", "--bucket", h.url, "--allowed-signers", str(h.allowed_signers), "--json", *extra]
    run = hostile.measure(cmd, work, address_limit=hostile.address_limit(ADDRESS_LIMIT_MIB), env=env)
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr[-2000:]
    return run, json.loads(run.stdout)


def problems(doc: dict[str, Any]) -> set[str]:
    return {f["problem"] for f in doc["findings"]}


def test_a_custody_range_of_10_to_the_15_is_a_finding_not_an_allocation(tmp_path: Path) -> None:
    h = hostile.build(tmp_path / "bucket", custody_entries=5, last_seq=10**15)
    run, doc = verify(h, tmp_path)
    assert run.rc == 1
    missing = [f for f in doc["findings"] if f["problem"] == "custody_missing_entry"]
    assert [f["custody_seq"] for f in missing[:3]] == [6, 7, 8]  # named one by one, then counted
    assert len(missing) == 101 and f"{10**15 - 5 - 100} more entries are missing" in missing[-1]["message"]
    assert all(f["key"] == h.custody_key for f in missing)
    assert run.peak_rss_mib < CAP_MIB, run.peak_rss_mib


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        (20 * 1024 * 1024, "bytes"),  # a 60 MiB manifest of {} entries: refused from its listed size
        (1024 * 1024, "values"),  # 3 MiB, under the byte limit, but a million objects to build: refused unparsed
    ],
)
def test_a_manifest_of_empty_entries_is_refused_under_the_cap(tmp_path: Path, entries: int, why: str) -> None:
    h = hostile.build(tmp_path / "bucket", empty_recordings=entries)
    run, doc = verify(h, tmp_path)
    assert run.rc == 1
    refused = [f for f in doc["findings"] if f["problem"] == "manifest_too_large"]
    assert len(refused) == 1 and refused[0]["key"] == h.manifest_key, doc["findings"]
    assert ("bytes, over" in refused[0]["message"]) is (why == "bytes")
    assert problems(doc) == {"manifest_too_large"}  # the batch is the finding, not each of its objects
    assert run.peak_rss_mib < CAP_MIB, run.peak_rss_mib


def test_a_lower_max_memory_refuses_what_the_default_accepts(tmp_path: Path) -> None:
    h = hostile.build(tmp_path / "bucket", empty_recordings=50_000)  # 150 KB, 100,000 values
    run, doc = verify(h, tmp_path)
    assert run.rc == 1 and "manifest_too_large" not in problems(doc)  # checked: only its recordings are bad
    run, doc = verify(h, tmp_path, "--max-memory", "128")
    assert run.rc == 1 and problems(doc) == {"manifest_too_large"}
    assert "--max-memory 128 MiB" in doc["findings"][0]["message"]


def test_a_custody_segment_of_100000_entries_verifies(tmp_path: Path) -> None:
    h = hostile.build(tmp_path / "bucket", custody_entries=100_000)
    run, doc = verify(h, tmp_path)
    assert run.rc == 0 and doc["findings"] == [], doc["findings"][:5]
    assert doc["batches"][0]["custody_entries"] == 100_000
    assert run.peak_rss_mib < CAP_MIB, run.peak_rss_mib


def test_a_custody_segment_over_the_entry_limit_is_refused(tmp_path: Path) -> None:
    h = hostile.build(tmp_path / "bucket", custody_entries=100_000)  # the limit at 128 MiB is 65,536
    run, doc = verify(h, tmp_path, "--max-memory", "128")
    assert run.rc == 1
    assert [(f["problem"], f["key"]) for f in doc["findings"]] == [("custody_too_large", h.custody_key)]


def test_a_flood_of_stray_objects_is_counted_past_the_budget(tmp_path: Path) -> None:
    """More unlisted objects than findings fit in --max-memory 128: the rest are counted, by problem."""
    h = hostile.build(tmp_path / "bucket", stray_objects=30_000)
    run, doc = verify(h, tmp_path, "--max-memory", "128")
    assert run.rc == 1
    found = problems(doc)
    assert found == {"unlisted_object", "findings_truncated"}, found
    listed = sum(1 for f in doc["findings"] if f["problem"] == "unlisted_object")
    truncated = [f for f in doc["findings"] if f["problem"] == "findings_truncated"]
    assert len(truncated) == 1 and f"{30_000 - listed} unlisted_object" in truncated[0]["message"]
    assert doc["batches"][0]["problems"] == 0  # the batch itself is fine
    assert run.peak_rss_mib < 128, run.peak_rss_mib


def test_a_directory_too_large_to_list_is_a_finding(tmp_path: Path) -> None:
    """A file bucket's directory is sorted in memory, so one with more entries than the budget allows
    (65,536 at --max-memory 128) is refused with a named finding before it is read whole."""
    h = hostile.build(tmp_path / "bucket", stray_objects=66_000)
    run, doc = verify(h, tmp_path, "--max-memory", "128")
    assert run.rc == 1
    failed = [f for f in doc["findings"] if f["problem"] == "listing_failed"]
    assert len(failed) == 1 and "holds more than 65536 entries" in failed[0]["message"], doc["findings"][:3]
    assert run.peak_rss_mib < 128, run.peak_rss_mib


@pytest.mark.parametrize("option", ["--allowed-signers", "--identity"])
def test_an_endless_allowed_signers_or_identity_file_is_one_line_not_a_memory_error(
    tmp_path: Path, option: str
) -> None:
    """verify, disclosures and receive read ``--allowed-signers`` and ``--identity`` through
    agent/audit/inputs.py: a file that never ends (``/dev/zero``, a FIFO fed forever, a path mistyped
    onto a huge file) is refused once past its bound, exit 2 in one line naming the option, instead of
    being read whole (before: MemoryError under the launcher's cap, an internal error)."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    signers = tmp_path / "allowed_signers"
    signers.write_text("")
    given = {"--allowed-signers": str(signers), "--identity": None, option: "/dev/zero"}
    cmd = [CLI, "verify", "--bucket", str(bucket)]
    for name, value in given.items():
        cmd += [name, value] if value is not None else []
    run = hostile.measure(cmd, tmp_path, address_limit=hostile.address_limit(1024))
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.rc == 2 and len(lines) == 1, run.stderr[-2000:]
    assert f"{option} /dev/zero is larger than" in lines[0], lines
    assert run.peak_rss_mib < 128, run.peak_rss_mib


def test_five_thousand_batches_fit_the_minimum_max_memory(tmp_path: Path) -> None:
    """A force's year is tens of thousands of batches. Each batch's summary was charged 4 KiB (it kept
    ~2 KiB), so --max-memory 128 stopped after 4,096 batches with ``bucket_too_large``; then what a batch
    keeps was cut and charged at its measured size (BATCH_COST: 13,107 batches at 128). Now the summaries
    past 3,276 spill to verify's temporary database under $TMPDIR, so all 5,000 are checked under the cap
    whatever their number, and the database is gone when verify exits."""
    h = hostile.build(tmp_path / "bucket", batches=5_000, commitments=True)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    run, doc = verify(h, tmp_path, "--max-memory", "128", env={"TMPDIR": str(tmp)})
    # the one finding: a dock of format 1.1 manifests keeps a transparency log, which this synthetic one lacks
    assert run.rc == 1 and [f["problem"] for f in doc["findings"]] == ["log_missing"], doc["findings"][:3]
    assert len(doc["batches"]) == 5_000
    assert all(b["signature_ok"] and b["custody_entries"] == 3 for b in doc["batches"])
    assert run.peak_rss_mib < 128, run.peak_rss_mib
    assert not list(tmp.iterdir())


def test_a_sidecar_listed_gigantic_is_a_finding_not_a_download(tmp_path: Path) -> None:
    """The manifest signs only a sidecar's hash, so its size was the listing's, however large: a validly
    signed batch whose personal.json.age the bucket holds at 256 MiB (here a sparse file; on S3, any size
    up to 5 TiB) had verify read and hash all of it to report object_altered, and with --identity read it
    again. A sidecar is read into memory to be decrypted, within the manifest's limit; past that limit it
    is object_size, unread, and the rest of the batch is checked as ever."""
    from bodycam.agent.audit.verify import Limits, run_verify

    h = hostile.build(tmp_path / "bucket")
    sidecar = h.root / h.manifest_key.replace("manifest.json", "personal.json.age")
    os.truncate(sidecar, 256 * 1024 * 1024)
    read = [0]

    def on_progress(done: int, listed: int) -> None:
        read[0] = max(read[0], done)

    with run_verify(h.url, None, h.allowed_signers, on_progress=on_progress) as report:
        found = [(f.problem, f.key, f.message) for f in report.findings]
    key = str(sidecar.relative_to(h.root))
    assert [(p, k) for p, k, _ in found] == [("object_size", key)], found
    assert f"over the {Limits().personal_bytes}" in found[0][2], found
    assert read[0] < 1024 * 1024, read[0]  # before: 256 MiB read and hashed
