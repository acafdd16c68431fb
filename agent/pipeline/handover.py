"""The dock's identity (``dock_id`` and ``bucket.url``): pinned in the journal, changed only by a handover.

The custody chain and the batch chain are kept per dock id in one bucket: renaming the dock in the
config would start a "new dock" whose chain begins at entry 33 (verify: ``batch_missing``), and a new
``bucket.url`` would leave the journal saying every recording is already uploaded (to the old
bucket). So the identity the journal was first used with is recorded, a config that differs is
refused, and ``bodycam-sync dock handover`` makes the change as a signed custody entry that verify
follows (docs/formats.md, "Dock handover").
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from bodycam.agent.config import Config
from bodycam.agent.storage.bucket import open_bucket
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal
from bodycam.drivers.errors import ConfigError

META_KEY = "identity"


@dataclass(frozen=True, slots=True)
class Identity:
    """What names a dock's chain: its dock_id and bucket (pinned in the journal), and the endpoint used."""

    dock_id: str
    bucket_url: str
    endpoint_url: str | None  # not pinned (a bucket may move behind a new endpoint); used to reach it

    @classmethod
    def of(cls, config: Config) -> Identity:
        return cls(config.dock_id, config.bucket_url, config.bucket_endpoint_url)


def pinned(journal: Journal) -> Identity | None:
    raw = journal.meta(META_KEY)
    if raw is None:
        return None
    doc = json.loads(raw)
    return Identity(str(doc["dock_id"]), str(doc["bucket_url"]), doc.get("endpoint_url"))


def _pin(journal: Journal, identity: Identity) -> None:
    journal.set_meta(META_KEY, json.dumps(dataclasses.asdict(identity), sort_keys=True))


def _used(journal: Journal) -> bool:
    """Something was recorded under the identity: a custody entry (enrolment, docking, ...)."""
    return bool(journal.query("SELECT 1 FROM custody LIMIT 1"))


def _last_custody_dock(journal: Journal) -> str | None:
    rows = journal.query("SELECT line FROM custody ORDER BY seq DESC LIMIT 1")
    return str(json.loads(rows[0][0]).get("dock")) if rows else None


def check_identity(journal: Journal, config: Config) -> None:
    """Pin the config's identity on first use; refuse a config whose dock_id or bucket.url differs.

    Until the journal holds a custody entry the identity may still change freely. A journal from an
    agent that did not pin it takes the dock id of its last custody entry. Raises ConfigError (exit 2).
    """
    current = Identity.of(config)
    known = pinned(journal)
    if known is None or not _used(journal):
        last = _last_custody_dock(journal) if known is None else None
        known = Identity(last, current.bucket_url, current.endpoint_url) if last else current
        _pin(journal, known)
    if known.dock_id != current.dock_id:
        raise ConfigError(
            f"config dock_id {current.dock_id!r} differs from {known.dock_id!r}, the dock this journal's custody "
            f'chain belongs to (a silent rename would break the audit trail); put dock_id = "{known.dock_id}" '
            f"back, or hand the chain over: bodycam-sync dock handover --dock-id {current.dock_id}"
        )
    if known.bucket_url != current.bucket_url:
        raise ConfigError(
            f"config bucket.url {current.bucket_url!r} differs from {known.bucket_url!r}, where this journal's "
            f"evidence went (ingest would call it already done and upload nothing); put it back, or move to the "
            f"new bucket: bodycam-sync dock handover --bucket {current.bucket_url}"
        )
    if known.endpoint_url != current.endpoint_url:
        _pin(journal, current)


@dataclass(frozen=True, slots=True)
class Handover:
    """A change of identity, from ``before`` to ``after``, and the batch that carries its custody entry."""

    before: Identity
    after: Identity
    batch_id: str | None  # the batch, sealed under the old identity, that carries the handover entry

    def to_json(self) -> dict[str, object]:
        return {
            "from": dataclasses.asdict(self.before),
            "to": dataclasses.asdict(self.after),
            "batch_id": self.batch_id,
        }


