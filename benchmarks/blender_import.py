#!/usr/bin/env python3
"""Import speed: the add-on's importer vs Blender's glTF importer on the same 1M-triangle asset.

    python benchmarks/blender_import.py [--triangles 1000000] [--texture-size 2048] [--repeat 2]

One process, the bpy wheel (headless). The asset: a UV sphere split at its UV
seam (like every server result), smooth with per-vertex normals, and three maps
(base colour, ORM, normal) as PNG. Ours imports the arrays and PNG bytes
exactly as they arrive from the server; the glTF importer reads the same asset
written as GLB by the server's exporter. Both pack the PNGs without decoding
them (Blender decodes on first use), so the times compare like for like.
The two importers are timed interleaved (ours, glTF, ours, glTF, ...) after one warm-up
each, and every import is checked: one mesh object whose triangles (corner positions in
Blender's frame and UVs, in any order) are the asset's, and a material with the three maps
packed at full size. Prints both times (best of --repeat), and the ratio (median of the
per-round ratios).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sphere(triangles: int) -> dict[str, Any]:
    """A UV sphere in the glTF frame with about ``triangles`` triangles, seam vertices duplicated."""
    n_lat = max(4, int(np.sqrt(triangles / 4)))
    n_lon = max(8, triangles // (2 * n_lat))
    lat = np.linspace(0.0, np.pi, n_lat + 1, dtype=np.float64)
    lon = np.linspace(0.0, 2.0 * np.pi, n_lon + 1, dtype=np.float64)  # first and last column coincide: the seam
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    normals = np.stack([np.sin(la) * np.cos(lo), np.cos(la), np.sin(la) * np.sin(lo)], axis=-1).reshape(-1, 3)
    bumps = 1.0 + 0.03 * np.sin(12 * la) * np.cos(9 * lo)
    positions = (normals * bumps.reshape(-1, 1)).astype(np.float32)
    uvs = np.stack([lo / (2 * np.pi), la / np.pi], axis=-1).reshape(-1, 2).astype(np.float32)
    idx = np.arange((n_lat + 1) * (n_lon + 1)).reshape(n_lat + 1, n_lon + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([a, d, c], 1)]).astype(np.uint32)
    return {"positions": positions, "faces": faces, "uvs": uvs, "normals": normals.astype(np.float32), "smooth": True}


def maps(size: int) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    checker = ((np.floor(xx * 32) + np.floor(yy * 32)) % 2).astype(np.float32)
    base = np.stack([180 * xx + 40 * checker, 160 * yy + 40, 200 - 120 * checker], axis=-1)
    orm = np.stack([np.full_like(xx, 255), 60 + 150 * checker, 40 * yy], axis=-1)
    normal = np.stack([128 + 30 * np.sin(40 * xx), 128 + 30 * np.cos(40 * yy), np.full_like(xx, 250)], axis=-1)
    # Grain like a baked texture, so the PNGs are as large as real maps (smooth ramps compress to nothing).
    grain = np.random.default_rng(0).integers(0, 24, size=(size, size, 1)).astype(np.float32)
    return {
        k: np.clip(v + grain, 0, 255).astype(np.uint8)
        for k, v in (("base_color", base), ("orm", orm), ("normal", normal))
    }


def write_glb(mesh: dict[str, Any], images: dict[str, np.ndarray], path: Path) -> None:
    from inference_server.assets import Asset, MeshData, PBRMaterial
    from inference_server.export.glb import asset_to_glb

    asset = Asset(
        mesh=MeshData(positions=mesh["positions"], faces=mesh["faces"], uvs=mesh["uvs"], normals=mesh["normals"]),
        material=PBRMaterial(base_color=images["base_color"], orm=images["orm"], normal=images["normal"]),
        provenance={"backend": "benchmark"},
    )
    path.write_bytes(asset_to_glb(asset, xmp=False))


def clean(bpy: Any) -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for coll in (bpy.data.meshes, bpy.data.materials, bpy.data.collections):
        for block in list(coll):
            coll.remove(block)
    for image in list(bpy.data.images):
        if image.type == "IMAGE":
            bpy.data.images.remove(image)


def expected_corners(mesh: dict[str, Any]) -> np.ndarray:
    """Every triangle corner as (x, y, z, u, v) in Blender's frame (Z up, v up), rows sorted."""
    faces = mesh["faces"].astype(np.int64).ravel()
    p = mesh["positions"].astype(np.float64)[faces]
    uv = mesh["uvs"].astype(np.float64)[faces]
    rows = np.column_stack([p[:, 0], -p[:, 2], p[:, 1], uv[:, 0], 1.0 - uv[:, 1]])
    return sort_rows(rows)


def sort_rows(rows: np.ndarray) -> np.ndarray:
    rounded = np.round(rows, 5)  # order by values rounded well below the tolerance, so ties sort alike
    return rows[np.lexsort(rounded.T[::-1])]


