"""verify --policy: the dock's log against what its witnesses cosigned (docs/auditing.md).

Why ask the witnesses and not only the bucket: whoever can delete the newest batches from the bucket can
delete the cosigned checkpoints kept beside them too. A witness keeps the latest checkpoint it cosigned
for each log in its own state, so a checkpoint it serves that is larger than the bucket's log proves
that entries were removed (``log_truncated``), with nothing recorded out of band by the auditor.

Checked for each dock of the policy: every cosigned checkpoint (the bucket's ``log/checkpoint.witnessed``
and ``log/witnessed/<size>``, and each witness's ``GET /checkpoint/<origin>``) carries a valid signature
by a ``log`` key of the policy and valid cosignatures; it signs a prefix of the tree the bucket's entries
rebuild (the log only grew, so successive checkpoints are consistent) or it is a truncation; the largest
size whose cosignatures (gathered across sources) meet the quorum is the witnessed size, and every entry
beyond it is named (``manifest_not_witnessed``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bodycam.agent.formats import note
from bodycam.agent.formats.witnesspolicy import Policy
from bodycam.agent.storage import docklog, witnessclient
from bodycam.drivers.errors import BodycamError

if TYPE_CHECKING:
    from bodycam.agent.storage.bucket import Bucket

MAX_WITNESSED = 1000  # cosigned checkpoints read from the bucket (the newest, by size)
MAX_MISNAMED = 100  # objects under witnessed/ not named by a size, named one by one (the rest counted)
FETCH_TIMEOUT = 10.0
_SIZE = re.compile(r"[1-9][0-9]{0,18}")
ORIGIN_PREFIX = "bodycam-sync/"


@dataclass(frozen=True, slots=True)
class Finding:
    problem: str
    message: str
    key: str | None = None
    batch: str | None = None


class SignedTree(Protocol):
    """The log the bucket's entries rebuilt, as these checks need it: its size and its root at each size
    a cosigned checkpoint names (:func:`sizes`). ``tlog.Tree`` is one; verify's one-pass rebuild keeps
    only those roots (agent/audit/logcheck.py)."""

    @property
    def size(self) -> int: ...

    def root(self, size: int) -> bytes: ...


@dataclass
class _Size:
    root: bytes
    witnesses: set[str] = field(default_factory=set)


def dock_of(origin: str) -> str | None:
    """The dock id a policy's log origin names (``bodycam-sync/<dock>``), None for other logs."""
    return origin[len(ORIGIN_PREFIX) :] if origin.startswith(ORIGIN_PREFIX) else None


class Asker:
    """The witnesses one verify run asks (``GET /checkpoint/<origin>``), once per dock of the policy: a
    witness that could not be reached is not asked again for the next docks, its first error standing
    for them. Each ask may cost :data:`FETCH_TIMEOUT`, so a witness that swallows connections cost a
    policy naming every dock of a force (thousands) that long per dock: hours of a verify held up."""

    def __init__(self) -> None:
        self.unreachable: dict[str, str] = {}  # witness URL -> the error that first answered for it

    def latest(self, url: str, origin: str) -> bytes | None:
        """The witness's latest cosigned checkpoint of ``origin``. Raises BodycamError."""
        earlier = self.unreachable.get(url)
        if earlier is not None:
            raise witnessclient.WitnessUnavailable(f"{earlier} (not asked again in this run)")
        try:
            return witnessclient.latest(url, origin, timeout=FETCH_TIMEOUT)
        except witnessclient.WitnessUnavailable as err:
            self.unreachable[url] = str(err)
            raise


