"""``verify --report``: the HTML audit document (issue 11 item 12), rendered by a real headless Chromium.

Each test runs ``bodycam-sync verify --report`` on a bucket the real agent built, prints the page to
PDF with Debian's ``chromium`` and reads it back with ``pdftotext`` (poppler-utils): what an auditor
files is what is checked. Under CI (``$CI`` set) a missing browser fails the test instead of skipping
it: ``scripts/test.sh`` installs both packages.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bodycam.agent.formats import commitment
from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.sshsig import load_private_key, sign

from . import test_verify_tamper as tamper
from .dock import Dock
from .test_verify_tamper import Bucket, add_unlisted_object, flip_recording_byte

pristine = tamper.pristine  # the verified two-batch bucket, built by the real agent
local = tamper.local

A4 = (594.96, 841.92)  # points


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian packages chromium and poppler-utils; scripts/test.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def print_to_pdf(page: Path, tmp: Path, *, layout: bool = True) -> tuple[Path, str]:
    """Print ``page`` with headless Chromium as an auditor would, and return the PDF and its text
    (``pdftotext -layout``, or in reading order without ``layout``)."""
    chromium, pdftotext = _tool("chromium"), _tool("pdftotext")
    pdf = tmp / (page.stem + ".pdf")
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
         f"--user-data-dir={tmp / 'chromium-profile'}", f"--print-to-pdf={pdf}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and pdf.exists() and pdf.stat().st_size > 0, proc.stderr[-2000:]
    mode = ["-layout"] if layout else []
    text = subprocess.run([pdftotext, *mode, str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return pdf, text


def _page_size(pdf: Path) -> tuple[float, float]:
    info = subprocess.run([_tool("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", info)
    assert match, info
    return float(match.group(1)), float(match.group(2))


def _squeezed(text: str) -> str:
    return "".join(text.split())


def _manifests(bucket: Bucket) -> list[dict[str, Any]]:
    return [json.loads(bucket.store.read(bucket.layout.key(i, "manifest.json"))) for i in (0, 1)]


def test_report_is_an_audit_document_printed_on_a4(local: Bucket, tmp_path: Path) -> None:
    flipped = flip_recording_byte(local.store, local.layout)
    added = add_unlisted_object(local.store, local.layout)
    out = tmp_path / "audit.html"
    proc = local.verify("--json", "--report", str(out))
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    page = out.read_text(encoding="utf-8")

    # self-contained: no script, nothing fetched
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    assert not re.search(r"\b(src|href)\s*=", page, re.I)
    # the timeline: an SVG with a time axis, a bar per recording, the exercise window drawn
    svg = re.search(r"<svg class='tl'.*?</svg>", page, re.S)
    assert svg is not None
    recordings = [r for m in _manifests(local) for r in m["recordings"]]
    assert len(re.findall(r"<rect class='rec'", svg.group(0))) == len(recordings)
    assert re.search(r"<rect class='ex[^']*'", svg.group(0)) and "EX-TAMPER" in svg.group(0)
    assert len(re.findall(r"<text x='[\d.]+' y='[\d.]+' text-anchor='middle'>\d\d:\d\d", svg.group(0))) >= 2
    # nothing personal without --identity: no officer id, no site
    assert "OFFICER-" not in page and "Range 3" not in page and "PERSONAL DATA" not in page

    pdf, text = print_to_pdf(out, tmp_path)
    width, height = _page_size(pdf)
    assert abs(width - A4[0]) < 2 and abs(height - A4[1]) < 2, (width, height)
    flat = _squeezed(text)
    audit = doc["audit"]
    assert local.url in text and str(local.allowed_signers) in text
    assert audit["allowed_signers_sha256"] in text and audit["version"] in text
    assert audit["started"] in text
    for signer in audit["signers"]:
        assert signer["fingerprint"] in text
    for rec in recordings:
        for value in (rec["plaintext_sha256"], rec["ciphertext_sha256"], rec["officer_pseudonym"], rec["start"]):
            assert value in text, value
    for batch in local.layout.batches:
        assert batch in text
    assert "FAILED" in text
    for f in doc["findings"]:
        assert f["problem"] in text and _squeezed(f["key"]) in flat and _squeezed(f["message"]) in flat, f
    assert {flipped.key, added.key} <= {f["key"] for f in doc["findings"]}
    # findings are grouped by batch: the altered recording under its batch's heading
    group = text[text.index("Findings (") :]
    assert group.index(f"Batch {local.layout.batches[1]}") < group.index(flipped.key.rsplit("/", 1)[1])

    keep = os.environ.get("BODYCAM_KEEP_REPORT")  # to look at a page: pdftoppm -png -r 80 the kept PDF
    if keep:
        shutil.copy(pdf, keep)


def test_report_with_an_identity_says_it_is_personal_data(local: Bucket, tmp_path: Path) -> None:
    out = tmp_path / "personal.html"
    proc = local.verify("--identity", str(local.identity), "--report", str(out))
    assert proc.returncode == 0, proc.stdout
    page = out.read_text(encoding="utf-8")
    assert "PERSONAL DATA" in page and "OFFICER-CAM-TA" in page
    assert "<rect class='ex'" in page  # the registered window, from the decrypted sidecar
    _, text = print_to_pdf(out, tmp_path)
    assert "PERSONAL DATA" in text and "OFFICER-CAM-TA" in text and "Range 3" in text
    assert "VERIFIED" in text


def test_hostile_values_in_a_signed_manifest_are_inert(
    local: Bucket, pristine: tuple[Dock, Path, list[str]], tmp_path: Path
) -> None:
    """Even a manifest the dock's own key signs is untrusted text: shown, never parsed as markup."""
    hostile = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
    key = local.layout.key(1, "manifest.json")
    doc = json.loads(local.store.read(key))
    doc["recordings"][0]["exercise_id"] = hostile
    doc["recordings"][0]["camera_model"] = "</td></tr></table><h1>forged</h1>"
    doc["recordings_root"] = commitment.recordings_root(doc["recordings"])  # format 1.1: signed with the rest
    raw = canonical(doc)
    local.store.write(key, raw)
    sig = sign(raw, load_private_key(pristine[0].config.key_path), "bodycam-manifest")
    local.store.write(local.layout.key(1, "manifest.json.sig"), sig.encode())
    # the dock's log records the manifest it sealed, so a re-signed one is a finding there
    # (tests/test_docklog.py): take the log out, this test is about the page
    for log_key in [k for k in local.store.keys() if k.startswith(f"{local.layout.dock}/log/")]:
        local.store.delete(log_key)
    out = tmp_path / "hostile.html"
    proc = local.verify("--report", str(out))
    # signed by the dock: verify's one word is that the log was taken out
    assert proc.returncode == 1 and [
        line.split(":")[0] for line in proc.stdout.splitlines() if line.startswith("PROBLEM")
    ] == ["PROBLEM log_missing"], proc.stdout
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "<img" not in page.lower() and "<h1>forged" not in page
    assert "&lt;script&gt;" in page
    pdf, text = print_to_pdf(out, tmp_path, layout=False)  # reading order: each cell's text in one piece
    flat = _squeezed(text)
    assert _squeezed(hostile) in flat  # printed as the text it is
    assert "</td></tr></table><h1>forged</h1>" in flat
    info = subprocess.run([_tool("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"(?m)^Title:\s+bodycam evidence audit$", info), info  # the script never ran


def test_an_unwritable_report_is_one_line_before_verifying(local: Bucket, tmp_path: Path) -> None:
    proc = local.verify("--report", str(tmp_path / "no-such-dir" / "audit.html"))
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1 and "no-such-dir" in proc.stderr, proc.stderr
    proc = local.verify("--report", "/dev/full")  # a real write error: ENOSPC
    assert proc.returncode == 2 and "cannot write --report /dev/full" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
