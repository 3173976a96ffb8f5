"""Measure upstream's latent texture synchronisation: its cost per step and its effect on cross-view consistency.

    python benchmarks/texture_sync.py --weights /models/Step1X-3D --sdxl-dir /models/sdxl-base \\
        --vae-dir /models/sdxl-vae-fp16-fix --mesh chair.glb --image chair.png [--seed 7] [--ratios 0 0.5]
    python benchmarks/texture_sync.py --tiny      # tiny random-weight models on the CPU: checks the script only

For every ratio (default 0 = off and upstream's 0.5) it runs ``TextureStage.run`` on the same mesh,
image and seed, keeps the six decoded views, and prints:

* time per denoising step (median over ``--repeats`` runs) in the synchronised phase and in the
  plain phase (the same step indices of the ratio-0 run are the baseline), the first step with its
  set-up, the whole diffusion and the whole stage; and, at the model's real 96^2 latents, the
  one-off projection build and one synchronised step without the UNet;
* a cross-view consistency metric: for every pair of views, the surface points both see (the
  view's pixel reprojected into the other view lands on the same surface point, within two pixels;
  both viewing angles under ``--max-angle``; pixels near silhouettes left out) and the mean absolute
  difference of their decoded colours (0-255). Lower is more consistent. Pairs that share no
  surface (front/back) are not listed.

Quality is what the issue asks to measure: compare the metric, then look at the baked textures
(``--out DIR`` writes one GLB per ratio) for seams. With ``--tiny`` the numbers say nothing about
quality (random weights) and little about speed (a tiny UNet on 8^2 latents: the sync's share of
a step is not the real one; the "sync alone at 96^2" line is).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

REAL_LATENT = 768 // 8  # the model's latent views
TINY_WARNING = ("--tiny: random-weight tiny models on the CPU. These numbers check that the tool runs; they say "
                "NOTHING about the quality difference, and the step-time ratio is not the real one (a tiny UNet "
                "on 8x8 latents). Measure with the real weights.")


# --------------------------------------------------------------------------- consistency metric
def cross_view_difference(
    positions: np.ndarray, faces: np.ndarray, normals: np.ndarray, views: list[Any], images: np.ndarray,
    max_angle_deg: float = 60.0,
) -> dict[str, tuple[float, int]]:
    """Mean |RGB difference| (0-255) over surface points seen by both views of each pair -> {"a/b": (diff, points)}.

    ``positions``/``normals``: the view mesh (normalised as the views see it); ``images``: (6, 3, R, R) in [0, 1].
    """
    from scipy.ndimage import binary_erosion

    from inference_server import kernels

    resolution = images.shape[-1]
    pixel_world = 2 * 0.55 / resolution  # the views' ortho box is +-0.55
    min_cos = float(np.cos(np.radians(max_angle_deg)))
    maps = []
    for view in views:
        raster = kernels.rasterize(positions, faces, view.view_proj, resolution, resolution)
        mask = raster.face_id >= 0
        attrs = kernels.interpolate(raster, faces, np.concatenate([positions, normals], axis=1).astype(np.float32))
        normal = attrs[..., 3:] / np.maximum(np.linalg.norm(attrs[..., 3:], axis=-1, keepdims=True), 1e-12)
        # Silhouette pixels mix object and background colour in the decoded views.
        inner = binary_erosion(mask, iterations=max(1, resolution // 256))
        maps.append((inner, attrs[..., :3], normal, kernels.camera_info(view.view_proj).toward_camera))
    rgb = np.transpose(images, (0, 2, 3, 1)) * 255.0
    result: dict[str, tuple[float, int]] = {}
    for a in range(len(views)):
        mask_a, pos_a, nrm_a, dir_a = maps[a]
        for b in range(a + 1, len(views)):
            mask_b, pos_b, _, dir_b = maps[b]
            sel = mask_a & (nrm_a @ dir_a > min_cos) & (nrm_a @ dir_b > min_cos)
            rows_a, cols_a = np.nonzero(sel)
            p = pos_a[rows_a, cols_a]
            clip = np.concatenate([p, np.ones((len(p), 1))], axis=1) @ np.asarray(views[b].view_proj).T
            ndc = clip[:, :2] / clip[:, 3:4]
            cols_b = np.floor((ndc[:, 0] + 1) * 0.5 * resolution).astype(int)
            rows_b = np.floor((1 - ndc[:, 1]) * 0.5 * resolution).astype(int)
            inside = (cols_b >= 0) & (cols_b < resolution) & (rows_b >= 0) & (rows_b < resolution)
            rows_a, cols_a, p = rows_a[inside], cols_a[inside], p[inside]
            rows_b, cols_b = rows_b[inside], cols_b[inside]
            same = mask_b[rows_b, cols_b] & (np.linalg.norm(pos_b[rows_b, cols_b] - p, axis=1) < 2 * pixel_world)
            if same.sum() == 0:
                continue
            diff = np.abs(rgb[a, rows_a[same], cols_a[same]] - rgb[b, rows_b[same], cols_b[same]]).mean()
            result[f"{views[a].name}/{views[b].name}"] = (float(diff), int(same.sum()))
    return result


def pooled(pairs: dict[str, tuple[float, int]]) -> float:
    points = sum(n for _, n in pairs.values())
    return sum(d * n for d, n in pairs.values()) / points if points else float("nan")


# --------------------------------------------------------------------------- inputs
def load_mesh(path: Path | None):  # -> MeshData
    import trimesh

    from inference_server.assets import MeshData
    from inference_server.neural.texture.pipelines.texture_pipeline import (
        trimesh_to_meshdata,
    )

    if path is not None:
        loaded = trimesh.load(path, force="mesh")
        if not isinstance(loaded, (trimesh.Trimesh, trimesh.Scene)):
            raise SystemExit(f"{path}: not a triangle mesh")
        return trimesh_to_meshdata(loaded)
    sphere = trimesh.creation.icosphere(subdivisions=3)  # a bumpy blob when no mesh is given
    v = sphere.vertices
    rng = np.random.default_rng(0)
    bump = sum(0.05 * np.cos(v @ (rng.normal(size=3) * 2.5) + rng.uniform(0, 6.28)) for _ in range(8))
    return MeshData((v * (1.0 + bump)[:, None]).astype(np.float32), sphere.faces.astype(np.uint32))


def load_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"))


# --------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="folder holding Step1X-3D-Texture/ (or use --adapter)")
    parser.add_argument("--adapter", type=Path, help="the step1x-3d-ig2v.safetensors file")
    parser.add_argument("--sdxl-dir", type=Path)
    parser.add_argument("--vae-dir", type=Path)
    parser.add_argument("--mesh", type=Path, help="mesh to paint (default: a bumpy sphere)")
    parser.add_argument("--image", type=Path, default=REPO / "examples" / "apple.png")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 50; 10 with --tiny)")
    parser.add_argument("--sync-texture-size", type=int, default=1536)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-angle", type=float, default=60.0, help="grazing-angle limit of the metric, degrees")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (GPU kernels, caches)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per ratio; the tables show medians")
    parser.add_argument("--out", type=Path, default=None, help="write the textured GLB of each ratio here")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--tiny", action="store_true", help="tiny random-weight models on the CPU (script check)")
    args = parser.parse_args()

    import torch
    from diffusers import DDPMScheduler

    from blender_addon.protocol.settings import JobSettings
    from inference_server.neural.texture import TextureStage
    from inference_server.neural.texture.conditioning import (
        gpu_kernels_available,
        mv_views,
        prepare_view_mesh,
    )
    from inference_server.neural.texture.sync import (
        BACKGROUND_COLOURS,
        LatentProjection,
        SyncSettings,
        TextureSync,
    )
    from inference_server.pipeline.base import JobContext

    options: dict[str, Any] = {}
    if args.tiny:
        print(TINY_WARNING, flush=True)
        sys.path.insert(0, str(REPO / "tests" / "neural" / "texture"))
        from texture_tiny_models import build_tiny_weights

        scratch = tempfile.TemporaryDirectory(prefix="texture_sync_tiny_")  # removed when the script ends
        weights = build_tiny_weights(Path(scratch.name))
        adapter, sdxl_dir, vae_dir = weights["adapter_file"], weights["sdxl_dir"], weights["vae_dir"]
        options = {"resolution": 64, "bake_resolution": 128}
        args.device, args.dtype = "cpu", "float32"
        steps = args.steps or 10
        texture_size = min(args.texture_size, 512)
    else:
        adapter = args.adapter
        if adapter is None and args.weights is not None:
            adapter = args.weights / "Step1X-3D-Texture" / "step1x-3d-ig2v.safetensors"
        if adapter is None or args.sdxl_dir is None or args.vae_dir is None:
            parser.error("give --weights (or --adapter), --sdxl-dir and --vae-dir, or --tiny")
        sdxl_dir, vae_dir = args.sdxl_dir, args.vae_dir
        steps = args.steps or 50
        texture_size = args.texture_size

    stage = TextureStage.from_paths(adapter, sdxl_dir, vae_dir, dtype=args.dtype, device=args.device,
                                    texture_sync_size=args.sync_texture_size, **options)
    device = torch.device(stage.config.device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t = time.perf_counter()
    pipe = stage.load()
    load_s = time.perf_counter() - t

    captured: dict[str, torch.Tensor] = {}
    decode = pipe.decode

    def capture_decode(latents: torch.Tensor) -> torch.Tensor:  # keep the six views for the metric
        captured["views"] = decode(latents)
        return captured["views"]

    pipe.decode = capture_decode  # type: ignore[method-assign]

    from inference_server.pipeline.mesh_input import has_usable_uvs
    from inference_server.uv.atlas import unwrap

    mesh = load_mesh(args.mesh)
    if not has_usable_uvs(mesh):  # once here, so that the timed runs do not each make the same atlas
        mesh = unwrap(mesh, texture_size=texture_size)
    image = load_image(args.image)
    settings = JobSettings(mode="texture", seed=args.seed, texture_steps=steps, texture_size=texture_size, pbr=False)
    scheduler = DDPMScheduler.from_config(pipe.models.scheduler.config)
    scheduler.set_timesteps(steps)
    timesteps = [int(x) for x in scheduler.timesteps]
    total_t = scheduler.config.num_train_timesteps

    def run(ratio: float, run_settings: JobSettings) -> dict[str, Any]:
        stage.config = replace(stage.config, texture_sync_ratio=ratio)
        marks: list[tuple[str, int, float]] = []

        def progress(name: str, step: int, total: int, message: str) -> None:
            synchronize()  # step boundaries are real only once the device is done
            marks.append((name, step, time.perf_counter()))

        start = time.perf_counter()
        out_mesh, material, _ = stage.run(mesh, [image], run_settings, JobContext(progress))
        stage_s = time.perf_counter() - start
        steps_at = {step: when for name, step, when in marks if name == "texture_diffusion"}
        durations = [steps_at[i + 1] - steps_at[i] for i in range(len(steps_at) - 1)]
        return {"stage_s": stage_s, "step_s": durations, "views": captured["views"].numpy(),
                "mesh": out_mesh, "material": material}

    for _ in range(args.warmup):
        run(args.ratios[-1], settings.replace(texture_steps=2))

    view_mesh = prepare_view_mesh(mesh.positions, mesh.faces)
    views = mv_views()
    results: dict[float, dict[str, Any]] = {}
    for repeat in range(args.repeats):  # ratios alternate, so a busy machine hits them alike
        for ratio in args.ratios:
            timed = run(ratio, settings)
            if repeat == 0:
                results[ratio] = {**timed, "step_runs": [timed["step_s"]], "stage_runs": [timed["stage_s"]]}
            else:  # same seed: same views; only the times are new
                results[ratio]["step_runs"].append(timed["step_s"])
                results[ratio]["stage_runs"].append(timed["stage_s"])
    for ratio in args.ratios:
        results[ratio]["step_s"] = [float(x) for x in np.median(np.array(results[ratio]["step_runs"]), axis=0)]
        results[ratio]["stage_s"] = float(np.median(results[ratio]["stage_runs"]))
        results[ratio]["pairs"] = cross_view_difference(view_mesh.positions, view_mesh.faces, view_mesh.normals, views,
                                                        results[ratio]["views"], args.max_angle)
        if args.out is not None:
            from inference_server.assets import Asset
            from inference_server.export.glb import asset_to_glb

            args.out.mkdir(parents=True, exist_ok=True)
            asset = Asset(mesh=results[ratio]["mesh"], material=results[ratio]["material"], notes=[],
                          provenance={"texture_sync_ratio": ratio, "seed": args.seed})
            (args.out / f"texture_sync_{ratio:.2f}.glb").write_bytes(asset_to_glb(asset))

    # The sync's own cost at the model's real latent size (96^2 for 768^2 views), whatever the
    # run's size: the one-off projection build and one synchronised step without the UNet.
    kernel_device = stage.config.device if gpu_kernels_available(stage.config.device) else None
    t = time.perf_counter()
    projection = LatentProjection.build(view_mesh, mesh.uvs, views, REAL_LATENT, args.sync_texture_size,
                                        kernel_device=kernel_device)
    build_s = time.perf_counter() - t
    run_state = TextureSync(projection, SyncSettings(1.0, args.sync_texture_size)).start(
        scheduler, torch.zeros(len(BACKGROUND_COLOURS), 4, REAL_LATENT, REAL_LATENT), torch.Generator().manual_seed(0),
        channels=4, device=device)
    noisy = torch.randn(6, 4, REAL_LATENT, REAL_LATENT, device=device, dtype=stage.config.torch_dtype)
    for index in range(2):  # warm-up
        run_state.step(index, noisy, noisy)
    synchronize()
    t = time.perf_counter()
    for index in range(2, len(run_state.steps)):
        run_state.step(index, noisy, noisy)
    synchronize()
    sync_only_ms = 1000 * (time.perf_counter() - t) / max(1, len(run_state.steps) - 2)

    baseline = results.get(0.0)
    print(f"\ntexture stage, {steps} steps, seed {args.seed}, device {device}, dtype {stage.config.torch_dtype}, "
          f"views {stage.config.resolution}^2, sync texture {args.sync_texture_size}^2; "
          f"models loaded in {load_s:.1f} s")
    print(f"the sync alone at {REAL_LATENT}^2 latents (no UNet): {sync_only_ms:.1f} ms per synchronised step, "
          f"{1000 * build_s:.0f} ms projection build per job ({projection.num_texels} texels)")
    header = (f"{'ratio':>5} {'sync steps':>10} {'step 1 + setup s':>16} {'sync step ms':>12} {'x plain':>7} "
              f"{'plain step ms':>13} {'diffusion s':>11} {'stage s':>8} {'cross-view |dRGB|':>17} {'points':>7}")
    print(header)
    print("-" * len(header))
    figures: dict[str, Any] = {"steps": steps, "seed": args.seed, "device": str(device), "tiny": args.tiny,
                               "projection_build_s": build_s, "sync_only_step_ms": sync_only_ms,
                               "load_s": load_s, "runs": {}}
    for ratio, r in results.items():
        n_sync = sum(t > (1.0 - ratio) * total_t for t in timesteps) if ratio > 0 else 0
        step_s = r["step_s"]
        sync_idx = [i for i in range(1, n_sync)]  # step 0 carries the set-up (prompt, reference, colours)
        plain_idx = [i for i in range(max(1, n_sync), len(step_s))]
        sync_ms = 1000 * float(np.mean([step_s[i] for i in sync_idx])) if sync_idx else float("nan")
        plain_ms = 1000 * float(np.mean([step_s[i] for i in plain_idx])) if plain_idx else float("nan")
        base_ms = (1000 * float(np.mean([baseline["step_s"][i] for i in sync_idx]))
                   if baseline is not None and sync_idx else float("nan"))
        points = sum(n for _, n in r["pairs"].values())
        print(f"{ratio:5.2f} {n_sync:>4}/{len(step_s):<5} {step_s[0]:16.3f} {sync_ms:12.1f} {sync_ms / base_ms:7.2f} "
              f"{plain_ms:13.1f} {sum(step_s):11.2f} {r['stage_s']:8.2f} {pooled(r['pairs']):17.2f} {points:7d}")
        figures["runs"][str(ratio)] = {"sync_steps": n_sync, "first_step_s": step_s[0], "sync_step_ms": sync_ms,
                                       "sync_step_over_plain": sync_ms / base_ms, "plain_step_ms": plain_ms,
                                       "diffusion_s": sum(step_s), "stage_s": r["stage_s"],
                                       "cross_view_mean_abs_rgb": pooled(r["pairs"]), "pairs": r["pairs"]}
    print("\nper view pair, mean |dRGB| (points):")
    pair_names = sorted({name for r in results.values() for name in r["pairs"]})
    for name in pair_names:
        cells = [f"ratio {ratio:.2f}: " + (f"{r['pairs'][name][0]:7.2f} ({r['pairs'][name][1]})"
                                           if name in r["pairs"] else "-") for ratio, r in results.items()]
        print(f"  {name:>14}: " + "   ".join(cells))
    if args.tiny:
        print("\n" + TINY_WARNING)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
