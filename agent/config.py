"""Agent configuration: TOML with the keys of docs/cli.md, validated with errors that name the key.

Without a config file (the default path absent and none given), the agent runs on an embedded
default: a state directory under the user's data directory and a local-directory bucket in it,
which is what ``bodycam-sync demo`` uses. docs/configuration.md lists every key.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bodycam.drivers.errors import ConfigError
from bodycam.drivers.files import read_bounded
from bodycam.drivers.protocol.messages import MAX_RECORDINGS

DEFAULT_CONFIG = Path("/etc/bodycam/agent.toml")
FLEET_PREFIX = "_fleet"  # the bucket's directory of fleet documents (agent/formats/fleet.py): not a dock id
MAX_BAY_WORKERS = 64  # bay worker processes a dock may run at once (daemon.bay_workers)
#: entries of cameras.usbip (and cameras.serial) a dock takes: the daemon asks the USB/IP addresses for
#: their devices 16 at a time in the loop that feeds the watchdog (30 s), so at most two rounds of probes
MAX_CAMERA_ADDRESSES = 32
_AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}|age1pq1[02-9ac-hj-np-z]{1952}")
"""The shape of an age recipient (Bech32 alphabet, exact length); the key itself is checked where it is
used (agecrypt.check_recipients, before a camera is touched), a layer this one may not import."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """A party footage is encrypted to: its name (for the manifest) and its age recipient."""

    name: str
    age: str  # age1... X25519 or age1pq1... ML-KEM hybrid recipient


@dataclass(frozen=True, slots=True)
class DockAuth:
    """``[dock_auth]``: what makes this dock provable to a paired camera (docs/protocol.md, agent/pipeline/dockauth.py)."""

    certificate: Path  # the dock certificate the force's authority issued (authority issue)
    authority: str  # the force's dock authority, 64 hex digits (authority init prints it)
    key: Path | None = None  # the dock's proof key, OpenSSH Ed25519 (keys dock-auth); default under state_dir
    revocations: Path | None = None  # the authority's signed revocation list (authority revoke)


@dataclass(frozen=True, slots=True)
class AgreementsConfig:
    """``[agreements]``: with it, a recording leaves only under a signed data-sharing agreement that
    covers it, encrypted to that agreement's parties and the controller's archive (agent/formats/agreements.py)."""

    controller_keys: tuple[str, ...]  # the controller's OpenSSH Ed25519 public key lines that may sign
    dir: Path | None  # where signed agreements are kept on the dock (optional with [fleet]: then the bucket's)
    archive: str  # the controller's own archive age recipient: every disclosed recording is encrypted to it


@dataclass(frozen=True, slots=True)
class WitnessesConfig:
    """``[witnesses]``: after publishing, the dock asks the witnesses of this policy file (their URLs and
    keys are in it, docs/formats.md §11.2) to cosign its checkpoint; sealing never waits on them."""

    policy: Path
    timeout_s: float = 10.0  # one request to one witness
    retry_s: float = 60.0  # a witness that failed is asked again after this long


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """``[fleet]``: load the controller-signed agreements, exercise register and enrolments published
    under ``_fleet/`` in the bucket, caching them on the dock for outages (agent/pipeline/fleet.py)."""

    controller_keys: tuple[str, ...]  # default: [agreements] controller_keys
    refresh_s: float = 60.0  # the bucket is read at a docking at most this often
    cache_dir: Path | None = None  # default STATE_DIR/fleet


@dataclass(frozen=True, slots=True)
class Config:
    """The dock's configuration, parsed and checked once (``load``): every command and the daemon read it here."""

    dock_id: str
    state_dir: Path
    bucket_url: str
    bucket_endpoint_url: str | None = None
    signing_key: Path | None = None
    recipients: tuple[Recipient, ...] = ()
    usbip: tuple[str, ...] = ()
    serial: tuple[str, ...] = ()
    mass_storage_dir: Path | None = None
    #: recordings new to this dock that one docking of a camera may journal (agent/pipeline/intake.py)
    max_new_recordings_per_docking: int = 4096
    #: recordings (and stay reasons) this dock journals for one camera over its life (agent/pipeline/intake.py)
    max_recordings_per_camera: int = 262_144
    erase_after_upload: bool = False
    retention_days: int | None = None
    pseudonym_key: Path | None = None
    part_size: int = 8 * 1024 * 1024
    upload_workers: int = 4
    bandwidth_limit_mbps: float | None = None
    #: seal the open batch with what is verified once it is this old, moving uploads that are not
    #: progressing to a later batch (no camera can keep others' footage unsigned)
    batch_max_age_s: float = 900.0
    #: custody entries with no recording wait for a batch with recordings, at most this long
    custody_only_interval_s: float = 86400.0
    #: a bay whose session reports no progress for this long is given up (and its camera retried later)
    stall_timeout_s: float = 300.0
    #: the daemon runs the bays' sessions in worker processes, at most bay_workers (False: a thread each)
    bay_processes: bool = True
    #: with bay_processes, at most this many worker processes run the busy bays' sessions (0: the dock's cores)
    bay_workers: int = 0
    dock_auth: DockAuth | None = None
    agreements: AgreementsConfig | None = None
    witnesses: WitnessesConfig | None = None
    fleet: FleetConfig | None = None
    source: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.sqlite"

    @property
    def key_path(self) -> Path:
        return self.signing_key or self.state_dir / "keys" / "dock_ed25519"

    #: what a missing dock signing key tells the operator to do (``keys init`` writes ``key_path``)
    KEY_MISSING = "create it with 'bodycam-sync keys init' (it prints the dock's allowed_signers line for auditors)"

    @property
    def pseudonym_key_path(self) -> Path:
        return self.pseudonym_key or self.state_dir / "keys" / "pseudonym.key"

    @property
    def fleet_cache(self) -> Path:
        configured = self.fleet.cache_dir if self.fleet else None
        return configured or self.state_dir / "fleet"

    @property
    def dock_auth_key_path(self) -> Path:
        configured = self.dock_auth.key if self.dock_auth else None
        return configured or self.state_dir / "keys" / "dock_auth_ed25519"