def gather(
    bucket: Bucket, dock: str, policy: Policy, *, fetch: bool | Asker = True
) -> tuple[list[tuple[str, bytes]], list[Finding]]:
    """Cosigned checkpoints of ``dock``'s log: the bucket's, then each witness's (when ``fetch``; an
    :class:`Asker` shared by the docks of one run asks a witness that did not answer only once)."""
    prefix = docklog.log_prefix(dock)
    sources: list[tuple[str, bytes]] = []
    findings: list[Finding] = []
    keys = [f"{prefix}/{docklog.WITNESSED}"]
    sizes = []
    misnamed = 0
    for info in bucket.iter_objects(f"{prefix}/{docklog.WITNESSED_DIR}/"):
        name = info.key.rsplit("/", 1)[-1]
        if _SIZE.fullmatch(name) and info.key == f"{prefix}/{docklog.WITNESSED_DIR}/{name}":
            sizes.append(int(name))
            if len(sizes) > 2 * MAX_WITNESSED:
                sizes = sorted(sizes)[-MAX_WITNESSED:]
            continue
        misnamed += 1  # named up to MAX_MISNAMED: millions of them must not become as many findings
        if misnamed <= MAX_MISNAMED:
            findings.append(Finding("log_checkpoint_invalid", f"{info.key} is not named by a tree size", info.key))
    if misnamed > MAX_MISNAMED:
        more = misnamed - MAX_MISNAMED
        findings.append(
            Finding("log_checkpoint_invalid", f"{more} more objects under {prefix}/{docklog.WITNESSED_DIR}/ "
                    "are not named by a tree size")
        )  # fmt: skip
    keys += [f"{prefix}/{docklog.WITNESSED_DIR}/{n}" for n in sorted(sizes)[-MAX_WITNESSED:]]
    for key in keys:
        try:
            sources.append((key, bucket.get_bytes(key, max_size=note.MAX_NOTE)))
        except BodycamError as err:
            if bucket.head(key) is not None:
                findings.append(Finding("log_checkpoint_invalid", f"{key}: {err}", key))
    if fetch:
        asker = fetch if isinstance(fetch, Asker) else Asker()
        origin = docklog.origin(dock)
        for w in policy.witnesses:
            if w.url is None:
                continue
            try:
                served = asker.latest(w.url, origin)
            except BodycamError as err:
                findings.append(
                    Finding(
                        "witness_unreachable",
                        f"{err}: the truncation check of {origin} could not ask it; verify again when it answers",
                    )
                )
                continue
            if served is not None:
                sources.append((f"witness {w.name} ({w.url})", served))
    return sources, findings


def sizes(dock: str, policy: Policy, sources: Sequence[tuple[str, bytes]]) -> list[int]:
    """The tree sizes of the cosigned checkpoints :func:`check` will compare with the rebuilt tree."""
    origin = docklog.origin(dock)
    verifiers = policy.log_verifiers(origin)
    found: list[int] = []
    for _, data in sources:
        try:
            found.append(note.open_checkpoint(data, verifiers, origin=origin).size)
        except BodycamError:
            continue
    return found


def check(
    dock: str,
    policy: Policy,
    tree: SignedTree | None,
    sources: Sequence[tuple[str, bytes]],
    tail: Sequence[tuple[int, str]],
) -> list[Finding]:
    """Findings for ``dock``: ``tree`` is the log the bucket's entries rebuilt (None: the bucket has none),
    ``tail`` the (index, batch id) of its newest entries."""
    origin = docklog.origin(dock)
    size = 0 if tree is None else tree.size
    verifiers = policy.log_verifiers(origin)
    found: list[Finding] = []
    by_size: dict[int, _Size] = {}
    for where, data in sources:
        try:
            cp = note.open_checkpoint(data, verifiers, origin=origin)
            witnessed = policy.witnessed(data)
        except BodycamError as err:
            found.append(Finding("log_cosignature_invalid", f"{where}: {err}", _key(where)))
            continue
        names = ", ".join(sorted(witnessed)) or "no witness of the policy"
        if cp.size > size:
            found.append(
                Finding(
                    "log_truncated",
                    f"{where}: a checkpoint of {origin} cosigned by {names} has {cp.size} entries, the bucket's "
                    f"log only {size}: the newest {cp.size - size} batches were deleted from the bucket",
                    _key(where),
                )
            )
            continue
        if tree is None or (cp.size > 0 and tree.root(cp.size) != cp.root):
            found.append(
                Finding(
                    "log_fork",
                    f"{where}: a checkpoint of {origin} cosigned by {names} signs another tree of {cp.size} "
                    "entries than the bucket's log: the log was rewritten",
                    _key(where),
                )
            )
            continue
        by_size.setdefault(cp.size, _Size(cp.root)).witnesses.update(witnessed)
    if found:
        return found
    witnessed_size = max((n for n, s in by_size.items() if policy.satisfied(s.witnesses)), default=0)
    return _unwitnessed(origin, size, witnessed_size, tail)


def _unwitnessed(origin: str, size: int, witnessed: int, tail: Sequence[tuple[int, str]]) -> list[Finding]:
    if witnessed >= size:
        return []
    named = {i: b for i, b in tail if i >= witnessed}
    if len(named) == size - witnessed:
        return [
            Finding(
                "manifest_not_witnessed",
                f"batch {batch} (entry {i} of {origin}) is not under a checkpoint the policy's quorum cosigned "
                f"(witnessed size {witnessed}): a witness may be down; the dock submits again",
                batch=batch,
            )
            for i, batch in sorted(named.items())
        ]
    return [
        Finding(
            "manifest_not_witnessed",
            f"entries {witnessed} to {size - 1} of {origin} are not under a checkpoint the policy's quorum cosigned",
        )
    ]


def _key(where: str) -> str | None:
    return None if where.startswith("witness ") else where
