"""The layers of docs/ARCHITECTURE.md import only downward; this test keeps the drawing true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = [
    "agecrypt", "batch", "bucket", "clocks", "config", "custody", "ingest", "inventory", "journal", "manifest",
    "policy", "pull", "sshsig", "verify", "custodycheck", "firmware", "keys", "report", "throttle", "tlog", "note",
    "docklog",
    "agreements",
]  # fmt: skip


def imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    package = ["bodycam", path.parent.relative_to(ROOT).parts[0], *path.parent.relative_to(ROOT).parts[1:]]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def banned(path: Path, prefixes: list[str]) -> list[str]:
    return sorted(m for m in imports(path) if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("name", ["protocol", "messages"])
def test_protocol_layer_imports_no_transport_device_or_agent(name: str) -> None:
    bad = banned(ROOT / "drivers" / f"{name}.py", ["usb", "serial", "bodycam.drivers.transport",
                                                   "bodycam.drivers.device", "bodycam.agent"])  # fmt: skip
    assert bad == []


@pytest.mark.parametrize("path", sorted((ROOT / "drivers" / "transport").glob("*.py")), ids=lambda p: p.name)
def test_transports_know_no_protocol(path: Path) -> None:
    assert banned(path, ["bodycam.drivers.protocol", "bodycam.drivers.messages", "bodycam.drivers.device",
                         "bodycam.agent"]) == []  # fmt: skip


def test_device_uses_only_the_transport_seam() -> None:
    bad = banned(ROOT / "drivers" / "device.py", ["usb", "serial", "bodycam.drivers.transport.usb",
                                                  "bodycam.drivers.transport.serial", "bodycam.agent"])  # fmt: skip
    assert bad == []


@pytest.mark.parametrize("path", sorted((ROOT / "drivers").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_drivers_never_import_the_agent(path: Path) -> None:
    assert banned(path, ["bodycam.agent"]) == []


@pytest.mark.parametrize("name", PIPELINE)
def test_pipeline_imports_no_service_or_cli(name: str) -> None:
    path = ROOT / "agent" / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{name}.py not present")
    assert banned(path, ["bodycam.agent.daemon", "bodycam.agent.control", "bodycam.agent.cli"]) == []


def test_service_imports_no_cli() -> None:
    for name in ("daemon", "control", "sdnotify"):
        assert banned(ROOT / "agent" / f"{name}.py", ["bodycam.agent.cli"]) == [], name


def test_nothing_is_installed_as_a_bare_top_level_package() -> None:
    import configparser

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    packages = setup["options"]["packages"].split()
    assert packages and all(p.startswith("bodycam.") for p in packages)
    mapping = setup["options"]["package_dir"].split()
    assert "bodycam.agent" in mapping and "bodycam.drivers" in mapping
