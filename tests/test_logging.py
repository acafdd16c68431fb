"""Logs fit systemd: under journald (JOURNAL_STREAM names our stderr) every line carries its sd-daemon priority."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from .dock import CLI, make_dock


def journal_env(stream: Path) -> dict[str, str]:
    st = os.stat(stream)
    return {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def wait_for(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while needle not in path.read_text() and time.monotonic() < deadline:
        assert proc.poll() is None, path.read_text()
        time.sleep(0.1)
    assert needle in path.read_text(), path.read_text()


def test_daemon_lines_carry_priorities_under_journald_so_journalctl_p_err_finds_errors(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    log = tmp_path / "journal-stream"
    log.touch()
    with log.open("ab") as stderr:
        daemon = subprocess.Popen(
            [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "1"], stderr=stderr, env=journal_env(log)
        )
    try:
        wait_for(log, "daemon ready", daemon)
        good = dock.config_path.read_text()
        dock.config_path.write_text(good + "\n[[[ not toml\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for(log, "reload refused", daemon)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    lines = [line for line in log.read_text().splitlines() if line]
    assert lines and all(line[0] == "<" and line[2] == ">" for line in lines), lines
    assert any(line.startswith("<6>") and "daemon ready" in line for line in lines)
    assert any(line.startswith("<3>") and "reload refused" in line for line in lines)


def test_cli_error_line_has_a_priority_only_when_stderr_is_the_journal(tmp_path: Path) -> None:
    stream = tmp_path / "journal-stream"
    stream.touch()
    with stream.open("ab") as stderr:
        code = subprocess.run(
            [CLI, "devices", "--usbip", "127.0.0.1:1"], stderr=stderr, env=journal_env(stream), timeout=60
        ).returncode
    assert code == 1
    assert stream.read_text().startswith("<3>bodycam-sync: error: cannot reach USB/IP server at 127.0.0.1:1")
    # JOURNAL_STREAM inherited by a command whose stderr goes elsewhere: no prefixes in that file
    other = subprocess.run(
        [CLI, "devices", "--usbip", "127.0.0.1:1"], capture_output=True, text=True, env=journal_env(stream), timeout=60
    )
    assert other.stderr.startswith("bodycam-sync: error:")
