"""Listings, versions, aborts and deletes as the bucket's own signed requests (agent/storage/s3xml.py,
issue 14 item 6): the same answers botocore gives on a real SeaweedFS, page after page, without loading
botocore; and a hostile endpoint's answers (oversized, malformed, entity-laden, endless) refused in one
line that quotes nothing of the answer, since a key in it may name anyone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from bodycam.agent.storage.bucket import ObjectExistsError, ObjectNotFoundError, Part, S3Bucket, open_bucket
from bodycam.agent.storage.wrapper import BucketWrapper
from bodycam.drivers.errors import StorageError, UploadError

from .s3server import SeaweedFS

MiB = 1024 * 1024
#: a key a hostile answer lists: no message may quote it
NAMED = "PC-1234-Jane-Doe"


def s3(url: str, endpoint: str, **kwargs: float) -> S3Bucket:
    bucket = open_bucket(url, endpoint, **kwargs)  # type: ignore[arg-type]
    assert isinstance(bucket, S3Bucket) and bucket._http is not None and bucket._http.static
    return bucket


def test_listings_page_through_the_buckets_own_requests_as_botocore_lists_them(
    seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """Seven keys (a space, a plus, a non-ASCII letter: url-encoded in the answer) listed three at a time:
    the keys, sizes and ETags botocore's list_objects_v2 gives, over three pages, with no botocore client
    made; list_parts, abort (twice: an unknown upload is not an error) and delete likewise."""
    bucket = s3(f"s3://{s3_bucket}/pre", seaweedfs.endpoint_url)
    keys = ["a/1", "a b/2", "a+b/3", "é/4", "a-c", "a/b/5", "z"]
    for key in keys:
        bucket.put_object(key, key.encode())
    pages: list[int] = []
    send = bucket._http.send  # type: ignore[union-attr]
    bucket._http.send = lambda *a, **k: (pages.append(1), send(*a, **k))[1]  # type: ignore[union-attr,method-assign]
    ours = [(o.key, o.size, o.etag) for o in bucket.iter_objects(page_size=3)]
    assert len(pages) == 3
    listed = seaweedfs.client().list_objects_v2(Bucket=s3_bucket, Prefix="pre/")["Contents"]
    assert ours == [(o["Key"].removeprefix("pre/"), o["Size"], o["ETag"]) for o in listed]
    assert sorted(k for k, _, _ in ours) == sorted(keys)
    assert [o.key for o in bucket.iter_objects("a/")] == ["a/1", "a/b/5"]
    upload_id = bucket.start_upload("u/1")
    sent = [
        bucket.upload_part("u/1", upload_id, 1, memoryview(bytes(5 * MiB))),
        bucket.upload_part("u/1", upload_id, 2, b"x"),
    ]
    assert [(p.number, p.etag, p.size) for p in bucket.list_parts("u/1", upload_id)] == [
        (p.number, p.etag, p.size) for p in sent
    ]
    bucket.abort_upload("u/1", upload_id)
    bucket.abort_upload("u/1", upload_id)
    assert bucket.open_uploads() == []
    bucket.delete("z")
    bucket.delete("z")
    assert bucket.head("z") is None
    assert bucket._botocore is None


def test_versions_page_through_and_erasing_takes_the_versions_behind_a_delete_marker(
    seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """Three versions of a key and a plain delete's marker over it, listed two at a time, newest first;
    erase_every_version then leaves nothing (before: it asked HEAD, which a delete marker answers 404, and
    returned with the three versions' data still in the bucket); so does a wrapped bucket (BucketWrapper
    left erase_every_version to the base class's HEAD loop)."""
    locked = seaweedfs.make_bucket(f"{s3_bucket}-v", object_lock=True)
    bucket = s3(f"s3://{locked}/pre", seaweedfs.endpoint_url)
    written = [bucket.put_object("v/k", b"v%d" % i, create_only=False, retain=False) for i in range(3)]
    bucket.put_object("v/other", b"o", retain=False)
    bucket.delete("v/k")
    versions = [v for v in bucket.iter_versions("v/", page_size=2) if v.key == "v/k"]
    assert [v.delete_marker for v in versions] == [True, False, False, False]
    assert versions[0].latest and not any(v.latest for v in versions[1:])
    assert {v.version_id for v in versions[1:]} == {w.version_id for w in written}
    listed = seaweedfs.client().list_object_versions(Bucket=locked, Prefix="pre/v/k")
    assert len(listed["Versions"]) + len(listed["DeleteMarkers"]) == 4
    bucket.erase_every_version("v/k")
    assert [v.key for v in bucket.iter_versions("v/")] == ["v/other"]
    bucket.put_object("v/j", b"j", retain=False)
    bucket.delete("v/j")
    BucketWrapper(bucket).erase_every_version("v/j")  # the daemon's throttle wraps its bucket so
    assert [v.key for v in bucket.iter_versions("v/")] == ["v/other"]
    assert bucket._botocore is None


# -- a hostile endpoint -----------------------------------------------------------------------------------
class Hostile:
    """A tiny S3 stand-in on loopback: each request gets the next (status, body) of ``answers`` (the last
    one again once they run out), or what ``answers`` makes of the request's number when it is a function;
    ``requests`` counts what came (each request line's first 100 characters)."""

    def __init__(self, answers: list[tuple[int, bytes]] | Callable[[int], tuple[int, bytes]]) -> None:
        self.answers = answers
        self.requests: list[str] = []
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16  # an answer's head and body in one write: no delayed-ACK wait between them

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                hostile.requests.append(f"{self.command} {self.path[:100]}")  # small: tests measure memory
                status, body = hostile.answer(len(hostile.requests))
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_DELETE = do_PUT = do_POST = do_HEAD = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, number: int) -> tuple[int, bytes]:
        if callable(self.answers):
            return self.answers(number)
        return self.answers[min(number, len(self.answers)) - 1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Hostile:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def static_keys(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Static keys in the environment, as /etc/bodycam/environment gives them; nothing else of AWS."""
    tmp = tmp_path_factory.mktemp("aws")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIDHOSTILE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield


def _listing(contents: str, fields: str = "<IsTruncated>false</IsTruncated>") -> bytes:
    return f'<?xml version="1.0"?><ListBucketResult xmlns="x">{fields}{contents}</ListBucketResult>'.encode()


def _entry(key: str, size: str = "5") -> str:
    return f"<Contents><Key>{key}</Key><Size>{size}</Size><ETag>e</ETag></Contents>"


LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "' + b"x" * 100 + b'"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><ListBucketResult><Contents><Key>pre/&c;</Key></Contents>'
    b"</ListBucketResult>"
)
EXTERNAL = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    b"<ListBucketResult><Contents><Key>pre/&e;</Key></Contents></ListBucketResult>"
)

HOSTILE = {
    "oversized": ([(200, _listing(_entry(f"pre/{NAMED}") * 80_000))], "over 4194304 bytes"),
    "billion laughs": ([(200, LAUGHS)], "declares a DOCTYPE or entities"),
    "external entity": ([(200, EXTERNAL)], "declares a DOCTYPE or entities"),
    "undeclared entity": ([(200, _listing(_entry(f"pre/{NAMED}&x;")))], "not well-formed XML"),
    "malformed": ([(200, _listing(_entry(f"pre/{NAMED}"))[:-20])], "not well-formed XML"),
    "not a listing": ([(200, b"<Html><Key>pre/" + NAMED.encode() + b"</Key></Html>")], "not a ListBucketResult"),
    "too many entries": ([(200, _listing(_entry(f"pre/{NAMED}") * 1001))], "more than the 1000 entries"),
    "key too long": ([(200, _listing(_entry(f"pre/{NAMED}" + "k" * 1100)))], "longer than 1024 bytes"),
    "field too long": ([(200, _listing(_entry(f"pre/{NAMED}" + "k" * 5000)))], "longer than 4096 characters"),
    "key outside the prefix": ([(200, _listing(_entry(f"other/{NAMED}")))], "outside the prefix"),
    "a key twice in one entry": (
        [(200, _listing(f"<Contents><Key>pre/a</Key><Key>pre/{NAMED}</Key></Contents>"))],
        "gives Key twice",
    ),
    "nested deep": ([(200, _listing("<a><b><c><d><e><f><g>x</g></f></e></d></c></b></a>"))], "nests or repeats"),
    "negative size": ([(200, _listing(_entry(f"pre/{NAMED}", "-5")))], "not a whole number"),
    "truncated neither true nor false": (
        [(200, _listing(_entry(f"pre/{NAMED}"), "<IsTruncated>yes</IsTruncated>"))],
        "neither true nor false",
    ),
    "token too long": (
        [
            (
                200,
                _listing(
                    "",
                    "<IsTruncated>true</IsTruncated><NextContinuationToken>" + "t" * 3000 + "</NextContinuationToken>",
                ),
            )
        ],
        "not 1-2048 characters",
    ),
    "the same token again": (
        [
            (
                200,
                _listing(
                    _entry(f"pre/{NAMED}"),
                    "<IsTruncated>true</IsTruncated><NextContinuationToken>t1</NextContinuationToken>",
                ),
            )
        ],
        "does not move on",
    ),
    "endless empty pages": (
        [
            (200, _listing("", f"<IsTruncated>true</IsTruncated><NextContinuationToken>t{i}</NextContinuationToken>"))
            for i in range(40)
        ],
        "does not move on",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_listing_is_refused_in_one_line_that_names_no_key(static_keys: None, case: str) -> None:
    """Each answer a hostile (or broken) endpoint could give a listing is an UploadError naming the bucket
    and what was wrong, in one line, quoting no key of the answer; nothing is expanded, nothing grows past
    the bounds, botocore is not asked to try again."""
    answers, reason = HOSTILE[case]
    with Hostile(answers) as hostile:
        bucket = s3("s3://evidence/pre", hostile.url, connect_timeout=2, read_timeout=10)
        with pytest.raises(UploadError) as caught:
            for _ in bucket.iter_objects():
                pass
    message = str(caught.value)
    assert reason in message and "s3://evidence/pre" in message, message
    assert "\n" not in message and NAMED not in message and "passwd" not in message, message
    assert len(hostile.requests) <= 1 + 16 and bucket._botocore is None


def test_endless_distinct_tokens_end_the_listing_in_bounded_memory(
    static_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint that answers every page with one entry and a new 2,000-character token for ever: the
    listing used to remember every token it had seen (a set, to tell one given again), so it grew without
    end and never ended. It now remembers the last TOKEN_WINDOW and ends at the page bound of
    MAX_LISTED_OBJECTS (made 1,500 here), in one line that names no key."""
    import tracemalloc

    from bodycam.agent.storage import bucket as bucket_module

    monkeypatch.setattr(bucket_module, "MAX_LISTED_OBJECTS", 1500, raising=False)

    def endless(number: int) -> tuple[int, bytes]:
        token = f"<IsTruncated>true</IsTruncated><NextContinuationToken>{number:02000d}</NextContinuationToken>"
        return 200, _listing(_entry(f"pre/{NAMED}-{number}"), token)

    listed = 0
    with Hostile(endless) as hostile:
        bucket = s3("s3://evidence/pre", hostile.url, connect_timeout=2, read_timeout=10)
        tracemalloc.start()
        try:
            with pytest.raises(UploadError) as caught:
                for _ in bucket.iter_objects(page_size=1):
                    listed += 1
                    if listed >= 3000:  # the test's own guard: before, the listing never ended
                        break
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    message = str(caught.value)
    assert "goes on past 1516 pages" in message and "s3://evidence/pre" in message, message
    assert "\n" not in message and NAMED not in message, message
    assert listed == 1516 and len(hostile.requests) == 1516
    assert peak < 1024 * 1024, peak  # 1,500 tokens of 2,000 characters kept would be over 3 MiB


def test_a_redirect_from_an_s3_compatible_endpoint_is_refused_not_followed_by_botocore(static_keys: None) -> None:
    """A redirect was left to botocore to follow (as AWS's to a bucket's region), and botocore reads what
    it is then given whole, with none of s3xml's bounds: an endpoint answering 301 and then a 6 MB page
    of 80,000 entries (1,000 asked for) was listed whole, and any size would have been read. An endpoint
    given by URL (SeaweedFS, MinIO, any S3-compatible service) has no region to redirect to: its redirect
    is one line now, and botocore is not asked."""
    with Hostile([(301, b""), (200, _listing(_entry(f"pre/{NAMED}") * 80_000))]) as hostile:
        bucket = s3("s3://evidence/pre", hostile.url, connect_timeout=2, read_timeout=10)
        with pytest.raises(UploadError, match=r"answered a redirect \(HTTP 301\)") as caught:
            for _ in bucket.iter_objects():
                pass
    assert "\n" not in str(caught.value) and NAMED not in str(caught.value)
    assert len(hostile.requests) == 1 and bucket._botocore is None


def test_dropping_a_full_tile_s_partials_keeps_no_more_than_a_tile_has(
    static_keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a log tile fills, the dock lists and erases its partial tiles (at most 255). It kept the whole
    listing in a list first: an endpoint listing partials without end had the dock keep them up to the
    listing's page bound (100 million objects; 20,000 here, 36 pages a path before). It now keeps what a
    tile can have and goes on to erase them (here the endpoint's answer to that is refused, a warning)."""
    from bodycam.agent.storage import bucket as bucket_module
    from bodycam.agent.storage import docklog

    monkeypatch.setattr(bucket_module, "MAX_LISTED_OBJECTS", 20_000)

    def endless(number: int) -> tuple[int, bytes]:
        asked = hostile.requests[-1]
        if "list-type" not in asked:
            return 200, b"<Nope/>"  # the erase's listing of versions
        prefix = parse_qs(urlsplit(asked.split(" ", 1)[1]).query)["prefix"][0]
        entries = "".join(_entry(f"{prefix}{number}-{i}") for i in range(1000))
        token = f"<IsTruncated>true</IsTruncated><NextContinuationToken>t{number}</NextContinuationToken>"
        return 200, _listing(entries, token)

    with Hostile(endless) as hostile:
        bucket = s3("s3://evidence/pre", hostile.url, connect_timeout=2, read_timeout=10)
        docklog.drop_partials(bucket, "dock/log", 1, 256)
    assert len(hostile.requests) == 4, hostile.requests  # per path: one page, then the first erase refused


def _uploads(number: int, truncated: bool, key_marker: str) -> bytes:
    upload = f"<Upload><Key>pre/dock/{NAMED}-{number}</Key><UploadId>u{number}</UploadId></Upload>"
    fields = f"<IsTruncated>{str(truncated).lower()}</IsTruncated><NextKeyMarker>{key_marker}</NextKeyMarker>"
    return f"<ListMultipartUploadsResult>{fields}{upload}</ListMultipartUploadsResult>".encode()


def test_parts_and_uploads_listings_that_do_not_end_are_refused(static_keys: None) -> None:
    """list_parts kept every page's parts while the part-number marker rose (a hostile endpoint could list
    1,000 parts a page up to a marker of 5 TiB), and open_uploads every page's uploads while two markers
    took turns (it ended only on the same marker twice running): here each endpoint stops on its own after
    60 pages, and the agent took 60,000 parts (S3 has 10,000 at most) and 60 uploads before. Now more than
    MAX_PARTS parts, or a marker given again, is one line naming no key."""

    def parts(number: int) -> tuple[int, bytes]:
        listed = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>e</ETag><Size>1</Size></Part>" for n in range(1, 1001)
        )
        fields = f"<IsTruncated>{'true' if number < 60 else 'false'}</IsTruncated>"
        fields += f"<NextPartNumberMarker>{number}</NextPartNumberMarker>"
        return 200, f"<ListPartsResult>{fields}{listed}</ListPartsResult>".encode()

    with Hostile(parts) as hostile:
        bucket = s3("s3://evidence/pre", hostile.url, connect_timeout=2, read_timeout=10)
        with pytest.raises(UploadError, match="lists more than the 10000 parts") as caught:
            bucket.list_parts("dock/k", "upload")
        assert "\n" not in str(caught.value) and len(hostile.requests) == 11
    with Hostile(lambda n: (200, _uploads(n, n < 60, "pre/dock/a" if n % 2 else "pre/dock/b"))) as hostile:
        bucket = s3("s3://evidence/pre", hostile.url, connect_timeout=2, read_timeout=10)
        with pytest.raises(UploadError, match="the listing does not move on") as caught:
            bucket.open_uploads("dock/")
        assert "\n" not in str(caught.value) and NAMED not in str(caught.value)
        assert len(hostile.requests) == 3 and bucket._botocore is None


def test_a_hostile_versions_and_parts_listing_is_refused_too(static_keys: None) -> None:
    bad_version = b"<ListVersionsResult><Version><Key>pre/" + NAMED.encode() + b"</Key></Version></ListVersionsResult>"
    with Hostile([(200, bad_version)]) as hostile:
        bucket = s3("s3://evidence/pre", hostile.url, connect_timeout=2, read_timeout=10)
        with pytest.raises(UploadError, match="an entry of the answer has no VersionId") as caught:
            list(bucket.iter_versions())
        assert NAMED not in str(caught.value)
        part = b"<ListPartsResult><Part><PartNumber>10001</PartNumber><ETag>e</ETag><Size>1</Size></Part></ListPartsResult>"
        hostile.answers = [(200, part)]
        with pytest.raises(UploadError, match="a part number S3 does not have"):
            bucket.list_parts("k/1", "upload")
        assert bucket._botocore is None


def _error(code: str, message: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>{message}</Message><Key>pre/{NAMED}</Key></Error>".encode()


@pytest.mark.parametrize(
    ("answers", "call", "error", "expected", "requests"),
    [
        (
            [(403, _error("AccessDenied", "Access\r\nDenied"))],
            lambda b: list(b.iter_objects()),
            UploadError,
            "list objects in s3://evidence/pre (endpoint {url}) refused: AccessDenied Access Denied; check the S3 "
            "credentials",
            1,
        ),
        ([(404, _error("NoSuchBucket", "gone"))], lambda b: list(b.iter_versions()), UploadError, "create bucket", 1),
        ([(404, _error("NoSuchUpload", "gone"))], lambda b: b.abort_upload("k/1", "u"), None, "", 1),
        ([(404, _error("NoSuchUpload", "gone"))], lambda b: b.list_parts("k/1", "u"), UploadError, "start again", 1),
        (
            [(403, _error("AccessDenied", "locked"))],
            lambda b: b.delete("k/1", version_id="v1"),
            UploadError,
            "locked",
            1,
        ),
        ([(503, _error("SlowDown", "slow"))], lambda b: b.delete("k/1"), UploadError, "refused: SlowDown slow", 2),
        ([(500, b"oops"), (204, b"")], lambda b: b.delete("k/1"), None, "", 2),
        (
            [(412, _error("PreconditionFailed", "exists")), (404, b"")],
            lambda b: b.put_object("k/1", b"x"),
            ObjectExistsError,
            "put s3://evidence/pre/k/1 (endpoint {url}) refused: PreconditionFailed exists; the key already exists",
            2,
        ),
        ([(403, b"")], lambda b: b.head("k/1"), UploadError, "refused: 403; check the S3 credentials", 1),
        ([(403, _error("AccessDenied", "no"))], lambda b: b.start_upload("k/1"), UploadError, "start upload of", 1),
        (
            [(400, _error("InvalidPart", "no such part"))],
            lambda b: b.complete_upload("k/1", "u", [Part(1, '"e"', "AAAAAA==", 5)]),
            UploadError,
            "complete upload of s3://evidence/pre/k/1 (endpoint {url}) refused: InvalidPart no such part",
            1,
        ),
        (
            [(200, b"<ListMultipartUploadsResult><Upload><Key>other/x</Key>")],
            lambda b: b.open_uploads(),
            UploadError,
            "list uploads in s3://evidence/pre (endpoint {url}) failed: the answer is not well-formed XML",
            1,
        ),
        (
            [(404, _error("NoSuchKey", "gone"))],
            lambda b: b.open_read("k/1"),
            ObjectNotFoundError,
            "read s3://evidence/pre/k/1 (endpoint {url}) refused: NoSuchKey gone; no such object",
            1,
        ),
    ],
    ids=[
        "denied",
        "no bucket",
        "abort unknown",
        "parts unknown",
        "delete locked",
        "slow down",
        "retried",
        "put exists",
        "head denied",
        "start denied",
        "complete refused",
        "uploads malformed",
        "read missing",
    ],
)
def test_error_answers_become_one_line_errors_without_botocore(
    static_keys: None,
    answers: list[tuple[int, bytes]],
    call: Callable[[S3Bucket], object],
    error: type[StorageError] | None,
    expected: str,
    requests: int,
) -> None:
    """A refusal is the BodycamError and message botocore's ClientError became (the endpoint's message made
    one line), a transient answer is asked again up to max_attempts (2 here), and an unknown upload's abort
    is no error: botocore is not loaded for any of them (a daemon's bay worker paid 0.3-0.5 CPU s for it)."""
    with Hostile(answers) as hostile:
        bucket = s3("s3://evidence/pre", hostile.url, connect_timeout=2, read_timeout=10, max_attempts=2)
        if error is None:
            call(bucket)
        else:
            with pytest.raises(error) as caught:
                call(bucket)
            message = str(caught.value)
            assert expected.format(url=hostile.url) in message and "\n" not in message, message
            assert NAMED not in message
        assert len(hostile.requests) == requests and bucket._botocore is None
