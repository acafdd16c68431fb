"""Where an operator's ``status``/``sync``/``eject``/``watch`` find the daemon on a dock deployed with the
shipped unit: systemd gives the daemon ``RUNTIME_DIRECTORY=/run/bodycam``, never the operator's shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from bodycam.agent.service.control import ControlServer, client_socket_paths, find_socket, request

from .dock import make_dock


@pytest.fixture
def no_runtime_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's login shell: systemd's RUNTIME_DIRECTORY is the unit's, not theirs."""
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)


def test_a_client_without_runtime_directory_finds_the_units_socket(tmp_path: Path, no_runtime_directory: None) -> None:
    state_dir = tmp_path / "state"  # the config's state_dir: the daemon under systemd does not listen there
    unit_runtime = tmp_path / "run-bodycam"  # stands for /run/bodycam (RuntimeDirectory=bodycam)
    server = ControlServer(unit_runtime / "control.sock", lambda doc: {"ok": True, "echo": doc.get("cmd")})
    server.start()
    try:
        candidates = client_socket_paths(state_dir, unit_runtime)
        assert candidates == [state_dir / "run" / "control.sock", unit_runtime / "control.sock"]
        path = find_socket(candidates)
        assert path == unit_runtime / "control.sock"
        assert request(path, {"cmd": "status"})["echo"] == "status"
    finally:
        server.stop()


def test_a_daemon_listening_under_the_state_dir_wins(tmp_path: Path, no_runtime_directory: None) -> None:
    state_dir, unit_runtime = tmp_path / "state", tmp_path / "run-bodycam"
    for where in (state_dir / "run", unit_runtime):
        where.mkdir(parents=True)
        (where / "control.sock").touch()
    assert find_socket(client_socket_paths(state_dir, unit_runtime)) == state_dir / "run" / "control.sock"


def test_the_daemons_own_runtime_directory_is_the_only_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "rt"))
    assert client_socket_paths(tmp_path / "state", tmp_path / "run-bodycam") == [tmp_path / "rt" / "control.sock"]


@pytest.mark.skipif(Path("/run/bodycam/control.sock").exists(), reason="a real daemon runs on this machine")
def test_status_without_a_daemon_names_every_place_it_looked(tmp_path: Path, no_runtime_directory: None) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    proc = dock.cli("status")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(dock.config.state_dir / "run" / "control.sock") in lines[0]
    assert "/run/bodycam/control.sock" in lines[0]
    assert "systemctl start bodycam-agent" in lines[0]
