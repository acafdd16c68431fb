"""Shared pytest fixtures and set-up. The SeaweedFS S3 server fixtures live in ``s3server.py``."""

from __future__ import annotations

import compileall
from pathlib import Path

import pytest

from .s3server import s3_bucket, seaweedfs

__all__ = ["s3_bucket", "seaweedfs"]


def pytest_configure(config: pytest.Config) -> None:
    """Compile the project's modules to bytecode once, before any test starts a process.

    Each CLI call, camera sim and daemon a test starts is a new interpreter importing the agent, and
    where PYTHONDONTWRITEBYTECODE is set (this machine's environment and CI's) none of them keeps what
    it compiled: every one compiled the agent again, about 0.3 s of CPU each, hundreds of times a run.
    An interpreter told not to write bytecode still reads it, and ignores a file that no longer
    matches its source (mtime and size), so an edited module is never run stale.
    """
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: its controller compiled already
        return
    root = Path(__file__).resolve().parent.parent
    for part in ("agent", "drivers", "tests"):
        compileall.compile_dir(root / part, quiet=1)
