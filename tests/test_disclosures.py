"""Issue 12 item 6: the s.62 disclosure log, its report per party, and verify's check of it.

Built by the real agent (tests/disclosure_setup.py: two agreements with different data items, two
cameras, stock age identities). The report per party must be exactly what each party can decrypt
with ``age -d``; CSV parses with the csv module; the HTML page is read in headless Chromium; a
custody disclosure entry removed or altered is a named verify finding.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bodycam.agent.formats.custody import canonical

from .agreement_setup import age_decrypt
from .disclosure_setup import FULL, LIMITED, Shared, build
from .test_report import print_to_pdf


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    return build(tmp_path_factory.mktemp("disclosures"))


def _report(shared: Shared, *args: str, bucket: Path | None = None) -> Any:
    return shared.dock.cli(
        "disclosures", "--bucket", str(bucket or shared.bucket), "--allowed-signers",
        str(shared.dock.allowed_signers), *args,
    )  # fmt: skip


def _verify(shared: Shared, bucket: Path) -> tuple[int, list[dict[str, Any]]]:
    proc = shared.dock.cli(
        "verify", "--bucket", str(bucket), "--allowed-signers", str(shared.dock.allowed_signers), "--json"
    )
    return proc.returncode, json.loads(proc.stdout)["findings"]


def _decryptable(shared: Shared, party: str) -> set[str]:
    """Object keys (recordings and party sidecars) that ``age -d`` opens with the party's identity."""
    keys = set()
    for path in shared.bucket.rglob("*.age"):
        key = str(path.relative_to(shared.bucket))
        if path.name != "personal.json.age" and age_decrypt(shared.identities[party], path) is not None:
            keys.add(key)
    return keys


