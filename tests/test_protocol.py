"""The pure protocol v1 codec (``protocol.py``) and command payloads (``messages.py``).

Golden vectors are the worked examples of docs/protocol.md; hypothesis checks round trips, resynchronisation,
bounded allocation on garbage, truncation and single-bit-error detection; every hard limit is shown refused.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterable

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bodycam.drivers.errors import ProtocolError
from bodycam.drivers.protocol import messages as m
from bodycam.drivers.protocol.frames import (
    HEADER_SIZE,
    MAGIC,
    MAX_PAYLOAD,
    MAX_READ,
    MAX_READ_SPAN,
    MAX_RESYNC_BYTES,
    OVERHEAD,
    RESPONSE_BIT,
    Command,
    Frame,
    FrameDecoder,
    Status,
    TruncatedFrame,
    command_text,
    decode_frame,
    encode_frame,
    parse_header,
    status_text,
)

FAST = settings(deadline=500, suppress_health_check=[HealthCheck.too_slow])
BOUND = MAX_PAYLOAD + OVERHEAD  # the largest frame; nothing may make the decoder wait for more

# -- golden vectors (docs/protocol.md, "Worked examples") ---------------------------------------
HELLO_REQUEST_HEX = "4243010101000000060000002e52e550010114101000fa742a5d"
HELLO_RESPONSE_HEX = "424301810100000005000000fcdeaf9401141010005c1542a0"
ERASE_REFUSED_HEX = "424301893412070000000000dc7bf8a100000000"


def test_crc32c_is_castagnoli_with_the_standard_check_value() -> None:
    assert crc32c.crc32c(b"123456789") == 0xE3069283
    assert crc32c.crc32c(b"") == 0


def test_golden_hello_request() -> None:
    payload = m.HelloRequest(1, 1, MAX_PAYLOAD + OVERHEAD).to_bytes()
    assert payload.hex() == "010114101000"
    frame = encode_frame(Command.HELLO, 1, payload)
    assert frame.hex() == HELLO_REQUEST_HEX
    assert struct.unpack_from("<I", frame, 12)[0] == crc32c.crc32c(frame[:12]) == 0x50E5522E
    assert struct.unpack_from("<I", frame, 22)[0] == crc32c.crc32c(payload) == 0x5D2A74FA
    decoded, rest = decode_frame(bytes.fromhex(HELLO_REQUEST_HEX))
    assert decoded == Frame(Command.HELLO, 1, payload, 0, False)
    assert rest == b""


def test_golden_hello_response() -> None:
    frame = encode_frame(Command.HELLO, 1, m.HelloResponse(1, 1_052_692).to_bytes(), response=True)
    assert frame.hex() == HELLO_RESPONSE_HEX
    decoded, _ = decode_frame(frame)
    assert decoded.response and decoded.command == Command.HELLO and decoded.status == Status.OK
    assert m.HelloResponse.from_bytes(decoded.payload) == m.HelloResponse(1, 1_052_692)


def test_golden_refusal_with_empty_payload() -> None:
    frame = encode_frame(Command.ERASE, 0x1234, b"", status=Status.HASH_MISMATCH, response=True)
    assert frame.hex() == ERASE_REFUSED_HEX
    assert decode_frame(frame)[0] == Frame(Command.ERASE, 0x1234, b"", Status.HASH_MISMATCH, True)


def test_constants_match_the_document() -> None:
    assert (HEADER_SIZE, OVERHEAD, MAX_READ, MAX_PAYLOAD) == (16, 20, 1_048_576, 1_052_672)
    assert MAX_READ_SPAN == 16 * 1024 * 1024 and Status.MORE_FOLLOWS == 0x0C
    assert MAX_RESYNC_BYTES == 2_105_384 and MAGIC == b"BC" and RESPONSE_BIT == 0x80
    assert (m.MAX_NAME, m.MAX_SHORT_TEXT, m.MAX_LIST_PAGE, m.MAX_RECORDINGS) == (128, 32, 64, 65_535)
    assert (m.MAX_RECORDING_SIZE, m.MAX_FIRMWARE_SIZE, m.MAX_FIRMWARE_CHUNK) == (64 << 30, 64 << 20, 256 << 10)
    assert (m.MIN_TIME_US, m.MAX_TIME_US) == (946_684_800_000_000, 4_102_444_800_000_000)
    assert m.AUTH_CONTEXT.hex() == "626f647963616d2d617574682d763100"


def test_texts_of_codes_keep_unknown_values() -> None:
    assert str(Status.HASH_MISMATCH) == "0x07 HASH_MISMATCH"
    assert status_text(0x77) == "0x77 UNKNOWN_STATUS"
    assert command_text(0x88) == "0x08 READ"
    assert command_text(0x7E) == "0x7E UNKNOWN_COMMAND"


def test_encoder_refuses_what_it_cannot_frame() -> None:
    with pytest.raises(ValueError):
        encode_frame(0x80, 0)
    with pytest.raises(ValueError):
        encode_frame(-1, 0)
    with pytest.raises(ValueError):
        encode_frame(1, 0, bytes(MAX_PAYLOAD + 1))
    big = encode_frame(Command.READ, 7, bytes(MAX_PAYLOAD), response=True)
    assert len(big) == BOUND
    assert decode_frame(big)[0].payload == bytes(MAX_PAYLOAD)


# -- strategies ---------------------------------------------------------------------------------
frames = st.builds(
    Frame,
    command=st.integers(0, 0x7F),
    seq=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=4096),
    status=st.integers(0, 0xFFFF),
    response=st.booleans(),
)


def pieces(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def drain(decoder: FrameDecoder, errors: list[ProtocolError] | None = None) -> list[Frame]:
    """Every frame the decoder can give now; ProtocolErrors are collected (the dock would retry)."""
    out: list[Frame] = []
    while True:
        try:
            frame = decoder.next_frame()
        except ProtocolError as err:
            if errors is None:
                raise
            errors.append(err)
            continue
        if frame is None:
            assert 1 <= decoder.needed and decoder.buffered + decoder.needed <= BOUND
            return out
        out.append(frame)


def header(length: int, *, command: int = Command.READ, seq: int = 1, version: int = 1) -> bytes:
    head = struct.pack("<2sBBHHI", MAGIC, version, command | RESPONSE_BIT, seq, 0, length)
    return head + struct.pack("<I", crc32c.crc32c(head))


# -- round trips --------------------------------------------------------------------------------
@FAST
@given(frames, st.binary(max_size=64))
def test_every_frame_round_trips(frame: Frame, rest: bytes) -> None:
    data = frame.to_bytes()
    assert len(data) == len(frame.payload) + OVERHEAD
    assert decode_frame(data + rest) == (frame, rest)
    assert parse_header(data[:HEADER_SIZE]) == (
        frame.command,
        frame.seq,
        frame.status,
        len(frame.payload),
        frame.response,
    )


@FAST
@given(st.lists(frames, max_size=5), st.lists(st.integers(0, 1 << 20), max_size=40))
def test_decoder_fed_in_arbitrary_pieces(batch: list[Frame], cuts: list[int]) -> None:
    decoder = FrameDecoder()
    got: list[Frame] = []
    for piece in pieces(b"".join(f.to_bytes() for f in batch), cuts):
        decoder.feed(piece)
        got += drain(decoder)
    assert got == batch
    assert decoder.buffered == 0 and decoder.skipped == 0


# garbage that looks like frames: magic bytes, headers with good CRCs but wrong versions or lengths
garbage_parts = st.one_of(
    st.binary(max_size=200),
    st.just(MAGIC),
    st.binary(max_size=14).map(lambda b: MAGIC + b),
    st.integers(0, 0xFFFF_FFFF).map(header),
    st.integers(0, 255).map(lambda v: header(8, version=v)),
)
garbage = st.lists(garbage_parts, max_size=12).map(b"".join)


# garbage for the resync test: it may look like frames but never holds a valid header of its own
# (a valid header would rightly swallow the bytes after it as its payload)
bad_headers = st.one_of(
    st.integers(MAX_PAYLOAD + 1, 0xFFFF_FFFF).map(header),
    st.integers(0, 255).filter(lambda v: v != 1).map(lambda v: header(8, version=v)),
)
resync_garbage = st.lists(
    st.one_of(
        st.binary(max_size=200),
        st.just(MAGIC),
        st.just(b"B"),
        st.binary(max_size=14).map(lambda b: MAGIC + b),
        bad_headers,
    ),
    max_size=12,
).map(b"".join)


@FAST
@given(
    st.lists(st.tuples(resync_garbage, frames), max_size=4),
    resync_garbage,
    st.lists(st.integers(0, 1 << 20), max_size=20),
)
def test_resync_finds_exactly_the_frames_between_garbage(
    batch: list[tuple[bytes, Frame]], tail: bytes, cuts: list[int]
) -> None:
    stream = b"".join(g + f.to_bytes() for g, f in batch) + tail
    decoder = FrameDecoder()
    got: list[Frame] = []
    for piece in pieces(stream, cuts):
        decoder.feed(piece)
        got += drain(decoder)  # raises on any ProtocolError: garbage alone never costs a frame
    assert got == [f for _, f in batch]


def test_resync_skips_a_lone_announcing_header_before_a_frame() -> None:
    frame = Frame(Command.STATUS, 9, b"ok", 0, True)
    decoder = FrameDecoder()
    decoder.feed(b"\x00\xffB" + header(MAX_PAYLOAD + 1) + b"BC\x01" + frame.to_bytes())
    assert drain(decoder) == [frame]


# -- garbage: only ProtocolError, bounded buffering, fast -----------------------------------------
@FAST
@given(st.one_of(st.binary(max_size=20_000), garbage), st.lists(st.integers(0, 1 << 20), max_size=20))
def test_garbage_only_raises_protocol_error_and_stays_bounded(junk: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder()
    errors: list[ProtocolError] = []
    for piece in pieces(junk, cuts):
        decoder.feed(piece)
        drain(decoder, errors)  # checks buffered + needed <= BOUND each time it returns
    try:
        decode_frame(junk)
    except ProtocolError:
        pass


@FAST
@given(st.one_of(st.binary(max_size=4096), garbage))
def test_decode_frame_on_garbage_raises_only_protocol_error(junk: bytes) -> None:
    try:
        frame, rest = decode_frame(junk)
    except TruncatedFrame as err:
        assert 1 <= err.needed <= BOUND
    except ProtocolError:
        pass
    else:  # garbage that happens to hold a frame: it must be exactly that frame
        assert frame.to_bytes() + rest == junk


def test_endless_garbage_is_refused_after_max_resync_bytes() -> None:
    decoder = FrameDecoder()
    decoder.feed(bytes(MAX_RESYNC_BYTES))
    assert decoder.next_frame() is None and decoder.buffered == 0
    decoder.feed(bytes(HEADER_SIZE))  # fewer than 16 bytes are not even looked at
    with pytest.raises(ProtocolError, match="garbage"):
        decoder.next_frame()
    assert decoder.buffered == 0 and decoder.skipped == 0


def test_a_good_frame_resets_the_garbage_count() -> None:
    decoder = FrameDecoder()
    frame = Frame(Command.STATUS, 1, b"x", 0, True)
    for _ in range(3):  # 3 x 0.9 x MAX_RESYNC_BYTES of garbage, each run ended by a frame
        decoder.feed(bytes(MAX_RESYNC_BYTES * 9 // 10) + frame.to_bytes())
        assert drain(decoder) == [frame]


# -- truncation and lengths -------------------------------------------------------------------
@FAST
@given(frames, st.data())
def test_truncated_frames_say_how_much_is_missing(frame: Frame, data: st.DataObject) -> None:
    whole = frame.to_bytes()
    k = data.draw(st.integers(0, len(whole) - 1))
    expected = HEADER_SIZE - k if k < HEADER_SIZE else len(whole) - k
    with pytest.raises(TruncatedFrame) as info:
        decode_frame(whole[:k])
    assert info.value.needed == expected
    decoder = FrameDecoder()
    decoder.feed(whole[:k])
    assert decoder.next_frame() is None
    assert decoder.needed == expected
    decoder.feed(whole[k:])
    assert decoder.next_frame() == frame


@FAST
@given(st.integers(MAX_PAYLOAD + 1, 0xFFFF_FFFF))
def test_length_over_max_payload_is_refused_from_the_header_alone(length: int) -> None:
    head = header(length)
    with pytest.raises(ProtocolError, match="more than the limit") as info:
        decode_frame(head)  # no payload byte has arrived
    assert not isinstance(info.value, TruncatedFrame)
    decoder = FrameDecoder()
    decoder.feed(head)
    assert decoder.next_frame() is None
    assert decoder.needed <= HEADER_SIZE  # it never waits for the announced payload


def test_length_of_exactly_max_payload_is_awaited() -> None:
    with pytest.raises(TruncatedFrame) as info:
        decode_frame(header(MAX_PAYLOAD))
    assert info.value.needed == MAX_PAYLOAD + 4
    decoder = FrameDecoder()
    decoder.feed(header(MAX_PAYLOAD))
    assert decoder.next_frame() is None and decoder.needed == MAX_PAYLOAD + 4


def test_other_versions_are_refused_and_skipped() -> None:
    with pytest.raises(ProtocolError, match="version 2"):
        decode_frame(header(0, version=2) + b"\0\0\0\0")
    decoder = FrameDecoder()
    decoder.feed(header(0, version=2) + b"\0\0\0\0")
    assert drain(decoder) == []


# -- single bit errors --------------------------------------------------------------------------
@FAST
@given(frames, st.data())
def test_a_single_bit_flip_is_always_detected(frame: Frame, data: st.DataObject) -> None:
    whole = bytearray(frame.to_bytes())
    bit = data.draw(st.integers(0, len(whole) * 8 - 1))
    whole[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProtocolError) as info:
        decode_frame(bytes(whole))
    assert not isinstance(info.value, TruncatedFrame)  # the header CRC is checked before the length
    follower = Frame(Command.STATUS, (frame.seq + 1) & 0xFFFF, b"next", 0, True)
    decoder = FrameDecoder()
    decoder.feed(bytes(whole) + follower.to_bytes())
    errors: list[ProtocolError] = []
    assert drain(decoder, errors) == [follower]  # the damaged frame is dropped or skipped, never returned
    assert len(errors) <= 1


def test_a_frame_inside_a_payload_surfaces_when_the_outer_header_is_damaged() -> None:
    # Known limit of unescaped framing (docs/protocol.md): the dock's seq/command checks guard against it.
    inner = Frame(Command.READ, 42, b"inner", 0, True)
    outer = bytearray(encode_frame(Command.READ, 41, inner.to_bytes(), response=True))
    outer[8] ^= 0x01  # the length field: the outer header now fails its CRC
    decoder = FrameDecoder()
    decoder.feed(bytes(outer))
    assert drain(decoder) == [inner]


# -- messages: round trips ----------------------------------------------------------------------
def texts(limit: int) -> st.SearchStrategy[str]:
    chars = st.characters(exclude_categories=("Cc", "Cs", "Cf", "Zl", "Zp"))
    return st.text(chars, max_size=limit).filter(lambda s: len(s.encode()) <= limit)


SERIAL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
u8, u16, u32, u64 = (st.integers(0, (1 << b) - 1) for b in (8, 16, 32, 64))
times = st.integers(m.MIN_TIME_US, m.MAX_TIME_US)
digests = st.binary(min_size=32, max_size=32)


@st.composite
def recording_infos(draw: st.DrawFn) -> m.RecordingInfo:
    start = draw(times)
    return m.RecordingInfo(
        draw(u32),
        draw(st.integers(0, m.MAX_RECORDING_SIZE)),
        start,
        draw(st.integers(start, m.MAX_TIME_US)),
        draw(st.sampled_from(m.Category)),
        draw(digests),
        draw(texts(m.MAX_NAME)),
    )


@st.composite
def camera_statuses(draw: st.DrawFn) -> m.CameraStatus:
    total = draw(u64)
    return m.CameraStatus(
        draw(st.integers(0, 100)),
        draw(st.booleans()),
        draw(st.integers(0, total)),
        total,
        draw(st.integers(-32768, 32767)) / 10,
        draw(st.integers(0, m.MAX_RECORDINGS)),
    )


messages = st.one_of(
    st.builds(m.HelloRequest, u8, u8, u32),
    st.builds(m.HelloResponse, u8, u32),
    st.builds(
        m.Identity,
        u8,
        u16,
        u16,
        texts(m.MAX_SHORT_TEXT),
        st.from_regex(m.SERIAL_PATTERN, fullmatch=True),
        texts(m.MAX_SHORT_TEXT),
        digests,
    ),
    st.builds(m.AuthRequest, digests),
    st.builds(m.AuthResponse, st.binary(min_size=64, max_size=64)),
    st.builds(m.ClockValue, times),
    camera_statuses(),
    st.builds(m.ListRequest, u32, u16),
    st.builds(m.ListResponse, st.integers(0, m.MAX_RECORDINGS), st.lists(recording_infos(), max_size=6).map(tuple)),
    st.builds(m.ReadRequest, u32, u64, st.integers(0, MAX_READ_SPAN)),
    st.builds(m.EraseRequest, u32, digests),
    st.builds(
        m.FirmwareBegin,
        st.integers(1, m.MAX_FIRMWARE_SIZE),
        digests,
        texts(m.MAX_SHORT_TEXT),
        st.binary(min_size=64, max_size=64),
    ),
    st.builds(m.Offset, st.integers(0, m.MAX_FIRMWARE_SIZE)),
    st.builds(m.FirmwareChunk, u64, st.binary(max_size=2048)),
    st.builds(m.FirmwareCommitted, texts(m.MAX_SHORT_TEXT), u8),
)


@FAST
@given(messages)
def test_every_message_round_trips(message: object) -> None:
    data = message.to_bytes()  # type: ignore[attr-defined]
    assert type(message).from_bytes(data) == message  # type: ignore[attr-defined]
    assert len(data) <= MAX_PAYLOAD


def test_a_full_list_page_round_trips_at_the_limits() -> None:
    entry = m.RecordingInfo(
        0xFFFF_FFFF, m.MAX_RECORDING_SIZE, m.MIN_TIME_US, m.MAX_TIME_US, m.Category.OPERATIONAL, b"\1" * 32, "é" * 64
    )
    page = m.ListResponse(m.MAX_RECORDINGS, (entry,) * m.MAX_LIST_PAGE)
    assert len(page.to_bytes()) == 6 + 64 * (61 + 1 + 128) == 12_166
    assert m.ListResponse.from_bytes(page.to_bytes()) == page


# -- messages: every limit is refused ---------------------------------------------------------------
def raw_entry(
    *,
    rid: int = 1,
    size: int = 10,
    start: int = m.MIN_TIME_US,
    end: int = m.MIN_TIME_US,
    category: int = 1,
    name: bytes = b"clip.mp4",
) -> bytes:
    return struct.pack("<IQqqB32s", rid, size, start, end, category, b"\0" * 32) + bytes([len(name)]) + name


def raw_list(*entries: bytes, total: int | None = None, count: int | None = None) -> bytes:
    n = len(entries) if count is None else count
    return struct.pack("<IH", len(entries) if total is None else total, n) + b"".join(entries)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (raw_list(raw_entry(name=b"A" * 129)), "'name' is 129 bytes long, the limit is 128"),
        (raw_list(raw_entry(name=b"clip\x1b[31m.mp4")), "'name' contains control characters"),
        (raw_list(raw_entry(name=b"a\x00b")), "'name' contains control characters"),
        (raw_list(raw_entry(name=b"a\x7f")), "'name' contains control characters"),
        (raw_list(raw_entry(name="a\u0085".encode())), "'name' contains control characters"),
        (raw_list(raw_entry(name=b"\xff\xfe")), "'name' is not valid UTF-8"),
        (raw_list(raw_entry(name=b"\xed\xa0\x80")), "'name' is not valid UTF-8"),  # a UTF-8 encoded surrogate
        (raw_list(raw_entry(size=m.MAX_RECORDING_SIZE + 1)), "over the 68719476736 limit"),
        (raw_list(raw_entry(start=-1)), "'start_us' -1 µs is outside 1970..2100"),
        (raw_list(raw_entry(end=m.MAX_TIME_US + 1)), "'end_us'"),
        (raw_list(raw_entry(start=m.MIN_TIME_US + 1, end=m.MIN_TIME_US)), "ends before it starts"),
        (raw_list(total=m.MAX_RECORDINGS + 1), "claims 65536 recordings"),
        (raw_list(*[raw_entry(rid=i) for i in range(65)]), "65 entries in one page"),
        (raw_list(count=65), "65 entries in one page"),  # refused before any entry is read
        (raw_list(raw_entry(), raw_entry(), count=1), "unexpected trailing bytes"),
        (raw_list(raw_entry(), count=2), "payload ends inside field 'entry'"),
        (raw_list(raw_entry())[:-3], "payload ends inside field 'name'"),
        (b"\0\0\0", "payload ends inside field 'header'"),
    ],
)
def test_list_response_limits(payload: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        m.ListResponse.from_bytes(payload)


def test_list_limits_are_inclusive() -> None:
    ok = raw_list(raw_entry(size=m.MAX_RECORDING_SIZE, name=b"A" * 128, end=m.MAX_TIME_US), total=m.MAX_RECORDINGS)
    assert m.ListResponse.from_bytes(ok).entries[0].size == m.MAX_RECORDING_SIZE
    page = m.ListResponse.from_bytes(raw_list(*[raw_entry(rid=i) for i in range(64)]))
    assert len(page.entries) == 64


def test_unknown_category_reads_as_unknown() -> None:
    assert m.ListResponse.from_bytes(raw_list(raw_entry(category=9))).entries[0].category == m.Category.UNKNOWN


def identity(
    *, model: bytes = b"M", serial: bytes = b"SN-1", firmware: bytes = b"1.0", key: bytes = bytes(32)
) -> bytes:
    parts = [struct.pack("<BHH", 1, 0x1209, 0xBC02)]
    parts += [bytes([len(t)]) + t for t in (model, serial, firmware)]
    return b"".join(parts) + key


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (identity(model=b"M" * 33), "'model' is 33 bytes long, the limit is 32"),
        (identity(serial=b"S" * 33), "'serial' is 33 bytes long"),
        (identity(firmware=b"1\n"), "'firmware' contains control characters"),
        (identity(serial=b""), "must be 1 to 32 ASCII letters, digits"),
        (identity(serial=b"a/b"), "must be 1 to 32 ASCII letters, digits"),
        (identity(serial=b"a b"), "must be 1 to 32 ASCII letters, digits"),
        (identity(serial=b"\xc3"), "'serial' is not valid UTF-8"),
        (identity(key=bytes(31)), "inside field 'device_key'"),
        (identity() + b"\0", "1 unexpected trailing bytes"),
    ],
)
def test_identity_limits(payload: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        m.Identity.from_bytes(payload)


def status_bytes(battery: int = 50, charging: int = 1, used: int = 1, total: int = 2, count: int = 1) -> bytes:
    return struct.pack("<BBQQhI", battery, charging, used, total, 250, count)


FIRMWARE_BEGIN = struct.pack("<Q32s", 100, bytes(32)) + b"\x051.2.3" + bytes(64)


@pytest.mark.parametrize(
    ("parse", "payload", "match"),
    [
        (m.CameraStatus.from_bytes, status_bytes(battery=101), "out of range"),
        (m.CameraStatus.from_bytes, status_bytes(charging=2), "out of range"),
        (m.CameraStatus.from_bytes, status_bytes(used=3, total=2), "out of range"),
        (m.CameraStatus.from_bytes, status_bytes(count=m.MAX_RECORDINGS + 1), "out of range"),
        (m.ClockValue.from_bytes, struct.pack("<q", m.MIN_TIME_US - 1), "outside 2000..2100"),
        (m.ClockValue.from_bytes, struct.pack("<q", m.MAX_TIME_US + 1), "outside 2000..2100"),
        (m.ClockValue.from_bytes, struct.pack("<q", -1), "outside 2000..2100"),
        (m.ReadRequest.from_bytes, struct.pack("<IQI", 1, 0, MAX_READ_SPAN + 1), "over the limit 16777216"),
        (
            m.FirmwareBegin.from_bytes,
            struct.pack("<Q32s", m.MAX_FIRMWARE_SIZE + 1, bytes(32)) + b"\0" + bytes(64),
            "over the limit",
        ),
        (m.FirmwareBegin.from_bytes, struct.pack("<Q32s", 0, bytes(32)) + b"\0" + bytes(64), "image of 0 bytes"),
        (m.FirmwareBegin.from_bytes, FIRMWARE_BEGIN[:-1], "inside field 'signature'"),
        (m.FirmwareBegin.from_bytes, FIRMWARE_BEGIN + b"\0", "trailing"),
        (m.FirmwareChunk.from_bytes, bytes(8 + m.MAX_FIRMWARE_CHUNK + 1), "wrong payload size"),
        (m.FirmwareChunk.from_bytes, bytes(7), "wrong payload size"),
        (m.Offset.from_bytes, struct.pack("<Q", m.MAX_FIRMWARE_SIZE + 1), "over the firmware size limit"),
        (m.AuthRequest.from_bytes, bytes(31), "32 bytes"),
        (m.AuthResponse.from_bytes, bytes(65), "64 bytes"),
        (m.FirmwareCommitted.from_bytes, b"\x011", "inside field 'slot'"),
    ],
)
def test_scalar_limits(parse: Callable[[bytes], object], payload: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse(payload)


def test_a_reset_clock_is_reported_not_refused() -> None:
    """A camera whose RTC lost power reads 1970: refusing the answer would leave it undockable forever
    (issue 8 item 2), so the dock gets the value flagged invalid, and so are stamps made under it."""
    reset = m.ClockState.from_bytes(struct.pack("<q", 3_600_000_000))
    assert (reset.time_us, reset.epoch, reset.valid) == (3_600_000_000, None, False)
    assert m.ClockState.from_bytes(struct.pack("<q", m.MIN_TIME_US)).valid
    v2 = m.ClockState.from_bytes(struct.pack("<qIB", m.MIN_TIME_US + 5, 7, m.CLOCK_FLAG_VALID), 2)
    assert (v2.time_us, v2.epoch, v2.valid) == (m.MIN_TIME_US + 5, 7, True)
    assert not m.ClockState.from_bytes(struct.pack("<qIB", m.MIN_TIME_US + 5, 7, 0), 2).valid  # the camera says so
    assert not m.ClockState.from_bytes(struct.pack("<qIB", 5, 7, m.CLOCK_FLAG_VALID), 2).valid  # 1970 all the same
    (entry,) = m.ListResponse.from_bytes(raw_list(raw_entry(start=0, end=60_000_000))).entries
    assert entry.start_us == 0 and not entry.stamped_validly
    assert m.ListResponse.from_bytes(raw_list(raw_entry())).entries[0].stamped_validly


def test_revision_2_carries_clock_epochs() -> None:
    info = m.RecordingInfo(1, 2, m.MIN_TIME_US, m.MIN_TIME_US + 1, m.Category.UNKNOWN, bytes(32), "n", 9)
    listing = m.ListResponse(1, (info,))
    assert m.ListResponse.from_bytes(listing.to_bytes(2), 2).entries == (info,)
    assert len(listing.to_bytes(2)) == len(listing.to_bytes(1)) + 4  # a u32 before the name
    assert m.ListResponse.from_bytes(listing.to_bytes(1), 1).entries[0].clock_epoch is None
    state = m.ClockState(m.MIN_TIME_US, 3, True)
    assert m.ClockState.from_bytes(state.to_bytes(2), 2) == state
    assert len(state.to_bytes(1)) == 8 and len(state.to_bytes(2)) == 13
    with pytest.raises(ProtocolError):
        m.ClockState.from_bytes(state.to_bytes(1), 2)  # a revision-1 answer on a revision-2 link


def test_scalar_limits_are_inclusive() -> None:
    assert m.ClockValue.from_bytes(struct.pack("<q", m.MAX_TIME_US)).time_us == m.MAX_TIME_US
    assert m.ReadRequest.from_bytes(struct.pack("<IQI", 1, 0, MAX_READ_SPAN)).length == MAX_READ_SPAN
    assert len(m.FirmwareChunk.from_bytes(bytes(8 + m.MAX_FIRMWARE_CHUNK)).data) == m.MAX_FIRMWARE_CHUNK
    assert m.Offset.from_bytes(struct.pack("<Q", m.MAX_FIRMWARE_SIZE)).offset == m.MAX_FIRMWARE_SIZE
    assert m.CameraStatus.from_bytes(status_bytes(battery=100, used=2, count=m.MAX_RECORDINGS)).battery_percent == 100


FIXED_SAMPLES: list[object] = [
    m.HelloRequest(1, 1, 1000),
    m.HelloResponse(1, 1000),
    m.AuthRequest(bytes(32)),
    m.AuthResponse(bytes(64)),
    m.ClockValue(m.MIN_TIME_US),
    m.ClockState(m.MIN_TIME_US),
    m.CameraStatus(1, False, 0, 0, 0.0, 0),
    m.ListRequest(0, 64),
    m.ReadRequest(1, 2, 3),
    m.EraseRequest(1, bytes(32)),
    m.Offset(5),
    m.Identity(1, 2, 3, "m", "s", "f", bytes(32)),
    m.ListResponse(1, (m.RecordingInfo(1, 2, m.MIN_TIME_US, m.MIN_TIME_US, m.Category.TRAINING, bytes(32), "n"),)),
    m.FirmwareBegin(1, bytes(32), "1", bytes(64)),
    m.FirmwareCommitted("1", 0),
]


@pytest.mark.parametrize("message", FIXED_SAMPLES, ids=lambda x: type(x).__name__)
def test_short_payloads_and_trailing_bytes_are_refused(message: object) -> None:
    data: bytes = message.to_bytes()  # type: ignore[attr-defined]
    parse = type(message).from_bytes  # type: ignore[attr-defined]
    for k in range(len(data)):
        with pytest.raises(ProtocolError):
            parse(data[:k])
    with pytest.raises(ProtocolError):
        parse(data + b"\0")


def test_the_dock_side_encoder_refuses_over_long_text() -> None:
    with pytest.raises(ValueError):
        m.Identity(1, 1, 1, "M" * 33, "SN", "1", bytes(32)).to_bytes()
    with pytest.raises(ValueError):
        m.FirmwareBegin(1, bytes(32), "v" * 33, bytes(64)).to_bytes()


def test_signed_messages_are_bound_to_their_context() -> None:
    nonce = bytes(range(32))
    assert m.auth_message("SN1", nonce) == b"bodycam-auth-v1\x00SN1\x00" + nonce
    digest = bytes(32)
    assert (
        m.firmware_message("2.0", 5, digest) == b"bodycam-firmware-v1\x002.0\x00" + (5).to_bytes(8, "little") + digest
    )


# -- messages: fuzzing -------------------------------------------------------------------------------
PARSERS: list[Callable[[bytes], object]] = [
    m.HelloRequest.from_bytes,
    m.HelloResponse.from_bytes,
    m.Identity.from_bytes,
    m.AuthRequest.from_bytes,
    m.AuthResponse.from_bytes,
    m.ClockValue.from_bytes,
    m.ClockState.from_bytes,
    lambda data: m.ClockState.from_bytes(data, 2),
    lambda data: m.ListResponse.from_bytes(data, 2),
    m.CameraStatus.from_bytes,
    m.ListRequest.from_bytes,
    m.ListResponse.from_bytes,
    m.ReadRequest.from_bytes,
    m.EraseRequest.from_bytes,
    m.FirmwareBegin.from_bytes,
    m.Offset.from_bytes,
    m.FirmwareChunk.from_bytes,
    m.FirmwareCommitted.from_bytes,
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid payload with a few bytes overwritten, inserted or cut: reaches past the first check."""
    data = bytearray(draw(messages).to_bytes())
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(("set", "insert", "cut")))
        if action == "set" and pos < len(data):
            data[pos] = draw(u8)
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


@FAST
@given(st.one_of(st.binary(max_size=600), mutated()))
def test_parsers_on_arbitrary_bytes_raise_only_protocol_error(data: bytes) -> None:
    for parse in PARSERS:
        try:
            parse(data)
        except ProtocolError:
            pass
