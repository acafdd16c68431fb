"""The command-line contract (docs/cli.md): outputs, exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .dock import CLI, make_dock
from .sims import SimProcess

CONTRACT_FIELDS = {
    "serial", "model", "firmware", "transport", "battery_percent", "storage_used_bytes", "clock_offset_s", "recordings",
}  # fmt: skip


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr


def test_devices_lists_two_virtual_cameras_with_every_contract_field(tmp_path: Path) -> None:
    with (
        SimProcess("usbip", "CAM-DEV1", "--clock-drift", "12.5", truth_dir=tmp_path) as usb,
        SimProcess("serial", "CAM-DEV2", "--recordings", "7", truth_dir=tmp_path) as tty,
    ):
        assert usb.info["transport"] == "usbip" and usb.info["busid"] and ":" in usb.info["address"]
        assert tty.info["device"].startswith("/dev/pts/")
        proc = run("devices", "--json", "--usbip", usb.address, "--serial-port", tty.info["device"])
        assert proc.returncode == 0, proc.stderr
        cameras = {c["serial"]: c for c in json.loads(proc.stdout)["cameras"]}
        assert set(cameras) == {"CAM-DEV1", "CAM-DEV2"}
        for cam in cameras.values():
            assert CONTRACT_FIELDS <= set(cam)
        assert cameras["CAM-DEV1"]["transport"] == "usbip" and cameras["CAM-DEV2"]["transport"] == "serial"
        assert cameras["CAM-DEV1"]["clock_offset_s"] == pytest.approx(12.5, abs=0.5)
        assert cameras["CAM-DEV2"]["recordings"] == 7
        table = run("devices", "--usbip", usb.address, "--serial-port", tty.info["device"])
        assert table.returncode == 0 and "CAM-DEV1" in table.stdout and "CAM-DEV2" in table.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["devices", "--usbip", "127.0.0.1:1"], 1),  # nothing listens there
        (["devices", "--usbip", "not-an-address"], 2),
        (["devices", "--usbip", "127.0.0.1:99999"], 2),
        (["devices", "--serial-port", "/dev/does-not-exist"], 1),
        (["sim", "serve", "--transport", "usbip", "--serial", "X", "--fault", "explode"], 2),
        (["sim", "serve", "--transport", "usbip", "--serial", "X", "--recordings", "2", "--training", "3"], 2),
        (["verify", "--bucket", "ftp://nope", "--allowed-signers", "/dev/null"], 2),
        (["exercise", "add", "EX", "--start", "yesterday", "--end", "2026-01-01T00:00:00Z", "--camera", "A"], 2),
        (["recipients", "add", "party", "age1notakey"], 2),
        (["ingest"], 2),  # --once is required
        (["no-such-command"], 2),
    ],
)
def test_bad_input_gives_one_line_and_the_contract_exit_code(tmp_path: Path, args: list[str], code: int) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    proc = run("--config", str(dock.config_path), *args)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    one_line_error(proc)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text('dock_id = "d"\n[upload]\nworkers = 0\n')
    proc = run("--config", str(bad), "recipients", "list")
    assert proc.returncode == 2 and "upload.workers" in proc.stderr
    one_line_error(proc)
    bad.write_text("this is [not toml")
    proc = run("--config", str(bad), "recipients", "list")
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr
    # a misspelt key inside a table is refused, not silently replaced by its default
    bad.write_text('dock_id = "d"\n[policy]\nerase_after_uplaod = true\n')
    proc = run("--config", str(bad), "recipients", "list")
    assert proc.returncode == 2 and "'policy.erase_after_uplaod'" in proc.stderr and "erase_after_upload" in proc.stderr
    one_line_error(proc)


def test_keys_init_writes_a_0600_key_and_prints_an_allowed_signers_line(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    out = tmp_path / "new_key"
    proc = run("--config", str(dock.config_path), "keys", "init", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("dock-test ssh-ed25519 AAAA")
    assert out.stat().st_mode & 0o777 == 0o600
    assert Path(str(out) + ".pub").read_text().startswith("ssh-ed25519 AAAA")
    again = run("--config", str(dock.config_path), "keys", "init", "--out", str(out))
    assert again.returncode == 2  # never overwrites a key
    one_line_error(again)


def test_exercise_register_round_trip(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    add = run("--config", str(dock.config_path), "exercise", "add", "EX-7", "--start", "2026-11-24T09:00:00Z",
              "--end", "2026-11-24T12:00:00+00:00", "--camera", "CAM-1", "--camera", "CAM-2", "--site", "Range 2")  # fmt: skip
    assert add.returncode == 0, add.stderr
    listed = json.loads(run("--config", str(dock.config_path), "exercise", "list", "--json").stdout)
    assert listed["exercises"] == [
        {"id": "EX-7", "site": "Range 2", "start": "2026-11-24T09:00:00Z", "end": "2026-11-24T12:00:00Z",
         "cameras": ["CAM-1", "CAM-2"], "caught": {"recordings": 0, "bytes": 0, "verified": 0, "in_progress": 0}}
    ]  # fmt: skip
    dup = run("--config", str(dock.config_path), "exercise", "add", "EX-7", "--start", "2026-11-24T09:00:00Z",
              "--end", "2026-11-24T12:00:00Z", "--camera", "CAM-1")  # fmt: skip
    assert dup.returncode == 2 and "already registered" in dup.stderr


def test_status_without_a_daemon_is_a_clear_error(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    proc = run("--config", str(dock.config_path), "status")
    assert proc.returncode == 1 and "not running" in proc.stderr  # operational, not a usage error (CONTRACT)
    assert len(proc.stderr.splitlines()) == 1
    one_line_error(proc)


def test_enroll_refuses_a_serial_identify_refuses_in_the_same_words(tmp_path: Path) -> None:
    """One serial alphabet: a serial starting with '_' is refused at enrolment, not at the first docking."""
    from bodycam.drivers.errors import ProtocolError
    from bodycam.drivers.protocol import messages as m

    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    key = "11" * 32
    proc = run("--config", str(dock.config_path), "enroll", "_CAM1", "--key", key)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    one_line_error(proc)
    assert m.serial_problem("_CAM1") in proc.stderr
    ident = m.Identity(1, 0x1209, 0xBC02, "Sentinel BWC-2", "_CAM1", "1.4.0", bytes.fromhex(key))
    with pytest.raises(ProtocolError) as refused:
        m.Identity.from_bytes(ident.to_bytes())
    assert m.serial_problem("_CAM1") in str(refused.value)
    assert "starting with a letter or digit" in str(refused.value)  # says what is wrong with '_CAM1'
    proc = run("--config", str(dock.config_path), "enroll", "CAM_1", "--key", key)
    assert proc.returncode == 0, proc.stderr


def test_keys_init_says_where_it_wrote_show_repeats_the_line_and_a_second_init_points_to_rotate(
    tmp_path: Path,
) -> None:
    config = tmp_path / "agent.toml"
    state = tmp_path / "state"
    config.write_text(f'dock_id = "dock-k"\nstate_dir = "{state}"\n[bucket]\nurl = "file://{tmp_path / "bucket"}"\n')
    first = run("--config", str(config), "keys", "init")
    assert first.returncode == 0, first.stderr
    line = first.stdout.strip()
    assert line.startswith("dock-k ssh-ed25519 AAAA") and len(first.stdout.splitlines()) == 1
    written = state / "keys" / "dock_ed25519"
    assert f"wrote {written}" in first.stderr and written.exists()
    shown = run("--config", str(config), "keys", "show")
    assert shown.returncode == 0 and shown.stdout.strip() == line
    shown_json = json.loads(run("--config", str(config), "keys", "show", "--json").stdout)
    assert shown_json["line"] == line and shown_json["fingerprint"].startswith("SHA256:")
    again = run("--config", str(config), "keys", "init")
    assert again.returncode == 2 and "keys rotate" in again.stderr
    one_line_error(again)


def test_allocate_refuses_a_camera_never_enrolled_and_shows_history_without_allocating(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    unknown = dock.cli("allocate", "CAM-77", "--officer", "PC-1")
    assert unknown.returncode == 2 and "CAM-77 is not enrolled" in unknown.stderr
    one_line_error(unknown)
    dock.enroll("CAM-7")  # the test dock enrols and allocates to OFFICER-CAM-7
    assert dock.cli("allocate", "CAM-7", "--officer", "PC-2").returncode == 0
    before = json.loads(dock.cli("allocate", "CAM-7", "--json").stdout)["allocations"]
    assert [a["officer"] for a in before][-1] == "PC-2" and len(before) == 2
    again = json.loads(dock.cli("allocate", "CAM-7", "--json").stdout)["allocations"]
    assert again == before  # showing the history allocates nothing
    assert "never been allocated" in dock.cli("allocate", "CAM-77").stdout


def test_shell_completion_offers_enrolled_serials_and_leaves_the_journal_alone(tmp_path: Path) -> None:
    import os

    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock.enroll("CAM-A1", "CAM-A2", "CAM-B1")
    journal = dock.config.journal_path
    before = journal.stat().st_mtime_ns

    def complete(*words: str) -> list[str]:
        line = ["bodycam-sync", "--config", str(dock.config_path), *words]
        env = {**os.environ, "_BODYCAM_SYNC_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(line)}
        env["COMP_CWORD"] = str(len(line) - 1)
        proc = subprocess.run([CLI], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        return [item.split(",", 1)[1] for item in proc.stdout.splitlines() if item.startswith("plain,")]

    assert complete("allocate", "CAM-A") == ["CAM-A1", "CAM-A2"]
    assert complete("sync", "--camera", "CAM-B") == ["CAM-B1"]
    assert complete("exercise", "add", "EX-1", "--camera", "") == ["CAM-A1", "CAM-A2", "CAM-B1"]
    assert journal.stat().st_mtime_ns == before
