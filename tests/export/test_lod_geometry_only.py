"""LODs of a geometry-only result (no UVs): the CLI job that used to stop with "LODs that share an atlas
need a mesh with uvs", and the decimation it now runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export_helpers import bumpy_sphere
from inference_server.cli import main
from inference_server.export.glb_read import read_gltf
from inference_server.export.lod import build_lods
from inference_server.export.weld import is_closed

ROOT = Path(__file__).resolve().parents[2]


def test_geometry_only_job_with_lods_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "apple.glb"
    code = main(["generate", str(ROOT / "examples" / "apple.png"), "-o", str(out), "--geometry-only",
                 "--lods", "1,0.5,0.25", "--max-faces", "4000", "--size", "0.1"])
    assert code == 0, capsys.readouterr().err
    back = read_gltf(out)
    assert back.mesh.uvs is None and back.material is None
    faces = [back.mesh.face_count, *(lod.face_count for lod in back.lods)]
    assert len(faces) == 3
    assert faces[1] == pytest.approx(faces[0] * 0.5, rel=0.05) and faces[2] == pytest.approx(faces[0] * 0.25, rel=0.05)
    # --size applies to every level alike: the coarse levels keep the shape's extent.
    for lod in [back.mesh, *back.lods]:
        extent = lod.positions.max(axis=0) - lod.positions.min(axis=0)
        assert extent.max() == pytest.approx(0.1, rel=0.03)


def test_decimation_without_uvs_keeps_a_closed_surface_and_unit_normals() -> None:
    sphere = bumpy_sphere(4)  # welded, closed, 5120 faces, normals, no UVs
    assert sphere.uvs is None
    half, quarter = build_lods(sphere, (0.5, 0.25))
    assert half.face_count == pytest.approx(2560, abs=4) and quarter.face_count == pytest.approx(1280, abs=4)
    for lod in (half, quarter):
        assert lod.uvs is None and is_closed(lod.faces.astype(np.int64))
        assert lod.normals is not None and lod.normals.shape == lod.positions.shape
        np.testing.assert_allclose(np.linalg.norm(lod.normals, axis=1), 1.0, atol=1e-5)
        # Normals still point outwards (the sphere is centred on the origin).
        assert (np.einsum("ij,ij->i", lod.normals, lod.positions) > 0).all()
        radius = np.linalg.norm(lod.positions, axis=1)
        assert 0.9 < radius.min() and radius.max() < 1.1
