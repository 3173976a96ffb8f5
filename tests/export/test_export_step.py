"""STEP through OpenCascade, read back with OpenCascade: valid closed solid, volume, bounding box, units."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh

from export_helpers import PROVENANCE, bumpy_sphere, make_material
from inference_server.assets import Asset, MeshData
from inference_server.export import ExportOptions, save_asset
from blender_addon.protocol.errors import Step1X3DError
from inference_server.export.step import write_step
from inference_server.export.weld import is_closed, weld
from inference_server.uv import unwrap

pytest.importorskip("OCP")


def read_step(path: Path) -> Any:
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.STEPControl import STEPControl_Reader

    reader = STEPControl_Reader()
    assert reader.ReadFile(str(path)) == IFSelect_RetDone
    reader.TransferRoots()
    return reader.OneShape()


def count(shape: Any, kind: str) -> int:
    from OCP import TopAbs
    from OCP.TopExp import TopExp_Explorer

    explorer, n = TopExp_Explorer(shape, getattr(TopAbs, f"TopAbs_{kind}")), 0
    while explorer.More():
        n += 1
        explorer.Next()
    return n


def measure(shape: Any) -> tuple[bool, float, np.ndarray, int]:
    """Checker verdict, volume (mm^3), bounding box (2, 3) in mm, free (unshared) edges."""
    from OCP.Bnd import Bnd_Box
    from OCP.BRepBndLib import BRepBndLib
    from OCP.BRepCheck import BRepCheck_Analyzer
    from OCP.BRepGProp import BRepGProp
    from OCP.GProp import GProp_GProps
    from OCP.ShapeAnalysis import ShapeAnalysis_FreeBounds

    props = GProp_GProps()
    BRepGProp.VolumeProperties_s(shape, props)
    box = Bnd_Box()
    BRepBndLib.AddOptimal_s(shape, box, False, False)
    free = ShapeAnalysis_FreeBounds(shape)
    return (BRepCheck_Analyzer(shape).IsValid(), props.Mass(), _corners(box),
            count(free.GetOpenWires(), "EDGE") + count(free.GetClosedWires(), "EDGE"))


def _corners(box: Any) -> np.ndarray:
    lo, hi = box.CornerMin(), box.CornerMax()
    return np.array([[lo.X(), lo.Y(), lo.Z()], [hi.X(), hi.Y(), hi.Z()]])


def _asset(mesh: trimesh.Trimesh) -> Asset:
    return Asset(MeshData(mesh.vertices.astype(np.float32), mesh.faces.astype(np.uint32)), provenance=dict(PROVENANCE))


@pytest.fixture(scope="module")
def small_textured() -> Asset:
    """1280 triangles, unwrapped (split at seams): big enough to need welding, small enough to check fast."""
    return Asset(mesh=unwrap(bumpy_sphere(3), texture_size=256), material=make_material(256),
                 provenance=dict(PROVENANCE))


def test_textured_result_becomes_a_closed_solid_in_millimetres(small_textured: Asset, tmp_path: Path) -> None:
    textured_asset = small_textured
    # The unwrapped sphere is split at its UV seams: welding must close it again.
    assert not is_closed(textured_asset.mesh.faces.astype(np.int64))
    positions, faces = weld(textured_asset.mesh.positions, textured_asset.mesh.faces)
    assert is_closed(faces)
    mesh_volume = trimesh.Trimesh(positions, faces).volume * 1e9  # m^3 -> mm^3
    (path,) = save_asset(textured_asset, tmp_path / "a.step")
    shape = read_step(path)
    valid, volume, box, free_edges = measure(shape)
    assert valid and free_edges == 0
    assert count(shape, "SOLID") == 1 and count(shape, "FACE") == len(faces)
    assert abs(volume - mesh_volume) < 0.005 * mesh_volume
    np.testing.assert_allclose(box, np.stack([positions.min(0), positions.max(0)]) * 1000.0, atol=1e-3)
    text = path.read_text(errors="replace")
    assert "SI_UNIT(.MILLI.,.METRE.)" in text and "AUTOMOTIVE_DESIGN" in text  # AP214
    assert "AI-generated" in text and "trainedAlgorithmicMedia" in text and "Step1X-3D for Blender" in text


def test_face_budget_decimates_first(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.1)  # 5120 triangles
    result = write_step(_asset(sphere), tmp_path / "s.stp", face_budget=1000)
    assert result.decimated_from == 5120 and result.solid
    shape = read_step(result.path)
    valid, volume, box, free_edges = measure(shape)
    assert valid and free_edges == 0 and count(shape, "SOLID") == 1
    assert 900 <= count(shape, "FACE") <= 1000
    assert abs(volume - sphere.volume * 1e9) < 0.02 * sphere.volume * 1e9  # 1000 faces still hold the volume
    np.testing.assert_allclose(box, np.array([[-100.0] * 3, [100.0] * 3]), atol=2.0)


def test_merge_planar_makes_a_box_six_faces_ap242(tmp_path: Path) -> None:
    box = trimesh.creation.box((0.2, 0.1, 0.05)).subdivide().subdivide()  # 192 coplanar-in-groups triangles
    options = ExportOptions(step_merge_planar=True, step_schema="AP242")
    (path,) = save_asset(_asset(box), tmp_path / "box.step", options=options)
    shape = read_step(path)
    valid, volume, bounds, free_edges = measure(shape)
    assert valid and free_edges == 0 and count(shape, "SOLID") == 1
    assert count(shape, "FACE") == 6
    assert abs(volume - 0.2 * 0.1 * 0.05 * 1e9) < 1e-6 * 1e6
    np.testing.assert_allclose(bounds, [[-100, -50, -25], [100, 50, 25]], atol=1e-4)
    assert "AP242" in path.read_text(errors="replace")[:2000]
    plain = write_step(_asset(box), tmp_path / "plain.step")
    assert plain.faces == 192  # without the option every triangle stays a face


def test_open_mesh_is_written_as_a_shell(tmp_path: Path) -> None:
    box = trimesh.creation.box((0.1, 0.1, 0.1))
    open_box = trimesh.Trimesh(box.vertices, box.faces[2:])  # one side missing
    result = write_step(_asset(open_box), tmp_path / "open.step")
    assert not result.solid and result.faces == 10
    shape = read_step(result.path)
    assert count(shape, "SOLID") == 0 and count(shape, "SHELL") == 1


def test_unknown_schema_and_empty_mesh_are_refused(tmp_path: Path) -> None:
    box = _asset(trimesh.creation.box())
    with pytest.raises(Step1X3DError, match="unknown STEP schema 'AP203'; use one of AP214, AP242") as refused:
        write_step(box, tmp_path / "x.step", schema="AP203")
    assert refused.value.code == "export_failed"
    flat = Asset(MeshData(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]], np.uint32)))
    with pytest.raises(Step1X3DError, match="no faces with area"):
        write_step(flat, tmp_path / "y.step")
    assert not (tmp_path / "x.step").exists() and not (tmp_path / "y.step").exists()
