"""The typed message schema: every class round-trips through the one codec, parts are checked against
what the class declares, and the bytes on the wire are what the hand-built headers used to be."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from blender_addon.protocol import messages as m
from blender_addon.protocol.codec import ProtocolError, decode_message, encode, encode_message
from blender_addon.protocol.errors import ERROR_CODES
from blender_addon.protocol.result import MAP_NAMES, MESH_ARRAYS, Result


def roundtrip(msg: m.WireMessage) -> m.WireMessage:
    return decode_message([bytes(f) for f in encode_message(msg)])


def mesh(n: int = 4, tangents: bool = False) -> dict:
    rng = np.random.default_rng(n)
    out = {
        "positions": rng.random((n, 3), dtype=np.float32),
        "faces": np.array([[0, 1, 2], [0, 2, 3]], np.uint32),
        "uvs": rng.random((n, 2), dtype=np.float32),
        "normals": rng.random((n, 3), dtype=np.float32),
    }
    if tangents:
        out["tangents"] = rng.random((n, 4), dtype=np.float32)
    return out


SIMPLE = [
    m.Hello("blender"), m.Hello(), m.Cancel("j1"), m.Attach("j1"), m.Fetch("j1"), m.Close("j1"), m.Ping("t"),
    m.Ping(), m.FreeVram(), m.Reserve("j1", 123),
    m.Welcome("1.2", (1, 0), {"inflate": {"modes": ["full"]}}, "inflate", {"max_frames": 16}, "cpu",
              instance_id="abc", orphan_grace_s=30.0, min_free_bytes=5, reserve_above_bytes=8),
    m.Accepted("j1", 2), m.Rejected("j1", "busy", "wait", 3.5), m.Rejected("j1", "bad_image", "no"),
    m.Progress("j1", "geometry", 3, 10, 0.25, None, "x"), m.Progress("j1", "texture", 1, 2, 0.5, 12.0),
    m.StateChanged("j1", "queued", queue_position=1), m.StateChanged("j1", "failed", "bad_mesh", "why", False),
    m.ResultReady("j1"), m.Closed("j1"), m.Pong("t", {"queued": 0}, "abc"), m.Pong(), m.VramFreed("ok"),
    m.ErrorEvent(None, "unknown_type", "what"), m.ErrorEvent("j1", "not_ready", "later", True),
    m.ServerShutdown("bye", 5.0), m.Reserved("j1", 0),
]


@pytest.mark.parametrize("msg", SIMPLE, ids=lambda msg: type(msg).__name__)
def test_every_header_only_message_round_trips(msg: m.WireMessage) -> None:
    assert roundtrip(msg) == msg


def test_every_message_type_has_a_class_and_the_tables_come_from_them() -> None:
    assert set(m.MESSAGES) == m.CLIENT_TYPES | m.SERVER_TYPES
    assert {type(msg).TYPE for msg in SIMPLE} | {"submit", "result"} == set(m.MESSAGES)
    # FIELDS (what the decoder checks) is read from the dataclasses: required = no default.
    assert m.FIELDS["progress"]["eta_s"] == ((int, float, type(None)), False)
    assert m.FIELDS["rejected"]["retry_after_s"] == ((int, float), False)  # not nullable: nil is refused
    assert m.FIELDS["reserve"] == {"job_id": ((str,), True), "bytes": ((int,), True)}


def test_submit_round_trips_with_images_and_mesh_cast_to_the_declared_dtypes() -> None:
    client_mesh = {"positions": np.zeros((3, 3), np.float64), "faces": np.array([[0, 1, 2]], np.int64)}
    msg = m.Submit("j1", {"seed": 3}, ["front.png"], True, [b"\x89PNG1", b"\x89PNG2"], client_mesh)
    frames = encode_message(msg)
    header = msgpack.unpackb(frames[0])
    assert [p["name"] for p in header["parts"]] == ["image0", "image1", "mesh.positions", "mesh.faces"]
    back = decode_message([bytes(f) for f in frames])
    assert isinstance(back, m.Submit)
    assert [bytes(i) for i in back.images] == [b"\x89PNG1", b"\x89PNG2"]
    assert back.mesh is not None and set(back.mesh) == {"positions", "faces"}
    assert back.mesh["positions"].dtype == np.float32 and back.mesh["faces"].dtype == np.uint32
    assert (back.job_id, back.settings, back.image_names, back.want_glb) == ("j1", {"seed": 3}, ["front.png"], True)


def test_result_round_trips_mesh_lods_maps_and_glb() -> None:
    textures = {name: f"png-{name}".encode() for name in MAP_NAMES}
    msg = Result("j1", {**mesh(tangents=True), "smooth": False}, [{**mesh(), "smooth": True}], textures,
                 {"maps": list(MAP_NAMES)}, b"glTF", {"total": 1.5}, {"backend": "x"}, ["a note"])
    frames = encode_message(msg)
    header = msgpack.unpackb(frames[0])
    assert header["mesh"] == {"smooth": False, "vertex_count": 4, "face_count": 2}
    names = [p["name"] for p in header["parts"]]
    assert names[:5] == [f"mesh.{n}" for n in MESH_ARRAYS] and names[-1] == "glb"
    assert "lod0.normals" in names and "lod0.tangents" not in names
    back = decode_message([bytes(f) for f in frames])
    assert isinstance(back, Result)
    for key in MESH_ARRAYS:
        np.testing.assert_array_equal(back.mesh[key], msg.mesh[key])
    assert back.mesh["smooth"] is False and back.lods[0]["smooth"] is True
    np.testing.assert_array_equal(back.lods[0]["faces"], msg.lods[0]["faces"])
    assert (back.textures, back.glb, back.timings, back.provenance, back.notes) == (
        textures, b"glTF", {"total": 1.5}, {"backend": "x"}, ["a note"])


def submit_with(**parts: object) -> list:
    return [bytes(f) if not isinstance(f, bytes) else f
            for f in encode("submit", {"job_id": "j1"}, [("image0", b"png"), *parts.items()])]


@pytest.mark.parametrize(("parts", "code", "words"), [
    ({"image1": np.zeros((2, 2), np.uint8)}, "bad_image", "image1 must be sent as encoded bytes"),
    ({"mesh.positions": np.zeros((3, 3), np.float64)}, "bad_mesh", "mesh.positions must be float32 (N, 3), got float64"),
    ({"mesh.faces": np.zeros((3, 4), np.uint32)}, "bad_mesh", "mesh.faces must be uint32 (N, 3)"),
    ({"mesh.tangents": np.zeros((3, 4), np.float32)}, "bad_message", "unexpected part in submit: mesh.tangents"),
    ({"extra": b"x"}, "bad_message", "unexpected part in submit: extra"),
    ({"image2": b"x"}, "bad_message", "image0, image1, ... in order"),
])
def test_parts_are_checked_against_what_the_class_declares(parts: dict, code: str, words: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_message(submit_with(**parts))
    assert info.value.code == code and words in info.value.message
    assert info.value.job_id == "j1"  # so the server can reject that job rather than answer an anonymous error
    assert code in ERROR_CODES


def test_the_bytes_on_the_wire_are_the_hand_built_headers_of_protocol_1_0() -> None:
    old = [
        (encode("progress", {"job_id": "j", "stage": "s", "step": 1, "total": 2, "fraction": 0.5, "eta_s": None,
                             "message": ""}), m.Progress("j", "s", 1, 2, 0.5, None, "")),
        (encode("error", {"job_id": None, "code": "bad_message", "message": "x", "retryable": False}),
         m.ErrorEvent(None, "bad_message", "x")),
        (encode("state", {"job_id": "j", "state": "running"}), m.StateChanged("j", "running")),
        (encode("ping", {}), m.Ping()),
        (encode("rejected", {"job_id": "j", "code": "busy", "message": "m", "retry_after_s": 2.0}),
         m.Rejected("j", "busy", "m", 2.0)),
    ]
    for frames, msg in old:
        assert [bytes(f) for f in encode_message(msg)] == [bytes(f) for f in frames], msg


def test_a_header_field_of_the_wrong_type_is_refused_naming_it() -> None:
    frames = encode("accepted", {"job_id": "j", "queue_position": "first"})
    with pytest.raises(ProtocolError, match=r"accepted.queue_position has the wrong type"):
        decode_message(frames)
    with pytest.raises(ProtocolError, match="rejected.retry_after_s has the wrong type"):
        decode_message(encode("rejected", {"job_id": "j", "code": "busy", "message": "m", "retry_after_s": None}))


def test_adding_a_field_is_one_edit_in_protocol_and_older_receivers_keep_working() -> None:
    """docs/protocol.md's worked example: Progress gains gpu_memory_mb, declared once on the class."""
    from dataclasses import dataclass

    from blender_addon.protocol.codec import decode, typed

    @dataclass
    class Progress(m.Progress):
        gpu_memory_mb: int | None = None  # the one edit

    new = {**m.MESSAGES, "progress": Progress}
    frames = [bytes(f) for f in encode_message(Progress("j", "texture", 3, 8, 0.6, 4.0, "", gpu_memory_mb=5120))]
    assert msgpack.unpackb(frames[0])["gpu_memory_mb"] == 5120
    back = typed(decode(frames), new)
    assert isinstance(back, Progress) and back.gpu_memory_mb == 5120 and back.fraction == 0.6
    old = decode_message(frames)  # a receiver without the field: reads the rest, ignores it
    assert type(old) is m.Progress and (old.stage, old.step, old.eta_s) == ("texture", 3, 4.0)
    older = [bytes(f) for f in encode_message(m.Progress("j", "texture", 3, 8, 0.6))]
    assert typed(decode(older), new).gpu_memory_mb is None  # from an older sender: absent -> None
    with pytest.raises(ProtocolError, match=r"progress\.gpu_memory_mb has the wrong type"):
        fields = {k: v for k, v in msgpack.unpackb(frames[0]).items() if k not in ("v", "type")}
        typed(decode(encode("progress", {**fields, "gpu_memory_mb": "lots"})), new)
