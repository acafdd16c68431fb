"""udev/70-bodycam.rules against the model registry, and against udev itself where it can run.

The rules file is generated (``python -m bodycam.drivers.models --udev``), so the first check is
that it equals ``models.udev_rules()`` byte for byte; the others read the file as udev would and
check what each model gets. With root, ``udevadm`` and ``unshare``, ``udevadm test`` then parses
the file for real inside a private mount namespace (tmpfs over /etc/udev, /run and /dev, a copy
of /etc/group with the ``bodycam`` group bind-mounted over it), so nothing on the host changes:
``udevadm test`` does write the udev database and create symlinks under /dev.

There is no clean way to run our rules against a camera without one: ``udevadm test`` wants a
device in the real sysfs (sd-device refuses a fake tree on tmpfs: "outside of sysfs"), and there is
no dock here. So the udevadm checks use /sys/class/mem/null: every rules file is parsed for any
device, which catches syntax errors and unknown groups, and the shared symlink rules are grafted
onto null to prove that udev creates /dev/bodycam/<serial> for a good serial and nothing for a
hostile one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bodycam.drivers import models
from bodycam.drivers.protocol import messages as m

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "udev" / "70-bodycam.rules"
RULES_NAME = RULES.name
SYSUSERS = ROOT / "systemd" / "bodycam.sysusers"
GROUP = "bodycam"

TOKEN = re.compile(r'\s*(?P<key>[A-Z_]+)(?:\{(?P<attr>[^}]*)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"\s*')
Token = tuple[str, str, str, str]  # key, attr, op, value


def parse_rule(line: str) -> list[Token]:
    """One rule line into (key, attr, op, value) tokens; any text that is not a token fails."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(line):
        m = TOKEN.match(line, pos)
        assert m, f"unparsable udev rule text at column {pos}: {line[pos:]!r}"
        tokens.append((m["key"], m["attr"] or "", m["op"], m["value"]))
        pos = m.end()
        if pos < len(line):
            assert line[pos] == ",", f"expected ',' at column {pos}: {line!r}"
            pos += 1
    return tokens


