"""drivers/files.py: the one bounded read behind every small file a user hands the agent (keys,
policies, certificates, agreements), with each caller's own errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bodycam.drivers.errors import ConfigError, ProtocolError
from bodycam.drivers.files import read_bounded


def _read(path: Path, limit: int) -> bytes:
    return read_bounded(
        path, limit,
        unreadable=lambda err: ConfigError(f"cannot read {path.name}: {type(err).__name__}"),
        too_large=lambda: ProtocolError(f"{path.name} is over {limit}"),
    )  # fmt: skip


def test_a_file_of_the_limit_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"x" * 64)
    assert _read(path, 64) == b"x" * 64
    with pytest.raises(ProtocolError, match="key is over 63"):
        _read(path, 63)


def test_an_endless_file_costs_no_more_than_the_limit() -> None:
    with pytest.raises(ProtocolError, match="zero is over 4096"):
        _read(Path("/dev/zero"), 4096)


def test_an_unreadable_file_is_the_caller_s_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read missing: FileNotFoundError"):
        _read(tmp_path / "missing", 10)
    with pytest.raises(ConfigError, match="IsADirectoryError"):
        _read(tmp_path, 10)
