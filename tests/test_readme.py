"""The README works as written: every command block after the two set-up commands runs, in a scratch directory."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
#: the two commands at the top set up the project itself (CI runs the second one; the demo has its own test)
SETUP_COMMANDS = ("bash scripts/demo.sh", "bash scripts/test.sh")


def command_blocks() -> list[str]:
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    return [b for b in blocks if b.strip() not in SETUP_COMMANDS]


def test_the_readme_starts_with_the_two_commands() -> None:
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert [b.strip() for b in blocks[:2]] == list(SETUP_COMMANDS)


@pytest.mark.parametrize("block", command_blocks(), ids=lambda b: b.strip().splitlines()[0][:40])
def test_readme_block_runs_as_written(tmp_path: Path, block: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BODYCAM_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a block that fails half-way must not leave its background camera running
    )
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    assert proc.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert "Traceback" not in stderr
    if "ingest --once" in block:  # the by-hand docking must show footage leaving, not "0 in scope"
        assert re.search(r"[1-9]\d* uploaded and verified", stdout), stdout


def test_every_doc_is_listed_and_no_link_leaves_the_repository() -> None:
    text = README.read_text()
    docs = sorted(p.name for p in (README.parent / "docs").glob("*.md"))
    missing = [name for name in docs if f"docs/{name}" not in text]
    assert missing == [], f"README's documentation list misses {missing}"
    for path in [README, *(README.parent / "docs").glob("*.md")]:
        assert "../shared" not in path.read_text(), f"{path.name} points outside the repository"


#: commands README blocks may use that a fresh Debian 12 with the project's .venv does not have, and their package
DEBIAN_TOOLS = {"age-keygen": "age", "age": "age", "jq": "jq", "ssh-keygen": "openssh-client"}


def test_the_tools_a_block_needs_beyond_the_venv_are_named_before_it() -> None:
    """The by-hand docking used age-keygen and jq, which only test.sh installs: after `bash scripts/demo.sh`
    on a fresh machine the block failed with 'command not found' and the README did not say why."""
    text = README.read_text()
    for block in command_blocks():
        before = text[: text.index(block)]
        used = {tool for tool in DEBIAN_TOOLS if re.search(rf"(^|[\s($|]){re.escape(tool)}\s", block, re.M)}
        unnamed = sorted(DEBIAN_TOOLS[t] for t in used if f"`{DEBIAN_TOOLS[t]}`" not in before.split("## Commands")[-1])
        assert unnamed == [], (
            f"block {block.splitlines()[0]!r} needs Debian packages the README names nowhere before it"
        )
