"""Fleet-wide agreements, exercise register and enrolments (issue 12 item 2): one source of truth in the
bucket every dock of the force already writes to, with a private cache on each dock for S3 outages.

Publishing (``agreement publish``, ``fleet publish``) puts controller-signed documents under
``_fleet/`` (agent/formats/fleet.py). Each dock, before a docking (at most every ``fleet.refresh_s``),
lists that prefix, fetches what it has not cached yet, checks each signature against the controller
keys of its config and copies what passes into ``STATE_DIR/fleet/`` (0700, files 0600 whatever the
umask). What it uses is what the cache holds, so a bucket that is down, or an object deleted or
replaced in it, changes nothing a dock already accepted: a revocation once seen stays seen, and a
register never goes back to an older version. Each refusal (unsigned, forged, malformed, over a
bound, naming a site) is one log line with a custody-safe reason (object names and codes only),
logged once per object.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bodycam.agent.config import Config
from bodycam.agent.formats import agreements as ag
from bodycam.agent.formats import fleet as fl
from bodycam.agent.storage.bucket import Bucket, ObjectExistsError
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal
from bodycam.drivers.errors import BodycamError, ConfigError, IntegrityError, ProtocolError, StorageError
from bodycam.drivers.files import read_bounded

LOG = logging.getLogger(__name__)

CACHE_DIR = "fleet"  # under state_dir
KEEP_REGISTERS = 2  # register versions kept in the cache (the newest is used)
MAX_REGISTER_TRIES = 4  # newer register versions fetched per refresh (a forged one does not block the next)
MAX_REMEMBERED = 1024  # refusals kept (shown by 'fleet show', not fetched again while unchanged)


# -- the private cache --------------------------------------------------------------------------


def private_cache(path: Path) -> Path:
    """Create ``path`` (and its ``agreements``/``register`` directories) 0700 whatever the umask; refuse
    one open to other users, as the state directory is (it tells which cameras are in which exercise)."""
    missing = [a for a in reversed(path.parents) if not a.exists()]  # created 0700 too, never with the umask's mode
    for d in (*missing, path, path / "agreements", path / "register"):
        try:
            d.mkdir(exist_ok=True, mode=0o700)
            os.chmod(d, 0o700, follow_symlinks=False)  # mkdir's mode is narrowed by the umask, never widened
        except OSError as err:
            raise ConfigError(f"cannot create the fleet cache {d}: {err.strerror or err}") from err
    return path


def _write_private(path: Path, data: bytes) -> None:
    """Write-then-rename a 0600 file (a crash leaves the old file or the new one, never half of one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    finally:
        os.close(fd)
    os.replace(tmp, path)


# -- what a dock sees ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetView:
    """The cache as a dock uses it: the agreements (as ``agreements.load_dir`` sees them), the newest
    valid register, what the bucket held that was refused (name -> reason), and whether the bucket
    could be read at the last refresh."""

    agreements: ag.Loaded = field(default_factory=ag.Loaded)
    register: fl.Register | None = None
    refused: tuple[tuple[str, str], ...] = ()
    bucket_error: str | None = None


@dataclass
class FleetSource:
    """One dock's link to ``_fleet/``: refreshes the cache from the bucket and reads it back."""

    cache: Path
    controller_lines: tuple[str, ...]
    refresh_s: float = 60.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last: float | None = None
    _refused: dict[str, str] = field(default_factory=dict)
    #: object name -> (its ETag, its signature's ETag) when refused after fetching: not fetched again
    #: until either changes (a forged 4 MiB register left in the bucket is read once, not every refresh)
    _bad: dict[str, tuple[str, str]] = field(default_factory=dict)
    _bucket_error: str | None = None
    _dir_cache: ag.DirCache = field(default_factory=ag.DirCache)
    _register: tuple[tuple[str, int, int], fl.Register | None] | None = None

    def trusted(self) -> list[Ed25519PublicKey]:
        return ag.controller_keys(self.controller_lines)

    def view(self, bucket: Bucket | None, *, now: float | None = None) -> FleetView:
        """Refresh from ``bucket`` when due (None: cache only), then what the cache holds."""
        private_cache(self.cache)
        clock = time.monotonic() if now is None else now
        with self._lock:
            if bucket is not None and (self._last is None or clock - self._last >= self.refresh_s):
                self._last = clock
                self._refresh(bucket)
            refused, error = tuple(sorted(self._refused.items())), self._bucket_error
            register = self._cached_register()
        # the cache holds what the listing brings (fl.MAX_LISTED objects), more than a local directory may
        loaded = self._dir_cache.load(self.cache / "agreements", self.controller_lines, max_files=fl.MAX_LISTED)
        return FleetView(loaded, register, refused, error)

    # -- refresh --------------------------------------------------------------------------------
    def _refresh(self, bucket: Bucket) -> None:
        trusted = self.trusted()
        try:
            self._pull_agreements(bucket, trusted)
            self._pull_register(bucket, trusted)
        except StorageError as err:  # the bucket is down: the cache stands in
            if self._bucket_error is None:
                LOG.warning("fleet: cannot read %s/ (%s); using the documents cached in %s", fl.PREFIX, err, self.cache)
            self._bucket_error = str(err)
            return
        if self._bucket_error is not None:
            LOG.warning("fleet: %s/ readable again", fl.PREFIX)
        self._bucket_error = None

    def _refuse(self, name: str, reason: str, stamp: tuple[str, str] | None = None) -> None:
        if self._refused.get(name) != reason:
            LOG.warning("fleet: refused %s: %s", name, reason)
        self._refused[name] = reason
        if stamp is not None:
            self._bad[name] = stamp
        for memo in (self._refused, self._bad):  # bounded, whatever a long-running daemon meets
            while len(memo) > MAX_REMEMBERED:
                del memo[next(iter(memo))]

    def _pull_agreements(self, bucket: Bucket, trusted: Sequence[Ed25519PublicKey]) -> None:
        target = self.cache / "agreements"
        names: dict[str, int] = {}
        sigs: set[str] = set()
        etags: dict[str, str] = {}
        for count, info in enumerate(bucket.iter_objects(f"{fl.AGREEMENTS}/"), 1):
            if count > fl.MAX_LISTED:
                self._refuse(fl.AGREEMENTS + "/", f"more than {fl.MAX_LISTED} objects; the rest were not read")
                break
            name = info.key.rsplit("/", 1)[-1]
            etags[name] = info.etag
            if name.endswith(ag.SIG_SUFFIX) and fl.AGREEMENT_NAME.fullmatch(name[: -len(ag.SIG_SUFFIX)]):
                sigs.add(name[: -len(ag.SIG_SUFFIX)])
            elif fl.AGREEMENT_NAME.fullmatch(name) and info.key == f"{fl.AGREEMENTS}/{name}":
                names[name] = info.size
            else:
                self._refuse(info.key[:120], "not an agreement or revocation name (ID.vN.json, ID.revoked.json)")
        for name, size in sorted(names.items()):
            if (target / name).exists() and (target / (name + ag.SIG_SUFFIX)).exists():
                continue  # objects are create-only: a cached name is the same document
            if name not in sigs:
                self._refuse(name, f"agreement {name} is not signed (no {name}{ag.SIG_SUFFIX}); refused")
                continue
            if size > ag.MAX_FILE_BYTES:
                self._refuse(name, f"{name} is {size} bytes, over the {ag.MAX_FILE_BYTES}-byte limit")
                continue
            stamp = (etags.get(name, ""), etags.get(name + ag.SIG_SUFFIX, ""))
            if self._bad.get(name) != stamp:
                self._pull_agreement(bucket, trusted, name, target, stamp)

    def _pull_agreement(
        self, bucket: Bucket, trusted: Sequence[Ed25519PublicKey], name: str, target: Path, stamp: tuple[str, str]
    ) -> None:
        try:
            raw = bucket.get_bytes(f"{fl.AGREEMENTS}/{name}", ag.MAX_FILE_BYTES)
            sig = bucket.get_bytes(f"{fl.AGREEMENTS}/{name}{ag.SIG_SUFFIX}", fl.MAX_SIGNATURE_BYTES)
            _check_agreement_file(raw, sig, name, trusted)
        except (IntegrityError, ProtocolError) as err:
            self._refuse(name, str(err), stamp)
            return
        _write_private(target / (name + ag.SIG_SUFFIX), sig)
        _write_private(target / name, raw)  # the document last: a crash leaves no unsigned one
        self._refused.pop(name, None)
        LOG.info("fleet: cached %s from the bucket", name)

    def _pull_register(self, bucket: Bucket, trusted: Sequence[Ed25519PublicKey]) -> None:
        have = self._cached_versions()
        newest = max(have, default=0)
        newer: list[int] = []
        sigs: set[int] = set()
        etags: dict[str, str] = {}
        for count, info in enumerate(bucket.iter_objects(f"{fl.REGISTER}/"), 1):
            if count > 4 * fl.MAX_LISTED:
                self._refuse(fl.REGISTER + "/", f"more than {4 * fl.MAX_LISTED} objects; the rest were not read")
                break
            name = info.key.rsplit("/", 1)[-1]
            signed = name.endswith(ag.SIG_SUFFIX)
            match = fl.REGISTER_NAME.fullmatch(name[: -len(ag.SIG_SUFFIX)] if signed else name)
            if match is None or info.key != f"{fl.REGISTER}/{name}":
                self._refuse(info.key[:120], "not a register name (v<10 digits>.json)")
                continue
            version = int(match.group(1))
            etags[name] = info.etag
            if signed:
                sigs.add(version)
            elif version > newest:
                newer.append(version)

        def stamp(version: int) -> tuple[str, str]:
            name = fl.register_name(version)
            return etags.get(name, ""), etags.get(name + ag.SIG_SUFFIX, "")

        # newest first, those refused before left out: forged versions do not hide the valid one below them
        fresh = [v for v in sorted(newer, reverse=True) if self._bad.get(fl.register_name(v)) != stamp(v)]
        for version in fresh[:MAX_REGISTER_TRIES]:
            name = fl.register_name(version)
            if version not in sigs:
                self._refuse(name, f"register {name} is not signed (no {name}{ag.SIG_SUFFIX}); refused")
                continue
            try:
                raw = bucket.get_bytes(fl.register_key(version), fl.MAX_REGISTER_BYTES)
                sig = bucket.get_bytes(fl.register_key(version) + ag.SIG_SUFFIX, fl.MAX_SIGNATURE_BYTES)
                fl.check_register(raw, sig.decode("utf-8", "replace"), name, trusted)
            except (IntegrityError, ProtocolError) as err:
                self._refuse(name, str(err), stamp(version))
                continue
            target = self.cache / "register"
            _write_private(target / (name + ag.SIG_SUFFIX), sig)
            _write_private(target / name, raw)
            LOG.info("fleet: register version %d cached from the bucket", version)
            for old in sorted(have)[: max(0, len(have) + 1 - KEEP_REGISTERS)]:
                for suffix in ("", ag.SIG_SUFFIX):
                    (target / (fl.register_name(old) + suffix)).unlink(missing_ok=True)
            return

    # -- the cache ------------------------------------------------------------------------------
    def _cached_versions(self) -> list[int]:
        found = []
        for p in (self.cache / "register").iterdir():
            m = fl.REGISTER_NAME.fullmatch(p.name)
            if m is not None:
                found.append(int(m.group(1)))
        return found

    def _cached_register(self) -> fl.Register | None:
        """The newest cached register whose signature still checks (the cache is re-read, not trusted;
        parsed again only when the newest file changed: name, size, mtime)."""
        versions = sorted(self._cached_versions(), reverse=True)
        stamp = ("", 0, 0)
        if versions:
            st = (self.cache / "register" / fl.register_name(versions[0])).stat()
            stamp = (fl.register_name(versions[0]), st.st_size, st.st_mtime_ns)
        if self._register is not None and self._register[0] == stamp:
            return self._register[1]
        found: fl.Register | None = None
        trusted = self.trusted()
        for version in versions:
            path = self.cache / "register" / fl.register_name(version)
            try:
                raw = _read(path, fl.MAX_REGISTER_BYTES)
                sig = _read(path.with_name(path.name + ag.SIG_SUFFIX), fl.MAX_SIGNATURE_BYTES)
                found = fl.check_register(raw, sig.decode("utf-8", "replace"), path.name, trusted)
                break
            except BodycamError as err:
                LOG.warning("fleet: cached %s refused: %s", path.name, err)
        self._register = (stamp, found)
        return found


def _read(path: Path, limit: int) -> bytes:
    return read_bounded(
        path, limit,
        unreadable=lambda err: StorageError(f"cannot read {path}: {err.strerror or err}"),
        too_large=lambda: ProtocolError(f"{path.name} is over the {limit}-byte limit"),
    )  # fmt: skip


def merge(*sets: ag.Loaded) -> ag.Loaded:
    """Several agreement sets as one: the latest version of each id, every revocation, every refusal."""
    latest: dict[str, ag.Agreement] = {}
    revoked: set[str] = set()
    refused: list[tuple[str, str]] = []
    for loaded in sets:
        for a in loaded.agreements:
            if a.id not in latest or a.version > latest[a.id].version:
                latest[a.id] = a
        revoked |= loaded.revoked
        refused.extend(loaded.refused)
    return ag.Loaded(tuple(latest[k] for k in sorted(latest)), frozenset(revoked), tuple(refused))


def dock_agreements(config: Config, source: FleetSource | None, bucket: Bucket | None) -> ag.Loaded | None:
    """The agreements a dock works under: its local ``agreements.dir`` and, with ``[fleet]``, the ones
    cached from the bucket (refreshed from ``bucket`` when due; None: the cache as it is)."""
    cfg = config.agreements
    if cfg is None:
        return None
    local = source_dir_cache(config).load(cfg.dir, cfg.controller_keys) if cfg.dir is not None else ag.Loaded()
    if source is None:
        return local
    view = source.view(bucket)
    fleet = ag.Loaded(view.agreements.agreements, view.agreements.revoked, view.agreements.refused + view.refused)
    return merge(local, fleet)


_LOCAL_DIRS: dict[Path, ag.DirCache] = {}


def source_dir_cache(config: Config) -> ag.DirCache:
    """One ``DirCache`` per agreements directory in this process (signatures are checked once per change)."""
    assert config.agreements is not None and config.agreements.dir is not None
    return _LOCAL_DIRS.setdefault(config.agreements.dir, ag.DirCache())


def note_fleet(journal: Journal, custody: CustodyLog, view: FleetView) -> None:
    """A custody ``fleet_loaded`` entry for each fleet document the dock uses for the first time: the
    register version, an agreement version, a revocation (object kind, name and SHA-256: no content).
    The journal's meta table remembers what was noted (``fleet:<name>``)."""
    docs: list[tuple[str, str, str]] = []
    if view.register is not None:
        docs.append(("register", fl.register_name(view.register.version), view.register.sha256))
    docs += [("agreement", ag.file_name(a), a.sha256) for a in view.agreements.agreements]
    docs += [("revocation", f"{i}{ag.REVOKED_SUFFIX}", "") for i in sorted(view.agreements.revoked)]
    noted = {str(r[0]): str(r[1]) for r in journal.query("SELECT key, value FROM meta WHERE key LIKE 'fleet:%'")}
    new = [d for d in docs if noted.get(f"fleet:{d[1]}") != d[2]]
    if not new:
        return
    with journal.transaction() as db:
        for kind, name, digest in new:
            custody.append_in(db, "fleet_loaded", object=kind, name=name, sha256=digest or None)
            db.execute(
                "INSERT INTO meta VALUES(?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (f"fleet:{name}", digest),
            )


def enrolled_lookup(config: Config, journal: Journal) -> Callable[[str], bytes | None]:
    """The device key this dock enrolled for a serial, else the one in the cached fleet register (the
    bucket is not read: for commands such as ``devices``, ``clock`` and ``allocate``)."""
    source = fleet_source(config)
    register = source.view(None).register if source is not None else None

    def lookup(serial: str) -> bytes | None:
        key = journal.enrolled_key(serial)
        return key if key is not None or register is None else register.device_key(serial)

    return lookup


def fleet_source(config: Config) -> FleetSource | None:
    if config.fleet is None:
        return None
    return FleetSource(config.fleet_cache, config.fleet.controller_keys, config.fleet.refresh_s)


# -- publishing (the controller's side) ----------------------------------------------------------


def personal_references(journal: Journal | None) -> list[str]:
    """The sites and officer ids a publishing dock knows: none may appear in what it publishes."""
    if journal is None:
        return []
    sites = [str(r[0]) for r in journal.query("SELECT DISTINCT site FROM exercises")]
    officers = [str(r[0]) for r in journal.query("SELECT DISTINCT officer FROM allocations")]
    return sites + officers


def _check_agreement_file(raw: bytes, sig: bytes, name: str, trusted: Sequence[Ed25519PublicKey]) -> None:
    """What a dock accepts and a publisher may put in _fleet/: a revocation or agreement signed by a
    controller key, named after its id and version, with no site scope (IntegrityError, ProtocolError)."""
    signature = sig.decode("utf-8", "replace")
    if name.endswith(ag.REVOKED_SUFFIX):
        ag.check_revocation(raw, signature, name, trusted)
    else:
        agreement = ag.check_signed(raw, signature, name, trusted)
        if name != ag.file_name(agreement):
            raise ProtocolError(f"agreement {name} must be named {ag.file_name(agreement)}")
        fl.check_publishable(agreement)


def publish_agreement(
    bucket: Bucket, path: Path, trusted: Sequence[Ed25519PublicKey], personal: Sequence[str]
) -> tuple[str, str]:
    """Put one signed agreement or revocation file and its ``.sig`` under ``_fleet/agreements/``, after
    checking it as a dock will; returns (name, 'published' | 'already published')."""
    name = path.name
    if fl.AGREEMENT_NAME.fullmatch(name) is None:
        raise ConfigError(f"{path}: not a signed agreement or revocation file (ID.vN.json, ID.revoked.json)")
    raw = _read_file(path, ag.MAX_FILE_BYTES)
    sig = _read_file(path.with_name(name + ag.SIG_SUFFIX), fl.MAX_SIGNATURE_BYTES)
    _check_agreement_file(raw, sig, name, trusted)
    fl.check_private(raw, f"agreement {name}", personal)
    key = f"{fl.AGREEMENTS}/{name}"
    state = "already published" if bucket.head(key) is not None else "published"
    for obj, data in ((key + ag.SIG_SUFFIX, sig), (key, raw)):  # the document last, as a dock expects
        try:
            bucket.put_object(obj, data)  # create-only; the same bytes again are no error
        except ObjectExistsError as err:
            raise IntegrityError(f"{obj} is already in the bucket with other content; raise the version") from err
    return name, state


def _read_file(path: Path, limit: int) -> bytes:
    if not path.is_file():
        raise ConfigError(f"{path} does not exist (a signed file needs its .sig beside it)")
    return _read(path, limit)


def publish_register(
    bucket: Bucket, journal: Journal, key: Ed25519PrivateKey, trusted: Sequence[Ed25519PublicKey], *, now: float
) -> fl.Register:
    """Sign this machine's exercise register and enrolments as the next register version and put it
    under ``_fleet/register/`` (create-only: two publishers at once cannot both take a version)."""
    if not any(k.public_bytes_raw() == key.public_key().public_bytes_raw() for k in trusted):
        raise ConfigError("--key is not one of the controller keys in [fleet]/[agreements] controller_keys")
    newest = 0
    for info in bucket.iter_objects(f"{fl.REGISTER}/"):
        m = fl.REGISTER_NAME.fullmatch(info.key.rsplit("/", 1)[-1])
        if m is not None:
            newest = max(newest, int(m.group(1)))
    exercises = _journal_exercises(journal)
    cameras = [
        fl.RegisteredCamera(str(r[0]), bytes.fromhex(str(r[1])), r[2])
        for r in journal.query("SELECT serial, device_key, model FROM cameras ORDER BY serial")
    ]
    raw = fl.build_register(newest + 1, now, exercises, cameras)
    fl.check_private(raw, "the register", personal_references(journal))
    name = fl.register_key(newest + 1)
    try:
        bucket.put_object(name + ag.SIG_SUFFIX, fl.sign_register(raw, key).encode())
        bucket.put_object(name, raw)
    except ObjectExistsError as err:
        raise StorageError(f"{name} was published by someone else meanwhile; run 'fleet publish' again") from err
    return fl.parse_register(raw)


def _journal_exercises(journal: Journal) -> list[fl.RegisteredExercise]:
    cams: dict[str, set[str]] = {}
    for row in journal.query("SELECT exercise_id, serial FROM exercise_cameras"):
        cams.setdefault(str(row[0]), set()).add(str(row[1]))
    return [
        fl.RegisteredExercise(str(r[0]), float(r[1]), float(r[2]), frozenset(cams.get(str(r[0]), ())))
        for r in journal.query("SELECT id, start_ts, end_ts FROM exercises ORDER BY id")
    ]
