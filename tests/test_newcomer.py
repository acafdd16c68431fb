"""What a newcomer (police IT, an armourer, an auditor) meets on a first walk through the README: every
output says what to do next, and what the README and the help promise is what the CLI does."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import click

from bodycam.agent.cli.main import cli

from .dock import CLI, make_dock

ROOT = Path(__file__).resolve().parents[1]


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


def _leaf_commands() -> list[tuple[str, click.Command]]:
    """Every command a user can run ('keys show', 'verify'), with its click object."""
    found: list[tuple[str, click.Command]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd, info_name=path[-1] if path else "bodycam-sync")
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, name
                walk(sub, [*path, name])
        else:
            found.append((" ".join(path), cmd))

    walk(cli, [])
    return found


def test_every_option_of_every_command_says_what_it_is_for() -> None:
    """--help (and the man pages made from it) left 47 options bare, 'witness serve --key FILE' among them."""
    bare = [
        f"{name} {'/'.join(param.opts)}"
        for name, cmd in _leaf_commands()
        for param in cmd.params
        if isinstance(param, click.Option) and param.name != "help" and not param.help
    ]
    assert bare == []


def test_the_readme_command_table_names_every_command() -> None:
    """The README says its table lists the commands: 'firmware build', 'keys show' and 'witness ...' were missing."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Commands", 1)[1].split("\n## ", 1)[0]
    rows = [re.split(r"(?<!\\)\|", line) for line in section.splitlines() if line.startswith("| `")]
    first_cells = " ".join(row[1] for row in rows if len(row) >= 5)  # a cell's `a \| b` is one cell
    named = set(re.findall(r"`([a-z][a-z-]*(?: [a-z][a-z-]*)?)", first_cells))
    missing = [name for name, _ in _leaf_commands() if not any(n == name or n.startswith(name + " ") for n in named)]
    assert missing == []


def test_architecture_names_every_cli_module_the_commands_live_in() -> None:
    """ARCHITECTURE.md's agent/cli/ listing stopped at 'verify, service, sim': six command modules
    (disclosures, fleet, proof, receive, retention, witness) were nowhere in it."""
    from bodycam.agent.cli.main import COMMANDS

    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    cli_part = text.split(" agent/cli/", 1)[1].split(" agent/service/", 1)[0]
    listed = set(re.findall(r"[a-z_]+", cli_part))
    modules = {target.split(":")[0] for _, target in COMMANDS if isinstance(target, str)}
    assert modules and sorted(modules - listed) == []


