"""STEP (AP214 or AP242) solids through OpenCascade (``cadquery-ocp``), in millimetres.

The mesh is welded by position (our vertices are split at UV seams), decimated to a
face budget when larger (a triangle becomes a B-rep face: STEP files and CAD tools
grow with every face), and handed to OpenCascade as one triangulation.
``BRepBuilderAPI_MakeShapeOnMesh`` turns it into planar faces sharing their edges,
so the shell is sewn by construction; a closed shell becomes a solid, oriented
outwards. ``merge_planar`` unifies coplanar neighbours (a box becomes 6 faces).
The header names the producer and says the shape is AI-generated.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blender_addon.protocol.errors import Step1X3DError
from blender_addon.protocol.provenance import BACKEND, SEED, labelled

from ..assets import Asset
from .glb import IPTC_AI_SOURCE, PROJECT, generator_string, json_safe
from .weld import decimate, is_closed, weld

# A face budget that keeps a STEP export under 10 s on a 2-core CPU (measured:
# 20k faces take about 7 s, 10k about 3.5 s; see benchmarks/results/export.md).
DEFAULT_STEP_FACES = 10_000
SCHEMAS = {"AP214": "AP214IS", "AP242": "AP242DIS"}
# Neighbours whose normals differ by less than this count as coplanar when merging.
PLANAR_ANGLE_DEG = 0.5
MM_PER_METRE = 1000.0


@dataclass(frozen=True)
class StepResult:
    path: Path
    faces: int  # B-rep faces written
    solid: bool  # a closed solid (False: an open shell, e.g. a mesh with holes)
    decimated_from: int | None  # triangle count before decimation, if it ran


def _ocp() -> None:
    try:
        import OCP  # noqa: F401
    except ImportError:
        raise Step1X3DError("writing STEP needs OpenCascade: pip install 'step1x3d-blender[export]'",
                            "not_installed") from None


def _shape(positions: np.ndarray, faces: np.ndarray, merge_planar: bool) -> tuple[Any, bool]:
    from OCP.BRep import BRep_Builder
    from OCP.BRepBuilderAPI import BRepBuilderAPI_MakeShapeOnMesh, BRepBuilderAPI_MakeSolid
    from OCP.BRepLib import BRepLib
    from OCP.gp import gp_Pnt
    from OCP.Poly import Poly_Triangle, Poly_Triangulation
    from OCP.TopAbs import TopAbs_FACE
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopoDS import TopoDS_Shell

    closed = is_closed(faces)
    tri = Poly_Triangulation(len(positions), len(faces), False)
    for i, p in enumerate(positions.tolist(), start=1):
        tri.SetNode(i, gp_Pnt(*p))
    for i, (a, b, c) in enumerate((faces + 1).tolist(), start=1):
        tri.SetTriangle(i, Poly_Triangle(a, b, c))
    maker = BRepBuilderAPI_MakeShapeOnMesh(tri)
    maker.Build()
    if not maker.IsDone():
        raise Step1X3DError("OpenCascade could not build faces from this mesh", "export_failed")
    builder = BRep_Builder()
    shell = TopoDS_Shell()
    builder.MakeShell(shell)
    explorer = TopExp_Explorer(maker.Shape(), TopAbs_FACE)
    while explorer.More():
        builder.Add(shell, explorer.Current())
        explorer.Next()
    shape: Any = shell
    if closed:
        shell.Closed(True)
        solid = BRepBuilderAPI_MakeSolid(shell).Solid()
        BRepLib.OrientClosedSolid_s(solid)  # outward normals, whatever the input winding
        shape = solid
    if merge_planar:
        import math

        from OCP.ShapeUpgrade import ShapeUpgrade_UnifySameDomain

        unify = ShapeUpgrade_UnifySameDomain(shape, True, True, False)
        unify.SetAngularTolerance(math.radians(PLANAR_ANGLE_DEG))
        unify.Build()
        shape = unify.Shape()
    return shape, closed


def _quiet() -> None:
    """Keep OpenCascade's transfer statistics off stdout (the CLI prints its own line)."""
    from OCP.Message import Message, Message_Gravity

    printers = Message.DefaultMessenger_s().Printers()
    for i in range(1, printers.Length() + 1):
        printers.Value(i).SetTraceLevel(Message_Gravity.Message_Fail)


def count_faces(shape: Any) -> int:
    from OCP.TopAbs import TopAbs_FACE
    from OCP.TopExp import TopExp_Explorer

    explorer, n = TopExp_Explorer(shape, TopAbs_FACE), 0
    while explorer.More():
        n += 1
        explorer.Next()
    return n


def write_step(asset: Asset, path: Path, *, face_budget: int = DEFAULT_STEP_FACES, merge_planar: bool = False,
               schema: str = "AP214") -> StepResult:
    """Write the asset's shape (LOD 0) to a STEP file in millimetres."""
    _ocp()
    from OCP.APIHeaderSection import APIHeaderSection_MakeHeader
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.Interface import Interface_Static
    from OCP.STEPControl import STEPControl_AsIs, STEPControl_Writer
    from OCP.TCollection import TCollection_HAsciiString

    if schema not in SCHEMAS:
        raise Step1X3DError(f"unknown STEP schema {schema!r}; use one of {', '.join(SCHEMAS)}", "export_failed")
    if face_budget < 4:
        raise Step1X3DError("the STEP face budget must be at least 4 faces", "export_failed")
    path = Path(path)
    positions, faces = weld(asset.mesh.positions, asset.mesh.faces)
    if len(faces) == 0:
        raise Step1X3DError("the mesh has no faces with area; nothing to write as STEP", "export_failed")
    before = len(faces)
    positions, faces = decimate(positions, faces, face_budget)
    shape, closed = _shape(positions * MM_PER_METRE, faces, merge_planar)

    _quiet()
    writer = STEPControl_Writer()
    Interface_Static.SetCVal_s("write.step.schema", SCHEMAS[schema])
    Interface_Static.SetCVal_s("write.step.unit", "MM")
    prov = json_safe(labelled(asset.provenance))
    Interface_Static.SetCVal_s("write.step.product.name", "step1x3d_asset")
    if writer.Transfer(shape, STEPControl_AsIs) != IFSelect_RetDone:
        raise Step1X3DError("OpenCascade could not translate the shape to STEP", "export_failed")
    header = APIHeaderSection_MakeHeader(writer.Model())
    header.SetName(TCollection_HAsciiString(path.name))
    header.SetAuthorValue(1, TCollection_HAsciiString(PROJECT))
    header.SetOriginatingSystem(TCollection_HAsciiString(generator_string(prov)))
    header.SetAuthorisation(TCollection_HAsciiString(f"AI-generated ({IPTC_AI_SOURCE})"))
    header.SetDescriptionValue(1, TCollection_HAsciiString(
        "AI-generated; " + json.dumps({k: prov[k] for k in (BACKEND, SEED) if k in prov}, sort_keys=True)))
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        if writer.Write(str(tmp)) != IFSelect_RetDone:
            raise Step1X3DError(f"OpenCascade could not write {path.name}", "export_failed")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return StepResult(path=path, faces=count_faces(shape), solid=closed,
                      decimated_from=before if before > len(faces) else None)


__all__ = ["DEFAULT_STEP_FACES", "SCHEMAS", "StepResult", "write_step"]
