"""Malformed, truncated, oversized and fuzzed messages get an error back; the server keeps serving."""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from collections.abc import Callable
from typing import Iterator

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blender_addon.protocol.codec import decode, encode
from blender_addon.protocol.limits import Limits

from .harness import ServerProcess, png_bytes

CLIENT_LIMITS = Limits(max_frames=256, max_header_bytes=1 << 24, max_frame_bytes=1 << 31, max_total_bytes=1 << 32)


class RawClient:
    """A bare DEALER socket: sends whatever bytes a test likes."""

    def __init__(self, address: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(address)

    def send(self, frames: list) -> None:
        self.socket.send_multipart(frames, copy=False)

    def replies(self, timeout_s: float = 3.0, count: int = 1) -> list:
        out = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            if self.socket.poll(50):
                out.append(decode(self.socket.recv_multipart(), CLIENT_LIMITS))
        return out

    def reply(self, timeout_s: float = 3.0):  # noqa: ANN201 - a protocol Message
        got = self.replies(timeout_s)
        assert got, "no reply from the server"
        return got[0]

    def assert_alive(self) -> None:
        self.send(encode("ping", {"token": "alive"}))
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for msg in self.replies(0.5, count=1):
                if msg.type == "pong" and msg.fields.get("token") == "alive":
                    return
        raise AssertionError("the server stopped answering pings")

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()


@pytest.fixture
def raw(shared_server: ServerProcess) -> Iterator[RawClient]:
    client = RawClient(shared_server.address)
    try:
        yield client
    finally:
        client.close()


def header(**fields: object) -> bytes:
    return msgpack.packb({"v": [1, 0], **fields})


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny file that declares a huge image (the data itself is a few bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jid() -> str:
    return f"h-{uuid.uuid4().hex[:10]}"


MALFORMED = [
    pytest.param([b"\xc1"], "bad_message", id="invalid-msgpack"),
    pytest.param([msgpack.packb({"v": [1, 0], "type": "hello"})[:-3]], "bad_message", id="truncated-header"),
    pytest.param([msgpack.packb([1, 2, 3])], "bad_message", id="header-not-a-map"),
    pytest.param([msgpack.packb({1: 2})], "bad_message", id="int-map-key"),
    pytest.param([msgpack.packb({"type": "hello"})], "bad_message", id="no-version"),
    pytest.param([msgpack.packb({"v": [2, 0], "type": "hello"})], "version_mismatch", id="major-2"),
    pytest.param([header(type="launch_missiles")], "unknown_type", id="unknown-type"),
    pytest.param([header(type="welcome", server_version="x")], "bad_message", id="server-type-from-client"),
    pytest.param([header(type="fetch")], "bad_message", id="missing-job-id"),
    pytest.param([header(type="fetch", job_id=5)], "bad_message", id="job-id-not-str"),
    pytest.param([header(type="ping"), b"stray"], "bad_message", id="undescribed-frame"),
    pytest.param([b""], "bad_message", id="empty-header"),
    pytest.param([b"\x91" * 100_000], "too_large", id="deep-nesting-oversize-header"),
    pytest.param([b"\x91" * 5_000 + b"\xc0"], "bad_message", id="deep-nesting"),
    pytest.param([header(type="ping")] + [b"x"] * 20, "too_large", id="too-many-frames"),
    pytest.param([header(type="ping"), b"\0" * (2 << 20)], "too_large", id="oversize-frame"),
    pytest.param([header(type="ping", parts=[{"name": "a", "kind": "array", "dtype": "float32", "shape": [3, 3]}]),
                  b"\0" * 35], "bad_message", id="shape-vs-bytes"),
    pytest.param([header(type="ping", parts=[{"name": "a", "kind": "array", "dtype": "object", "shape": [1]}]),
                  b"\0" * 8], "bad_message", id="dtype-not-allowed"),
    pytest.param([header(type="ping", parts=[{"name": "a", "kind": "pickle"}]), b"\x80\x04N."], "bad_message",
                 id="pickle-kind"),
    pytest.param([msgpack.packb({"v": [1, 0], "type": "ping", "x": msgpack.ExtType(1, b"boom")})], "bad_message",
                 id="ext-type"),
]


@pytest.mark.parametrize(("frames", "code"), MALFORMED)
def test_malformed_messages_get_errors(raw: RawClient, frames: list, code: str) -> None:
    raw.send(frames)
    reply = raw.reply()
    assert reply.type == "error", reply
    assert reply.fields["code"] == code
    assert reply.fields["message"]
    raw.assert_alive()


def submit_frames(job_id: str, images: list[bytes], settings: dict | None = None, **extra_parts: object) -> list:
    parts = [(f"image{i}", data) for i, data in enumerate(images)] + list(extra_parts.items())
    return encode("submit", {"job_id": job_id, "settings": settings or {}}, parts)


BAD_SUBMITS = [
    pytest.param(lambda j: encode("submit", {"job_id": "../../etc/passwd"}, [("image0", png_bytes())]), "bad_job_id",
                 id="path-in-job-id"),
    pytest.param(lambda j: submit_frames(j, [png_bytes()], {"steps": 10_000}), "bad_settings", id="steps-range"),
    pytest.param(lambda j: submit_frames(j, [png_bytes()], {"texture_size": 3}), "bad_settings", id="texture-size"),
    pytest.param(lambda j: submit_frames(j, [png_bytes()], {"sneaky": 1}), "bad_settings", id="unknown-setting"),
    pytest.param(lambda j: submit_frames(j, [png_bytes()], {"mode": "texture"}), "bad_settings", id="texture-no-mesh"),
    pytest.param(lambda j: submit_frames(j, []), "bad_image", id="no-images"),
    pytest.param(lambda j: submit_frames(j, [png_bytes()] * 4), "too_large", id="too-many-images"),
    pytest.param(lambda j: submit_frames(j, [b"hello, I am text"]), "bad_image", id="not-an-image"),
    pytest.param(lambda j: submit_frames(j, [png_bytes()[:60]]), "bad_image", id="truncated-png"),
    pytest.param(lambda j: submit_frames(j, [b"GIF89a" + b"\0" * 64]), "bad_image", id="gif"),
    pytest.param(lambda j: submit_frames(j, [bomb_png(40_000, 40_000)]), "bad_image", id="decompression-bomb"),
    pytest.param(lambda j: submit_frames(j, [png_bytes(size=1100)]), "bad_image", id="over-pixel-limit"),
    pytest.param(lambda j: submit_frames(j, [np.zeros((4, 4, 4), np.uint8)]), "bad_image", id="image-as-array"),
    pytest.param(lambda j: submit_frames(j, [png_bytes()], {"mode": "texture"},
                                         **{"mesh.positions": np.zeros((3, 3), np.float32),
                                            "mesh.faces": np.array([[0, 1, 7]], np.uint32)}),
                 "bad_mesh", id="face-index-out-of-range"),
    pytest.param(lambda j: submit_frames(j, [png_bytes()], {"mode": "texture"},
                                         **{"mesh.positions": np.full((3, 3), np.nan, np.float32),
                                            "mesh.faces": np.array([[0, 1, 2]], np.uint32)}),
                 "bad_mesh", id="nan-positions"),
    pytest.param(lambda j: submit_frames(j, [png_bytes()], {}, extra=b"x"), "bad_message", id="unknown-part"),
]


@pytest.mark.parametrize(("build", "code"), BAD_SUBMITS)
def test_bad_submits_are_rejected_with_a_reason(raw: RawClient, build, code: str) -> None:  # noqa: ANN001
    raw.send(build(jid()))
    reply = raw.reply()
    assert reply.type == "rejected", reply
    assert reply.fields["code"] == code
    assert reply.fields["message"].strip()
    raw.assert_alive()


def test_bad_image_message_names_the_image(raw: RawClient) -> None:
    frames = encode("submit", {"job_id": jid(), "image_names": ["front.png"]}, [("image0", b"not an image")])
    raw.send(frames)
    reply = raw.reply()
    assert reply.fields["message"] == "front.png is not a PNG, JPEG or WebP file."
    raw.send(submit_frames(jid(), [bomb_png(40_000, 40_000)]))
    assert "40000x40000" in raw.reply().fields["message"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
headers = st.fixed_dictionaries(
    {"v": st.sampled_from([[1, 0], [1, 7], [0, 1], [2, 0]]),
     "type": st.sampled_from(["hello", "submit", "cancel", "attach", "fetch", "close", "ping", "free_vram", "x"])},
    # job ids of the wrong type, across msgpack's whole integer range (it cannot pack beyond it)
    optional={"job_id": st.text(max_size=70) | st.integers(min_value=-(2**63), max_value=2**64 - 1),
              "settings": json_values, "parts": json_values, "token": json_values},
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.one_of(st.binary(max_size=64), headers.map(lambda h: msgpack.packb(h, use_bin_type=True))),
    rest=st.lists(st.binary(max_size=64), max_size=3),
)
def test_fuzzed_messages_always_get_an_answer(raw: RawClient, first: bytes, rest: list[bytes]) -> None:
    raw.send([first, *rest])
    replies = raw.replies(timeout_s=3.0)
    assert replies, "every client message gets at least one reply"
    assert replies[0].type in {"error", "rejected", "welcome", "pong", "vram_freed", "accepted"}
    # Drain follow-ups (a fuzzed submit may even be valid and run), then check the server still answers.
    raw.replies(timeout_s=0.05, count=100)
    raw.assert_alive()


def scan_bomb_jpeg(size: int, scans: int) -> bytes:
    """A valid progressive JPEG with one tiny scan repeated: every scan is a full pass over the image."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    i, segments = 2, []
    while data[i + 1] != 0xD9:
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        end = i + 2 + length
        if data[i + 1] == 0xDA:  # entropy-coded data runs to the next real marker
            while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end += 1
            segments.append(data[i:end])
        i = end
    return data[:i] + min(segments, key=len) * scans + b"\xff\xd9"


def test_jpeg_with_endless_scans_is_refused_without_stalling_the_server(tmp_path) -> None:  # noqa: ANN001
    # ~1 MB of 16-byte scans over a 16 Mpx image kept the single-threaded server decoding for
    # ~15 s (64 MiB: ~20 min), deaf to every client. Now it is refused before decoding.
    bomb = scan_bomb_jpeg(4096, 60_000)
    with ServerProcess(tmp_path / "results") as server:
        from .harness import wait_ready

        wait_ready(server.address)
        client = RawClient(server.address)
        try:
            client.send(submit_frames(jid(), [bomb]))
            reply = client.reply(timeout_s=5.0)
            assert reply.type == "rejected", reply
            assert reply.fields["code"] == "bad_image"
            assert "scans" in reply.fields["message"]
            client.assert_alive()
        finally:
            client.close()


def corrupt_png_pixels() -> bytes:
    """A PNG whose headers and chunk structure are fine but whose compressed pixel data is garbage."""
    data = png_bytes(size=64)
    start = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[start : start + 4])
    garbage = bytes((i * 37 + 11) % 256 for i in range(length))
    return data[:start] + png_chunk(b"IDAT", garbage) + data[start + 12 + length :]


def truncated_jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


@pytest.mark.parametrize(("build", "fmt"), [(corrupt_png_pixels, "PNG"), (truncated_jpeg, "JPEG")],
                         ids=["png-garbage-pixels", "jpeg-cut-in-half"])
def test_image_that_fails_to_decode_fails_its_job_with_bad_image(
    raw: RawClient, build: Callable[[], bytes], fmt: str
) -> None:
    # Headers are checked at submit; pixels are decoded by the worker when the job starts, so a file
    # whose headers are fine but whose pixel data is not is accepted, then its job fails (bad_image).
    job = jid()
    raw.send(encode("submit", {"job_id": job, "image_names": ["front.png"]}, [("image0", build())]))
    replies = []
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline and not any(
        r.type == "state" and r.fields["state"] in ("done", "failed", "cancelled") for r in replies
    ):
        replies += raw.replies(timeout_s=0.2)
    assert replies and replies[0].type == "accepted", replies
    end = replies[-1]
    assert (end.fields["state"], end.fields["code"], end.fields["retryable"]) == ("failed", "bad_image", False), end
    assert end.fields["message"] == f"front.png could not be decoded as {fmt}: the file is corrupt or truncated."
    raw.assert_alive()
