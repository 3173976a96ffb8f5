"""The job's result is built only from its class (``protocol/result.py``) and encoded by the one codec,
with the same bytes on the wire as the hand-built ``result`` message of protocol 1.0."""

from __future__ import annotations

import io

import msgpack
import numpy as np
from PIL import Image

from blender_addon.protocol.codec import decode_message, encode, encode_message
from blender_addon.protocol.result import Result
from inference_server.assets import Asset, MeshData, PBRMaterial
from inference_server.pipeline.base import JobContext, JobRequest
from inference_server.result_asset import encode_png, material_fields, plain
from inference_server.server.intake import QueuedRequest
from inference_server.server.job_runner import produce_result


def png(size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 200, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def mesh(n: int, smooth: bool, seed: int) -> MeshData:
    rng = np.random.default_rng(seed)
    return MeshData(
        positions=rng.random((n, 3)).astype(np.float64),  # not the wire dtype: the result casts it
        faces=np.array([[0, 1, 2], [0, 2, 3]], np.int64),
        uvs=rng.random((n, 2), dtype=np.float32),
        normals=rng.random((n, 3), dtype=np.float32),
        tangents=rng.random((n, 4), dtype=np.float32),
        smooth=smooth,
    )


def asset() -> Asset:
    rng = np.random.default_rng(3)
    material = PBRMaterial(base_color=rng.integers(0, 255, (4, 4, 3), dtype=np.uint8),
                           orm=rng.integers(0, 255, (4, 4, 3), dtype=np.uint8), roughness_factor=0.5)
    return Asset(mesh=mesh(5, False, 1), material=material, lods=[mesh(4, True, 2)],
                 provenance={"seed": np.int64(7), "views": ("front",)}, timings={"geometry": 0.25},
                 notes=["re-unwrapped UVs"])


def hand_built(a: Asset, job_id: str, timings: dict[str, float], provenance: dict, glb: bytes) -> list[bytes]:
    """Protocol 1.0's result, as the server built it by hand before the typed schema (field and part order)."""
    parts: list[tuple[str, object]] = []

    def mesh_info(prefix: str, m: MeshData) -> dict:
        dtypes = {"positions": "<f4", "faces": "<u4", "uvs": "<f4", "normals": "<f4", "tangents": "<f4"}
        for attr, dtype in dtypes.items():
            if getattr(m, attr) is not None:
                parts.append((f"{prefix}.{attr}", np.ascontiguousarray(getattr(m, attr), dtype=dtype)))
        return {"smooth": bool(m.smooth), "vertex_count": m.vertex_count, "face_count": m.face_count}

    info = mesh_info("mesh", a.mesh)
    lods = [mesh_info(f"lod{i}", lod) for i, lod in enumerate(a.lods)]
    material = material_fields(a.material)
    parts += [(f"map.{name}", encode_png(getattr(a.material, name))) for name in material["maps"]]
    parts.append(("glb", glb))
    fields = {"job_id": job_id, "mesh": info, "lods": lods, "material": material, "timings": timings,
              "provenance": provenance, "notes": [str(n) for n in a.notes]}
    return [bytes(f) for f in encode("result", fields, parts)]  # type: ignore[arg-type]


def test_produce_result_returns_the_typed_result_and_its_bytes_are_protocol_1_0s() -> None:
    made = asset()

    def run(request: JobRequest, ctx: JobContext) -> Asset:
        assert request.images[0].shape[:2] == (8, 8)  # the worker decoded the encoded image first
        return made

    result = produce_result(run, "test", QueuedRequest(images=[png()], image_names=["front.png"]), "job-7", True,
                            JobContext())
    assert isinstance(result, Result)
    assert result.job_id == "job-7" and result.glb and result.glb[:4] == b"glTF"
    assert {"geometry", "decode_images", "total", "encode"} <= set(result.timings)
    assert result.timings["geometry"] == 0.25  # the backend's own timing is kept
    assert result.provenance["job_id"] == "job-7" and result.provenance["seed"] == 7

    frames = [bytes(f) for f in encode_message(result)]
    assert frames == hand_built(made, "job-7", result.timings, plain(made.provenance), result.glb)
    header = msgpack.unpackb(frames[0])
    assert [p["name"] for p in header["parts"]] == [
        "mesh.positions", "mesh.faces", "mesh.uvs", "mesh.normals", "mesh.tangents",
        "lod0.positions", "lod0.faces", "lod0.uvs", "lod0.normals", "lod0.tangents", "map.base_color", "map.orm", "glb",
    ]
    assert header["mesh"] == {"smooth": False, "vertex_count": 5, "face_count": 2}
    assert header["material"]["maps"] == ["base_color", "orm"]

    back = decode_message(frames)  # what the client gets: the same class
    assert isinstance(back, Result)
    np.testing.assert_array_equal(back.mesh["positions"], made.mesh.positions.astype(np.float32))
    assert back.mesh["faces"].dtype == np.uint32 and back.lods[0]["smooth"] is True
    assert back.textures["orm"] == result.textures["orm"] and back.glb == result.glb
