"""A SIGHUP reload is refused for any config a fresh start would refuse (review of the daemon).

The daemon checks at start (``Agent.check_ready``) that it can encrypt (recipients), sign (the signing
key), pseudonymise (the pseudonym key) and prove itself (``[dock_auth]``). A reload checked only some of
it: a config with no recipients left, or a pseudonym key others can read or that is no key at all, was
taken, and every later upload or seal failed on it, leaving verified footage unsigned until someone
noticed. Real parts: the daemon as systemd runs it, its log, SIGHUP.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

from .dock import CLI, make_dock


def _wait_for(log: Path, text: str, start: int, within: float = 60) -> str:
    """The log from ``start`` once it holds ``text`` (fails after ``within`` seconds)."""
    deadline = time.monotonic() + within
    while text not in log.read_text()[start:] and time.monotonic() < deadline:
        time.sleep(0.1)
    content = log.read_text()[start:]
    assert text in content, content[-2000:]
    return content


def test_a_reload_a_fresh_start_would_refuse_is_refused(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    good = dock.config_path.read_text()
    loose = tmp_path / "force" / "pseudonym.key"
    loose.parent.mkdir()
    loose.write_text("cd" * 32 + "\n")
    loose.chmod(0o644)
    no_recipients = re.sub(r'\[\[recipients\]\]\nname = "party-a"\nage = "age1[0-9a-z]+"\n', "", good)
    assert no_recipients != good
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "0.3"], stderr=log.open("ab")
    )
    try:
        _wait_for(log, "daemon ready", 0)
        for bad, why in (
            (no_recipients, "no recipients configured"),
            (good + f'[privacy]\npseudonym_key = "{loose}"\n', "accessible by group or others"),
            (good + '[privacy]\npseudonym_key = "/dev/zero"\n', "is not a regular file"),
        ):
            mark = len(log.read_text())
            dock.config_path.write_text(bad)
            daemon.send_signal(signal.SIGHUP)
            after = _wait_for(log, "reload", mark)
            assert "reload refused" in after and why in after, after[-2000:]
        mark = len(log.read_text())
        dock.config_path.write_text(good)
        daemon.send_signal(signal.SIGHUP)
        assert "configuration reloaded" in _wait_for(log, "configuration reloaded", mark)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)


def test_a_config_replaced_by_a_named_pipe_is_refused_at_reload_and_the_bays_go_on(tmp_path: Path) -> None:
    """SIGHUP with a named pipe at the config's path: the reload is refused in one line and a camera docked
    after it is synced. Before the fix the reload waited in open() for a writer, in the loop that starts
    every bay: the camera was never started (nor any other, nor a scheduled seal)."""
    import json
    import os

    from .dock import window
    from .test_daemon import Camera, start_daemon

    win = window()
    cam = Camera("usbip", "CAM-HUP", win, tmp_path)
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    with dock.config_path.open("a") as f:
        f.write(f'[cameras]\nusbip = ["{cam.address}"]\n')
    dock.enroll(cam.serial)
    dock.exercise("EX-HUP", win, cam.serial)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(dock, tmp_path / "notify.sock", log)
    try:
        _wait_for(log, "daemon ready", 0)
        saved = dock.config_path.read_text()
        dock.config_path.unlink()
        os.mkfifo(dock.config_path)
        start = len(log.read_text())
        daemon.send_signal(signal.SIGHUP)
        refused = _wait_for(log, "reload refused", start)
        assert "named pipe" in refused, refused
        cam.dock()
        deadline = time.monotonic() + 120
        signed: set[int] = set()
        while signed != set(cam.training) and time.monotonic() < deadline:
            time.sleep(0.5)
            signed = {
                r["recording_id"]
                for p in bucket.rglob("manifest.json")
                for r in json.loads(p.read_text())["recordings"]
            }
        assert signed == set(cam.training), log.read_text()[-2000:]
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            fd = os.open(dock.config_path, os.O_WRONLY | os.O_NONBLOCK)  # the blocked reload's open returns
            os.write(fd, saved.encode())
            os.close(fd)
            daemon.wait(30)
        cam.undock()