def check_import(bpy: Any, want: np.ndarray, texture_size: int, side: str) -> None:
    """The scene holds exactly the asset: one mesh with its triangles and UVs, three packed maps."""
    objects = [o for o in bpy.data.objects if o.type == "MESH"]
    if len(objects) != 1:
        raise AssertionError(f"{side}: {len(objects)} mesh objects instead of 1")
    obj = objects[0]
    me = obj.data
    if len(me.loops) != 3 * len(me.polygons) or 3 * len(me.polygons) != len(want):
        raise AssertionError(f"{side}: {len(me.polygons)} polygons, expected {len(want) // 3} triangles")
    if any(abs(v) > 1e-6 for v in obj.matrix_world.to_translation()) or any(
            abs(a) > 1e-6 for a in obj.matrix_world.to_euler()):
        raise AssertionError(f"{side}: the object is moved or rotated; its mesh would not be compared fairly")
    co = np.empty(3 * len(me.vertices), np.float32)
    me.vertices.foreach_get("co", co)
    index = np.empty(len(me.loops), np.int32)
    me.loops.foreach_get("vertex_index", index)
    uv = np.empty(2 * len(me.loops), np.float32)
    me.uv_layers.active.data.foreach_get("uv", uv)
    got = sort_rows(np.column_stack([co.reshape(-1, 3)[index], uv.reshape(-1, 2)]).astype(np.float64))
    err = float(np.abs(got - want).max())
    if err > 1e-4:
        raise AssertionError(f"{side}: triangle corners or UVs differ from the asset's by up to {err:.2e}")
    images = [i for i in bpy.data.images if i.type == "IMAGE"]
    if len(images) != 3 or any(i.packed_file is None or tuple(i.size) != (texture_size, texture_size)
                               for i in images):
        raise AssertionError(f"{side}: expected three packed {texture_size}^2 maps, found "
                             f"{[(i.name, tuple(i.size), i.packed_file is not None) for i in images]}")


def interleaved(repeat: int, sides: dict[str, Callable[[], None]], bpy: Any,
                check: Callable[[str], None]) -> dict[str, list[float]]:
    """Time the sides in turn (A B A B ...) on an empty scene each; check every import, untimed."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, fn in sides.items():
            clean(bpy)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            check(name)
    clean(bpy)
    return times


def best_of(repeat: int, fn: Callable[[], None], bpy: Any) -> float:
    times = []
    for _ in range(repeat):
        clean(bpy)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    clean(bpy)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triangles", type=int, default=1_000_000)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import bpy

    from blender_addon.blender.importer import import_payload
    from blender_addon.core.payload import ResultPayload
    from inference_server.export.glb import png_bytes

    t0 = time.perf_counter()
    mesh = sphere(args.triangles)
    images = maps(args.texture_size)
    pngs = {k: png_bytes(v) for k, v in images.items()}
    payload = ResultPayload(mesh=mesh, textures=pngs, provenance={"backend": "benchmark"})
    with tempfile.TemporaryDirectory() as tmp:
        glb = Path(tmp) / "asset.glb"
        write_glb(mesh, images, glb)
        print(f"asset: {len(mesh['faces']):,} triangles, {len(mesh['positions']):,} vertices, "
              f"3 maps {args.texture_size}^2 ({sum(map(len, pngs.values())) / 1e6:.1f} MB PNG), "
              f"GLB {glb.stat().st_size / 1e6:.1f} MB; prepared in {time.perf_counter() - t0:.1f} s")

        scene = bpy.context.scene

        def ours() -> None:
            import_payload(scene, payload, name="asset")

        def gltf() -> None:
            bpy.ops.import_scene.gltf(filepath=str(glb))

        # Warm both paths once (module imports, first-use caches) on a tiny asset of the same kind.
        small = ResultPayload(mesh=sphere(2000), textures={k: png_bytes(v[:64, :64]) for k, v in images.items()})
        import_payload(scene, small, name="warm")
        with tempfile.TemporaryDirectory() as tmp_small:
            small_glb = Path(tmp_small) / "small.glb"
            write_glb(small.mesh, {k: v[:64, :64] for k, v in images.items()}, small_glb)
            bpy.ops.import_scene.gltf(filepath=str(small_glb))

        want = expected_corners(mesh)
        times = interleaved(args.repeat, {"ours": ours, "gltf": gltf}, bpy,
                            lambda side: check_import(bpy, want, args.texture_size, side))
        t_ours, t_gltf = min(times["ours"]), min(times["gltf"])
        ratio = statistics.median(g / o for g, o in zip(times["gltf"], times["ours"], strict=True))

        # Where our time goes (same asset, each part best of --repeat).
        from blender_addon.blender import importer, material
        from blender_addon.core.meshdata import blender_arrays_from_result

        s = time.perf_counter()
        arrays = blender_arrays_from_result(mesh)
        t_arrays = time.perf_counter() - s
        t_mesh = best_of(args.repeat, lambda: None if importer.build_mesh("m", arrays) else None, bpy)
        t_material = best_of(args.repeat, lambda: None if material.build_material("m", pngs, {}) else None, bpy)

    print(f"ours (attribute API + packed PNGs): {t_ours:.3f} s"
          f"  [validate+convert arrays {t_arrays:.3f}, mesh+UVs+normals {t_mesh:.3f}, "
          f"material+packed maps {t_material:.3f}]")
    print(f"bpy.ops.import_scene.gltf:          {t_gltf:.3f} s")
    print(f"ratio (glTF / ours):                {ratio:.1f}x  (median of {args.repeat} interleaved rounds; "
          "every import checked: triangles, UVs and three packed maps equal the asset's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
