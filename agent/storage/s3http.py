"""S3 requests without botocore: SigV4 signing, the credentials operators use, and a kept-alive HTTP/1.1
connection pool over http.client (issue 14: ``ingest --once`` into S3 within 2x the cryptographic floor).

botocore cost every ``ingest --once`` about 0.3 CPU s before its first request (importing it, loading the
S3 model, building a client) and each 8 MiB part about 2.3 ms of CPU in its request machinery, urllib3
and http.client. The calls an ingest makes (list uploads, start, the parts, complete, head, put) and those
of verify, receive, proof and retention (listings of objects, versions and parts, reads, aborts, deletes)
are a handful of plain requests, so :class:`S3Http` makes them itself: each is signed here
(:func:`authorization`, checked against AWS's published SigV4 test vectors, tests/test_s3http.py), sent on
a connection kept alive between requests, a part body written with one ``sendall`` of the caller's
memoryview. Listings are read with bounds by agent/storage/s3xml.py; the bucket turns refusals into its
errors and retries what botocore's ``standard`` mode retries (agent/storage/bucket.py ``S3Bucket._exchange``).

It takes only what it can do exactly as botocore would, and answers None otherwise, so the caller keeps
that bucket (or that request) on botocore:

* credentials (:func:`static_credentials`): ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and a session
  token) from the environment, which is where ``/etc/bodycam/environment`` puts them under systemd, or the
  static keys of the shared credentials or config file's profile (``AWS_PROFILE``). A profile that
  assumes a role, runs a process or signs in with SSO, web identity, a container or instance role: None
  (botocore resolves and refreshes those);
* addressing (:func:`bucket_base`): path style on ``bucket.endpoint_url`` as the client is configured, or
  AWS's virtual-hosted ``https://BUCKET.s3.REGION.amazonaws.com/`` (TLS checked against ``AWS_CA_BUNDLE``
  when set, else the system's CAs); an endpoint set by environment or profile, FIPS or dual-stack
  endpoints, a proxy, a profile's CA bundle: None;
* a redirect from AWS (to the bucket's region): the caller sends that request again through botocore;
  from an endpoint given by URL it is refused (botocore would read the answer without s3xml's bounds).
  A part PUT or an object GET answered with anything but a 200 goes to botocore (s3put.py, s3get.py).

Every answer has a deadline as a whole, not only each socket read (:class:`Alarm`): its status line and
headers within the read timeout of the request, plus the request body's size at :data:`MIN_RATE`; its body
at :data:`MIN_RATE` at least after that. The socket timeout alone let an endpoint sending a byte every
few seconds hold a verify, a receive or a dock's upload for as long as it liked (a 1 MiB object read for
weeks). Past it the socket is shut down and the request fails with :class:`AnswerTimeout`, which the
bucket reports as one line naming the key, and never hands to botocore (whose reads have no such deadline).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import hmac
import http.client
import itertools
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import quote, urlsplit

from bodycam.agent.storage.s3wire import Response, read_response, request_bytes

#: the SHA-256 of an empty payload, and the payload hash of a body covered by its own checksum header
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
#: the most of an answer's body read back for a request that is not a GET of an object (an S3 answer is a
#: few hundred bytes, a listing of 1,000 uploads some 300 KB): past it the answer is not taken
MAX_BODY: Final = 4 * 1024 * 1024
#: idle connections kept per bucket (the upload workers use one each)
MAX_IDLE: Final = 8
#: the least rate (bytes a second) a request's body is taken and an answer's body sent at: past the read
#: timeout plus size / MIN_RATE an exchange is given up (:class:`Alarm`). A dock's slowest uplink still
#: moves several times this; an endpoint that drips bytes does not hold its reader for longer
MIN_RATE: Final = 64 * 1024
_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_A = TypeVar("_A")
#: a region name AWS's commercial partition serves at s3.REGION.amazonaws.com
_AWS_REGION: Final = re.compile(r"(us|eu|ap|ca|sa|me|af|il|mx)-[a-z]+-[0-9]{1,2}")
#: a bucket name that can be a DNS label of s3.REGION.amazonaws.com (no dots: TLS wildcard certificates)
_VIRTUAL_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
#: set, these make botocore reach S3 another way than the one built here (endpoint, proxy, TLS, routing)
_BOTOCORE_ONLY_ENV: Final = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
#: profile settings under which botocore finds credentials some other way than static keys
_NOT_STATIC: Final = (
    "role_arn",
    "credential_source",
    "credential_process",
    "web_identity_token_file",
    "sso_session",
    "sso_start_url",
    "sso_account_id",
    "login_session",
)
#: profile settings that change where or how botocore reaches S3
_ROUTING: Final = ("endpoint_url", "services", "ca_bundle", "use_fips_endpoint", "use_dualstack_endpoint", "s3")


# -- signing ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    """Static keys: never refreshed, so never held past what the operator configured."""

    access_key: str
    secret_key: str = ""
    token: str | None = None

    def __repr__(self) -> str:  # never the secret in a log line or a traceback
        return f"Credentials(access_key={self.access_key!r})"


def uri_encode(text: str, safe: str = "") -> str:
    """RFC 3986 percent-encoding as SigV4 wants it: every byte but ``A-Z a-z 0-9 - _ . ~`` (and ``safe``)."""
    return quote(text, safe=safe + "~")


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    """``k=v`` pairs, each side encoded, sorted by encoded key then value, joined by ``&``."""
    return "&".join(f"{k}={v}" for k, v in sorted((uri_encode(k), uri_encode(v)) for k, v in query))


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.digest(key, text.encode(), "sha256")


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """SigV4's key for one day, region and service."""
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def authorization(
    credentials: Credentials,
    region: str,
    service: str,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    payload_hash: str,
    key: bytes | None = None,
) -> str:
    """The ``Authorization`` header of a request signed with AWS Signature Version 4.

    ``path`` is already URI-encoded (S3 signs it as sent: no second encoding, no normalisation);
    ``headers`` are every header signed, ``host`` and ``x-amz-date`` among them; ``key`` is
    :func:`signing_key` for the request's day, when the caller keeps it."""
    signed = sorted((name.lower(), " ".join(value.split())) for name, value in headers.items())
    names = ";".join(name for name, _ in signed)
    canonical = "\n".join(
        [method, path, canonical_query(query), *(f"{n}:{v}" for n, v in signed), "", names, payload_hash]
    )
    amz_date = next(v for n, v in signed if n == "x-amz-date")
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = f"{_ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = key or signing_key(credentials.secret_key, amz_date[:8], region, service)
    signature = hmac.new(key, to_sign.encode(), "sha256").hexdigest()
    return f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={names}, Signature={signature}"