def test_a_dock_without_its_signing_key_is_told_to_run_keys_init(tmp_path: Path) -> None:
    """ingest, daemon, keys show and keys rotate said 'create one with ssh-keygen -t ed25519 ...', which
    makes a key but not the allowed_signers line auditors need, and fails where keys/ does not exist yet."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    key = dock.config.key_path
    key.unlink()
    key.with_name(key.name + ".pub").unlink()
    config = str(dock.config_path)
    for args in (["ingest", "--once"], ["keys", "show"], ["keys", "rotate", "--out", str(tmp_path / "new")]):
        proc = run("--config", config, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and str(key) in lines[0] and "'bodycam-sync keys init'" in lines[0], (args, lines)
    daemon = subprocess.run([CLI, "--config", config, "daemon"], capture_output=True, text=True, timeout=120)
    assert daemon.returncode == 2 and "'bodycam-sync keys init'" in daemon.stderr, daemon.stderr
    made = run("--config", config, "keys", "init")
    assert made.returncode == 0 and made.stdout.startswith(dock.config.dock_id + " ssh-ed25519 "), made


def test_a_party_is_told_the_check_to_run_only_when_there_is_something_to_check(tmp_path: Path) -> None:
    """receive said 'checksums in OUT/SHA256SUMS' after a run that received nothing, and `sha256sum -c` then
    failed on the empty file; a mistyped --allowed-signers or --identity path printed Python's '[Errno 2] ...'."""
    run_dir = tmp_path / "run"
    demo = run("demo", "--workdir", str(run_dir), "--cameras", "1", "--recordings", "2", "--training", "1",
               "--size", "4096", cwd=tmp_path)  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    keys, bucket = run_dir / "keys", run_dir / "bucket"
    base = ["receive", "--bucket", str(bucket), "--allowed-signers", str(keys / "allowed_signers"),
            "--identity", str(keys / "home-office.agekey"), "--agreement", "DSA-DEMO-HOME-OFFICE"]  # fmt: skip

    unpublished = run(*base, "--out", str(tmp_path / "none"))  # the agreement is not in the bucket's _fleet/
    assert unpublished.returncode == 1 and "--agreement-file" in unpublished.stderr
    assert "sha256sum" not in unpublished.stdout and "0 recordings received" in unpublished.stdout

    out = tmp_path / "got"
    agreement = run_dir / "agreements" / "DSA-DEMO-HOME-OFFICE.v1.json"
    got = run(*base, "--out", str(out), "--agreement-file", str(agreement))
    assert got.returncode == 0, got.stderr
    check = got.stdout.split("check them: ", 1)[1].strip()
    assert check == f"cd {out} && sha256sum -c SHA256SUMS"
    ran = subprocess.run(["bash", "-c", check], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.count(": OK") == 1, ran

    bundle = tmp_path / "one.tlog-proof"
    proof = run(
        "proof", "--bucket", str(bucket), "--camera", "BWC-DEMO-01", "--recording", "1000", "--out", str(bundle)
    )
    assert proof.returncode == 0 and "next: hand it over with the recording object" in proof.stderr, proof.stderr
    assert f"bodycam-sync verify-proof {bundle} --policy POLICY" in proof.stderr

    for flag in ("--allowed-signers", "--identity"):
        args = ["verify", "--bucket", str(bucket), "--allowed-signers", str(keys / "allowed_signers"),
                "--identity", str(keys / "force-archive.agekey")]  # fmt: skip
        args[args.index(flag) + 1] = str(tmp_path / "typo")
        proc = run(*args)
        assert proc.returncode == 2
        assert (
            proc.stderr.strip()
            == f"bodycam-sync: error: cannot read {flag} {tmp_path / 'typo'}: No such file or directory"
        )


def test_a_command_group_run_bare_shows_its_help_not_an_error() -> None:
    """`bodycam-sync` or `bodycam-sync keys` alone printed 'bodycam-sync: error: Usage: ...' and the whole help
    inside one 'error' line ending in "(see 'bodycam-sync --help')"."""
    for args, heading in (([], "Usage: bodycam-sync [OPTIONS] COMMAND"), (["keys"], "Usage: bodycam-sync keys")):
        proc = run(*args)
        assert proc.returncode == 2  # usage (docs/cli.md), as click itself exits
        assert proc.stderr.startswith(heading), proc.stderr[:200]
        assert "error" not in proc.stderr.splitlines()[0] and "(see '" not in proc.stderr
        assert "Commands:" in proc.stderr


def _resolve(words: list[str]) -> tuple[click.Command | None, list[str]]:
    """The command ``words`` name (as far as they name one) and the path used; None for an unknown name."""
    cmd: click.Command = cli
    path: list[str] = []
    ctx = click.Context(cli, info_name="bodycam-sync")
    for word in words:
        if not isinstance(cmd, click.Group):
            break
        sub = cmd.get_command(ctx, word)
        if sub is None:
            return None, [*path, word]
        cmd, path = sub, [*path, word]
        ctx = click.Context(cmd, info_name=word, parent=ctx)
    return cmd, path


def _named_commands(text: str) -> list[str]:
    """Every `code span` and code-block line of a page that starts with a command (with or without the
    bodycam-sync in front): what a reader would type."""
    from bodycam.agent.cli.main import COMMANDS

    top = {name for name, _ in COMMANDS}
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)
    found = []
    for line in re.findall(r"`([^`\n]+)`", text) + [line for b in blocks for line in b.splitlines()]:
        line = re.sub(r"^\s*(sudo -u bodycam )?(/opt/bodycam/venv/bin/|\.venv/bin/)?", "", line)
        line = re.sub(r"^bodycam-sync( +--config +\S+| +-v+)*\s+", "", line).split("#")[0]
        words = line.split()
        prose = len(words) >= 3 and all(re.fullmatch(r"[a-z]+", w) for w in words)  # `clock not placeable`
        if len(words) >= 2 and words[0] in top and words[1] != "=" and "+" not in line and not prose:
            found.append(line)  # not TOML, not a witness policy line, not an output phrase
    return found


