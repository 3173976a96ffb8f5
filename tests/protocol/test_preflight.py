"""The client's preflight (one sentence per oversize job) and the consistency of the default limits."""

from __future__ import annotations

import io
import math
import zlib

import numpy as np
import pytest
from PIL import Image

from blender_addon.core.png import encode_png
from blender_addon.protocol.limits import Limits, MiB
from blender_addon.protocol.preflight import SubmitRefused, check_submit, describe_size


def refusal(limits: Limits, images: list, **kw: object) -> SubmitRefused:
    with pytest.raises(SubmitRefused) as info:
        check_submit(limits, images, **kw)  # type: ignore[arg-type]
    assert info.value.code == "too_large"
    assert str(info.value) == info.value.message and "\n" not in info.value.message
    return info.value


def mesh(vertices: int, triangles: int, *, uvs: bool = True, normals: bool = False) -> dict[str, np.ndarray]:
    # np.zeros does not touch its pages: even the largest meshes cost no memory here.
    out = {"positions": np.zeros((vertices, 3), np.float32), "faces": np.zeros((triangles, 3), np.uint32)}
    if uvs:
        out["uvs"] = np.zeros((vertices, 2), np.float32)
    if normals:
        out["normals"] = np.zeros((vertices, 3), np.float32)
    return out


def blob(n: int) -> memoryview:
    return memoryview(np.zeros(n, np.uint8))  # type: ignore[arg-type]


# -- one sentence per problem ------------------------------------------------------------------------


def test_an_image_over_the_frame_limit_is_named_with_its_size_the_limit_and_the_fix() -> None:
    exc = refusal(Limits(), [blob(1000), blob(100 * MiB)], image_names=["front.png", "side.png"])
    assert exc.message == (
        "side.png is 100 MB; this server accepts images up to 96 MB per file: "
        "save it as JPEG (or 8-bit PNG) or scale it down."
    )
    unnamed = refusal(Limits(max_frame_bytes=MiB), [blob(int(1.5 * MiB))])
    assert unnamed.message.startswith("the front image is 1.5 MB; this server accepts images up to 1 MB per file")


def test_too_many_images_and_meshes_over_the_vertex_or_triangle_limit() -> None:
    exc = refusal(Limits(), [b"x"] * 9)
    assert exc.message == "The job has 9 reference images; this server accepts up to 8 per job: use fewer views."
    exc = refusal(Limits(), [b"x"], mesh=mesh(7_000_000, 10))
    assert exc.message == (
        "The mesh has 7,000,000 vertices (counted after splitting at UV seams); this server accepts up to "
        "6,000,000: decimate it (or split it into parts) and try again."
    )
    exc = refusal(Limits(max_mesh_faces=1000), [b"x"], mesh=mesh(10, 1001, uvs=False))
    assert exc.message.startswith("The mesh has 1,001 triangles; this server accepts up to 1,000: decimate it")


def test_a_mesh_array_over_the_frame_limit_and_a_job_over_the_total() -> None:
    exc = refusal(Limits(max_frame_bytes=10_000), [b"x"], mesh=mesh(1000, 10))
    assert exc.message == (
        "The mesh's vertex positions take 12 KB; this server accepts up to 9.8 KB per array: "
        "decimate the mesh and try again."
    )
    limits = Limits(max_frame_bytes=MiB, max_total_bytes=2 * MiB)
    exc = refusal(limits, [blob(900 * 1024)] * 3, header_bytes=200)
    assert exc.message == (
        "The job is 2.6 MB in total (images 2.6 MB); this server accepts up to 2 MB per job: "
        "use fewer or smaller images (JPEG)."
    )
    exc = refusal(limits, [blob(900 * 1024)], mesh=mesh(50_000, 50_000))
    assert "(images 900 KB, mesh 1.5 MB)" in exc.message and exc.message.endswith("or decimate the mesh.")


def test_header_and_frame_count() -> None:
    exc = refusal(Limits(max_header_bytes=100), [b"x"], header_bytes=101)
    assert exc.message.startswith("The job's description (settings and image names) takes 101 bytes")
    exc = refusal(Limits(max_frames=4), [b"x"] * 2, mesh=mesh(3, 1))
    assert "2 images and 3 mesh arrays; this server accepts up to 3 such parts per job" in exc.message