#: config keys a SIGHUP cannot change (attribute -> key as written): they name where state lives and
#: which bucket the open uploads are in, or size what is built once at start (the upload pool and cap)
RESTART_ONLY = {
    "dock_id": "dock_id",
    "state_dir": "state_dir",
    "bucket_url": "bucket.url",
    "bucket_endpoint_url": "bucket.endpoint_url",
    "retention_days": "bucket.retention_days",
    "upload_workers": "upload.workers",
    "bandwidth_limit_mbps": "upload.bandwidth_limit_mbps",
    "bay_processes": "daemon.bay_processes",
}


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The config keys that differ between ``old`` and ``new`` but need a restart (empty: reloadable)."""
    return [key for attr, key in RESTART_ONLY.items() if getattr(old, attr) != getattr(new, attr)]


def default_state_dir() -> Path:
    env = os.environ.get("BODYCAM_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bodycam"


def embedded_default() -> Config:
    state = default_state_dir()
    return Config(
        dock_id=_hostname_dock_id(),
        state_dir=state,
        bucket_url=(state / "bucket").resolve().as_uri(),
    )


def _hostname_dock_id() -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"dock-{name}"[:64]


#: bytes of a config file read at most (a few KiB in practice; /dev/zero must not be read without end)
MAX_CONFIG_FILE = 1024 * 1024


def load(path: Path | None) -> Config:
    """Load ``path``; with ``None``, ``$BODYCAM_CONFIG`` or the default path, else the embedded default.

    Read as every small file a user hands us (drivers/files.py read_bounded): at most ``MAX_CONFIG_FILE``
    bytes, and a named pipe nothing writes to is refused, not waited on. ``read_text`` waited in open()
    for a writer, and at a SIGHUP that is the daemon loop that starts every bay and seals on schedule."""
    if path is None:
        env = os.environ.get("BODYCAM_CONFIG")
        if env:
            path = Path(env)
        elif DEFAULT_CONFIG.exists():
            path = DEFAULT_CONFIG
        else:
            return embedded_default()
    config_path = path

    def unreadable(err: OSError) -> ConfigError:
        if isinstance(err, FileNotFoundError):
            return ConfigError(f"config file {config_path} does not exist")
        return ConfigError(f"cannot read config file {config_path}: {err.strerror or err}")

    data = read_bounded(
        path, MAX_CONFIG_FILE, unreadable=unreadable,
        too_large=lambda: ConfigError(f"config file {config_path} is larger than {MAX_CONFIG_FILE} bytes"),
    )  # fmt: skip
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    return parse(raw, source=path)


def parse(raw: dict[str, object], *, source: Path | None = None) -> Config:
    where = f" in {source}" if source else ""
    known_top = {
        "dock_id",
        "state_dir",
        "bucket",
        "signing",
        "recipients",
        "cameras",
        "policy",
        "upload",
        "privacy",
        "batch",
        "daemon",
        "dock_auth",
        "agreements",
        "witnesses",
        "fleet",
    }
    for key in raw:
        if key not in known_top:
            raise ConfigError(f"unknown config key '{key}'{where}; known keys: {', '.join(sorted(known_top))}")
    _check_table_keys(raw, where)
    dock_id = _str(raw, "dock_id", where, default=_hostname_dock_id())
    if not dock_id or len(dock_id) > 64 or not all(c.isalnum() or c in "-_." for c in dock_id):
        raise ConfigError(f"config key 'dock_id'{where} must be 1-64 letters, digits, '-', '_' or '.'")
    if dock_id == FLEET_PREFIX:
        raise ConfigError(f"config key 'dock_id'{where}: {FLEET_PREFIX!r} is reserved for the fleet's documents")
    state_dir = Path(_str(raw, "state_dir", where, default=str(default_state_dir())))
    bucket = _table(raw, "bucket", where)
    bucket_url = _str(bucket, "url", where, prefix="bucket.", default=(state_dir / "bucket").resolve().as_uri())
    if not (bucket_url.startswith("s3://") or bucket_url.startswith("file://")):
        raise ConfigError(f"config key 'bucket.url'{where} must start with s3:// or file://, not {bucket_url!r}")
    endpoint = bucket.get("endpoint_url")
    if endpoint is not None and not isinstance(endpoint, str):
        raise ConfigError(f"config key 'bucket.endpoint_url'{where} must be a string")
    retention = bucket.get("retention_days")
    if retention is not None and (not isinstance(retention, int) or isinstance(retention, bool) or retention < 1):
        raise ConfigError(f"config key 'bucket.retention_days'{where} must be a positive integer")
    signing = _table(raw, "signing", where)
    signing_key = signing.get("key")
    if signing_key is not None and not isinstance(signing_key, str):
        raise ConfigError(f"config key 'signing.key'{where} must be a path string")
    recipients = []
    raw_recipients = raw.get("recipients", [])
    if not isinstance(raw_recipients, list):
        raise ConfigError(f"config key 'recipients'{where} must be an array of tables ([[recipients]])")
    for i, item in enumerate(raw_recipients):
        if not isinstance(item, dict):
            raise ConfigError(f"config key 'recipients[{i}]'{where} must be a table with name and age")
        name = _str(item, "name", where, prefix=f"recipients[{i}].")
        age = _str(item, "age", where, prefix=f"recipients[{i}].")
        if _AGE_RECIPIENT.fullmatch(age.strip().lower()) is None:
            raise ConfigError(
                f"config key 'recipients[{i}].age'{where} must be an age recipient: age1... (X25519, 62 "
                "characters) or age1pq1... (post-quantum, 1959 characters)"
            )
        recipients.append(Recipient(name, age))
    cameras = _table(raw, "cameras", where)
    usbip = _str_list(cameras, "usbip", where, "cameras.", most=MAX_CAMERA_ADDRESSES)
    serial = _str_list(cameras, "serial", where, "cameras.", most=MAX_CAMERA_ADDRESSES)
    mass = cameras.get("mass_storage_dir")
    per_docking = _count(cameras, "max_new_recordings_per_docking", 4096, where, 1, MAX_RECORDINGS)
    per_camera = _count(cameras, "max_recordings_per_camera", 262_144, where, 1, 2**31 - 1)
    policy = _table(raw, "policy", where)
    erase = policy.get("erase_after_upload", False)
    if not isinstance(erase, bool):
        raise ConfigError(f"config key 'policy.erase_after_upload'{where} must be true or false")
    upload = _table(raw, "upload", where)
    part_size = upload.get("part_size", 8 * 1024 * 1024)
    if not isinstance(part_size, int) or not 5 * 1024 * 1024 <= part_size <= 512 * 1024 * 1024:
        raise ConfigError(f"config key 'upload.part_size'{where} must be an integer between 5 MiB and 512 MiB")
    workers = upload.get("workers", 4)
    if not isinstance(workers, int) or not 1 <= workers <= 32:
        raise ConfigError(f"config key 'upload.workers'{where} must be an integer between 1 and 32")
    bandwidth = upload.get("bandwidth_limit_mbps")
    if bandwidth is not None and (not isinstance(bandwidth, int | float) or bandwidth <= 0):
        raise ConfigError(f"config key 'upload.bandwidth_limit_mbps'{where} must be a positive number")
    privacy = _table(raw, "privacy", where)
    pseudonym = privacy.get("pseudonym_key")
    batch = _table(raw, "batch", where)
    max_age = _seconds(batch, "max_age_s", 900.0, where, "batch.", minimum=0.0)
    custody_only = _seconds(batch, "custody_only_interval_s", 86400.0, where, "batch.", minimum=0.0)
    daemon = _table(raw, "daemon", where)
    stall = _seconds(daemon, "stall_timeout_s", 300.0, where, "daemon.", minimum=1.0)
    bay_processes = daemon.get("bay_processes", True)
    if not isinstance(bay_processes, bool):
        raise ConfigError(f"config key 'daemon.bay_processes'{where} must be true or false")
    bay_workers = daemon.get("bay_workers", 0)
    if not isinstance(bay_workers, int) or isinstance(bay_workers, bool) or not 0 <= bay_workers <= MAX_BAY_WORKERS:
        raise ConfigError(
            f"config key 'daemon.bay_workers'{where} must be an integer between 0 (one per core) and {MAX_BAY_WORKERS}"
        )
    dock_auth = _dock_auth(raw, where)
    agreements = _agreements(raw, where)
    witnesses = _witnesses(raw, where)
    fleet = _fleet(raw, where, agreements)
    if agreements is not None and agreements.dir is None and fleet is None:
        raise ConfigError(
            f"config key 'agreements.dir'{where} is required (or add [fleet] to load them from the bucket)"
        )
    return Config(
        dock_id=dock_id,
        state_dir=state_dir,
        bucket_url=bucket_url,
        bucket_endpoint_url=endpoint,
        signing_key=Path(signing_key) if signing_key else None,
        recipients=tuple(recipients),
        usbip=tuple(usbip),
        serial=tuple(serial),
        mass_storage_dir=Path(mass) if isinstance(mass, str) else None,
        max_new_recordings_per_docking=per_docking,
        max_recordings_per_camera=per_camera,
        erase_after_upload=erase,
        retention_days=retention,
        pseudonym_key=Path(pseudonym) if isinstance(pseudonym, str) else None,
        part_size=part_size,
        upload_workers=workers,
        bandwidth_limit_mbps=float(bandwidth) if bandwidth is not None else None,
        batch_max_age_s=max_age,
        custody_only_interval_s=custody_only,
        stall_timeout_s=stall,
        bay_processes=bay_processes,
        bay_workers=bay_workers,
        dock_auth=dock_auth,
        agreements=agreements,
        witnesses=witnesses,
        fleet=fleet,
        source=source,
    )


#: the keys each table may hold: a misspelt key ("erase_after_uplaod") must not silently fall back to a default
TABLE_KEYS: dict[str, frozenset[str]] = {
    "bucket": frozenset({"url", "endpoint_url", "retention_days"}),
    "signing": frozenset({"key"}),
    "recipients": frozenset({"name", "age"}),
    "cameras": frozenset(
        {"usbip", "serial", "mass_storage_dir", "max_new_recordings_per_docking", "max_recordings_per_camera"}
    ),
    "policy": frozenset({"erase_after_upload"}),
    "upload": frozenset({"part_size", "workers", "bandwidth_limit_mbps"}),
    "privacy": frozenset({"pseudonym_key"}),
    "batch": frozenset({"max_age_s", "custody_only_interval_s"}),
    "daemon": frozenset({"stall_timeout_s", "bay_processes", "bay_workers"}),
    "dock_auth": frozenset({"certificate", "authority", "key", "revocations"}),
    "agreements": frozenset({"controller_keys", "dir", "archive"}),
    "witnesses": frozenset({"policy", "timeout_s", "retry_s"}),
    "fleet": frozenset({"controller_keys", "refresh_s", "cache_dir"}),
}


def _witnesses(raw: dict[str, object], where: str) -> WitnessesConfig | None:
    if "witnesses" not in raw:
        return None
    table = _table(raw, "witnesses", where)
    timeout = _seconds(table, "timeout_s", 10.0, where, "witnesses.", minimum=0.1)
    if timeout > 300:
        raise ConfigError(f"config key 'witnesses.timeout_s'{where} must be a number of seconds from 0.1 to 300")
    return WitnessesConfig(
        policy=Path(_str(table, "policy", where, prefix="witnesses.")),
        timeout_s=timeout,
        retry_s=_seconds(table, "retry_s", 60.0, where, "witnesses.", minimum=1.0),
    )


def _agreements(raw: dict[str, object], where: str) -> AgreementsConfig | None:
    if "agreements" not in raw:
        return None
    table = _table(raw, "agreements", where)
    keys = _str_list(table, "controller_keys", where, "agreements.")
    if not 1 <= len(keys) <= 16 or any(len(k) > 1000 for k in keys):
        raise ConfigError(
            f"config key 'agreements.controller_keys'{where} must list 1 to 16 'ssh-ed25519 AAAA...' public key lines"
        )
    archive = _str(table, "archive", where, prefix="agreements.").strip()
    if _AGE_RECIPIENT.fullmatch(archive.lower()) is None:
        raise ConfigError(
            f"config key 'agreements.archive'{where} must be the controller's age recipient (age1... or age1pq1...)"
        )
    directory = table.get("dir")
    if directory is not None and not isinstance(directory, str):
        raise ConfigError(f"config key 'agreements.dir'{where} must be a path string")
    return AgreementsConfig(controller_keys=tuple(keys), dir=Path(directory) if directory else None, archive=archive)


def _fleet(raw: dict[str, object], where: str, agreements: AgreementsConfig | None) -> FleetConfig | None:
    if "fleet" not in raw:
        return None
    table = _table(raw, "fleet", where)
    keys = _str_list(table, "controller_keys", where, "fleet.") or list(
        agreements.controller_keys if agreements else []
    )
    if not 1 <= len(keys) <= 16 or any(len(k) > 1000 for k in keys):
        raise ConfigError(
            f"config key 'fleet.controller_keys'{where} must list 1 to 16 'ssh-ed25519 AAAA...' public key lines "
            "(or set [agreements] controller_keys)"
        )
    cache = table.get("cache_dir")
    if cache is not None and not isinstance(cache, str):
        raise ConfigError(f"config key 'fleet.cache_dir'{where} must be a path string")
    refresh = _seconds(table, "refresh_s", 60.0, where, "fleet.", minimum=0.0)
    return FleetConfig(tuple(keys), refresh, Path(cache) if cache else None)


def _seconds(table: dict[str, object], key: str, default: float, where: str, prefix: str, *, minimum: float) -> float:
    """A duration in seconds, bounded to [minimum, 30 days] (a config cannot make the agent wait forever)."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not minimum <= value <= 30 * 86400:
        raise ConfigError(f"config key '{prefix}{key}'{where} must be a number of seconds from {minimum:g} to 2592000")
    return float(value)


