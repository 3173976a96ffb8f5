#!/usr/bin/env python3
"""Import speed: the add-on's importer vs Blender's glTF importer on the same 1M-triangle asset.

    python benchmarks/blender_import.py [--triangles 1000000] [--texture-size 2048] [--repeat 2]

One process, the bpy wheel (headless). The asset: a UV sphere split at its UV
seam (like every server result), smooth with per-vertex normals, and three maps
(base colour, ORM, normal) as PNG. Ours imports the arrays and PNG bytes
exactly as they arrive from the server; the glTF importer reads the same asset
written as GLB by the server's exporter. Both pack the PNGs without decoding
them (Blender decodes on first use), so the times compare like for like.
Prints both times (best of --repeat) and the ratio.
"""

from __future__ import annotations

import argparse
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

        t_ours = best_of(args.repeat, ours, bpy)
        t_gltf = best_of(args.repeat, gltf, bpy)

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
    print(f"ratio (glTF / ours):                {t_gltf / t_ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