# -- where credentials, region and endpoint come from ---------------------------------------------------
def _profile_name(env: Mapping[str, str]) -> str | None:
    names = {env[v] for v in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE") if env.get(v)}
    if len(names) > 1:
        return None  # botocore's precedence between the two is its own: leave it to botocore
    return names.pop() if names else "default"


def _section(path: str, name: str) -> dict[str, str] | None:
    """One section of an AWS INI file as botocore reads it; {} when the file or section is absent, None
    when the file cannot be read or parsed (botocore then reports it)."""
    file = Path(os.path.expanduser(path))
    try:
        text = file.read_text(encoding="utf-8") if file.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return None
    if not text:
        return {}  # no file (a dock with its keys in the environment): nothing to parse
    import configparser  # only for a profile's files

    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    return {k: v.strip() for k, v in parser.items(name)} if parser.has_section(name) else {}


def _profile(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]] | None:
    """The shared config file's and credentials file's sections of the active profile."""
    name = _profile_name(env)
    if name is None:
        return None
    config_path = env.get("AWS_CONFIG_FILE") or "~/.aws/config"
    config = _section(config_path, f"profile {name}")
    if config == {} and name == "default":
        config = _section(config_path, "default")
    creds = _section(env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials", name)
    if config is None or creds is None:
        return None
    return config, creds


def static_credentials(env: Mapping[str, str]) -> Credentials | None:
    """The static keys botocore's chain would find first, or None when it would find something else (a
    role, a process, SSO, web identity, a container or instance role, a partial pair, nothing)."""
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key or secret:
        if not (key and secret):
            return None  # botocore names the missing half
        return Credentials(key, secret, env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN") or None)
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE") or env.get("AWS_ROLE_ARN"):
        return None
    found = _profile(env)
    if found is None:
        return None
    config, creds = found
    if any(config.get(k) for k in _NOT_STATIC) or creds.get("credential_process"):
        return None
    for source in (creds, config):  # botocore: the credentials file before the config file
        key, secret = source.get("aws_access_key_id"), source.get("aws_secret_access_key")
        if key and secret:
            return Credentials(key, secret, source.get("aws_session_token") or None)
        if key or secret:
            return None
    return None


def region_of(env: Mapping[str, str]) -> str | None:
    """``AWS_DEFAULT_REGION``, else the profile's ``region`` (botocore's order)."""
    if env.get("AWS_DEFAULT_REGION"):
        return env["AWS_DEFAULT_REGION"]
    found = _profile(env)
    return found[0].get("region") or None if found else None


def bucket_base(bucket: str, endpoint_url: str | None, region: str | None, env: Mapping[str, str]) -> str | None:
    """The URL of the bucket's keys as the agent's botocore client builds it (path style on an endpoint,
    virtual-hosted on AWS), or None where botocore would build another."""
    if any(env.get(v) for v in _BOTOCORE_ONLY_ENV if not (endpoint_url and v.startswith("AWS_ENDPOINT_URL"))):
        return None  # an explicit bucket.endpoint_url wins over AWS_ENDPOINT_URL*, as in botocore
    found = _profile(env)
    if found is None or any(found[0].get(k) for k in _ROUTING if not (endpoint_url and k == "endpoint_url")):
        return None
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            return None
        if parts.query or parts.fragment or parts.username or parts.password:
            return None
        return f"{parts.scheme}://{parts.netloc}/{bucket}/"
    if region is None or not _AWS_REGION.fullmatch(region) or not _VIRTUAL_BUCKET.fullmatch(bucket):
        return None
    return f"https://{bucket}.s3.{region}.amazonaws.com/"


def botocore_free(env: Mapping[str, str]) -> bool:
    """Whether a bucket opened under ``env`` would sign its requests itself, as far as the environment
    says (static keys, nothing that routes S3 through botocore; the bucket's endpoint is the config's):
    the daemon's forkserver then does not preload botocore (agent/storage/bucket.py ``preload_s3``)."""
    routed = any(env.get(v) for v in _BOTOCORE_ONLY_ENV if not v.startswith("AWS_ENDPOINT_URL"))
    return static_credentials(env) is not None and not routed


# -- deadlines ----------------------------------------------------------------------------------------
class AnswerTimeout(TimeoutError):
    """An answer (or the request before it) not through by its deadline: the socket was shut down. An
    OSError, so every reader that handles a dropped connection handles it; the bucket names the key."""


class Alarm:
    """The deadline of one exchange on one socket: at ``deadline`` (time.monotonic) the socket is shut
    down, which ends a read blocked on it, however the endpoint drips its bytes. :meth:`disarm` once the
    answer is read says whether it came too late (then the connection must not be reused)."""

    __slots__ = ("_guard", "_sock", "deadline", "done", "fired", "seconds")

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock: socket.socket | None = sock
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.done = self.fired = False
        self._guard = threading.Lock()

    def fire(self) -> None:
        with self._guard:
            sock = self._sock
            if self.done or sock is None:
                return
            self.fired = True
        with contextlib.suppress(OSError):  # the fd's own shutdown: an SSLSocket's would drop its state
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def disarm(self) -> bool:
        """No more alarm; True when it had gone off."""
        with self._guard:
            self.done = True
            self._sock = None  # a disarmed alarm waiting in the heap keeps no socket
            return self.fired

    def timeout(self, what: str) -> AnswerTimeout:
        return AnswerTimeout(
            f"{what} did not come within its deadline ({self.seconds:.0f} s: the read timeout plus the size "
            f"at {MIN_RATE // 1024} KiB/s)"
        )


class _Watchdog:
    """One thread a process that fires each :class:`Alarm` at its deadline: a heap of deadlines, so arming
    and disarming cost a lock and no thread (verify makes hundreds of reads a second)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Alarm]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._pid = 0
        self._compact_at = 256

    def arm(self, sock: socket.socket, seconds: float) -> Alarm:
        alarm = Alarm(sock, seconds)
        with self._cond:
            if self._pid != os.getpid():  # first use, or a forked child (a bay worker): its own thread
                self._pid = os.getpid()
                self._heap = []
                threading.Thread(target=self._run, name="s3-deadlines", daemon=True).start()
            if len(self._heap) > self._compact_at:  # disarmed alarms wait for their deadline: drop them
                self._heap = [e for e in self._heap if not e[2].done]
                heapq.heapify(self._heap)
                self._compact_at = max(256, 2 * len(self._heap))  # amortised: a scan per that many arms
            heapq.heappush(self._heap, (alarm.deadline, next(self._seq), alarm))
            if self._heap[0][2] is alarm:
                self._cond.notify()
        return alarm

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    heapq.heappop(self._heap)[2].fire()
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_WATCHDOG: Final = _Watchdog()


def arm(sock: socket.socket, seconds: float) -> Alarm:
    """An :class:`Alarm` that shuts ``sock`` down ``seconds`` from now unless disarmed first."""
    return _WATCHDOG.arm(sock, seconds)


# -- requests -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One S3 request: the method, the key (None: the bucket itself), the query, the headers to sign and
    send, the body, and ``payload``, the body's SHA-256 (hex) to sign: by default that of a ``bytes`` body,
    and ``UNSIGNED-PAYLOAD`` for a memoryview (a part, covered by its signed checksum header)."""

    method: str
    full_key: str | None
    query: Sequence[tuple[str, str]] = ()
    headers: Mapping[str, str] | None = None
    body: bytes | memoryview | None = None
    payload: str | None = None


@dataclass
class Answer:
    """An S3 answer: status, headers (lower-case names) and body (at most ``limit`` bytes read; ``whole``
    False when there was more, and then the body is dropped)."""

    status: int
    headers: dict[str, str]
    body: bytes
    whole: bool = True


class S3Http:
    """Signed requests to one bucket on a pool of kept-alive connections: shared by every request the
    bucket makes (its parts, reads and the few calls of an ingest). Thread-safe: a connection serves one
    request at a time and goes back to the pool only once its answer was read whole."""

    def __init__(
        self,
        base: str,
        credentials: Credentials | None,
        region: str,
        connect_timeout: float,
        read_timeout: float,
        ca_bundle: str | None = None,
    ) -> None:
        """``credentials`` None: not static; :meth:`credentials_from` then hands over botocore's.
        ``ca_bundle``: the CA certificates an https endpoint is checked against (``AWS_CA_BUNDLE``; by
        default the system's)."""
        parts = urlsplit(base)
        assert parts.hostname is not None
        self.base = base
        self.region = region
        #: whether the credentials were found here (else botocore's chain resolves them: credentials_from)
        self.static = credentials is not None
        self._credentials: Callable[[], Credentials] | None = (lambda: credentials) if credentials else None
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._host_header = parts.netloc
        self._path = parts.path  # "/BUCKET/" or "/"
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ca_bundle = ca_bundle
        self._tls: ssl.SSLContext | None = None
        self._idle: list[http.client.HTTPConnection] = []
        self._guard = threading.Lock()
        self._key: tuple[str, str, bytes] = ("", "", b"")

    def credentials_from(self, client: object) -> None:
        """Sign with the credentials of a botocore client (a role, SSO, an instance role...), asked before
        each request so that botocore refreshes them as they expire."""
        resolved = getattr(getattr(client, "_request_signer", None), "_credentials", None)

        def frozen() -> Credentials:
            if resolved is None:
                raise ValueError("no credentials")
            try:
                f = resolved.get_frozen_credentials()
            except Exception as err:  # botocore's refresh failed: botocore's own call says why
                raise ValueError(f"credentials: {err}") from err
            return Credentials(f.access_key, f.secret_key, f.token or None)

        self._credentials = frozen

    @classmethod
    def for_bucket(
        cls,
        bucket: str,
        endpoint_url: str | None,
        connect_timeout: float,
        read_timeout: float,
        env: Mapping[str, str] | None = None,
    ) -> S3Http | None:
        """The requests of ``bucket`` as the agent's botocore client would send them, or None where this
        module does not know how (see the module's docstring); without static credentials, the caller
        hands over its client's (:meth:`credentials_from`)."""
        env = os.environ if env is None else env
        credentials = static_credentials(env)
        region = region_of(env) or ("us-east-1" if endpoint_url else None)
        base = bucket_base(bucket, endpoint_url, region, env)
        if base is None or region is None:
            return None
        return cls(base, credentials, region, connect_timeout, read_timeout, env.get("AWS_CA_BUNDLE") or None)

    def path(self, full_key: str | None) -> str:
        """The URI-encoded path of a key (or of the bucket, None), as sent and as signed."""
        return self._path + uri_encode(full_key, safe="/") if full_key is not None else self._path

    def can_sign(self) -> bool:
        """Whether there are credentials to sign with now (static keys, or a botocore chain that resolved
        some): without, the caller leaves the request to botocore, which names the problem."""
        if self._credentials is None:
            return False
        try:
            self._credentials()
        except (ValueError, AttributeError, TypeError, LookupError):
            return False
        return True

    def _sign(
        self, method: str, path: str, query: Sequence[tuple[str, str]], headers: dict[str, str], payload: str
    ) -> None:
        """Add the SigV4 headers; raises ValueError when there are no credentials to sign with."""
        if self._credentials is None:
            raise ValueError("no credentials")
        credentials = self._credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers["host"] = self._host_header
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = payload
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        day, secret, key = self._key
        if (day, secret) != (amz_date[:8], credentials.secret_key):  # a day's key, kept: 5 HMACs fewer
            key = signing_key(credentials.secret_key, amz_date[:8], self.region, "s3")
            self._key = (amz_date[:8], credentials.secret_key, key)
        signed = {k: v for k, v in headers.items() if k != "content-length"}
        headers["authorization"] = authorization(
            credentials, self.region, "s3", method, path, query, signed, payload, key
        )

    def _connection(self, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        with self._guard:
            if self._idle and not fresh:
                return self._idle.pop(), True
        if self._https:
            if self._tls is None:
                self._tls = ssl.create_default_context(cafile=self._ca_bundle)
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._connect_timeout, context=self._tls)
            return conn, False
        return http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout), False

    def release(self, conn: http.client.HTTPConnection) -> None:
        """Back to the pool, a connection whose last answer was read whole."""
        with self._guard:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def open(self, request: Request) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection] | None:
        """Send one signed request and read its status and headers: the answer (its body unread) and the
        connection it came on, to :meth:`release` once the body is read whole; None when none came.

        A request on a connection kept from before that fails before any answer (the server closed it while
        idle) is sent once more on a new one; any other failure is None."""

        def exchange(conn: http.client.HTTPConnection, target: str, sent: dict[str, str]) -> http.client.HTTPResponse:
            conn.request(request.method, target, body=request.body, headers=sent)
            return conn.getresponse()

        return self._exchange(request, exchange)

    def open_get(self, request: Request) -> tuple[Response, http.client.HTTPConnection] | None:
        """:meth:`open` for a request without a body (an object's GET), written and read by
        agent/storage/s3wire.py instead of http.client: the answer's status, headers and unread body, on
        a connection of the same pool."""
        if request.body is not None:
            raise ValueError("open_get sends no body")

        def exchange(conn: http.client.HTTPConnection, target: str, sent: dict[str, str]) -> Response:
            assert conn.sock is not None
            conn.sock.sendall(request_bytes(request.method, target, sent))
            return read_response(conn.sock)

        return self._exchange(request, exchange)

    def _exchange(
        self, request: Request, exchange: Callable[[http.client.HTTPConnection, str, dict[str, str]], _A]
    ) -> tuple[_A, http.client.HTTPConnection] | None:
        """Sign ``request``, take a connection and ``exchange`` it there (write it, read the answer's head);
        once more on a new connection when a kept one fails before any answer; None on any other failure;
        :class:`AnswerTimeout` when the request and the answer's head are not through by their deadline
        (:meth:`alarm`), which no second attempt follows: the caller reports it, botocore is not asked."""
        method, body, query = request.method, request.body, request.query
        path = self.path(request.full_key)
        target = path
        if query:
            target += "?" + "&".join(f"{uri_encode(k)}={uri_encode(v)}" if v else uri_encode(k) for k, v in query)
        payload = request.payload
        if payload is None and isinstance(body, bytes):
            payload = hashlib.sha256(body).hexdigest()
        elif payload is None:
            payload = UNSIGNED_PAYLOAD if body is not None else EMPTY_SHA256
        for attempt in range(2):
            sent = {k.lower(): v for k, v in (request.headers or {}).items()}
            if body is not None:
                sent["content-length"] = str(_size(body))
            try:
                self._sign(method, path, query, sent, payload)
            except (ValueError, AttributeError, TypeError, LookupError):
                return None  # no credentials (botocore names the problem), or a chain that failed to refresh
            conn, reused = self._connection(fresh=attempt > 0)
            alarm: Alarm | None = None
            try:
                if not reused and conn.sock is None:
                    conn.connect()
                    assert conn.sock is not None
                    conn.sock.settimeout(self._read_timeout)
                alarm = self.alarm(conn, _size(body))
                answer = exchange(conn, target, sent)
            except (OSError, http.client.HTTPException):
                conn.close()
                if alarm is not None and alarm.disarm():
                    raise alarm.timeout("the answer's status line and headers") from None
                if not reused:
                    return None
                continue
            if alarm.disarm():
                conn.close()
                raise alarm.timeout("the answer's status line and headers")
            return answer, conn
        return None

    def alarm(self, conn: http.client.HTTPConnection, size: int) -> Alarm:
        """The deadline of an exchange on ``conn`` moving ``size`` bytes: the read timeout, plus the
        bytes at :data:`MIN_RATE`."""
        assert conn.sock is not None
        return arm(conn.sock, self._read_timeout + size / MIN_RATE)

    def send(self, request: Request, limit: int = MAX_BODY) -> Answer | None:
        """:meth:`open`, then the answer's body read whole (at most ``limit`` bytes: past it, the answer
        with ``whole`` False and no body; when the body cannot be read, None). A connection whose answer
        was not read whole is dropped, not reused. Raises :class:`AnswerTimeout` when the answer's head or
        body is not through by its deadline (:meth:`alarm`)."""
        opened = self.open(request)
        if opened is None:
            return None
        response, conn = opened
        alarm = self.alarm(conn, min(limit, response.length if response.length is not None else limit))
        try:
            data = response.read(limit + 1)
        except (OSError, http.client.HTTPException):
            conn.close()
            if alarm.disarm():
                raise alarm.timeout("the answer's body") from None
            return None
        if alarm.disarm():
            conn.close()
            raise alarm.timeout("the answer's body")
        headers = {k.lower(): v for k, v in response.getheaders()}
        if len(data) > limit or not response.isclosed():
            conn.close()  # not drained: dropped, not reused
            return Answer(response.status, headers, b"", whole=False)
        if response.will_close:
            conn.close()
        else:
            self.release(conn)
        return Answer(response.status, headers, data)

    def close(self) -> None:
        """Close the idle connections (one in use is closed by its reader)."""
        with self._guard:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _size(body: bytes | memoryview | None) -> int:
    return 0 if body is None else len(body) if isinstance(body, bytes) else body.nbytes


