"""The witness policy file: which dock logs and witnesses a party trusts, and when a checkpoint counts as
witnessed (k of n witnesses, in nested groups).

Why this shape: it is the Sigsum policy format (``log``, ``witness``, ``group``, ``quorum`` lines) with
C2SP verifier keys instead of bare hex keys, so the key names and key ids needed to check a signed note
come with the keys, and one file serves the witness (which logs it accepts), the dock (whom it asks, at
what URL) and the auditor (what counts as witnessed). It is strict and bounded because an auditor may be
handed one: docs/formats.md §11 is the specification.

    # comments and blank lines are ignored
    log bodycam-sync/dock-01+1a2b3c4d+AdOe...                 a dock's log key (type 0x01); its name is the origin
    witness home-office witness.example/ho+5e6f7a8b+BFx... https://witness.example/ho
    witness auditor audit.example/w1+0a1b2c3d+BKq...
    group parties 2 home-office auditor                       k of the members (or any, all)
    quorum parties                                            or: quorum none
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bodycam.agent.formats import cosignature, note
from bodycam.drivers.errors import BodycamError, ConfigError
from bodycam.drivers.files import read_bounded

MAX_POLICY = 64 * 1024
MAX_LINE = 1024
MAX_LOGS = 256
MAX_WITNESSES = 64
MAX_GROUPS = 64
MAX_MEMBERS = 64
MAX_URL = 512
NONE = "none"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}\Z")
_RESERVED = frozenset({NONE, "any", "all"})
_K = TypeVar("_K")


@dataclass(frozen=True, slots=True)
class Witness:
    """A witness line: the policy's own name for it, its cosigner key, and where it listens (optional)."""

    name: str
    cosigner: cosignature.Cosigner
    url: str | None


@dataclass(frozen=True, slots=True)
class Group:
    """``k`` of ``members`` (witness or earlier group names) must be satisfied."""

    name: str
    k: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    logs: tuple[note.Verifier, ...]
    witnesses: tuple[Witness, ...]
    groups: tuple[Group, ...]
    quorum: str  # a witness or group name, or "none": no cosignature is needed

    def origins(self) -> list[str]:
        """Each log's origin (its key name), once, in file order."""
        return list(dict.fromkeys(v.name for v in self.logs))

    def log_verifiers(self, origin: str) -> list[note.Verifier]:
        """The keys that may sign checkpoints of ``origin`` (more than one across a key rotation)."""
        return [v for v in self.logs if v.name == origin]

    def cosigners(self) -> list[cosignature.Cosigner]:
        return [w.cosigner for w in self.witnesses]

    def names_of(self, cosigner_names: Iterable[str]) -> set[str]:
        """The policy names of the witnesses whose cosigner key names are given."""
        wanted = set(cosigner_names)
        return {w.name for w in self.witnesses if w.cosigner.name in wanted}

    def satisfied(self, witnessed: Iterable[str]) -> bool:
        """Whether the witnesses named (policy names) meet the quorum. Groups refer only to names
        defined before them, so one pass in file order decides every group."""
        if self.quorum == NONE:
            return True
        met = {w.name for w in self.witnesses} & set(witnessed)
        for group in self.groups:
            if sum(1 for m in group.members if m in met) >= group.k:
                met.add(group.name)
        return self.quorum in met

    def witnessed(self, msg: bytes) -> set[str]:
        """Policy names of the witnesses whose cosignature on the checkpoint note ``msg`` verifies.
        Raises IntegrityError for a malformed note or a known witness's line that fails."""
        return self.names_of(cosignature.cosignatures(msg, self.cosigners()))


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.logs: list[note.Verifier] = []
        self.witnesses: list[Witness] = []
        self.groups: list[Group] = []
        self.quorum: str | None = None
        self.names: set[str] = set()
        self.line = 0

    def fail(self, what: str) -> ConfigError:
        return ConfigError(f"witness policy {self.source} line {self.line}: {what}")

    def define(self, name: str) -> None:
        if not _NAME.match(name) or name in _RESERVED:
            raise self.fail(f"{name[:64]!r} is not a usable name (letters, digits, . _ : / -, at most 64)")
        if name in self.names:
            raise self.fail(f"{name!r} is defined twice")
        self.names.add(name)

    def key(self, parse: Callable[[str], _K], vkey: str) -> _K:
        try:
            return parse(vkey)
        except BodycamError as err:
            raise self.fail(str(err)) from None

    def log(self, args: list[str]) -> None:
        if len(args) != 1:
            raise self.fail("a log line reads: log <verifier key>")
        if len(self.logs) >= MAX_LOGS:
            raise self.fail(f"more than {MAX_LOGS} log keys")
        verifier = self.key(note.parse_verifier_key, args[0])
        if verifier in self.logs:
            raise self.fail(f"log key {verifier.name} is listed twice")
        for w in self.witnesses:
            if _same_key(w.cosigner.key, verifier.key):
                raise self.fail(f"log key {verifier.name} is the key of witness {w.name}: a log cannot witness itself")
        self.logs.append(verifier)

    def witness(self, args: list[str]) -> None:
        if len(args) not in (2, 3):
            raise self.fail("a witness line reads: witness <name> <verifier key> [<url>]")
        if len(self.witnesses) >= MAX_WITNESSES:
            raise self.fail(f"more than {MAX_WITNESSES} witnesses")
        self.define(args[0])
        cosigner = self.key(cosignature.parse_verifier_key, args[1])
        if any(w.cosigner.name == cosigner.name for w in self.witnesses):
            raise self.fail(f"witness key {cosigner.name} is listed twice")
        for w in self.witnesses:
            if _same_key(w.cosigner.key, cosigner.key):
                raise self.fail(f"witness {args[0]} has the key of witness {w.name}: one key holder would count twice")
        for v in self.logs:
            if _same_key(v.key, cosigner.key):
                raise self.fail(f"witness {args[0]} has the key of log {v.name}: a log cannot witness itself")
        url = args[2] if len(args) == 3 else None
        if url is not None and (len(url) > MAX_URL or not url.startswith(("http://", "https://"))):
            raise self.fail("a witness URL starts with http:// or https:// and is at most 512 characters")
        self.witnesses.append(Witness(args[0], cosigner, url))

    def group(self, args: list[str]) -> None:
        if len(args) < 3:
            raise self.fail("a group line reads: group <name> <k|any|all> <member>...")
        if len(self.groups) >= MAX_GROUPS:
            raise self.fail(f"more than {MAX_GROUPS} groups")
        name, threshold, members = args[0], args[1], args[2:]
        if len(members) > MAX_MEMBERS or len(set(members)) != len(members):
            raise self.fail(f"a group has 1 to {MAX_MEMBERS} distinct members")
        for m in members:
            if m not in self.names:
                raise self.fail(f"group member {m[:64]!r} is not a witness or group defined above")
        k = {"any": 1, "all": len(members)}.get(threshold)
        if k is None:
            if not threshold.isascii() or not threshold.isdigit() or not 1 <= int(threshold[:4]) <= len(members):
                raise self.fail(f"a group's threshold is any, all or 1..{len(members)}")
            k = int(threshold)
        self.define(name)
        self.groups.append(Group(name, k, tuple(members)))

    def set_quorum(self, args: list[str]) -> None:
        if len(args) != 1:
            raise self.fail("a quorum line reads: quorum <witness or group name | none>")
        if self.quorum is not None:
            raise self.fail("a second quorum line")
        if args[0] != NONE and args[0] not in self.names:
            raise self.fail(f"quorum {args[0][:64]!r} is not a witness or group defined above")
        self.quorum = args[0]

    def finish(self) -> Policy:
        if self.quorum is None:
            if self.witnesses:
                raise ConfigError(
                    f"witness policy {self.source}: witnesses are listed but no quorum line says how many"
                )
            self.quorum = NONE
        return Policy(tuple(self.logs), tuple(self.witnesses), tuple(self.groups), self.quorum)