def test_every_command_and_option_the_docs_name_exists() -> None:
    """formats.md named a 'clock set' command (it is 'clock sync'): a reader typing what a page shows must
    reach a command, and every --option shown must be one that command takes."""
    problems = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in _named_commands(page.read_text()):
            names = [w for w in line.split() if re.fullmatch(r"[a-z][a-z-]*", w)][:3]
            cmd, path = _resolve(names)
            if cmd is None:
                problems.append(f"{page.name}: no command 'bodycam-sync {' '.join(path)}' ({line.strip()[:60]})")
            elif not isinstance(cmd, click.Group):
                known = {o for p in cmd.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]} | {"--help"}
                for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line):
                    if option not in known:
                        problems.append(f"{page.name}: 'bodycam-sync {' '.join(path)}' has no {option}")
    assert problems == []


def test_a_party_verifying_with_its_own_key_is_not_told_its_bucket_was_tampered_with(tmp_path: Path) -> None:
    """docs/auditing.md has a party run `verify --identity party.agekey`. Under agreements its key opens
    only its share, and verify reported every other recording as object_altered ('does not hash to its
    manifest value': it stopped reading at the header it could not open) and the archive's sidecar as
    personal_invalid: FAILED, on a bucket nobody had touched."""
    run_dir = tmp_path / "run"
    demo = run("demo", "--workdir", str(run_dir), "--cameras", "2", "--recordings", "2", "--training", "1",
               "--size", "4096", cwd=tmp_path)  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    keys, bucket = run_dir / "keys", run_dir / "bucket"
    base = ["verify", "--bucket", str(bucket), "--allowed-signers", str(keys / "allowed_signers")]
    opened = {}
    for holder in ("training-platform", "home-office", "force-archive"):
        proc = run(*base, "--identity", str(keys / f"{holder}.agekey"), "--json")
        assert proc.returncode == 0, (holder, proc.stdout[-3000:])
        doc = json.loads(proc.stdout)
        assert doc["verified"] and doc["findings"] == []
        opened[holder] = sum(b["plaintext_ok"] for b in doc["batches"])
        assert sum(b["objects_ok"] for b in doc["batches"]) == 2  # every ciphertext hashed, whoever holds the key
    assert opened == {"training-platform": 1, "home-office": 2, "force-archive": 2}
    text = run(*base, "--identity", str(keys / "training-platform.agekey"))
    assert text.returncode == 0 and "the identity opened 1 of 2 recordings" in text.stdout, text.stdout
    # keys that open nothing at all are the wrong file, not a party's: that stays a finding
    stranger = tmp_path / "stranger.agekey"
    subprocess.run(["age-keygen", "-o", str(stranger)], capture_output=True, check=True, timeout=60)
    wrong = run(*base, "--identity", str(stranger), "--json")
    assert wrong.returncode == 1
    assert [(f["problem"], f["batch"]) for f in json.loads(wrong.stdout)["findings"]] == [("decrypt_failed", None)]
    # a byte flipped in a recording is still found, and named for what it is, whoever holds the key
    victim = next(p for p in sorted(bucket.rglob("*.age")) if "recordings" in p.parts)
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.write_bytes(bytes(data))
    for holder in ("training-platform", "force-archive"):
        found = json.loads(run(*base, "--identity", str(keys / f"{holder}.agekey"), "--json").stdout)["findings"]
        assert [f["problem"] for f in found] == ["object_altered"], (holder, found)


def test_the_help_gives_the_exit_codes_scripts_rely_on() -> None:
    """docs/cli.md: 0 success, 1 the work failed or found problems, 2 usage or configuration. The top --help
    said none of it, and verify --help (what an auditor reads) only 0 and 1."""
    top = run("--help").stdout
    assert "0 success, 1 the work failed or found problems, 2 usage or configuration error" in " ".join(top.split())
    for command in ("verify", "disclosures", "ingest"):
        shown = " ".join(run(command, "--help").stdout.split())
        assert "exit 0" in shown and "2 usage or configuration error" in shown, (command, shown)


