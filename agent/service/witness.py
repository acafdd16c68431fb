"""``bodycam-sync witness serve``: a C2SP tlog-witness for docks' logs, over stdlib HTTP.

Why a witness: a dock could show one party a log and another party a different one, or delete its newest
batches from the bucket. A witness run by another party (the Home Office, the platform, an auditor) keeps
the latest checkpoint of each dock's log and cosigns a new one only with a consistency proof from it, so
it never cosigns two inconsistent views, and its memory is a record the bucket cannot take back.

Endpoints:

* ``POST /add-checkpoint`` (C2SP tlog-witness): 200 with a cosignature/v1 line; 400 malformed; 403 no
  trusted log signature; 404 unknown origin; 409 old size is not ours (body: our size, ``text/x.tlog.size``)
  or same size with another root; 413 too large; 422 consistency proof fails.
* ``GET /checkpoint/<origin>`` (ours; tlog-witness leaves monitor retrieval open): the latest checkpoint
  cosigned for that log, the dock's signature and ours, 404 if none. ``verify --policy`` reads it to see
  checkpoints the bucket may no longer hold.

Bounded: request lines and headers read within :data:`REQUEST_TIMEOUT` seconds, bodies of at most
:data:`witnessapi.MAX_REQUEST` bytes within as long again, at most :data:`MAX_CONNECTIONS` connections
(a thread each; more are closed on arrival) and :data:`MAX_IN_FLIGHT` requests handled at once (503
beyond), idle connections closed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats import cosignature, note, tlog, witnessapi
from bodycam.agent.formats.witnesspolicy import Policy
from bodycam.agent.storage.witnessstate import Latest, WitnessState
from bodycam.drivers.errors import BodycamError, IntegrityError

LOG = logging.getLogger(__name__)
REQUEST_TIMEOUT = 10.0
MAX_IN_FLIGHT = 16
MAX_CONNECTIONS = 64  # connections served at once (a thread each); more are closed on arrival
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str = TEXT


class _Refused(Exception):
    def __init__(self, answer: Answer, evidence: str | None = None) -> None:
        super().__init__(answer.body.decode(errors="replace"))
        self.answer = answer
        self.evidence = evidence


def _text(status: int, message: str) -> Answer:
    return Answer(status, (message + "\n").encode())


@dataclass
class Witness:
    """The witness's decisions, apart from HTTP (the tests and the server call the same methods)."""

    name: str
    key: Ed25519PrivateKey
    policy: Policy
    state: WitnessState
    clock: Callable[[], float] = time.time
    cosigner: cosignature.Cosigner = field(init=False)

    def __post_init__(self) -> None:
        self.cosigner = cosignature.parse_verifier_key(self.vkey())

    def vkey(self) -> str:
        return cosignature.verifier_key(self.name, self.key.public_key())

    def add_checkpoint(self, body: bytes) -> Answer:
        """One add-checkpoint request, answered as the spec says."""
        try:
            request = witnessapi.parse_request(body)
            cp, origin = self._open(request.checkpoint)
        except witnessapi.BadRequest as err:
            return _text(400, str(err))
        except _Refused as refused:
            return refused.answer
        if request.old > cp.size:
            return _text(400, f"old size {request.old} is larger than the checkpoint's {cp.size}")
        try:
            latest = self.state.advance(origin, lambda stored: self._decide(stored, request, cp))
        except _Refused as refused:
            if refused.evidence is not None:
                LOG.warning("log %s: refused checkpoint %d: %s", origin, cp.size, refused.evidence)
                self.state.keep_evidence(origin, refused.evidence, body)
            return refused.answer
        LOG.info("log %s: cosigned checkpoint %d", origin, cp.size)
        _, lines = note.split_note(latest.cosigned)
        return Answer(200, (lines[-1] + "\n").encode())

    def _open(self, signed: bytes) -> tuple[note.Checkpoint, str]:
        try:
            text, _ = note.split_note(signed)
        except IntegrityError as err:
            raise witnessapi.BadRequest(str(err)) from None
        origin = text.split("\n", 1)[0]
        verifiers = self.policy.log_verifiers(origin)
        if not verifiers:
            raise _Refused(_text(404, f"unknown log origin {origin[:80]!r}"))
        try:
            note.open_note(signed, verifiers)
        except IntegrityError as err:
            raise _Refused(_text(403, str(err))) from None
        try:
            return note.parse_checkpoint(text, origin=origin), origin
        except IntegrityError as err:
            raise witnessapi.BadRequest(str(err)) from None

    def _decide(self, stored: Latest | None, request: witnessapi.AddCheckpoint, cp: note.Checkpoint) -> Latest:
        """Inside the state's transaction: refuse (raise _Refused) or return the new latest view."""
        size = 0 if stored is None else stored.size
        if request.old != size:
            raise _Refused(Answer(409, witnessapi.encode_size(size), witnessapi.SIZE_TYPE))
        if stored is not None and cp.size == stored.size:
            if cp.root != stored.root:
                raise _Refused(
                    Answer(409, witnessapi.encode_size(size), witnessapi.SIZE_TYPE),
                    f"a second root for size {size}: the log forked",
                )
        elif stored is not None and stored.size > 0:
            try:
                tlog.verify_consistency(stored.size, cp.size, stored.root, cp.root, request.proof)
            except IntegrityError as err:
                raise _Refused(
                    _text(422, f"the consistency proof from {stored.size} to {cp.size} fails: {err}"),
                    f"no consistent extension of {stored.size}: {err}",
                ) from None
        elif request.proof:
            raise _Refused(_text(422, "the consistency proof from size 0 must be empty"))
        line = cosignature.cosign(cp.text(), self.name, self.key, int(self.clock()))
        return Latest(cp.size, cp.root, _with_line(request.checkpoint, cp.origin, line))

    def checkpoint(self, origin: str) -> Answer:
        """The latest checkpoint cosigned for ``origin`` (GET /checkpoint/<origin>)."""
        latest = self.state.latest(origin) if self.policy.log_verifiers(origin) else None
        if latest is None:
            return _text(404, f"no checkpoint of {origin[:80]!r} was cosigned here")
        return Answer(200, latest.cosigned)


