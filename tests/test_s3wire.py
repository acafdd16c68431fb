"""An object's GET written and read by agent/storage/s3wire.py instead of http.client (issue 14: verify of
small recordings): answers read exactly, split anywhere across receives; hostile heads (endless, too many
lines, folded, two lengths, interim) refused in bounded memory and time; and verify of a bucket in SeaweedFS
makes one GET per recording on kept-alive connections, none through http.client's request path or botocore."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bodycam.agent.audit.verify import READ_WORKERS, Verifier
from bodycam.agent.formats.sshsig import parse_allowed_signers
from bodycam.agent.storage import s3http
from bodycam.agent.storage.bucket import S3Bucket, open_bucket
from bodycam.agent.storage.s3wire import (
    MAX_HEAD,
    BadAnswer,
    BadRequest,
    Closed,
    read_response,
    request_bytes,
)

from .fleet import build_fleet
from .s3server import SeaweedFS

HEAD = (
    b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\nETag: "abc"\r\nx-amz-version-id: v1\r\n'
    b"Last-Modified: Mon, 07 Dec 2026 15:03:59 GMT\r\n\r\n"
)


Answer = Callable[..., socket.socket]


@pytest.fixture
def answer() -> Iterator[Answer]:
    """``answer(data, pieces=1)``: the reading end of a socket pair whose other end writes ``data`` in
    ``pieces`` sends, then shuts its side; both ends closed after the test."""
    opened: list[socket.socket] = []

    def make(data: bytes, pieces: int = 1) -> socket.socket:
        ours, theirs = socket.socketpair()
        opened.extend((ours, theirs))
        ours.settimeout(10)
        step = max(1, -(-len(data) // pieces))

        def write() -> None:
            with contextlib.suppress(OSError):
                for i in range(0, len(data), step):
                    theirs.sendall(data[i : i + step])
                theirs.shutdown(socket.SHUT_WR)

        threading.Thread(target=write, daemon=True).start()
        return ours

    yield make
    for sock in opened:
        sock.close()


@pytest.mark.parametrize("pieces", [1, 7, len(HEAD) + 11], ids=["whole", "seven", "byte-by-byte"])
def test_an_answer_is_read_exactly_however_it_is_split(answer: Answer, pieces: int) -> None:
    sock = answer(HEAD + b"hello world", pieces)
    response = read_response(sock)
    assert response.status == 200 and response.length == 11 and not response.will_close
    assert response.headers["etag"] == '"abc"' and response.headers["x-amz-version-id"] == "v1"
    assert response.read(5) + response.read(100) == b"hello world"
    assert response.read(100) == b"" and response.isclosed()


def test_read_and_readinto_take_the_body_in_order_wherever_it_was_split(answer: Answer) -> None:
    """The bytes that came with the head first, then the socket's, whether read into the caller's buffer
    (verify's recordings: one reused buffer) or as bytes, interleaved."""
    body = bytes(range(256)) * 4096  # 1 MiB
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    response = read_response(answer(head + body, 97))
    buffer = memoryview(bytearray(300_000))
    got = bytearray()
    n = response.readinto(buffer)
    got += buffer[:n]
    got += response.read(123_457)
    while n := response.readinto(buffer):
        got += buffer[:n]
    assert bytes(got) == body and response.isclosed() and not response.will_close
    assert response.read(10) == b"" and response.readinto(buffer) == 0


def test_an_objects_bytes_read_into_a_buffer_are_those_put(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    bucket = open_bucket(f"s3://{s3_bucket}/evidence", seaweedfs.endpoint_url)
    data = bytes(range(251)) * 12_000 + b"end"
    bucket.put_object("dock-01/b/recordings/C/1.age", data)
    buffer = memoryview(bytearray(1 << 20))
    got = bytearray()
    with bucket.open_read("dock-01/b/recordings/C/1.age") as reader:
        while n := reader.readinto(buffer):
            got += buffer[:n]
    assert bytes(got) == data


def test_lf_endings_http_1_0_and_connection_close_are_read_but_the_connection_is_not_kept(answer: Answer) -> None:
    for head in (
        b"HTTP/1.0 200 OK\nContent-Length: 2\n\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
    ):
        response = read_response(answer(head + b"ok"))
        assert response.read(10) == b"ok" and response.isclosed() and response.will_close


def test_an_answer_without_a_length_or_with_bytes_past_it_is_not_kept(answer: Answer) -> None:
    chunked = read_response(answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"))
    assert chunked.length is None and chunked.will_close
    extra = read_response(answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nnoEXTRA"))
    assert extra.status == 404 and extra.will_close and extra.read(100) == b"no"


def test_a_body_cut_short_reads_what_came_then_nothing(answer: Answer) -> None:
    response = read_response(answer(HEAD + b"hello"))
    assert response.read(100) == b"hello" and response.read(100) == b"" and not response.isclosed()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", Closed),
        (b"HTTP/1.1 200 OK\r\nContent-Le", BadAnswer),
        (b"SSH-2.0-OpenSSH\r\n\r\n", BadAnswer),
        (b"HTTP/2 200\r\n\r\n", BadAnswer),
        (b"HTTP/1.1 100 Continue\r\n\r\n", BadAnswer),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", BadAnswer),
        (b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n", BadAnswer),
        (b"HTTP/1.1 200 OK\r\nbad name: 1\r\n\r\n", BadAnswer),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", BadAnswer),
        (b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n", BadAnswer),
    ],
    ids=["nothing", "cut", "not-http", "http2", "interim", "no-colon", "folded", "space", "two-lengths", "101"],
)
def test_heads_not_read_exactly_are_refused(answer: Answer, data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        read_response(answer(data))


def test_an_endless_head_is_refused_after_its_bound_not_read_to_the_end() -> None:
    """A head that never ends (the endpoint keeps sending header lines): refused once MAX_HEAD bytes came,
    with the writer still sending, so memory stays bounded whatever it sends."""
    ours, theirs = socket.socketpair()
    ours.settimeout(10)
    sent = [0]
    stop = threading.Event()

    def write() -> None:
        line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
        try:
            theirs.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.is_set():
                theirs.sendall(line)
                sent[0] += len(line)
        except OSError:
            return

    threading.Thread(target=write, daemon=True).start()
    with pytest.raises(BadAnswer, match="within"):
        read_response(ours)
    stop.set()
    ours.close()
    theirs.close()
    assert sent[0] >= MAX_HEAD


def test_a_request_with_a_control_character_is_not_written() -> None:
    assert request_bytes("GET", "/b/k", {"host": "h"}) == (
        b"GET /b/k HTTP/1.1\r\nhost: h\r\nAccept-Encoding: identity\r\n\r\n"
    )
    for target, headers in (("/b/k\r\nX: 1", {"host": "h"}), ("/b/k", {"host": "h\nX: 1"})):
        with pytest.raises(BadRequest):
            request_bytes("GET", target, headers)


def test_verify_makes_one_get_per_recording_on_kept_connections(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two docks of a batch of 30 recordings each in SeaweedFS: verify's requests are one listing page of
    the bucket and two of each dock's log, eight GETs a dock (its batch's manifest, signature, custody and
    sidecar; its log's checkpoint, tile and entries) and one GET per recording: every GET through s3wire,
    none through botocore, on at most one connection per reader and one for the main thread."""
    built = open_bucket(f"s3://{s3_bucket}/force", seaweedfs.endpoint_url)
    fleet = build_fleet(tmp_path / "docks", built, docks=2, per_dock=30, size=2000)
    built.close()
    asked: Counter[str] = Counter()
    connections = [0]
    open_, open_get, connection = s3http.S3Http.open, s3http.S3Http.open_get, s3http.S3Http._connection

    def note(kind: str, request: s3http.Request) -> None:
        what = "recording" if request.full_key and "/recordings/" in request.full_key else "other"
        asked[f"{kind} {request.method} {what}{' listing' if request.query else ''}"] += 1

    def counted_connection(self: s3http.S3Http, fresh: bool) -> tuple[object, bool]:
        conn, reused = connection(self, fresh)
        connections[0] += not reused
        return conn, reused

    monkeypatch.setattr(s3http.S3Http, "open", lambda self, r: (note("http.client", r), open_(self, r))[1])
    monkeypatch.setattr(s3http.S3Http, "open_get", lambda self, r: (note("s3wire", r), open_get(self, r))[1])
    monkeypatch.setattr(s3http.S3Http, "_connection", counted_connection)
    bucket = open_bucket(f"s3://{s3_bucket}/force", seaweedfs.endpoint_url, read_only=True)
    assert isinstance(bucket, S3Bucket)
    report = Verifier(bucket, parse_allowed_signers(fleet.allowed_signers.read_text())).run()
    assert report.ok, report.findings[:3]
    assert asked["s3wire GET recording"] == 60
    assert asked["http.client GET other listing"] == 1 + 2 * 2  # the bucket's, then each dock's log's two
    assert asked["s3wire GET other"] == 2 * 8
    assert sum(asked.values()) == 60 + 5 + 16, asked
    assert connections[0] <= READ_WORKERS + 1
    assert bucket._botocore is None  # no client was even made