def test_the_report_per_party_is_exactly_what_each_party_was_encrypted_to(shared: Shared) -> None:
    proc = _report(shared, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["format"] == "bodycam-disclosures/1" and doc["checked"] is True and doc["findings"] == []
    by_party = {p["party"]: p["disclosures"] for p in doc["parties"]}
    assert set(by_party) == {FULL, LIMITED}
    for party, rows in by_party.items():
        assert {r["key"] for r in rows} == _decryptable(shared, party), party
        assert len(rows) == len({r["key"] for r in rows})
    manifests = [json.loads(p.read_bytes()) for p in shared.bucket.rglob("manifest.json")]
    recs = {r["key"]: r for m in manifests for r in m["recordings"]}
    sha = {
        a: hashlib.sha256((shared.agreements / f"{a}.v1.json").read_bytes()).hexdigest()
        for a in ("DSA-FULL", "DSA-LIM")
    }
    for party, agreement in ((FULL, "DSA-FULL"), (LIMITED, "DSA-LIM")):
        for row in by_party[party]:
            # each party's rows name only the agreement it received them under, with its hash
            assert row["agreements"] == [{"id": agreement, "version": 1, "sha256": sha[agreement]}], row
            assert row["actor"] == "dock-test" and row["manifest_signature"] == "verified"
            if row["object"] == "recording":
                rec = recs[row["key"]]
                assert (row["ciphertext_sha256"], row["plaintext_sha256"]) == (
                    rec["ciphertext_sha256"], rec["plaintext_sha256"]
                )  # fmt: skip
                assert row["plaintext_sha256"] == shared.truth[row["camera_serial"]][row["recording_id"]]
    sidecar_items = {p: [r["data_items"] for r in rows if r["object"] == "sidecar"] for p, rows in by_party.items()}
    assert sidecar_items == {FULL: [["footage", "times", "camera_model", "officer_pseudonym", "officer_identity",
                                     "site"]], LIMITED: [["footage", "times"]]}  # fmt: skip

    only = json.loads(_report(shared, "--json", "--party", LIMITED).stdout)
    assert [p["party"] for p in only["parties"]] == [LIMITED]
    assert only["parties"][0]["disclosures"] == by_party[LIMITED]
    future = json.loads(_report(shared, "--json", "--from", "2100-01-01").stdout)
    assert future["parties"] == [] and future["filter"]["from"] == "2100-01-01T00:00:00Z"
    everything = json.loads(_report(shared, "--json", "--from", "2000-01-01", "--to", "2100-01-01T00:00:00Z").stdout)
    assert everything["parties"] == doc["parties"]


def test_the_csv_parses_with_the_csv_module(shared: Shared) -> None:
    proc = _report(shared, "--csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout, newline="")))
    doc = json.loads(_report(shared, "--json").stdout)
    expected = [(p["party"], r["key"]) for p in doc["parties"] for r in p["disclosures"]]
    assert [(r["party"], r["key"]) for r in rows] == expected  # one agreement each here: one row each
    assert list(rows[0]) == [
        "party", "time", "object", "camera_serial", "recording_id", "data_items", "key", "ciphertext_sha256",
        "plaintext_sha256", "agreement_id", "agreement_version", "agreement_sha256", "actor", "dock", "batch",
        "custody_seq", "manifest_sha256", "manifest_signature",
    ]  # fmt: skip
    sidecar = next(r for r in rows if r["party"] == LIMITED and r["object"] == "sidecar")
    assert sidecar["data_items"] == "footage times" and sidecar["agreement_id"] == "DSA-LIM"


def test_the_html_report_reads_in_a_real_browser(shared: Shared, tmp_path: Path) -> None:
    out = tmp_path / "disclosures.html"
    proc = _report(shared, "--html", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    doc = json.loads(_report(shared, "--json").stdout)
    _pdf, text = print_to_pdf(out, tmp_path, layout=False)
    flat = "".join(text.split())
    assert "Disclosure log (DPA 2018 s.62)" in text and "CHECKED" in text
    for party in doc["parties"]:
        assert f"Party: {party['party']}" in text
        for row in party["disclosures"]:
            assert row["ciphertext_sha256"] in flat and row["time"] in flat
            assert all(a["sha256"] in flat for a in row["agreements"])
    assert "Personal data sidecar: footage, times" in text
    for secret in ("OFFICER-", "Hendon", "Lydd"):  # nothing personal on the page
        assert secret not in page


def _tampered(shared: Shared, tmp_path: Path, edit: Any) -> Path:
    copy = tmp_path / "bucket"
    shutil.copytree(shared.bucket, copy)
    (custody,) = [p for p in copy.rglob("custody.jsonl") if b'"disclosed"' in p.read_bytes()]
    lines = custody.read_bytes().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if b'"disclosed"' in line and b'"recording"' in line)
    lines[index : index + 1] = edit(json.loads(lines[index]))
    custody.chmod(0o644)
    custody.write_bytes(b"".join(lines))
    return copy


def test_a_removed_disclosure_entry_is_a_named_verify_finding(shared: Shared, tmp_path: Path) -> None:
    removed: dict[str, Any] = {}
    bucket = _tampered(shared, tmp_path, lambda entry: removed.update(entry) or [])
    rc, findings = _verify(shared, bucket)
    assert rc == 1
    named = [f for f in findings if f["problem"] == "disclosure_unlogged"]
    assert len(named) == 1 and removed["key"] in named[0]["message"], findings
    proc = _report(shared, "--json", bucket=bucket)
    assert proc.returncode == 1 and not json.loads(proc.stdout)["checked"]


def test_an_altered_disclosure_entry_is_a_named_verify_finding(shared: Shared, tmp_path: Path) -> None:
    def drop_party(entry: dict[str, Any]) -> list[bytes]:
        entry["parties"] = [*entry["parties"][:1], "SOMEONE-ELSE"]
        entry["under"] = {p: [a["id"] for a in entry["agreements"]] for p in entry["parties"]}
        return [canonical(entry) + b"\n"]

    bucket = _tampered(shared, tmp_path, drop_party)
    rc, findings = _verify(shared, bucket)
    assert rc == 1
    named = [f for f in findings if f["problem"] == "disclosure_mismatch"]
    assert len(named) == 1 and "parties" in named[0]["message"] and named[0]["custody_seq"], findings


def test_a_party_checks_its_own_disclosures_with_stock_tools(shared: Shared) -> None:
    """docs/auditing.md's party block, run as written: it lists exactly the party's disclosures."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "auditing.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"<!-- party-disclosures -->\s*\n```sh\n(.*?)\n```", doc, re.S)
    report = json.loads(_report(shared, "--json").stdout)
    for party in (FULL, LIMITED):
        env = {**os.environ, "BUCKET_DIR": str(shared.bucket), "ALLOWED_SIGNERS": str(shared.dock.allowed_signers),
               "PARTY": party, "IDENTITY": str(shared.identities[party])}  # fmt: skip
        proc = subprocess.run(["bash", "-c", block], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        listed = {tuple(line.split("\t")[1:]) for line in proc.stdout.splitlines()}
        rows = next(p["disclosures"] for p in report["parties"] if p["party"] == party)
        assert listed == {(r["key"], r["agreements"][0]["id"], r["ciphertext_sha256"]) for r in rows}
    # the other party's key on this party's disclosures: the block names the file it could not open
    env["IDENTITY"] = str(shared.identities[FULL])
    proc = subprocess.run(["bash", "-c", block], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "CHECK FAILED" in proc.stderr and "does not open it" in proc.stderr
