"""What a newcomer (police IT, an armourer, an auditor) meets on a first walk through the README: every
output says what to do next, and what the README and the help promise is what the CLI does."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .dock import CLI, make_dock


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_no_camera_reached_says_how_to_reach_one(tmp_path: Path) -> None:
    """devices, ingest --once and clock sync with nothing docked: one line naming the options (clock sync
    printed nothing at all, ingest only 'no new batch')."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    for args in (["devices"], ["ingest", "--once"], ["clock", "sync"]):
        proc = run("--config", str(dock.config_path), *args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        hint = [line for line in proc.stdout.splitlines() if line.startswith("no cameras found")]
        assert len(hint) == 1, (args, proc.stdout)
        assert "--usbip HOST:PORT" in hint[0] and "--serial-port PATH" in hint[0], hint
