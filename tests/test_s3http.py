"""S3 requests signed and sent without botocore (agent/storage/s3http.py, issue 14): the SigV4 signer against
AWS's published test vectors and against botocore's own signer, the credential sources operators use, the
addressing botocore would use, and a bucket on a real SeaweedFS whose credentials only botocore can resolve."""

from __future__ import annotations

import hashlib
import html
import json
import random
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bodycam.agent.storage.bucket import S3Bucket, open_bucket
from bodycam.agent.storage.s3http import (
    EMPTY_SHA256,
    UNSIGNED_PAYLOAD,
    Credentials,
    S3Http,
    authorization,
    bucket_base,
    region_of,
    static_credentials,
    uri_encode,
)
from bodycam.agent.storage.s3xml import BadAnswer, parse

from .faultproxy import FaultProxy
from .s3server import SeaweedFS

# The AWS SigV4 test suite (aws-sig-v4-test-suite): its example credentials, time, region and service.
SUITE = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_DATE = "20150830T123600Z"
# Amazon S3 API Reference, "Signature Calculations for the Authorization Header (AWS Signature Version 4)":
# the examples' credentials, bucket and time.
S3_DOCS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
S3_HOST = "examplebucket.s3.amazonaws.com"
S3_DATE = "20130524T000000Z"


def _signature(header: str) -> str:
    return header.rsplit("Signature=", 1)[1]


#: what S3 (and Go's encoding/xml: SeaweedFS, MinIO) escapes, as html.unescape reads it
XML_ESCAPES = ["d41d8cd98f00b204e9800998ecf8427e-3", "&quot;a1b2&quot;", "&amp;lt;", "&lt;&gt;&apos;&amp;&quot;",
               "&#34;x&#x22;", "&#34;e-2&#34;&#39;", "&#0034;", "&amp;amp;", "caf\u00e9"]  # fmt: skip
#: what no XML answer holds (HTML's entities, a bare or unterminated ampersand): refused, not guessed at
NOT_XML = ["&amp", "a & b", "&copy;", "&quot", "&QUOT;", "caf\u00e9 &eacute;"]


@pytest.mark.parametrize("text", XML_ESCAPES + NOT_XML)
def test_answers_are_unescaped_as_html_unescape_does_without_importing_html(text: str) -> None:
    """S3 escapes XML's five entities, quotes as ``&quot;`` or ``&#34;`` (Go): an answer's fields read by
    agent/storage/s3xml.py (expat) are what ``html.unescape`` gives; anything that is not XML is refused,
    and ``html`` (its 2,000-entity table, ~2 ms of each ingest's start-up) is never imported."""
    body = f"<R><ETag>{text}</ETag></R>".encode()
    if text in NOT_XML:
        with pytest.raises(BadAnswer):
            parse(body, "R")
    else:
        assert parse(body, "R").fields["ETag"] == html.unescape(text)