def handover(config: Config, *, dock_id: str | None, bucket_url: str | None) -> Handover:
    """Hand this journal's chain from its pinned identity to the config's, as a custody entry.

    ``dock_id``/``bucket_url`` are the operator's confirmation of what the config now says. Under the
    old identity, the open batch is sealed and published, then the ``dock_handover`` entry is sealed in
    a batch of its own, published to the old bucket and, on a bucket change, to the new one too, where
    it opens the chain. The next batch (new dock id) links to it. Raises ConfigError.
    """
    from bodycam.agent.pipeline.ingest import Agent

    journal = Journal(config.journal_path)
    try:
        before = pinned(journal) or Identity.of(config)
        after = Identity.of(config)
        _confirm(before, after, dock_id, bucket_url, config)
        busy = journal.query("SELECT COUNT(*) FROM recordings WHERE state IN ('uploading','completing')")[0][0]
        if busy:
            raise ConfigError(
                f"{busy} uploads under dock {before.dock_id} are unfinished; put the old dock_id and bucket.url "
                "back in the config, run 'bodycam-sync ingest --once' until it exits 0, then hand over"
            )
    finally:
        journal.close()
    old = Agent(
        dataclasses.replace(
            config, dock_id=before.dock_id, bucket_url=before.bucket_url, bucket_endpoint_url=before.endpoint_url
        ),
        check=False,
    )
    try:
        old.check_ready()
        # a handover does not wait for the custody-only schedule: seal now what the old identity
        # recorded, then the handover entry alone (seal_and_publish seals custody that is "due")
        due = time.time() + config.custody_only_interval_s + 1
        old.seal_and_publish(now=due)
        # an operator runs the handover: the entry names them (keyed pseudonym of the Unix user), as every
        # operator command's does, under the old dock id whose chain it closes
        CustodyLog.for_operator(old.journal, old.config).append(
            "dock_handover",
            to_dock=after.dock_id if after.dock_id != before.dock_id else None,
            from_bucket=before.bucket_url if after.bucket_url != before.bucket_url else None,
            to_bucket=after.bucket_url if after.bucket_url != before.bucket_url else None,
        )
        batch_id = old.seal_and_publish(now=due)
        if batch_id is None:
            raise ConfigError("the handover entry could not be sealed (an upload is in flight); run it again")
        if after.bucket_url != before.bucket_url:
            from bodycam.agent.pipeline.batch import publish

            publish(old.journal, open_bucket(after.bucket_url, after.endpoint_url), before.dock_id, batch_id)
        _pin(old.journal, after)
    finally:
        old.close()
    return Handover(before, after, batch_id)


def _confirm(before: Identity, after: Identity, dock_id: str | None, bucket_url: str | None, config: Config) -> None:
    where = f" in {config.source}" if config.source else ""
    if dock_id is None and bucket_url is None:
        raise ConfigError("name what changes: dock handover --dock-id NEW and/or --bucket URL")
    if dock_id is not None and dock_id != after.dock_id:
        raise ConfigError(f'set dock_id = "{dock_id}"{where} first; the handover takes the config as the new identity')
    if bucket_url is not None and bucket_url != after.bucket_url:
        raise ConfigError(
            f'set bucket.url = "{bucket_url}"{where} first; the handover takes the config as the new identity'
        )
    changes = {"--dock-id": before.dock_id != after.dock_id, "--bucket": before.bucket_url != after.bucket_url}
    given = {"--dock-id": dock_id is not None, "--bucket": bucket_url is not None}
    if not any(changes.values()):
        raise ConfigError(
            f"nothing to hand over: this journal already belongs to dock {before.dock_id} at {before.bucket_url}"
        )
    for flag, changed in changes.items():
        if changed != given[flag]:
            what = "changes" if changed else "does not change"
            raise ConfigError(
                f"the config {what} {flag.lstrip('-').replace('-', '_')}; confirm exactly what changes ({flag})"
            )