def _same_key(a: Ed25519PublicKey, b: Ed25519PublicKey) -> bool:
    """Whether two verifier keys are one Ed25519 key. A cosignature/v1 signature does not cover the
    cosigner's name, so a key listed under two witness names lets its one holder relabel a cosignature
    and count as both; and a witness holding a log's key is the log cosigning itself."""
    return a.public_bytes_raw() == b.public_bytes_raw()


def parse(text: str, source: str = "<policy>") -> Policy:
    """A policy from its text. Raises ConfigError naming the line and what is wrong."""
    if len(text.encode()) > MAX_POLICY:
        raise ConfigError(f"witness policy {source} is larger than {MAX_POLICY} bytes")
    p = _Parser(source)
    actions = {"log": p.log, "witness": p.witness, "group": p.group, "quorum": p.set_quorum}
    for p.line, raw in enumerate(text.split("\n"), 1):
        if len(raw) > MAX_LINE or any(ord(c) < 0x20 and c != "\t" for c in raw.rstrip("\r")):
            raise p.fail(f"longer than {MAX_LINE} characters or holds a control character")
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        action = actions.get(words[0])
        if action is None:
            raise p.fail(f"unknown keyword {words[0][:32]!r} (log, witness, group, quorum)")
        action(words[1:])
    return p.finish()


def load(path: Path) -> Policy:
    """Read and parse a policy file (at most :data:`MAX_POLICY` bytes). Raises ConfigError."""
    data = read_bounded(
        path, MAX_POLICY,
        unreadable=lambda err: ConfigError(f"witness policy {path}: {err.strerror or err}"),
        too_large=lambda: ConfigError(f"witness policy {path} is larger than {MAX_POLICY} bytes"),
    )  # fmt: skip
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"witness policy {path} is not UTF-8") from None
    return parse(text, str(path))


def check_origins(policy: Policy, origins: Sequence[str]) -> None:
    """ConfigError unless every origin in ``origins`` has a log key in the policy."""
    missing = [o for o in origins if not policy.log_verifiers(o)]
    if missing:
        raise ConfigError(f"the witness policy has no log line for {', '.join(missing[:3])}")
