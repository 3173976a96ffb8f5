"""The checks the benchmarks run on their own output, so that a benchmark cannot time wrong work.

Each check is fed right work (it passes) and spoiled work (it refuses): a GLB parsed back to the
arrays that were sent, an atlas that lost its triangles, a fill that touched known texels, a
raster with a wrong face. Small inputs only; no timing is asserted anywhere.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    # Loaded under another name: benchmarks/kernels.py must not shadow the kernels package.
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def transport() -> ModuleType:
    return load("transport")


def small_asset(transport: ModuleType):  # -> Asset
    from inference_server.assets import Asset, PBRMaterial

    maps = transport.texture_maps(32)
    return Asset(mesh=transport.big_mesh(200), material=PBRMaterial(**maps), provenance={"backend": "test"})


def test_glb_baseline_parses_back_exactly_what_was_sent(transport: ModuleType) -> None:
    from inference_server.export.glb import asset_to_glb, png_bytes

    asset = small_asset(transport)
    mesh, pngs = transport.parse_glb(asset_to_glb(asset, xmp=False))
    assert mesh["faces"].shape == (200, 3) and mesh["tangents"].shape == (asset.mesh.vertex_count, 4)
    maps = {name: getattr(asset.material, name) for name in ("base_color", "orm", "normal")}
    transport.check((mesh, pngs), asset, maps, None, "glb")  # passes: arrays bit for bit, maps pixel for pixel
    spoiled = dict(mesh, uvs=mesh["uvs"] + np.float32(1e-3))
    with pytest.raises(AssertionError, match="uvs differs"):
        transport.check((spoiled, pngs), asset, maps, None, "glb")
    other = dict(pngs, orm=png_bytes(np.zeros_like(maps["orm"])))
    with pytest.raises(AssertionError, match="map orm does not decode"):
        transport.check((mesh, other), asset, maps, None, "glb")


def test_json_baseline_round_trips(transport: ModuleType) -> None:
    import json
    import base64

    asset = small_asset(transport)
    pngs = {"base_color": b"\x89PNG-a", "orm": b"\x89PNG-b"}
    doc = json.loads(transport.json_body(asset, pngs))
    assert base64.b64decode(doc["textures"]["orm"]) == b"\x89PNG-b"
    faces = np.frombuffer(base64.b64decode(doc["mesh"]["faces"]["data"]), doc["mesh"]["faces"]["dtype"])
    np.testing.assert_array_equal(faces.reshape(-1, 3), asset.mesh.faces)


def test_atlas_check_refuses_lost_or_reordered_triangles() -> None:
    from inference_server.assets import MeshData

    atlas = load("atlas")
    mesh = atlas.bumpy_mesh(2_000)
    split = MeshData(mesh.positions[mesh.faces.reshape(-1)], np.arange(3 * mesh.face_count, dtype=np.uint32).reshape(-1, 3))
    atlas.same_triangles(split, mesh, "split")  # vertices split at every corner: same triangles, passes
    with pytest.raises(AssertionError):
        atlas.same_triangles(MeshData(split.positions, split.faces[::-1].copy()), mesh, "reordered")
    with pytest.raises(AssertionError):
        atlas.same_triangles(MeshData(split.positions, split.faces[:-1].copy()), mesh, "lost one")


def test_kernel_checks_refuse_wrong_work() -> None:
    from inference_server import kernels as K
    from inference_server.kernels.meshes import sphere_with_faces

    bench = load("kernels")
    pos, faces, uv = sphere_with_faces(2_000, 0.5)
    uv = uv * np.float32(0.96) + np.float32(0.02)
    views = [K.rasterize(pos, faces, v.view_proj, 64, 64) for v in K.upstream_views()[:1]]
    ref = K.rasterize(pos, faces, K.upstream_views()[0].view_proj, 64, 64, backend="reference")
    bench.check_raster_equal(views[0], ref, "cpu vs reference")
    wrong = K.Raster(face_id=ref.face_id.copy(), bary=ref.bary, depth=ref.depth)
    wrong.face_id[ref.face_id >= 0] = 0
    with pytest.raises(AssertionError, match="face ids differ"):
        bench.check_raster_equal(views[0], wrong, "wrong")

    baked = [K.BakeView(K.interpolate(r, faces, bench.colour_of(pos.astype(np.float64))), v.view_proj, v.weight)
             for r, v in zip([K.rasterize(pos, faces, v.view_proj, 128, 128) for v in K.upstream_views()],
                             K.upstream_views(), strict=True)]
    res = K.bake_views(pos, faces, uv, baked, 128)
    bench.check_bake(res, pos, faces, "bake")
    res.texture[res.mask] = 1.0 - res.texture[res.mask]
    with pytest.raises(AssertionError, match="colour error"):
        bench.check_bake(res, pos, faces, "inverted")

    tex = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    mask = np.random.default_rng(1).random((32, 32)) < 0.5
    filled = K.fill_holes(tex, mask)
    bench.check_fill(tex, mask, filled, "fill")
    touched = filled.copy()
    touched[mask] += 0.01
    with pytest.raises(AssertionError, match="changed known texels"):
        bench.check_fill(tex, mask, touched, "touched")
