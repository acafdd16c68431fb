"""Issue 8 item 5: nothing personal reaches the shared bucket in clear, errors included.

Each mass-storage failure mode is ingested by the real pipeline (a volume written by the virtual
camera's firmware side, :class:`MassStorageCamera`, the Agent the daemon runs, a local bucket);
then every byte of the bucket (object keys and contents: manifests, custody logs with their error
entries, signatures, recordings) is searched for the clear values the dock knows: original file
names, the officer id, the exercise site and the camera's hostile ``file`` values. The clear error
text must still reach the recipients, in the encrypted sidecar.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bodycam.agent.formats.agecrypt import Decryptor
from bodycam.drivers.virtual.massstorage_writer import FAULTS, FOLDER, Volume, sign_index

from .dock import CLI
from .test_massstorage import SERIAL, Bench

SITE = "Hendon Firing Range 3"
OFFICER = f"OFFICER-{SERIAL}"  # what tests/dock.py allocates the camera to
HOSTILE_FILE = f"{FOLDER}/{OFFICER}_Hendon_Firing_Range_3.mp4"  # a camera naming files after people and places
MODES = [*FAULTS, "missing-file", "hostile-file-value", "hostile-file-value-twice"]


def make_hostile(bench: Bench, mode: str) -> Volume:
    vol = bench.volume(fault=mode if mode in FAULTS else None)
    if mode == "missing-file":
        vol.path_of(vol.recordings[0]).unlink()
    elif mode.startswith("hostile-file-value"):
        path = vol.mount / "BODYCAM" / "index.json"
        index = json.loads(path.read_text())
        if mode == "hostile-file-value":  # not a valid path (spaces, '..'): the parse error quotes it
            index["recordings"][0]["file"] = f"../{OFFICER} at {SITE}.mp4"
        else:  # a valid path given to two recordings
            index["recordings"][0]["file"] = index["recordings"][1]["file"] = HOSTILE_FILE
        sign_index(vol.mount, SERIAL, json.dumps(index).encode())
    return vol


def clear_values(vol: Volume) -> list[str]:
    return [
        *(r.name for r in vol.recordings),
        OFFICER,
        SITE,
        HOSTILE_FILE,
        "Hendon",
        f"{OFFICER} at {SITE}",
    ]


def sidecars(bench: Bench) -> list[dict[str, object]]:
    out = []
    for path in sorted(bench.bucket_dir.rglob("personal.json.age")):
        dec = Decryptor([bench.dock.identity])
        out.append(json.loads(dec.update(path.read_bytes()) + dec.finalize()))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_no_clear_personal_value_in_any_byte_of_the_bucket_after_a_failure(tmp_path: Path, mode: str) -> None:
    bench = Bench(tmp_path)
    # a docking that only failed leaves its custody for the next batch; publish it at once to scan it
    with bench.dock.config_path.open("a") as f:
        f.write("[batch]\ncustody_only_interval_s = 0\n")
    journal = bench.dock.journal()
    try:
        with journal.transaction() as db:
            db.execute("UPDATE exercises SET site=? WHERE id='EX-M1'", (SITE,))
    finally:
        journal.close()
    vol = make_hostile(bench, mode)

    report = bench.ingest(vol.mount)

    assert report.errors, f"{mode}: nothing failed"
    files = {str(p.relative_to(bench.bucket_dir)): p.read_bytes() for p in bench.bucket_dir.rglob("*") if p.is_file()}
    custody = b"".join(data for key, data in files.items() if key.endswith("custody.jsonl"))
    assert b'"event":"error"' in custody, f"{mode}: the error entry was not published: {sorted(files)}"
    for needle in clear_values(vol):
        for key, data in files.items():
            assert needle.casefold() not in key.casefold(), (mode, needle, key)
            assert needle.encode().lower() not in data.lower(), (mode, needle, key, data[:2000])
    # the recipients still learn what went wrong, in clear, from the encrypted sidecar
    errors = [e for doc in sidecars(bench) for e in doc["errors"]]  # type: ignore[attr-defined]
    assert errors and any(e["error"] in " ".join(report.errors) for e in errors), (errors, report.errors)
    bench.verify()


@pytest.mark.parametrize(
    ("exercise_id", "why"),
    [
        ("EX-HENDON-FIRING-RANGE-3", "contains its --site"),
        ("EX-PC4711-QUAL", "contains an officer id"),
        ("EX-Hendon range", "reference of 1-64 ASCII"),
        ("EX-Ré-1", "reference of 1-64 ASCII"),
    ],
)
def test_an_exercise_id_that_describes_a_site_or_an_officer_is_refused(
    tmp_path: Path, exercise_id: str, why: str
) -> None:
    from .dock import make_dock

    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock.enroll("CAM-1")  # only an enrolled camera can be allocated
    assert dock.cli("allocate", "CAM-1", "--officer", "PC-4711").returncode == 0
    window = ("--start", "2026-11-24T09:00:00Z", "--end", "2026-11-24T12:00:00Z", "--camera", "CAM-1")
    proc = dock.cli("exercise", "add", exercise_id, *window, "--site", "Hendon firing range 3")
    assert proc.returncode == 2 and why in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    ok = dock.cli("exercise", "add", "EX-2026-0142", *window, "--site", "Hendon firing range 3")
    assert ok.returncode == 0, ok.stderr


def test_the_daemon_publishes_a_hostile_volume_s_errors_without_its_clear_values(tmp_path: Path) -> None:
    """The same through the CLI, where a mass-storage camera is met: the daemon watching its mounts."""
    bench = Bench(tmp_path)
    journal = bench.dock.journal()
    try:
        with journal.transaction() as db:
            db.execute("UPDATE exercises SET site=? WHERE id='EX-M1'", (SITE,))
    finally:
        journal.close()
    vol = make_hostile(bench, "hostile-file-value")
    with bench.dock.config_path.open("a") as f:
        f.write(f'[cameras]\nmass_storage_dir = "{vol.mount.parent}"\n[batch]\ncustody_only_interval_s = 0\n')
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [CLI, "--config", str(bench.dock.config_path), "daemon", "--rescan", "0.5"], stderr=log.open("ab")
    )
    try:
        deadline = time.monotonic() + 90
        published = b""
        while b'"event":"error"' not in published:
            assert time.monotonic() < deadline, f"no error entry published\n{log.read_text()[-3000:]}"
            time.sleep(0.3)
            published = b"".join(p.read_bytes() for p in bench.bucket_dir.rglob("custody.jsonl"))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    assert OFFICER in log.read_text()  # the operator on the dock sees the camera's value, the bucket does not
    files = {str(p.relative_to(bench.bucket_dir)): p.read_bytes() for p in bench.bucket_dir.rglob("*") if p.is_file()}
    for needle in clear_values(vol):
        for key, data in files.items():
            assert needle.casefold() not in key.casefold(), (needle, key)
            assert needle.encode().lower() not in data.lower(), (needle, key, data[:2000])
    assert any(OFFICER in e["error"] for doc in sidecars(bench) for e in doc["errors"])  # type: ignore[attr-defined]


def test_what_the_force_publishes_for_the_fleet_names_no_site_or_officer(tmp_path: Path) -> None:
    """Issue 12 item 2: the fleet register and agreements in the shared bucket carry references only;
    publishing refuses an agreement scoped by site or whose text names a site or officer the dock knows."""
    from bodycam.agent.formats.agecrypt import recipient_of
    from bodycam.agent.formats.sshsig import generate_key

    from .agreement_setup import draft as _draft
    from .dock import make_dock, window

    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    controller = generate_key(tmp_path / "controller", "force").strip()
    with dock.config_path.open("a") as f:
        f.write(f'[agreements]\ncontroller_keys = ["{controller}"]\narchive = "{recipient_of(dock.identity)}"\n')
        f.write("[fleet]\n")
    dock.enroll("CAM-P1")  # allocated to OFFICER-CAM-P1
    dock.exercise("EX-2026-0142", window(), "CAM-P1", site=SITE)
    assert dock.cli("fleet", "publish", "--key", str(tmp_path / "controller")).returncode == 0
    drafts, signed = tmp_path / "drafts", tmp_path / "signed"
    drafts.mkdir()
    cases = {"DSA-OK": {}, "DSA-SITE": {"scope": {"sites": [SITE]}}, "DSA-TEXT": {"purpose": f"review at {SITE}"},
             "DSA-OFFICER": {"purpose": "review of OFFICER-CAM-P1"}}  # fmt: skip
    for ident, change in cases.items():
        draft = _draft(drafts / f"{ident}.json", ident, "EX-2026-0142", {"P1": recipient_of(dock.identity)}, 2e9)
        draft.write_text(json.dumps({**json.loads(draft.read_text()), **change}))
        assert dock.cli("agreement", "sign", str(draft), "--key", str(tmp_path / "controller"),
                        "--out", str(signed)).returncode == 0  # fmt: skip
        proc = dock.cli("agreement", "publish", str(signed / f"{ident}.v1.json"))
        if ident == "DSA-OK":
            assert proc.returncode == 0, proc.stderr
            continue
        assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert ("scopes by site" if ident == "DSA-SITE" else "site or an officer id in clear") in proc.stderr
    files = {str(p.relative_to(bucket)): p.read_bytes() for p in bucket.rglob("*") if p.is_file()}
    assert sorted(files) == ["_fleet/agreements/DSA-OK.v1.json", "_fleet/agreements/DSA-OK.v1.json.sig",
                             "_fleet/register/v0000000001.json", "_fleet/register/v0000000001.json.sig"]  # fmt: skip
    for needle in (SITE, "Hendon", "OFFICER-CAM-P1"):
        for key, data in files.items():
            assert needle.encode().lower() not in data.lower(), (needle, key)