def error_of(body: bytes) -> tuple[str, str]:
    """The ``Code`` and ``Message`` of an S3 error document (bounded: the body is at most MAX_BODY)."""
    text = body.decode("utf-8", "replace")
    code = _CODE.search(text)
    message = _MESSAGE.search(text)
    return (code.group(1) if code else ""), (one_line(_unescape(message.group(1))) if message else "")


def one_line(text: str, limit: int = 200) -> str:
    """An endpoint's text as part of one line of ours: control characters and runs of spaces made one
    space, at most ``limit`` characters (an answer's Message is the endpoint's to write, not ours)."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _unescape(text: str) -> str:
    """``html.unescape(text)``, without importing ``html`` for S3's own escapes: an answer escapes XML's five
    predefined entities, quotes as ``&quot;`` (AWS) or ``&#34;`` (Go's encoding/xml: SeaweedFS, MinIO), as
    an ETag's, and ``html`` loads its table of 2,000 entities (~2 ms of every run's start-up, issue 14).
    Any other ``&`` goes to ``html.unescape``."""
    if "&" in _XML_ENTITY.sub("", text):
        import html

        return html.unescape(text)
    return _XML_ENTITY.sub(lambda m: _XML_CHARS[m.group(1)], text)


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_XML_ENTITY: Final = re.compile(r"&(quot|amp|lt|gt|apos|#34|#39);")
_XML_CHARS: Final = {"quot": '"', "amp": "&", "lt": "<", "gt": ">", "apos": "'", "#34": '"', "#39": "'"}
_CODE: Final = re.compile(r"<Code>([A-Za-z0-9.]{1,64})</Code>")
_MESSAGE: Final = re.compile(r"<Message>([^<]{0,512})</Message>")

__all__ = [
    "EMPTY_SHA256",
    "MAX_BODY",
    "MIN_RATE",
    "UNSIGNED_PAYLOAD",
    "Alarm",
    "Answer",
    "AnswerTimeout",
    "Credentials",
    "Request",
    "S3Http",
    "arm",
    "authorization",
    "botocore_free",
    "bucket_base",
    "canonical_query",
    "error_of",
    "one_line",
    "region_of",
    "signing_key",
    "static_credentials",
    "uri_encode",
    "xml_escape",
]