def test_the_key_and_certificate_commands_say_what_to_do_with_what_they_wrote(tmp_path: Path) -> None:
    """keys init, keys dock-auth, authority init/issue/revoke and proof wrote a file and printed a line,
    and left the newcomer to find in the docs who that line is for: each now says it on stderr (stdout is
    unchanged: scripts and the README read it)."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    config = ["--config", str(dock.config_path)]
    dock_key = run(*config, "keys", "dock-auth")
    assert dock_key.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}\n", dock_key.stdout), dock_key
    authority = tmp_path / "authority"
    steps = {
        "dock-auth": (dock_key, "authority issue"),
        "authority init": (run("authority", "init", "--out", str(authority)), "[dock_auth]"),
        "authority issue": (
            run(
                "authority",
                "issue",
                "--key",
                str(authority),
                "--dock-id",
                dock.config.dock_id,
                "--dock-key",
                dock_key.stdout.strip(),
                "--out",
                str(tmp_path / "dock.cert"),
            ),
            "dock_auth.certificate",
        ),
        "authority revoke": (
            run("authority", "revoke", "dock-stolen", "--key", str(authority), "--list", str(tmp_path / "revoked")),
            "dock_auth.revocations",
        ),
    }
    fresh = tmp_path / "fresh.toml"
    fresh.write_text(f'state_dir = "{tmp_path / "state2"}"\n')
    steps["keys init"] = (run("--config", str(fresh), "keys", "init"), "allowed_signers")
    for name, (proc, where) in steps.items():
        assert proc.returncode == 0, (name, proc.stderr)
        nexts = [line for line in proc.stderr.splitlines() if line.startswith("next: ")]
        assert len(nexts) == 1 and where in nexts[0], (name, proc.stderr)
    assert len(steps["keys init"][0].stdout.splitlines()) == 1


def test_allocate_says_what_it_did_before_the_history(tmp_path: Path) -> None:
    """The README's `allocate CAM-01 --officer PC-4711` printed one bare '2026-...Z  CAM-01  PC-4711' line."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock.enroll("CAM-7")  # the test dock enrols and allocates to OFFICER-CAM-7
    done = run("--config", str(dock.config_path), "allocate", "CAM-7", "--officer", "PC-2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "allocated CAM-7 to PC-2 (kept on this dock; the bucket sees a pseudonym)"
    assert lines[1] == "allocation history of CAM-7 (from, camera, officer):"
    assert [line.split()[1:] for line in lines[2:]] == [["CAM-7", "OFFICER-CAM-7"], ["CAM-7", "PC-2"]]
    shown = run("--config", str(dock.config_path), "allocate", "CAM-7").stdout.splitlines()
    assert shown[0].startswith("allocation history of CAM-7") and len(shown) == 3


def test_a_command_for_a_table_the_config_lacks_says_how_to_add_it(tmp_path: Path) -> None:
    """agreement list and fleet show on a dock without [agreements] / [fleet] said only that it was missing."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    for args, table in ((["agreement", "list"], "[agreements]"), (["fleet", "show"], "[fleet]")):
        proc = run("--config", str(dock.config_path), *args)
        assert proc.returncode == 2  # configuration (docs/cli.md)
        lines = proc.stderr.strip().splitlines()
        assert (
            len(lines) == 1
            and f"add {table}" in lines[0].replace("add a ", "add ")
            and "docs/configuration.md" in lines[0]
        )


def test_the_daemon_finds_a_camera_by_the_serial_link_udev_makes(tmp_path: Path) -> None:
    """deployment.md says udev wakes the service when a camera is docked; the service then scanned only the
    addresses in its config, so a docked Sentinel (USB with a serial interface) was never ingested. It now
    also takes the rules' /dev/bodycam/<serial>-tty links: one bay per camera, none for a dangling link, a
    USB device link, or a tty the config already names."""

    from bodycam.agent.service.bayworker import open_camera
    from bodycam.agent.service.daemon import Daemon, udev_serial_links

    from .sims import SimProcess

    links = tmp_path / "dev-bodycam"  # stands for /dev/bodycam
    links.mkdir()
    with (
        SimProcess("serial", "CAM-S1", truth_dir=tmp_path) as cam,
        SimProcess("serial", "CAM-S2", truth_dir=tmp_path) as other,
    ):
        (links / "CAM-S1-tty").symlink_to(cam.info["device"])
        (links / "CAM-S2-tty").symlink_to(other.info["device"])  # the config names this tty already
        (links / "CAM-S3-tty").symlink_to(tmp_path / "gone")  # undocked: udev had not removed it yet
        (links / "CAM-S1").symlink_to(cam.info["device"])  # a USB device's link: not a serial interface
        assert udev_serial_links(links, [other.info["device"]]) == [str(links / "CAM-S1-tty")]

        dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
        with dock.config_path.open("a") as f:
            f.write(f'[cameras]\nserial = ["{other.info["device"]}"]\n[daemon]\nbay_processes = false\n')
        daemon = Daemon(dock.config_path)
        try:
            daemon.udev_links = links
            assert daemon._present() == {other.info["device"]: "serial", str(links / "CAM-S1-tty"): "serial"}
        finally:
            daemon.agent.close()
        with open_camera("serial", str(links / "CAM-S1-tty")) as camera:
            assert camera.open().serial == "CAM-S1"
