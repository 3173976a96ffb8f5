"""Weight-free texturing: re-rendering the front view of the textured mesh gives back the image."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from inference_server import kernels as K
from inference_server.assets import MeshData
from inference_server.pipeline.base import JobCancelled, JobContext, PipelineError
from inference_server.texturing.project import fit_view_camera, project_texture
from inference_server.kernels.bake.reference import bilinear
from inference_server.kernels.meshes import uv_sphere

N = 256


def prepared_image(colour_fn, shape: str = "disk") -> SimpleNamespace:  # type: ignore[no-untyped-def]
    """An image as prepare_reference makes it: the object fills 95% of the square canvas, centred."""
    y, x = np.mgrid[0:N, 0:N] + 0.5
    r = 0.475 * N
    mask = (x - N / 2) ** 2 + (y - N / 2) ** 2 <= r * r
    rgba = np.zeros((N, N, 4), np.uint8)
    rgba[..., :3] = np.rint(np.clip(colour_fn(x, y), 0, 1) * 255)
    rgba[..., 3] = mask * 255
    return SimpleNamespace(rgba=rgba, mask=mask)


def pattern(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth colour pattern (the round trip resamples it twice)."""
    return np.stack([0.5 + 0.4 * np.sin(x / 17), 0.5 + 0.4 * np.cos(y / 23), 0.5 + 0.3 * np.sin((x + y) / 31)], -1)


def constant(rgb: tuple[float, float, float]):  # type: ignore[no-untyped-def]
    return lambda x, y: np.broadcast_to(np.asarray(rgb), x.shape + (3,))


def rerender(mesh: MeshData, texture: np.ndarray, mask: np.ndarray, view: str = "front") -> tuple[np.ndarray, np.ndarray]:
    """Front view of the textured mesh with the same camera as the projection: colours and coverage."""
    vp = fit_view_camera(mesh.positions, mask, view)
    faces = mesh.faces.astype(np.int64)
    r = K.rasterize(mesh.positions, faces, vp, N, N)
    uv = K.interpolate(r, faces, mesh.uvs)
    s = texture.shape[0]
    col = bilinear(texture.astype(np.float32) / 255, uv[..., 0].ravel() * s - 0.5, uv[..., 1].ravel() * s - 0.5)
    return col.reshape(N, N, 3), r.face_id >= 0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def sphere_mesh(z_scale: float = 1.0) -> MeshData:
    pos, faces, uv = uv_sphere(96, 192, 0.5, uv_margin=0.01)
    pos = pos * np.array([1, 1, z_scale], np.float32)
    return MeshData(pos, faces.astype(np.uint32), uv)


# PSNR bound: the pattern is smooth (wavelengths >= 17 px), so the round trip through a 512^2
# texture (two bilinear resamplings, uint8 twice) loses little: uint8 quantisation alone caps it
# near 59 dB and we measure 53.5 dB (sphere) and 59 dB (disk). A misregistration of one pixel
# drops it to 39.5 dB (test_shifted_image_would_fail_the_bound), so 42 dB (0.8% rms error)
# accepts the honest round trip with margin and rejects any camera fit that is a pixel off.
PSNR_BOUND = 42.0


@pytest.mark.parametrize("z_scale", [1.0, 0.15])  # a sphere and a thick disk
def test_front_view_round_trip(z_scale: float) -> None:
    mesh = sphere_mesh(z_scale)
    image = prepared_image(pattern)
    tex = project_texture(mesh, [image], texture_size=512)
    assert tex.shape == (512, 512, 3) and tex.dtype == np.uint8
    col, covered = rerender(mesh, tex, image.mask)
    inner = ndimage.binary_erosion(image.mask, iterations=3) & covered
    assert inner.sum() > 0.9 * image.mask.sum()
    assert psnr(col[inner], image.rgba[..., :3][inner] / 255.0) > PSNR_BOUND


def test_shifted_image_would_fail_the_bound() -> None:
    """The bound discriminates: a one-pixel misregistration falls below it."""
    mesh = sphere_mesh()
    image = prepared_image(pattern)
    tex = project_texture(mesh, [image], texture_size=512)
    col, covered = rerender(mesh, tex, image.mask)
    inner = ndimage.binary_erosion(image.mask, iterations=3) & covered
    shifted = np.roll(image.rgba[..., :3], 1, axis=1) / 255.0
    assert psnr(col[inner], shifted[inner]) < PSNR_BOUND