def rules() -> list[list[Token]]:
    text = RULES.read_text(encoding="utf-8")
    return [parse_rule(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def has(rule: list[Token], key: str, attr: str, op: str, value: str) -> bool:
    return (key, attr, op, value) in rule


def find(all_rules: list[list[Token]], *matches: Token) -> list[list[Token]]:
    return [r for r in all_rules if all(m in r for m in matches)]


# -- the file and the registry ----------------------------------------------------------------------
def test_rules_file_is_the_generated_one() -> None:
    assert RULES.read_bytes() == models.udev_rules().encode("utf-8"), (
        "udev/70-bodycam.rules drifted from the registry: "
        "python -m bodycam.drivers.models --udev > udev/70-bodycam.rules"
    )


def test_every_line_parses_and_labels_resolve() -> None:
    all_rules = rules()
    gotos = {v for r in all_rules for (k, _, _, v) in r if k == "GOTO"}
    labels = {v for r in all_rules for (k, _, _, v) in r if k == "LABEL"}
    assert gotos == {"bodycam_end"}
    assert gotos <= labels
    # the early exits come first, the label last
    assert has(all_rules[0], "ACTION", "", "==", "remove")
    assert all_rules[-1] == [("LABEL", "", "=", "bodycam_end")]


@pytest.mark.parametrize("model", models.MODELS, ids=lambda m: m.name)
def test_every_model_has_a_usb_rule(model: models.CameraModel) -> None:
    usb = find(
        rules(),
        ("SUBSYSTEM", "", "==", "usb"),
        ("ENV", "DEVTYPE", "==", "usb_device"),
        ("ATTR", "idVendor", "==", f"{model.vid:04x}"),
        ("ATTR", "idProduct", "==", f"{model.pid:04x}"),
    )
    assert len(usb) == 1, f"{model.name}: expected one usb_device rule for {model.usb_id}"
    (rule,) = usb
    assert has(rule, "MODE", "", "=", "0660")
    assert has(rule, "GROUP", "", "=", GROUP)
    assert has(rule, "TAG", "", "+=", "systemd")
    assert has(rule, "ENV", "SYSTEMD_WANTS", "+=", models.SERVICE_UNIT)
    assert has(rule, "ENV", "BODYCAM_SERIAL", "=", "$attr{serial}")


@pytest.mark.parametrize("model", models.MODELS, ids=lambda m: m.name)
def test_serial_models_have_a_tty_rule(model: models.CameraModel) -> None:
    tty = find(
        rules(),
        ("SUBSYSTEM", "", "==", "tty"),
        ("ATTRS", "idVendor", "==", f"{model.vid:04x}"),
        ("ATTRS", "idProduct", "==", f"{model.pid:04x}"),
    )
    if "serial" not in model.capabilities:
        assert tty == [], f"{model.name} has no serial interface but a tty rule"
        return
    assert len(tty) == 1, f"{model.name}: expected one ttyACM rule"
    (rule,) = tty
    assert has(rule, "KERNEL", "", "==", "ttyACM[0-9]*")
    assert has(rule, "MODE", "", "=", "0660")
    assert has(rule, "GROUP", "", "=", GROUP)
    assert has(rule, "TAG", "", "+=", "systemd")
    assert has(rule, "ENV", "SYSTEMD_WANTS", "+=", models.SERVICE_UNIT)
    assert has(rule, "ENV", "BODYCAM_SERIAL", "=", "$attr{serial}")


@pytest.mark.parametrize(("subsystem", "suffix"), [("usb", ""), ("tty", "-tty")])
def test_stable_symlink_only_for_safe_serials(subsystem: str, suffix: str) -> None:
    links = [r for r in rules() if any(k == "SYMLINK" for (k, _, _, _) in r)]
    rule = next(r for r in links if has(r, "SUBSYSTEM", "", "==", subsystem))
    assert has(rule, "SYMLINK", "", "+=", f"bodycam/$env{{BODYCAM_SERIAL}}{suffix}")
    assert has(rule, "ENV", "BODYCAM_SERIAL", "==", "?*")
    assert has(rule, "ENV", "BODYCAM_SERIAL", "!=", models.UNSAFE_SERIAL_GLOB)
    # no other rule builds a path from camera-controlled text
    for r in links:
        for key, _, _, value in r:
            if key == "SYMLINK":
                assert "$attr" not in value and "%s" not in value


def test_woken_unit_and_group_exist_in_systemd_dir() -> None:
    unit = ROOT / "systemd" / models.SERVICE_UNIT
    assert unit.is_file(), f"SYSTEMD_WANTS names {models.SERVICE_UNIT}, which systemd/ does not ship"
    assert re.search(rf"^Group={GROUP}$", unit.read_text(), re.M)
    sysusers = [line.split() for line in SYSUSERS.read_text().splitlines() if line and not line.startswith("#")]
    assert ["u", GROUP] in [fields[:2] for fields in sysusers], "the rules' GROUP is not created by sysusers"


def test_unsafe_serial_glob_matches_what_the_protocol_rejects() -> None:
    # the one alphabet of drivers/protocol/messages.py (IDENTIFY, enroll): the glob refuses exactly what it refuses
    import fnmatch

    def unsafe(serial: str) -> bool:
        return any(fnmatch.fnmatchcase(serial, alt) for alt in models.UNSAFE_SERIAL_GLOB.split("|"))

    for good in ("SN-0042", "BWC2_000123", "a.b", "a..", "9" * 32):
        assert not unsafe(good), good
        assert m.valid_serial(good), good
    for bad in ("../etc", "a/b", "a b", ".", "..", "..a", "_x", "-x", "x\n", "é1", "a$b", "9" * 33):
        assert unsafe(bad), bad
        assert not m.valid_serial(bad), bad


# -- udevadm test, in a private mount namespace ---------------------------------------------------------
NS_SCRIPT = r"""
set -e
rules=$1; group=$2
mount --bind "$group" /etc/group
mount -t tmpfs -o mode=0755 tmpfs /etc/udev
mkdir /etc/udev/rules.d
cp "$rules" /etc/udev/rules.d/70-bodycam.rules
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir /run/udev
mount -t tmpfs -o mode=0755 tmpfs /dev
exec udevadm test --action=add /sys/class/mem/null
"""


def _udevadm_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "udevadm test needs root (and mounts in a private namespace)"
    for tool in ("udevadm", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian packages udev, util-linux)"
    if not Path("/etc/udev").is_dir():
        return "/etc/udev missing (Debian package udev)"
    if not Path("/sys/class/mem/null").exists():
        return "no sysfs with /sys/class/mem/null"
    return None


def run_udevadm_test(tmp_path: Path, rules_text: str, *, with_group: bool = True) -> str:
    reason = _udevadm_unavailable()
    if reason:
        pytest.skip(reason)
    rules_file = tmp_path / "70-bodycam.rules"
    rules_file.write_text(rules_text, encoding="utf-8")
    group_file = tmp_path / "group"
    group_text = Path("/etc/group").read_text(encoding="utf-8")
    if with_group:
        group_text = "\n".join(line for line in group_text.splitlines() if not line.startswith(f"{GROUP}:"))
        group_text += f"\n{GROUP}:x:64999:\n"
    else:
        group_text = "".join(line for line in group_text.splitlines(True) if not line.startswith(f"{GROUP}:"))
    group_file.write_text(group_text, encoding="utf-8")
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", NS_SCRIPT, "sh", rules_file, group_file],
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and "udevadm" not in out:
        pytest.skip(f"cannot set up a private mount namespace here: {out.strip()[-300:]}")
    assert proc.returncode == 0, out
    assert f"Reading rules file: /etc/udev/rules.d/{RULES_NAME}" in out, out
    return out


def diagnostics(out: str) -> list[str]:
    """udev's complaints about our file: lines that start with its path and a line number."""
    return [line for line in out.splitlines() if line.startswith(f"/etc/udev/rules.d/{RULES_NAME}:")]


def test_udevadm_parses_the_rules_cleanly(tmp_path: Path) -> None:
    out = run_udevadm_test(tmp_path, RULES.read_text(encoding="utf-8"))
    assert diagnostics(out) == [], "\n".join(diagnostics(out))


def test_udevadm_flags_errors_in_our_file(tmp_path: Path) -> None:
    """The check above would see a broken rule, and an unknown group (install sysusers first!)."""
    broken = RULES.read_text(encoding="utf-8") + 'SUBSYSTEM=="usb", GROOP="x"\n'
    out = run_udevadm_test(tmp_path, broken, with_group=False)
    found = "\n".join(diagnostics(out))
    assert "Invalid key 'GROOP'" in found
    assert f"Unknown group '{GROUP}'" in found


def test_udevadm_makes_the_symlink_only_for_safe_serials(tmp_path: Path) -> None:
    link_rules = [
        line
        for line in RULES.read_text(encoding="utf-8").splitlines()
        if 'SUBSYSTEM=="usb"' in line and "SYMLINK" in line
    ]
    assert len(link_rules) == 1
    cases = {
        "SN-0042": True,
        "BWC2_7.1": True,
        "../../etc/x": False,
        "a b": False,
        "..": False,
        "x/y": False,
        "_x": False,
    }
    for serial, linked in cases.items():
        graft = f'KERNEL=="null", ENV{{BODYCAM_SERIAL}}="{serial}"\n' + link_rules[0].replace(
            'SUBSYSTEM=="usb"', 'SUBSYSTEM=="mem"'
        )
        out = run_udevadm_test(tmp_path, graft + "\n")
        assert diagnostics(out) == []
        devlinks = [line for line in out.splitlines() if line.startswith("DEVLINKS=")]
        if linked:
            assert devlinks == [f"DEVLINKS=/dev/bodycam/{serial}"], out
        else:
            assert not any("bodycam" in line for line in devlinks), f"{serial!r}: {devlinks}"
