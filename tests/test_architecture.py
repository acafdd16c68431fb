"""The tree is the architecture (docs/ARCHITECTURE.md): each layer imports only the layers below it.

The rules are by package prefix, so a new module is checked by where it lives, with no list to keep.
"""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: agent/ layers, bottom up; a package may import its own modules and any layer with a lower rank.
#: pipeline and audit share a rank but never import each other: the checker stands apart from the writer.
AGENT_RANK = {"config": 0, "formats": 1, "storage": 2, "pipeline": 3, "audit": 3, "service": 4, "cli": 5}
#: drivers/ layers, bottom up; errors, files, strictjson and models (data) sit under everything.
DRIVERS_RANK = {"errors": -1, "files": 0, "strictjson": 0, "models": 0, "transport": 1, "protocol": 2, "device": 3}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["bodycam", *parts])


def imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
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


def layer(module: str, top: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["bodycam", top] else None


def sources(top: str) -> list[Path]:
    return sorted((ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("path", sources("agent"), ids=lambda p: str(p.relative_to(ROOT)))
def test_agent_layers_import_only_downward(path: Path) -> None:
    own = layer(module_name(path), "agent")
    if own is None or own not in AGENT_RANK:
        assert own is None or own == "__init__", f"{path}: not in a layer package of {sorted(AGENT_RANK)}"
        return
    upward = []
    for target in imports(path):
        other = layer(target, "agent")
        if other is None or other not in AGENT_RANK or other == own:
            continue
        if AGENT_RANK[other] >= AGENT_RANK[own]:
            upward.append(target)
    assert sorted(upward) == [], f"{own} may import only {[k for k, v in AGENT_RANK.items() if v < AGENT_RANK[own]]}"


@pytest.mark.parametrize("path", sources("drivers"), ids=lambda p: str(p.relative_to(ROOT)))
def test_driver_layers_import_only_downward_and_never_the_agent(path: Path) -> None:
    found = imports(path)
    assert sorted(m for m in found if m.startswith("bodycam.agent")) == []
    own = layer(module_name(path), "drivers")
    if own == "virtual":
        return  # the camera's side of the link: it may use any driver layer, never the agent
    assert not any(m.startswith("bodycam.drivers.virtual") for m in found), "only tests reach the virtual camera"
    if own not in DRIVERS_RANK:
        return
    upward = [
        m
        for m in found
        if (o := layer(m, "drivers")) in DRIVERS_RANK and o != own and DRIVERS_RANK[o] >= DRIVERS_RANK[own]
    ]
    assert sorted(upward) == []


@pytest.mark.parametrize("path", sources("drivers/protocol"), ids=lambda p: p.name)
def test_the_protocol_is_pure_bytes(path: Path) -> None:
    """The codec never touches USB or serial: it is pure functions on bytes."""
    assert not any(m.split(".")[0] in ("usb", "serial") for m in imports(path))


@pytest.mark.parametrize("path", sources("drivers/device"), ids=lambda p: p.name)
def test_devices_use_only_the_transport_seam(path: Path) -> None:
    concrete = ("bodycam.drivers.transport.usb", "bodycam.drivers.transport.serial", "bodycam.drivers.transport.usbip")
    found = imports(path)
    assert not any(m.split(".")[0] in ("usb", "serial") or m.startswith(concrete) for m in found)


@pytest.mark.parametrize(
    "path", [p for top in ("agent", "drivers") for p in sources(top)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_nothing_below_the_cli_prints(path: Path) -> None:
    if layer(module_name(path), "agent") == "cli" or layer(module_name(path), "drivers") == "virtual":
        return
    calls = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]
    assert not any(isinstance(c.func, ast.Name) and c.func.id == "print" for c in calls)


def test_every_layer_package_is_installed_and_nothing_is_bare() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    packages = setup["options"]["packages"].split()
    assert packages and all(p.startswith("bodycam.") for p in packages)
    on_disk = {module_name(p.parent) for top in ("agent", "drivers") for p in (ROOT / top).rglob("__init__.py")}
    assert on_disk == set(packages)
    mapping = setup["options"]["package_dir"].split()
    assert "bodycam.agent" in mapping and "bodycam.drivers" in mapping
