"""Issue 12 item 5: each party's sidecar holds only its data items, proven with stock age.

FULL-PARTY's agreement discloses every data item, LIMITED-PARTY's footage and times only (see
tests/disclosure_setup.py). Each decrypts its own sidecar with ``age -d``; the full one names the
officer and the site, the limited one neither, and neither party can open the other's.
"""

from __future__ import annotations

import json

import pytest

from .agreement_setup import age_decrypt
from .disclosure_setup import FULL, LIMITED, SITES, Shared, build


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    return build(tmp_path_factory.mktemp("sidecars"))


def _manifest(shared: Shared) -> dict[str, object]:
    (path,) = [p for p in shared.bucket.rglob("manifest.json") if json.loads(p.read_bytes())["recordings"]]
    return dict(json.loads(path.read_bytes()))


def test_each_party_opens_only_its_own_sidecar_and_it_holds_only_its_data_items(shared: Shared) -> None:
    manifest = _manifest(shared)
    sidecars = {tuple(s["parties"]): s for s in manifest["sidecars"]}  # type: ignore[attr-defined]
    assert set(sidecars) == {(FULL,), (LIMITED,)}
    for s in sidecars.values():  # opaque keys: a number, no party name
        name = s["key"].rsplit("/", 1)[1]
        assert name in ("personal.1.json.age", "personal.2.json.age") and FULL not in s["key"]
    assert sidecars[(LIMITED,)]["data_items"] == ["footage", "times"]
    path = {p: shared.bucket / sidecars[(p,)]["key"] for p in (FULL, LIMITED)}

    full_raw = age_decrypt(shared.identities[FULL], path[FULL])
    limited_raw = age_decrypt(shared.identities[LIMITED], path[LIMITED])
    assert full_raw is not None and limited_raw is not None
    full, limited = json.loads(full_raw), json.loads(limited_raw)
    assert {(r["camera_serial"], r["officer_id"]) for r in full["recordings"]} == {("CAM-D1", "OFFICER-CAM-D1")}
    assert [e["site"] for e in full["exercises"]] == [SITES["EX-1"]]
    assert {r["camera_serial"] for r in limited["recordings"]} == {"CAM-D1", "CAM-D2"}
    assert all(set(r) == {"camera_serial", "recording_id"} for r in limited["recordings"])
    assert all("site" not in e for e in limited["exercises"])
    for secret in ("OFFICER-", *SITES.values()):
        assert secret not in limited_raw.decode()

    assert age_decrypt(shared.identities[LIMITED], path[FULL]) is None  # B cannot open A's
    assert age_decrypt(shared.identities[FULL], path[LIMITED]) is None
    for party in (FULL, LIMITED):  # nor the controller archive's full sidecar
        assert age_decrypt(shared.identities[party], shared.bucket / manifest["personal"]["key"]) is None  # type: ignore[index]
    archive = json.loads(age_decrypt(shared.identities["archive"], shared.bucket / manifest["personal"]["key"]) or b"")  # type: ignore[index]
    assert {r["officer_id"] for r in archive["recordings"]} == {"OFFICER-CAM-D1", "OFFICER-CAM-D2"}
    assert {e["site"] for e in archive["exercises"]} == set(SITES.values())


def test_verify_checks_the_party_sidecars_a_party_can_open(shared: Shared) -> None:
    for who in ("archive", LIMITED):
        proc = shared.dock.cli(
            "verify", "--bucket", shared.dock.bucket_url, "--allowed-signers", str(shared.dock.allowed_signers),
            "--identity", str(shared.identities[who]), "--json",
        )  # fmt: skip
        findings = json.loads(proc.stdout)["findings"]
        assert not [f for f in findings if "personal.1" in str(f.get("key")) or "personal.2" in str(f.get("key"))]
        if who == "archive":
            assert proc.returncode == 0, findings