def _with_line(signed: bytes, origin: str, line: str) -> bytes:
    """The dock's checkpoint with the log's own signature lines (other witnesses' dropped) and ours."""
    text, lines = note.split_note(signed)
    own = "".join(f"{x}\n" for x in lines if note.signature_line(x)[0] == origin)
    return cosignature.add_lines(f"{text}\n{own}".encode(), [line])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        LOG.debug("%s %s", self.address_string(), format % args)

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def _guarded(self, work: Callable[[], Answer]) -> None:
        if not self.server.slots.acquire(blocking=False):
            self.close_connection = True
            self._send(_text(503, "the witness is busy; retry later"))
            return
        try:
            answer = work()
        except BodycamError as err:
            LOG.error("witness: %s", err)
            answer = _text(500, "the witness could not record its state; retry later")
        finally:
            self.server.slots.release()
        self._send(answer)

    def handle_one_request(self) -> None:
        """One request, its request line and headers read within :data:`REQUEST_TIMEOUT` in all: the
        socket timeout bounds each read only, so a client sending a byte every few seconds held its
        connection's thread for as long as it kept sending. At the deadline the socket is shut down,
        which ends the read in progress; the handler cancels it once the headers are in (``_body`` has
        a deadline of its own)."""
        self._deadline = threading.Timer(REQUEST_TIMEOUT, self._expire)
        self._deadline.daemon = True
        self._deadline.start()
        try:
            super().handle_one_request()
        finally:
            self._deadline.cancel()

    def _expire(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_POST(self) -> None:
        self._deadline.cancel()
        if self.path != "/add-checkpoint":
            self.close_connection = True
            self._send(_text(404, "POST /add-checkpoint only"))
            return
        body = self._body()
        if body is not None:
            self._guarded(lambda: self.server.witness.add_checkpoint(body))

    def do_GET(self) -> None:
        self._deadline.cancel()
        prefix = "/checkpoint/"
        if not self.path.startswith(prefix) or len(self.path) > 600:
            self._send(_text(404, "GET /checkpoint/<origin> only"))
            return
        try:
            origin = urllib.parse.unquote(self.path[len(prefix) :], errors="strict")
        except UnicodeDecodeError:
            self._send(_text(404, "an origin is UTF-8"))
            return
        self._guarded(lambda: self.server.witness.checkpoint(origin))

    def _body(self) -> bytes | None:
        """The request body, bounded in size and in total time (a trickle does not reset it)."""
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self.close_connection = True
            self._send(_text(411, "a Content-Length is required"))
            return None
        length = int(length_text)
        if length > witnessapi.MAX_REQUEST:
            self.close_connection = True
            self._send(_text(413, f"the request is larger than {witnessapi.MAX_REQUEST} bytes"))
            return None
        deadline = time.monotonic() + REQUEST_TIMEOUT
        chunks, got = [], 0
        while got < length:
            if time.monotonic() > deadline:
                self.close_connection = True
                return None
            chunk = self.rfile.read1(length - got)
            if not chunk:
                self.close_connection = True
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], witness: Witness) -> None:
        super().__init__(address, _Handler)
        self.witness = witness
        self.slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self.connections = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        """A thread per connection, at most :data:`MAX_CONNECTIONS` at once; a connection beyond them is
        closed on arrival (the client retries): each costs a thread, and a client opening thousands must
        not cost the witness thousands."""
        if not self.connections.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """One log line for a connection that failed (a client gone, a timeout), never a traceback."""
        LOG.info("witness: a request from %s failed: %s", client_address, sys.exc_info()[1])


def serve(witness: Witness, host: str, port: int, *, ready: Callable[[str], None], stop: threading.Event) -> None:
    """Serve until ``stop`` is set; ``ready`` gets the bound ``host:port`` (port 0 picks a free one)."""
    server = _Server((host, port), witness)
    try:
        ready(f"{host}:{server.server_port}")
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        thread.start()
        stop.wait()
        server.shutdown()
        thread.join(timeout=10)
    finally:
        server.server_close()
