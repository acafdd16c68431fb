"""Data-sharing agreements (issue 12 items 1 and 3): the format, signing, and the coverage rule.

Fast: no cameras. The end-to-end proof with stock age is tests/test_agreements_e2e.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats.agecrypt import generate_hybrid_identity, generate_identity
from bodycam.agent.formats.sshsig import public_key_line
from bodycam.drivers.errors import ConfigError, IntegrityError, ProtocolError

T0 = 1_800_000_000.0  # 2027-01-15
DAY = 86400.0


def draft(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": ag.FORMAT,
        "id": "DSA-A",
        "version": 1,
        "controller": {"name": "Example Constabulary"},
        "parties": [
            {
                "name": "P1",
                "role": "processor",
                "lawful_basis": "DPA 2018 s.35(2)(b)",
                "recipients": [generate_identity()[1]],
                "retention_days": 365,
            }
        ],
        "purpose": "training detection models on firearms-training footage",
        "data_items": ["footage", "times", "camera_model"],
        "scope": {"exercises": ["EX-1"]},
        "validity": {"not_before": ag._iso(T0 - DAY), "not_after": ag._iso(T0 + DAY)},
        "review_date": "2027-06-01",
        "dpia": "DPIA-2026-14",
    }
    doc.update(over)
    return doc


def agreement(**over: Any) -> ag.Agreement:
    return ag.parse(json.dumps(draft(**over)).encode(), canonical_only=False)


def facts(**over: Any) -> ag.RecordingFacts:
    base: dict[str, Any] = {"camera": "CAM1", "exercise_id": "EX-1", "site": "range 3", "start": T0, "end": T0 + 60}
    base.update(over)
    return ag.RecordingFacts(**base)


# -- the coverage rule --------------------------------------------------------------------------------


def test_an_agreement_covers_a_recording_in_its_scope_while_valid() -> None:
    assert ag.coverage(agreement(), facts(), T0) == ag.COVERED


@pytest.mark.parametrize(
    ("over", "fact", "now", "code"),
    [
        ({}, {"exercise_id": "EX-2"}, T0, ag.OTHER_EXERCISE),
        ({}, {"exercise_id": None}, T0, ag.OTHER_EXERCISE),
        ({}, {}, T0 + 2 * DAY, ag.EXPIRED),
        ({}, {}, T0 - 2 * DAY, ag.NOT_YET_VALID),
        ({"data_items": ["times"]}, {}, T0, ag.NO_FOOTAGE),
        ({"scope": {"cameras": ["CAM2"]}}, {}, T0, ag.OTHER_CAMERA),
        ({"scope": {"sites": ["range 4"]}}, {}, T0, ag.OTHER_SITE),
        ({"scope": {"exercises": ["EX-1"], "window": {"not_after": ag._iso(T0 + 30)}}}, {}, T0, ag.OUTSIDE_WINDOW),
        ({"scope": {"exercises": ["EX-1"], "window": {"not_before": ag._iso(T0 + 1)}}}, {}, T0, ag.OUTSIDE_WINDOW),
    ],
)
def test_coverage_says_why_not(over: dict[str, Any], fact: dict[str, Any], now: float, code: str) -> None:
    assert ag.coverage(agreement(**over), facts(**fact), now) == code


def test_a_revoked_agreement_covers_nothing() -> None:
    assert ag.coverage(agreement(), facts(), T0, revoked={"DSA-A"}) == ag.REVOKED


def test_camera_and_site_scopes_cover_when_they_match() -> None:
    a = agreement(scope={"cameras": ["CAM1"], "sites": ["range 3"]})
    assert ag.coverage(a, facts(exercise_id="EX-9"), T0) == ag.COVERED


def test_disclosure_is_the_union_of_the_covering_parties_plus_the_archive() -> None:
    archive = generate_identity()[1]
    p2, p3 = generate_identity()[1], generate_identity()[1]
    a = agreement()
    b = agreement(
        id="DSA-B",
        parties=[
            {"name": "P2", "role": "controller", "lawful_basis": "x", "recipients": [p2], "retention_days": 30},
            {"name": "P3", "role": "processor", "lawful_basis": "y", "recipients": [p3], "retention_days": 30},
        ],
        scope={"cameras": ["CAM1"]},
    )
    c = agreement(id="DSA-C", scope={"exercises": ["EX-2"]})
    d = ag.disclosure(ag.Loaded((a, b, c)), facts(), T0, archive)
    assert d.covered
    assert [x.id for x in d.agreements] == ["DSA-A", "DSA-B"]
    assert d.parties == ("P1", "P2", "P3")
    assert d.recipients == (a.parties[0].recipients[0], p2, p3, archive)
    assert d.reasons == (("DSA-C", ag.OTHER_EXERCISE),)
    fields = d.manifest_fields()
    assert fields["agreements"][0] == {"id": "DSA-A", "version": 1, "sha256": a.sha256}


def test_no_covering_agreement_gives_a_reason_with_ids_and_codes_only() -> None:
    d = ag.disclosure(ag.Loaded((agreement(),)), facts(exercise_id="EX-2", site="secret site"), T0, "age1x")
    assert not d.covered
    assert d.why_not() == "no valid data-sharing agreement covers it (DSA-A: exercise)"
    assert ag.disclosure(ag.Loaded(), facts(), T0, "age1x").why_not() == "no data-sharing agreement is in force"


def test_a_disclosure_mixing_post_quantum_and_x25519_keys_is_refused() -> None:
    a = agreement()
    with pytest.raises(ag.MixedKindsError, match="agreements DSA-A and the controller's archive together mix"):
        ag.disclosure(ag.Loaded((a,)), facts(), T0, generate_hybrid_identity()[1])


# -- the document -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"format": "other/1"}, "format"),
        ({"id": "bad id"}, "id must be"),
        ({"version": 0}, "version"),
        ({"scope": {}}, "at least one exercise"),
        ({"scope": {"exercises": ["x"] * 300}}, "scope.exercises must be a list"),
        ({"data_items": ["footage", "dna"]}, "data_items"),
        ({"purpose": "x" * 5000}, "purpose"),
        ({"parties": []}, "parties must be a list of 1"),
        ({"extra": 1}, "extra is not a known field"),
        ({"validity": {"not_before": "2027-01-01T00:00:00Z", "not_after": "2026-01-01T00:00:00Z"}}, "after"),
        ({"validity": {"not_before": "2027-01-01T00:00:00", "not_after": "2028-01-01T00:00:00Z"}}, "time zone"),
        ({"review_date": "soon"}, "review_date"),
        # Python's date.fromisoformat reads these, and 'agreement list' compared them as text with today's
        # YYYY-MM-DD: '2026-12-07' > '20200101' is False, so a review due years ago was never overdue
        ({"review_date": "20200101"}, "review_date '20200101' is not an ISO 8601 date"),
        ({"review_date": "2020-W01-1"}, "review_date '2020-W01-1' is not an ISO 8601 date"),
    ],
)
def test_malformed_agreements_are_refused_naming_the_field(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        agreement(**over)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("party", "P1\x1b[2K\rP-trusted"),  # an escape sequence and a carriage return rewrite the line shown
        ("party", "P1\u202eevil"),  # a bidi override makes one name read as another
        ("role", "processor\n  party P2 (controller)"),
        ("controller", "Example\u200bConstabulary"),
        ("dpia", "DPIA\x00"),
        ("purpose", "training\x1b]8;;http://x\x07"),
        ("lawful_basis", "DPA 2018\u2028s.35"),
        ("scope", "EX-1\x1b[8m"),
    ],
)
def test_names_and_text_with_control_or_invisible_characters_are_refused(field: str, value: str) -> None:
    """Before, any string passed: a party name carrying escape sequences, carriage returns or bidi
    overrides stood in manifests, custody and each party's disclosure report, and 'agreement show' printed
    it raw. Prose fields (purpose, lawful basis) may still hold newlines and tabs."""
    doc = draft()
    if field in ("party", "role", "lawful_basis"):
        doc["parties"][0]["name" if field == "party" else field] = value
    elif field == "controller":
        doc["controller"] = {"name": value}
    elif field == "scope":
        doc["scope"] = {"exercises": ["EX-1"], "sites": [value]}
    else:
        doc[field] = value
    with pytest.raises(ProtocolError, match="contains control characters"):
        ag.parse(json.dumps(doc).encode(), canonical_only=False)
    # a party receiving what was disclosed under such a document (signed before the check) still reads it
    assert ag.parse(json.dumps(doc).encode(), canonical_only=False, strings=False).id == "DSA-A"
    prose = draft(purpose="training models\n\tsecond paragraph")
    prose["parties"][0]["lawful_basis"] = "DPA 2018\ns.35(2)(b)"
    assert ag.parse(json.dumps(prose).encode(), canonical_only=False).purpose.endswith("second paragraph")


def test_a_party_reads_the_agreement_it_received_under_as_it_was_signed() -> None:
    """receive finds a party's share under the agreement a signed manifest names: one signed before
    review_date had to be YYYY-MM-DD still reads (strings=False), while a dock refuses it for new
    disclosures."""
    raw = json.dumps(draft(review_date="20270601")).encode()
    with pytest.raises(ProtocolError, match="review_date"):
        ag.parse(raw, canonical_only=False)
    assert ag.parse(raw, canonical_only=False, strings=False).review_date == "20270601"


def test_a_party_mixing_key_kinds_is_refused() -> None:
    mixed = draft()
    mixed["parties"][0]["recipients"].append(generate_hybrid_identity()[1])
    with pytest.raises(ProtocolError, match="mix"):
        ag.parse(json.dumps(mixed).encode(), canonical_only=False)


def test_duplicate_keys_and_oversize_files_are_refused() -> None:
    with pytest.raises(ProtocolError, match="duplicate"):
        ag.parse(b'{"id":"a","id":"b"}')
    with pytest.raises(ProtocolError, match="limit"):
        ag.parse(b" " * (ag.MAX_FILE_BYTES + 1))


# -- signing ----------------------------------------------------------------------------------------


@pytest.fixture
def controller(tmp_path: Path) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_draft(tmp_path: Path, **over: Any) -> Path:
    path = tmp_path / f"draft-{over.get('id', 'DSA-A')}-{over.get('version', 1)}.json"
    path.write_text(json.dumps(draft(**over), indent=2))
    return path


def test_signed_agreements_verify_with_stock_ssh_keygen(tmp_path: Path, controller: Ed25519PrivateKey) -> None:
    from bodycam.agent.formats.sshsig import allowed_signers_line

    a, path = ag.sign_draft(write_draft(tmp_path), controller, tmp_path / "dir")
    assert path.name == "DSA-A.v1.json" and path.read_bytes() == a.raw
    assert ag.load_signed(path, [controller.public_key()]).sha256 == a.sha256
    signers = tmp_path / "allowed"
    signers.write_text(allowed_signers_line("force", controller.public_key()) + "\n")
    subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", signers, "-I", "force", "-n", ag.NAMESPACE, "-s", f"{path}.sig"],
        input=path.read_bytes(),
        check=True,
        capture_output=True,
    )


def test_forged_unsigned_and_altered_agreements_are_refused(tmp_path: Path, controller: Ed25519PrivateKey) -> None:
    trusted = [controller.public_key()]
    _, forged = ag.sign_draft(write_draft(tmp_path, id="FORGED"), Ed25519PrivateKey.generate(), tmp_path / "d")
    with pytest.raises(IntegrityError, match=r"agreement FORGED.v1.json refused: .*not among the 1 allowed"):
        ag.load_signed(forged, trusted)
    _, unsigned = ag.sign_draft(write_draft(tmp_path, id="UNSIGNED"), controller, tmp_path / "d")
    Path(f"{unsigned}.sig").unlink()
    with pytest.raises(IntegrityError, match=r"agreement UNSIGNED\.v1\.json is not signed"):
        ag.load_signed(unsigned, trusted)
    _, altered = ag.sign_draft(write_draft(tmp_path, id="ALTERED"), controller, tmp_path / "d")
    altered.write_bytes(altered.read_bytes().replace(b"EX-1", b"EX-2"))
    with pytest.raises(IntegrityError, match="does not match"):
        ag.load_signed(altered, trusted)
    loaded = ag.load_dir(tmp_path / "d", trusted)
    assert loaded.agreements == ()
    assert sorted(name for name, _ in loaded.refused) == ["ALTERED.v1.json", "FORGED.v1.json", "UNSIGNED.v1.json"]


def test_a_manifest_signature_cannot_pass_as_an_agreement(tmp_path: Path, controller: Ed25519PrivateKey) -> None:
    from bodycam.agent.formats.sshsig import sign

    _, path = ag.sign_draft(write_draft(tmp_path), controller, tmp_path / "d")
    Path(f"{path}.sig").write_text(sign(path.read_bytes(), controller, "bodycam-manifest"))
    with pytest.raises(IntegrityError, match="namespace"):
        ag.load_signed(path, [controller.public_key()])


def test_the_latest_version_is_in_force_and_revocation_stops_every_version(
    tmp_path: Path, controller: Ed25519PrivateKey
) -> None:
    d = tmp_path / "d"
    ag.sign_draft(write_draft(tmp_path), controller, d)
    ag.sign_draft(write_draft(tmp_path, version=2, scope={"exercises": ["EX-2"]}), controller, d)
    with pytest.raises(ConfigError, match="raise the version"):
        ag.sign_draft(write_draft(tmp_path), controller, d)
    loaded = ag.load_dir(d, [controller.public_key()])
    assert [(a.id, a.version) for a in loaded.agreements] == [("DSA-A", 2)]
    assert ag.coverage(loaded.agreements[0], facts(exercise_id="EX-2"), T0, loaded.revoked) == ag.COVERED
    ag.revoke("DSA-A", controller, d, now=T0)
    loaded = ag.load_dir(d, [controller.public_key()])
    assert loaded.revoked == {"DSA-A"}
    assert ag.coverage(loaded.agreements[0], facts(exercise_id="EX-2"), T0, loaded.revoked) == ag.REVOKED


def test_a_revocation_by_another_key_is_refused(tmp_path: Path, controller: Ed25519PrivateKey) -> None:
    d = tmp_path / "d"
    ag.revoke("DSA-A", Ed25519PrivateKey.generate(), d, now=T0)
    loaded = ag.load_dir(d, [controller.public_key()])
    assert loaded.revoked == frozenset() and loaded.refused[0][0] == "DSA-A.revoked.json"


def test_a_directory_with_too_many_files_is_a_config_error(tmp_path: Path) -> None:
    for i in range(ag.MAX_FILES + 1):
        (tmp_path / f"{i}.json").write_text("{}")
    with pytest.raises(ConfigError, match="more than"):
        ag.load_dir(tmp_path, [])


# -- configuration ----------------------------------------------------------------------------------


def _agreements_config(**table: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "controller_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEUkuhkiCgdXuzMe6XNi2Jz8hcT6k9Prhk3jA9DWXTkn"],
        "dir": "/etc/bodycam/agreements",
        "archive": generate_identity()[1],
    }
    base.update(table)
    return {"dock_id": "dock-1", "state_dir": "/tmp/x", "agreements": base}


def test_config_reads_agreements_and_refuses_what_is_wrong() -> None:
    from bodycam.agent.config import parse

    cfg = parse(_agreements_config())
    assert cfg.agreements is not None and cfg.agreements.dir == Path("/etc/bodycam/agreements")
    assert parse({"dock_id": "dock-1"}).agreements is None
    for table, message in [
        ({"archive": "age1nope"}, "agreements.archive"),
        ({"controller_keys": []}, "agreements.controller_keys"),
        ({"dir": 3}, "agreements.dir"),
        ({"extra": 1}, "unknown config key 'agreements.extra'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse(_agreements_config(**table))
    doc = _agreements_config()
    del doc["agreements"]["archive"]
    with pytest.raises(ConfigError, match=r"agreements\.archive' is required"):
        parse(doc)


def test_a_bad_controller_key_line_names_its_index() -> None:
    with pytest.raises(ConfigError, match=r"controller_keys\[0\]"):
        ag.controller_keys(["ssh-rsa AAAA"])


def test_operators_read_why_footage_stayed_without_an_agreement() -> None:
    from bodycam.agent.cli.render import stayed_text

    text = stayed_text({"out_of_scope_reasons": {"no_agreement": 2, "operational": 0}})
    assert text == "stayed on the camera: 2 covered by no data-sharing agreement"


def test_no_agreement_is_a_stay_reason_for_policy_cli_status_and_custody() -> None:
    """One vocabulary: the code custody records, the policy's stay reasons, the words the CLI shows and
    the zero counts every ingest, sync and status reply starts from all name ``no_agreement``."""
    from bodycam.agent.cli.render import STAYED_WORDS
    from bodycam.agent.pipeline import policy
    from bodycam.agent.pipeline.ingest import CameraReport

    assert policy.NO_AGREEMENT == ag.NO_AGREEMENT
    assert set(policy.STAY_REASONS) == set(STAYED_WORDS)
    assert CameraReport().stayed_json()["out_of_scope_reasons"] == dict.fromkeys(policy.STAY_REASONS, 0)


def test_a_fifo_in_the_agreements_directory_is_refused_without_blocking(
    tmp_path: Path, controller: Ed25519PrivateKey
) -> None:
    import os

    os.mkfifo(tmp_path / "DSA-X.v1.json")
    loaded = ag.load_dir(tmp_path, [controller.public_key()])
    assert loaded.refused == (("DSA-X.v1.json", f"{tmp_path / 'DSA-X.v1.json'} is not a regular file"),)


def test_post_quantum_parties_and_archive_make_a_post_quantum_disclosure() -> None:
    p1, archive = generate_hybrid_identity()[1], generate_hybrid_identity()[1]
    a = agreement(
        parties=[{"name": "P1", "role": "processor", "lawful_basis": "x", "recipients": [p1], "retention_days": 9}]
    )
    d = ag.disclosure(ag.Loaded((a,)), facts(), T0, archive)
    assert d.recipients == (p1, archive) and d.parties == ("P1",)


def test_the_directory_cache_sees_a_new_revocation_and_a_rewritten_file(
    tmp_path: Path, controller: Ed25519PrivateKey
) -> None:
    d = tmp_path / "d"
    lines = [public_key_line(controller.public_key())]
    ag.sign_draft(write_draft(tmp_path), controller, d)
    cache = ag.DirCache()
    first = cache.load(d, lines)
    assert [a.id for a in first.agreements] == ["DSA-A"] and cache.load(d, lines) is first
    ag.revoke("DSA-A", controller, d, now=T0)
    assert cache.load(d, lines).revoked == {"DSA-A"}
    path = d / "DSA-A.v1.json"
    path.write_bytes(path.read_bytes().replace(b"EX-1", b"EX-2"))
    assert cache.load(d, lines).agreements == ()
    other = Ed25519PrivateKey.generate()
    assert cache.load(d, [public_key_line(other.public_key())]).refused != ()


@pytest.mark.parametrize("section", ["agreements", "fleet"])
def test_a_dock_refuses_its_own_signing_key_as_a_controller_key(tmp_path: Path, section: str) -> None:
    """Namespaces keep a manifest signature from passing as an agreement, but a dock whose signing key
    was also a controller key obeyed agreements (and, through _fleet/, made every dock obey them) that
    anyone holding the dock's key could sign. Before: ingest --once ran (exit 0); now exit 2, one line."""
    from .dock import make_dock

    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    own = (dock.root / "keys" / "dock_ed25519.pub").read_text().strip()
    other = public_key_line(Ed25519PrivateKey.generate().public_key())
    archive = generate_identity()[1]
    with dock.config_path.open("a") as f:
        if section == "agreements":
            f.write(f'[agreements]\ncontroller_keys = ["{other}", "{own}"]\narchive = "{archive}"\n')
            f.write(f'dir = "{tmp_path / "agreements"}"\n')
        else:
            f.write(f'[agreements]\ncontroller_keys = ["{other}"]\narchive = "{archive}"\n')
            f.write(f'[fleet]\ncontroller_keys = ["{own}"]\n')
    proc = dock.cli("ingest", "--once", "--json")
    index = 1 if section == "agreements" else 0
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"config key '{section}.controller_keys[{index}]' is this dock's own signing key" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