def test_side_images_and_fill() -> None:
    mesh = sphere_mesh()
    colours = [(0.9, 0.1, 0.1), (0.1, 0.9, 0.1), (0.1, 0.1, 0.9), (0.9, 0.9, 0.1)]
    images = [prepared_image(constant(c)) for c in colours]
    tex = project_texture(mesh, images, texture_size=256)
    for view, c in zip(["front", "right", "back", "left"], colours):
        col, covered = rerender(mesh, tex, images[0].mask, view)
        centre = np.zeros_like(covered)
        centre[N // 2 - 20 : N // 2 + 20, N // 2 - 20 : N // 2 + 20] = True
        # Facing a view, its image dominates the cos^4-weighted blend.
        assert np.abs(col[centre & covered].mean(0) - c).max() < 0.08, view
    # Top and bottom caps were seen by no view at 75 degrees or less: filled, no black.
    assert tex.reshape(-1, 3).max(axis=1).min() > 20
    # A missing side (None) is skipped: front and back only.
    tex2 = project_texture(mesh, [images[0], None, images[2]], texture_size=128)
    col, covered = rerender(mesh, tex2, images[0].mask, "back")
    assert np.abs(col[N // 2, N // 2] - colours[2]).max() < 0.08


def test_front_only_fills_the_back_without_black() -> None:
    mesh = sphere_mesh()
    image = prepared_image(constant((0.2, 0.5, 0.8)))
    tex = project_texture(mesh, [image], texture_size=128)
    np.testing.assert_allclose(tex.reshape(-1, 3), np.broadcast_to([51, 128, 204], (128 * 128, 3)), atol=1)


def test_progress_and_cancellation() -> None:
    mesh = sphere_mesh()
    image = prepared_image(pattern)
    events: list[tuple[str, int, int, str]] = []
    # front + right, and the mirrored front standing in for the missing back: 3 views, 5 steps.
    project_texture(mesh, [image, image], texture_size=64, ctx=JobContext(lambda *a: events.append(a)))
    assert [e[1] for e in events] == [0, 1, 2, 3, 4, 5] and all(e[0] == "texture" and e[2] == 5 for e in events)
    cancel = threading.Event()
    ctx = JobContext(lambda *a: cancel.set() if a[1] == 1 else None, cancel)
    with pytest.raises(JobCancelled):
        project_texture(mesh, [image], texture_size=64, ctx=ctx)


def test_bad_inputs() -> None:
    mesh = sphere_mesh()
    image = prepared_image(pattern)
    with pytest.raises(PipelineError):
        project_texture(MeshData(mesh.positions, mesh.faces), [image], texture_size=64)
    with pytest.raises(PipelineError):
        project_texture(mesh, [], texture_size=64)
    with pytest.raises(PipelineError):
        project_texture(mesh, [SimpleNamespace(rgba=image.rgba, mask=np.zeros((N, N), bool))], texture_size=64)
    with pytest.raises(PipelineError):
        project_texture(mesh, [object()], texture_size=64)


def test_missing_back_shows_the_mirrored_front() -> None:
    """A front half red (left, -X) and half blue (+X): from behind, +X is on the left and blue."""
    mesh = sphere_mesh()
    red, blue = np.array([0.9, 0.1, 0.1]), np.array([0.1, 0.1, 0.9])
    image = prepared_image(lambda x, y: np.where((x < N / 2)[..., None], red, blue))
    tex = project_texture(mesh, [image], texture_size=256)
    col, covered = rerender(mesh, tex, image.mask[:, ::-1], "back")
    row = N // 2
    left, right = col[row, N // 2 - 60], col[row, N // 2 + 60]
    assert covered[row, N // 2 - 60] and covered[row, N // 2 + 60]
    assert np.abs(left - blue).max() < 0.1 and np.abs(right - red).max() < 0.1
    # Without the stand-in the back is one blend of the rim colours: neither side matches.
    flat = project_texture(mesh, [image], texture_size=256, mirror_back=False)
    col, _ = rerender(mesh, flat, image.mask[:, ::-1], "back")
    assert np.abs(col[row, N // 2 - 60] - blue).max() > 0.1 or np.abs(col[row, N // 2 + 60] - red).max() > 0.1
