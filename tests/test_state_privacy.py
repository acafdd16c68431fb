"""Issue 8 item 6: the state directory is private whoever runs the CLI, whatever their umask.

The journal holds officer ids and exercise sites: run by hand with ``umask 022`` it must still be
``0700``/``0600``, and a state directory that other users can enter is refused with the fix.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from .dock import CLI

KEY = "ab" * 32


def cli_with_umask(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),  # as in an operator's shell
    )


def write_config(tmp_path: Path) -> tuple[Path, Path]:
    state = tmp_path / "srv" / "bodycam-state"
    config = tmp_path / "agent.toml"
    config.write_text(f'dock_id = "dock-umask"\nstate_dir = "{state}"\n')
    return config, state


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cli_run_with_umask_022_leaves_the_state_private(tmp_path: Path) -> None:
    config, state = write_config(tmp_path)
    for args in (("keys", "init"), ("enroll", "CAM-1", "--key", KEY), ("allocate", "CAM-1", "--officer", "PC-4711")):
        proc = cli_with_umask(config, *args)
        assert proc.returncode == 0, proc.stderr
    assert mode(state) == 0o700
    journal = state / "journal.sqlite"
    assert mode(journal) == 0o600
    for companion in state.glob("journal.sqlite-*"):
        assert mode(companion) == 0o600, companion


def test_a_state_directory_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    config, state = write_config(tmp_path)
    assert cli_with_umask(config, "enroll", "CAM-1", "--key", KEY).returncode == 0
    state.chmod(0o755)
    for args in (("exercise", "list"), ("allocate", "CAM-1", "--officer", "PC-4711"), ("ingest", "--once")):
        proc = cli_with_umask(config, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"chmod 700 {state}" in lines[0] and "0755" in lines[0], lines[0]
    state.chmod(0o700)
    assert cli_with_umask(config, "exercise", "list").returncode == 0


def test_a_pseudonym_key_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    """The force's HMAC secret turns officer ids (short, guessable) into the pseudonyms the shared bucket
    carries: whoever reads it can reverse every pseudonym. Before the fix a configured key that group or
    others could read was used as it was (docs/ARCHITECTURE.md listed it as unchecked), and a path that
    names no regular file (``/dev/zero``) was read without end. Now both are one line and exit 2, as the
    signing key's mode is."""
    from .dock import make_dock

    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    key = tmp_path / "force" / "pseudonym.key"
    key.parent.mkdir()
    key.write_text("cd" * 32 + "\n")
    key.chmod(0o644)
    assert cli_with_umask(dock.config_path, "enroll", "CAM-1", "--key", KEY).returncode == 0
    with dock.config_path.open("a") as f:
        f.write(f'[privacy]\npseudonym_key = "{key}"\n')
    for args in (("ingest", "--once"), ("allocate", "CAM-1", "--officer", "PC-4711")):
        proc = cli_with_umask(dock.config_path, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"chmod 600 {key}" in lines[0] and "0644" in lines[0], lines[0]
    key.chmod(0o600)
    assert cli_with_umask(dock.config_path, "allocate", "CAM-1", "--officer", "PC-4711").returncode == 0
    dock.config_path.write_text(dock.config_path.read_text().replace(str(key), "/dev/zero"))
    proc = cli_with_umask(dock.config_path, "ingest", "--once")
    assert proc.returncode == 2 and "/dev/zero is not a regular file" in proc.stderr, proc.stderr