def test_sizes_read_well_and_never_alike_when_they_differ() -> None:
    assert describe_size(80 * MiB) == "80 MB" and describe_size(1536 * 1024) == "1.5 MB"
    assert describe_size(900 * 1024) == "900 KB" and describe_size(12) == "12 bytes"
    exc = refusal(Limits(), [blob(96 * MiB + 1)], image_names=["front.png"])
    assert exc.message.startswith("front.png is 100,663,297 bytes; this server accepts images up to 100,663,296 bytes")


def test_jobs_within_the_limits_pass() -> None:
    check_submit(Limits(), [blob(20 * MiB)] * 8, image_names=["a.png"] * 8, header_bytes=500)
    check_submit(Limits(), [blob(MiB)], mesh=mesh(6_000_000, 4_000_000, normals=True))
    check_submit(Limits(max_images=1), [b"x"], mesh={"positions": np.zeros((3, 3), np.float32), "faces": None})


# -- the defaults fit together -----------------------------------------------------------------------


def png_bytes_at_most(width: int, height: int, channels: int = 4, idat_chunk: int = 8192) -> int:
    """The largest 8-bit PNG of that size: deflate's stored blocks (5 bytes per 65,535), no compression,
    IDAT split into small chunks (12 bytes each; encoders use 8 KiB or more)."""
    raw = height * (1 + width * channels)
    zdata = 2 + raw + 5 * math.ceil(raw / 65535) + 4
    return 8 + 25 + zdata + 12 * math.ceil(zdata / idat_chunk) + 12


def test_the_png_bound_holds_for_real_encoders() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (300, 257, 4), dtype=np.uint8)
    bound = png_bytes_at_most(257, 300)
    assert len(encode_png(noise, level=0)) <= bound and len(encode_png(noise, level=9)) <= bound
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG", compress_level=0)
    assert len(buf.getvalue()) <= bound
    assert len(zlib.compress(noise.tobytes(), 9)) > noise.nbytes  # noise really is incompressible


def largest_mesh_bytes(limits: Limits) -> dict[str, int]:
    v, f = limits.max_mesh_vertices, limits.max_mesh_faces
    return {"positions": 12 * v, "normals": 12 * v, "uvs": 8 * v, "faces": 12 * f}


@pytest.mark.parametrize("limits", [Limits()], ids=["defaults"])
def test_default_limits_are_consistent(limits: Limits) -> None:
    side = math.isqrt(limits.max_image_pixels)
    png = png_bytes_at_most(side, limits.max_image_pixels // side)
    arrays = largest_mesh_bytes(limits)
    # Every array of the largest mesh the vertex/face limits allow fits a frame, and so does the
    # largest 8-bit RGBA PNG the pixel limit allows.
    assert max(arrays.values()) <= limits.max_frame_bytes, (arrays, limits.max_frame_bytes)
    assert png <= limits.max_frame_bytes, (png, limits.max_frame_bytes)
    # A texture job with that mesh and one such image (and the largest header) fits one message...
    job = limits.max_header_bytes + sum(arrays.values()) + png
    assert job <= limits.max_total_bytes, (job / MiB, limits.max_total_bytes / MiB)
    # ...which the queue's byte budget can hold (else the server answers too_large after all).
    assert limits.max_total_bytes <= limits.max_queue_bytes
    # Every part a submit may have fits the frame count: header, images, four mesh arrays.
    assert 1 + limits.max_images + 4 <= limits.max_frames
    # And the client's own preflight agrees: that job passes it.
    check_submit(limits, [blob(png)], mesh=mesh(limits.max_mesh_vertices, limits.max_mesh_faces, normals=True),
                 header_bytes=limits.max_header_bytes)


def test_the_old_defaults_were_inconsistent() -> None:
    old = Limits(max_frame_bytes=64 * MiB, max_total_bytes=256 * MiB)
    with pytest.raises(AssertionError):
        test_default_limits_are_consistent(old)