def _count(table: dict[str, object], key: str, default: int, where: str, low: int, high: int) -> int:
    """An integer of ``[cameras]`` within [low, high]."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"config key 'cameras.{key}'{where} must be an integer from {low} to {high}")
    return value


def _check_table_keys(raw: dict[str, object], where: str) -> None:
    for table, known in TABLE_KEYS.items():
        value = raw.get(table)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, dict):
                continue  # the table's own check names the wrong type
            for key in item:
                if key not in known:
                    raise ConfigError(
                        f"unknown config key '{table}.{key}'{where}; known keys in [{table}]: {', '.join(sorted(known))}"
                    )


def _dock_auth(raw: dict[str, object], where: str) -> DockAuth | None:
    if "dock_auth" not in raw:
        return None
    table = _table(raw, "dock_auth", where)
    known = {"certificate", "authority", "key", "revocations"}
    for name in table:
        if name not in known:
            raise ConfigError(f"unknown config key 'dock_auth.{name}'{where}; known keys: {', '.join(sorted(known))}")
    authority = _str(table, "authority", where, prefix="dock_auth.")
    if len(authority) != 64 or any(c not in "0123456789abcdefABCDEF" for c in authority):
        raise ConfigError(f"config key 'dock_auth.authority'{where} must be 64 hex digits ('authority init' prints it)")
    key = _optional_path(table, "key", where, "dock_auth.")
    revocations = _optional_path(table, "revocations", where, "dock_auth.")
    return DockAuth(
        certificate=Path(_str(table, "certificate", where, prefix="dock_auth.")),
        authority=authority.lower(),
        key=key,
        revocations=revocations,
    )


def _optional_path(raw: dict[str, object], key: str, where: str, prefix: str) -> Path | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"config key '{prefix}{key}'{where} must be a path string")
    return Path(value) if value else None


def _table(raw: dict[str, object], key: str, where: str) -> dict[str, object]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config key '{key}'{where} must be a table ([{key}])")
    return value


def _str(raw: dict[str, object], key: str, where: str, *, prefix: str = "", default: str | None = None) -> str:
    value = raw.get(key, default)
    if value is None:
        raise ConfigError(f"config key '{prefix}{key}'{where} is required")
    if not isinstance(value, str):
        raise ConfigError(f"config key '{prefix}{key}'{where} must be a string")
    return value


def _str_list(raw: dict[str, object], key: str, where: str, prefix: str, *, most: int | None = None) -> list[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config key '{prefix}{key}'{where} must be a list of strings")
    if most is not None and len(value) > most:
        raise ConfigError(f"config key '{prefix}{key}'{where} lists {len(value)} entries; a dock takes at most {most}")
    return [str(v) for v in value]
