"""Supported camera models: data first (esptool ``CHIP_DEFS``).

This table is the single source of truth for USB discovery, for the udev rules in ``udev/``
(``tests/test_udev.py`` checks the rules against it) and for the model table in docs/protocol.md
(``tests/test_spec.py`` checks it). Add a model here, then regenerate both with
``python -m bodycam.drivers.models --udev > udev/70-bodycam.rules`` and ``--markdown``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

#: pid.codes open-hardware vendor id; the product ids below are this project's
VENDOR_ID = 0x1209


@dataclass(frozen=True, slots=True)
class CameraModel:
    """A camera model the dock knows: its USB ids, largest READ and capabilities."""

    name: str
    vid: int
    pid: int
    max_read: int  # largest READ the firmware serves in one frame
    capabilities: frozenset[str]

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04x}:{self.pid:04x}"


MODELS: tuple[CameraModel, ...] = (
    CameraModel("Sentinel BWC-1", VENDOR_ID, 0xBC01, 512 * 1024, frozenset({"usb", "serial", "firmware"})),
    CameraModel("Sentinel BWC-2", VENDOR_ID, 0xBC02, 1024 * 1024, frozenset({"usb", "serial", "firmware"})),
    CameraModel("Warden W9", VENDOR_ID, 0xBC09, 256 * 1024, frozenset({"usb", "firmware"})),
)
DEFAULT_MODEL = MODELS[1]


def by_name(name: str) -> CameraModel:
    for model in MODELS:
        if model.name.lower() == name.lower():
            return model
    known = ", ".join(m.name for m in MODELS)
    raise KeyError(f"unknown camera model {name!r}; known models: {known}")


def by_usb_id(vid: int, pid: int) -> CameraModel | None:
    return next((m for m in MODELS if m.vid == vid and m.pid == pid), None)


#: udev glob for a USB serial that must not become part of a /dev path: anything outside the camera
#: protocol's serial alphabet (messages.SERIAL_PATTERN: 1 to 32 ASCII letters, digits, '-', '_' or '.',
#: starting with a letter or digit), so '.', '..' and '-x' never shape a path; the last alternative
#: is "33 characters or more"
UNSAFE_SERIAL_GLOB = "*[!0-9A-Za-z._-]*|[!0-9A-Za-z]*|" + "?" * 33 + "*"

#: the unit a docked camera wakes (SYSTEMD_WANTS); systemd/ holds it
SERVICE_UNIT = "bodycam-agent.service"


def udev_rules(group: str = "bodycam") -> str:
    """The udev rules for every model: device access for the dock's group, a stable symlink, wake the service.

    Per model: the USB device node (and, for serial-capable models, its ttyACM node) gets
    ``MODE``/``GROUP`` for the agent, ``TAG+="systemd"`` and ``SYSTEMD_WANTS`` so that docking a
    camera starts the service, and ``BODYCAM_SERIAL`` from the USB serial descriptor. The symlink
    ``/dev/bodycam/<serial>`` (``<serial>-tty`` for ttyACM) comes from two shared rules at the end
    that only use a serial in the protocol's alphabet: the descriptor is camera-controlled input,
    and a serial such as ``../disk/by-id/x`` or an empty one must not shape a path under /dev.
    """
    wants = f'TAG+="systemd", ENV{{SYSTEMD_WANTS}}+="{SERVICE_UNIT}"'
    lines = [
        "# Generated from bodycam.drivers.models.MODELS; do not edit by hand.",
        "# python -m bodycam.drivers.models --udev > udev/70-bodycam.rules",
        'ACTION=="remove", GOTO="bodycam_end"',
        'SUBSYSTEM!="usb|tty", GOTO="bodycam_end"',
    ]
    for m in MODELS:
        lines.append(f"# {m.name}")
        lines.append(
            f'SUBSYSTEM=="usb", ENV{{DEVTYPE}}=="usb_device", ATTR{{idVendor}}=="{m.vid:04x}", '
            f'ATTR{{idProduct}}=="{m.pid:04x}", MODE="0660", GROUP="{group}", {wants}, '
            f'ENV{{BODYCAM_SERIAL}}="$attr{{serial}}"'
        )
        if "serial" in m.capabilities:
            # $attr{serial} resolves on the USB device the ATTRS keys matched (the tty has no serial)
            lines.append(
                f'SUBSYSTEM=="tty", KERNEL=="ttyACM[0-9]*", ATTRS{{idVendor}}=="{m.vid:04x}", '
                f'ATTRS{{idProduct}}=="{m.pid:04x}", MODE="0660", GROUP="{group}", {wants}, '
                f'ENV{{BODYCAM_SERIAL}}="$attr{{serial}}"'
            )
    lines.append("# Stable names: /dev/bodycam/<serial> (USB) and /dev/bodycam/<serial>-tty, for safe serials only")
    for subsystem, suffix in (("usb", ""), ("tty", "-tty")):
        lines.append(
            f'SUBSYSTEM=="{subsystem}", ENV{{BODYCAM_SERIAL}}=="?*", '
            f'ENV{{BODYCAM_SERIAL}}!="{UNSAFE_SERIAL_GLOB}", SYMLINK+="bodycam/$env{{BODYCAM_SERIAL}}{suffix}"'
        )
    lines.append('LABEL="bodycam_end"')
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The registry as the Markdown table docs/protocol.md embeds (generated, never edited by hand)."""
    lines = [
        "| model (IDENTIFY `model`) | USB VID:PID | max READ frame payload (bytes) | capabilities |",
        "|---|---|---|---|",
    ]
    for m in MODELS:
        caps = ", ".join(sorted(m.capabilities))
        lines.append(f"| {m.name} | `{m.usb_id}` | {m.max_read:,} | {caps} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--udev"]:
        sys.stdout.write(udev_rules())
    elif sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(markdown_table())
    else:
        for model in MODELS:
            sys.stdout.write(f"{model.usb_id}  {model.name}\n")
