"""Framing: header + typed array parts, limits, versions; decode raises ProtocolError and nothing else."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blender_addon.protocol.codec import DTYPES, ProtocolError, decode, encode
from blender_addon.protocol.limits import Limits
from blender_addon.protocol.messages import FIELDS, PROTOCOL_VERSION, check_fields, valid_job_id


def test_round_trip_keeps_dtype_shape_values_and_order() -> None:
    positions = np.random.default_rng(0).random((100, 3), dtype=np.float32)
    faces = np.arange(30, dtype=np.uint32).reshape(10, 3)
    frames = encode("submit", {"job_id": "a1", "settings": {"seed": 3}},
                    [("image0", b"\x89PNG..."), ("mesh.positions", positions), ("mesh.faces", faces)])
    assert len(frames) == 4
    assert isinstance(frames[2], memoryview) and frames[2].nbytes == positions.nbytes  # zero-copy view
    msg = decode([bytes(f) for f in frames])
    assert msg.type == "submit" and msg.version == PROTOCOL_VERSION
    assert msg.fields == {"job_id": "a1", "settings": {"seed": 3}}
    assert list(msg.parts) == ["image0", "mesh.positions", "mesh.faces"]
    assert bytes(msg.parts["image0"]) == b"\x89PNG..."
    np.testing.assert_array_equal(msg.parts["mesh.positions"], positions)
    assert msg.parts["mesh.faces"].dtype == np.uint32 and msg.parts["mesh.faces"].shape == (10, 3)


def test_non_contiguous_and_big_endian_arrays_are_normalised() -> None:
    arr = np.arange(24, dtype=">f4").reshape(4, 6)[:, ::2]
    msg = decode([bytes(f) for f in encode("ping", None, [("a", arr)])], check_schema=False)
    assert msg.parts["a"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(msg.parts["a"], arr)


@pytest.mark.parametrize("dtype", [np.float16, np.complex64, np.int64, object])
def test_dtypes_outside_the_allow_list_cannot_be_sent(dtype: object) -> None:
    with pytest.raises(ProtocolError):
        encode("ping", None, [("a", np.zeros(3, dtype=dtype))])


def test_allow_list_is_small_and_little_endian() -> None:
    assert set(DTYPES) == {"uint8", "uint16", "uint32", "int32", "float32", "float64"}
    assert all(dt.str[0] in "<|" for dt in DTYPES.values())


def test_limits_are_enforced_before_parsing() -> None:
    limits = Limits(max_frames=3, max_frame_bytes=10, max_total_bytes=25, max_header_bytes=100)
    head = msgpack.packb({"v": [1, 0], "type": "ping"})
    with pytest.raises(ProtocolError) as info:
        decode([head, b"", b"", b""], limits)
    assert info.value.code == "too_large" and "4 frames" in info.value.message
    with pytest.raises(ProtocolError, match="frame 1 is 11 bytes"):
        decode([head, b"x" * 11], limits)
    with pytest.raises(ProtocolError, match="header frame is 101 bytes"):
        decode([b"x" * 101], Limits(max_header_bytes=100))
    with pytest.raises(ProtocolError, match="limit is 25"):
        decode([head, b"x" * 10, b"x" * 10], limits)


def test_other_major_version_is_refused_newer_minor_accepted() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(encode("ping", version=(PROTOCOL_VERSION[0] + 1, 0)))
    assert info.value.code == "version_mismatch"
    assert "update the add-on or the server" in info.value.message
    msg = decode(encode("ping", {"token": "t", "future_field": 1}, version=(PROTOCOL_VERSION[0], 99)))
    assert msg.version == (PROTOCOL_VERSION[0], 99) and msg.fields["future_field"] == 1


def test_shape_is_checked_against_bytes() -> None:
    head = msgpack.packb({"v": [1, 0], "type": "ping",
                          "parts": [{"name": "a", "kind": "array", "dtype": "uint32", "shape": [2, 3]}]})
    with pytest.raises(ProtocolError, match="declares 24 bytes"):
        decode([head, b"\0" * 23])
    assert decode([head, b"\0" * 24]).parts["a"].shape == (2, 3)


def test_field_schema() -> None:
    assert check_fields("submit", {"job_id": "x"}) is None
    assert check_fields("submit", {}) == "submit needs the field 'job_id'"
    assert check_fields("submit", {"job_id": "x", "want_glb": 1}) == "submit.want_glb has the wrong type"
    assert check_fields("accepted", {"job_id": "x", "queue_position": True}) == "accepted.queue_position has the wrong type"
    assert check_fields("nope", {}) == "unknown message type 'nope'"
    assert set(FIELDS) >= {"hello", "welcome", "submit", "accepted", "rejected", "progress", "state", "result_ready",
                           "fetch", "result", "cancel", "close", "attach", "ping", "pong", "free_vram", "error"}


@pytest.mark.parametrize("job_id,ok", [("abc", True), ("a.b-c_9", True), ("../x", False), ("", False),
                                        (".hidden", False), ("x" * 64, True), ("x" * 65, False), ("a/b", False),
                                        ("abc\n", False), ("x" * 64 + "\n", False)])
def test_job_ids_are_safe_file_names(job_id: str, ok: bool) -> None:
    assert valid_job_id(job_id) is ok


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=5))
def test_decode_of_random_bytes_only_raises_protocol_error(frames: list[bytes]) -> None:
    try:
        decode(frames)
    except ProtocolError:
        pass


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=10) | st.binary(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6) | st.sampled_from(["v", "type", "parts", "job_id"]), c, max_size=4),
    max_leaves=15,
)


@settings(max_examples=400, deadline=None)
@given(values, st.lists(st.binary(max_size=64), max_size=3))
def test_decode_of_random_msgpack_only_raises_protocol_error(header: object, rest: list[bytes]) -> None:
    try:
        decode([msgpack.packb(header, use_bin_type=True), *rest])
    except ProtocolError:
        pass


def test_size_refusals_name_the_job_from_the_header() -> None:
    # So a client that sent an oversize job (one without its own limit checks) sees that job fail.
    limits = Limits(max_frames=3, max_frame_bytes=10, max_total_bytes=25, max_header_bytes=200)
    head = msgpack.packb({"v": list(PROTOCOL_VERSION), "type": "submit", "job_id": "job-7"})
    for frames in ([head, b"", b"", b""], [head, b"x" * 11], [head, b"x" * 10, b"x" * 10]):
        with pytest.raises(ProtocolError) as info:
            decode(frames, limits)
        assert (info.value.code, info.value.job_id) == ("too_large", "job-7")
    bad_id = msgpack.packb({"v": list(PROTOCOL_VERSION), "type": "submit", "job_id": "no spaces allowed\n"})
    with pytest.raises(ProtocolError) as info:
        decode([bad_id, b"x" * 11], limits)
    assert info.value.job_id is None  # an invalid id is never echoed back
    with pytest.raises(ProtocolError) as info:
        decode([b"\xc1" * 5, b"x" * 11], limits)  # unreadable header: still the size refusal
    assert info.value.code == "too_large" and info.value.job_id is None
