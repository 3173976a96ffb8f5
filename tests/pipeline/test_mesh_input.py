"""Client meshes are untrusted: bad ones get a clear bad_mesh error, good UVs are kept."""

import numpy as np
import pytest

from inference_server.assets import MeshData
from inference_server.pipeline.base import PipelineError
from inference_server.pipeline.mesh_input import has_usable_uvs, validate_client_mesh


def quad(uvs: np.ndarray | None = None) -> MeshData:
    pos = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.uint32)
    return MeshData(pos, faces, uvs=uvs)


@pytest.mark.parametrize(
    ("mesh", "fragment"),
    [
        (None, "needs a mesh"),
        (MeshData(np.zeros((2, 3), np.float32), np.zeros((1, 3), np.uint32)), "at least 3 vertices"),
        (MeshData(np.eye(3, dtype=np.float32), np.zeros((0, 3), np.uint32)), "at least one triangle"),
        (MeshData(np.eye(3, dtype=np.float32), np.array([[0, 1, 5]], np.uint32)), "past the vertex list"),
        (MeshData(np.full((3, 3), np.nan, np.float32), np.array([[0, 1, 2]], np.uint32)), "NaN"),
        (MeshData(np.ones((3, 3), np.float32), np.array([[0, 1, 2]], np.uint32)), "no extent"),
        (MeshData(np.eye(3, dtype=np.float32), np.array([[0.0, 1.0, 2.0]])), "integers"),
    ],
)
def test_bad_meshes_are_refused(mesh: MeshData | None, fragment: str) -> None:
    with pytest.raises(PipelineError) as err:
        validate_client_mesh(mesh)
    assert err.value.code == "bad_mesh"
    assert fragment in str(err.value)


def test_valid_mesh_is_normalised() -> None:
    m = quad()
    m.faces = m.faces.astype(np.int64)
    out = validate_client_mesh(m)
    assert out.faces.dtype == np.uint32 and out.positions.dtype == np.float32
    assert out.vertex_count == 4 and out.face_count == 2


def test_uv_usability() -> None:
    good = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    assert has_usable_uvs(quad(good))
    assert not has_usable_uvs(quad(None))
    assert not has_usable_uvs(quad(good * 3.0))  # outside [0, 1]
    assert not has_usable_uvs(quad(np.zeros((4, 2), np.float32)))  # collapsed
    assert not has_usable_uvs(quad(good * 0.1))  # 1% of the texture: too small to carry detail