def test_s3s_own_escapes_do_not_import_html() -> None:
    probe = (
        "import sys; from bodycam.agent.storage.s3xml import parse; from bodycam.agent.storage.s3http import error_of; "
    )
    probe += "parse(b'<E><A>&quot;1&#34;&amp;&lt;&gt;&apos;&#39;</A></E>', 'E'); "
    probe += (
        "error_of(b'<Error><Code>X</Code><Message>&quot;1&#34;&amp;</Message></Error>'); print('html' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False", done


@pytest.mark.parametrize(
    ("name", "method", "query", "signature"),
    [
        ("get-vanilla", "GET", [], "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "get-vanilla-query-order-key-case",
            "GET",
            [("Param2", "value2"), ("Param1", "value1")],
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        ("post-vanilla", "POST", [], "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ],
)
def test_the_sigv4_test_suite(name: str, method: str, query: list[tuple[str, str]], signature: str) -> None:
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": SUITE_DATE}
    header = authorization(SUITE, "us-east-1", "service", method, "/", query, headers, EMPTY_SHA256)
    assert header == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}"
    ), name


def test_the_s3_documentation_examples() -> None:
    """GET Object (a range), PUT Object (a ``$`` in the key, a Date and a storage class signed), GET Bucket
    Lifecycle (a query parameter without a value, as ``?uploads`` is) and GET Bucket (a listing's query)."""
    base = {"host": S3_HOST, "x-amz-date": S3_DATE}
    empty = {**base, "x-amz-content-sha256": EMPTY_SHA256}
    get = authorization(
        S3_DOCS, "us-east-1", "s3", "GET", "/test.txt", [], {**empty, "Range": "bytes=0-9"}, EMPTY_SHA256
    )
    assert get.endswith("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")  # fmt: skip
    body_hash = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    put_headers = {
        **base,
        "Date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-content-sha256": body_hash,
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
    }
    path = "/" + uri_encode("test$file.text", safe="/")
    assert path == "/test%24file.text"
    put = authorization(S3_DOCS, "us-east-1", "s3", "PUT", path, [], put_headers, body_hash)
    assert _signature(put) == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    lifecycle = authorization(S3_DOCS, "us-east-1", "s3", "GET", "/", [("lifecycle", "")], empty, EMPTY_SHA256)
    assert _signature(lifecycle) == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
    listing = authorization(
        S3_DOCS, "us-east-1", "s3", "GET", "/", [("max-keys", "2"), ("prefix", "J")], empty, EMPTY_SHA256
    )
    assert _signature(listing) == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"


@pytest.mark.parametrize(
    "key",
    ["dock-01/batch-0001/recordings/CAM123/rec 0001+(a)~.age", "d/é ü/%41 =&?#/x.age", "a/b/c.json"],
    ids=["spaces-plus-parens", "unicode-and-reserved", "plain"],
)
def test_the_signature_is_botocores_for_the_requests_an_ingest_makes(key: str) -> None:
    """The same request signed by botocore's S3SigV4Auth (at the time it chose) and here: the same header,
    for a part PUT with its query and checksum header, and a session token."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials as BotoCredentials

    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "a-session/token+=")
    query = [("partNumber", "7"), ("uploadId", "2~x_y.z/+=AbC")]
    path = "/bucket-name/" + uri_encode(key, safe="/")
    url = "http://127.0.0.1:8333" + path + "?" + "&".join(f"{k}={uri_encode(v)}" for k, v in query)
    request = AWSRequest(
        "PUT", url, headers={"x-amz-checksum-crc32c": "TtsDzw==", "Content-Length": "5"}, data=b"bytes"
    )
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(BotoCredentials(creds.access_key, creds.secret_key, creds.token), "s3", "eu-west-2").add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    assert headers["X-Amz-Content-SHA256"] == UNSIGNED_PAYLOAD
    mine = authorization(
        creds, "eu-west-2", "s3", "PUT", path, query, {**headers, "host": "127.0.0.1:8333"}, UNSIGNED_PAYLOAD
    )
    assert mine == request.headers["Authorization"]


# -- where credentials, region and endpoint come from ---------------------------------------------------
def _files(tmp_path: Path, config: str = "", credentials: str = "") -> dict[str, str]:
    (tmp_path / "config").write_text(config)
    (tmp_path / "credentials").write_text(credentials)
    return {"AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")}


def test_static_credentials_come_from_where_botocore_finds_them_first(tmp_path: Path) -> None:
    """The environment (what /etc/bodycam/environment sets under systemd), else the profile's static keys
    in the credentials file, else in the config file; anything botocore resolves another way is not
    taken here (None), nor is a half of a pair (botocore then names the missing half)."""
    files = _files(
        tmp_path,
        config="[default]\nregion = eu-west-2\n[profile cfg]\naws_access_key_id = C\naws_secret_access_key = c\n"
        "[profile role]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = cfg\n"
        "[profile proc]\ncredential_process = /bin/false\n",
        credentials="[default]\naws_access_key_id = F\naws_secret_access_key = f\naws_session_token = t\n"
        "[role]\naws_access_key_id = R\naws_secret_access_key = r\n[half]\naws_access_key_id = H\n",
    )
    env = {"AWS_ACCESS_KEY_ID": "E", "AWS_SECRET_ACCESS_KEY": "e", "AWS_SESSION_TOKEN": "s", **files}
    assert static_credentials(env) == Credentials("E", "e", "s")
    assert static_credentials({**files, "AWS_ACCESS_KEY_ID": "E"}) is None
    assert static_credentials(files) == Credentials("F", "f", "t")
    assert static_credentials({**files, "AWS_PROFILE": "cfg"}) == Credentials("C", "c")
    for other in ("role", "proc", "half", "missing"):
        assert static_credentials({**files, "AWS_PROFILE": other}) is None, other
    assert static_credentials({**files, "AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_ROLE_ARN": "arn"}) is None
    assert static_credentials({**files, "AWS_PROFILE": "cfg", "AWS_DEFAULT_PROFILE": "role"}) is None
    assert region_of(files) == "eu-west-2"
    assert region_of({**files, "AWS_DEFAULT_REGION": "us-west-1"}) == "us-west-1"
    assert "f" not in repr(static_credentials(files))  # never the secret in a log line


def test_the_bucket_is_addressed_as_botocore_addresses_it(tmp_path: Path) -> None:
    files = _files(tmp_path)
    endpoint = "http://127.0.0.1:8333"
    assert bucket_base("evidence", endpoint, "us-east-1", files) == "http://127.0.0.1:8333/evidence/"
    assert bucket_base("evidence", endpoint + "/", "us-east-1", files) == "http://127.0.0.1:8333/evidence/"
    # an explicit bucket.endpoint_url wins over AWS_ENDPOINT_URL, as in botocore
    assert bucket_base("evidence", endpoint, "us-east-1", {**files, "AWS_ENDPOINT_URL": "http://x"}) is not None
    assert bucket_base("evidence", None, "eu-west-2", files) == "https://evidence.s3.eu-west-2.amazonaws.com/"
    for bucket, region, env in [
        ("evidence", None, files),  # no region
        ("ev.idence", "eu-west-2", files),  # a dotted name: botocore goes path-style
        ("evidence", "cn-north-1", files),  # another partition
        ("evidence", "eu-west-2", {**files, "AWS_ENDPOINT_URL": "http://x"}),
        ("evidence", "eu-west-2", {**files, "HTTPS_PROXY": "http://proxy:3128"}),
        ("evidence", "eu-west-2", {**files, "AWS_USE_FIPS_ENDPOINT": "true"}),
    ]:
        assert bucket_base(bucket, None, region, env) is None, (bucket, region, env)
    assert bucket_base("evidence", endpoint + "/some/path", "us-east-1", files) is None
    routed = _files(tmp_path, config="[default]\nendpoint_url = http://elsewhere\n")
    assert bucket_base("evidence", None, "eu-west-2", routed) is None


# -- on SeaweedFS ---------------------------------------------------------------------------------------
def test_credentials_only_botocore_resolves_still_sign_the_buckets_own_requests(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile whose keys come from a credential_process (as a role or SSO would: not static): botocore's
    chain resolves them, and the bucket's own requests are signed with them."""
    script = tmp_path / "creds.py"
    doc = {"Version": 1, "AccessKeyId": seaweedfs.access_key, "SecretAccessKey": seaweedfs.secret_key}
    script.write_text(f"import json\nprint(json.dumps({json.dumps(doc)}))\n")
    (tmp_path / "config").write_text(f"[profile proc]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "proc")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    bucket = open_bucket(f"s3://{s3_bucket}/evidence", seaweedfs.endpoint_url, connect_timeout=2, read_timeout=10)
    assert isinstance(bucket, S3Bucket) and bucket._http is not None and not bucket._http.static
    upload_id = bucket.start_upload("k/one")
    part = bucket.upload_part("k/one", upload_id, 1, memoryview(b"part bytes"))
    assert bucket.complete_upload("k/one", upload_id, [part]).size == 10
    assert bucket.get_bytes("k/one", 100) == b"part bytes"


def test_requests_go_on_one_kept_alive_connection(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """Start, three parts, complete, head, put and read back: one TCP connection in all (a new one per
    request would cost a handshake and a socket each)."""
    bucket = open_bucket(f"s3://{s3_bucket}/evidence", seaweedfs.endpoint_url)
    assert isinstance(bucket, S3Bucket) and bucket._http is not None
    http: S3Http = bucket._http
    upload_id = bucket.start_upload("k/two")
    parts = [bucket.upload_part("k/two", upload_id, n, memoryview(bytes([n]) * 5 * 1024 * 1024)) for n in (1, 2)]
    parts.append(bucket.upload_part("k/two", upload_id, 3, b"tail"))
    bucket.complete_upload("k/two", upload_id, parts)
    assert bucket.head("k/two") is not None and bucket.head("k/none") is None
    bucket.put_object("m.json", b"{}")
    assert bucket.get_bytes("m.json", 10) == b"{}"
    assert len(http._idle) == 1
    local = http._idle[0].sock.getsockname()  # type: ignore[union-attr]
    assert bucket.get_bytes("m.json", 10) == b"{}" and http._idle[0].sock.getsockname() == local  # type: ignore[union-attr]
    assert bucket._botocore is None  # and botocore was never needed
    assert urlsplit(http.base).path == f"/{s3_bucket}/"


def test_a_kept_connection_closed_under_it_is_replaced_without_botocore(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """A server (or a middlebox) closes a kept-alive connection while it is idle: the next request fails
    before any answer on it, and is sent once more on a new connection, not handed to botocore (which would
    be loaded for it) nor reported."""
    with FaultProxy(("127.0.0.1", seaweedfs.ports["s3"])) as proxy:
        bucket = open_bucket(f"s3://{s3_bucket}/evidence", proxy.url, connect_timeout=2, read_timeout=10)
        assert isinstance(bucket, S3Bucket) and bucket._http is not None
        bucket.put_object("m.json", b"{}")
        assert len(bucket._http._idle) == 1
        proxy.set()  # resets the connection kept idle
        upload_id = bucket.start_upload("k/three")
        part = bucket.upload_part("k/three", upload_id, 1, memoryview(b"after the reset"))
        bucket.complete_upload("k/three", upload_id, [part])
        assert bucket.get_bytes("k/three", 100) == b"after the reset"
        proxy.set()
        assert bucket.head("m.json") is not None
        assert bucket._botocore is None


def test_unescaping_and_fields_agree_with_the_functions_they_replace() -> None:
    """s3http's own unescaping (887dcd5) against html.unescape, which error_of used, and s3xml's fields
    against ElementTree, which botocore read the listings with: 20,000 strings of entity fragments, control
    and bidi characters (seeded, the same each run) decode the same, and one is refused by both or neither."""
    from xml.etree import ElementTree

    from bodycam.agent.storage.s3http import _unescape

    fragments = ["&", ";", "#", "x", "34", "39", "0", "22", "amp", "lt", "gt", "quot", "apos", "QUOT", "copy",
                 "eacute", "128", "x80", "13", "a", " ", "\r", "\n", "\t", "\u00e9", "\u202e", "\x1b"]  # fmt: skip
    rng = random.Random(14)
    for _ in range(20_000):
        text = "".join(rng.choice(fragments) for _ in range(rng.randrange(1, 12)))
        assert _unescape(text) == html.unescape(text), text
        body = f"<R><ETag>{text}</ETag></R>".encode()
        try:
            ours: str | None = parse(body, "R").fields.get("ETag", "")
        except BadAnswer:
            ours = None
        try:
            theirs = ElementTree.fromstring(body).findtext("ETag")
        except ElementTree.ParseError:
            theirs = None
        assert ours == theirs, text
