"""``step1x3d finetune texture-prepare``: textured assets -> cached VAE latents and geometry maps.

Per asset: the six views' base colour (``render``), their position/normal maps, and the
reference image (``<name>.ref.png`` beside the asset when the folder has one, else the front
view), prepared exactly as the stage prepares a job's image (``conditioning.prepare_reference``);
the views and the reference go through the frozen VAE encoder, and the posterior's mean and
log-variance are cached (the trainer draws a fresh latent every step: upstream encodes with
``sample=True``). Cached per asset through ``finetune.prepcache`` (resumable, one report line
per file).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...neural.texture.config import RESOLUTION
from ..prepcache import PrepError, PrepRun, scan_sources
from .assets import COMPANION_SUFFIXES, MESH_SUFFIXES, REFERENCE_SUFFIX, load_asset, reference_file

FORMAT = 2  # 2: the reference image and the mesh (positions, faces, UVs) are stored for the validation sheet


@dataclass
class TexturePrepareOptions:
    resolution: int = RESOLUTION  # the texture model's training resolution (768)
    device: str | None = None

    def check(self) -> None:
        if self.resolution < 64 or self.resolution % 64:
            raise PrepError(f"resolution must be a multiple of 64 (the model's is {RESOLUTION}), got {self.resolution}")


def vae_digest(vae_folder: Path) -> str:
    """Identity of the frozen VAE the cached latents depend on."""
    h = hashlib.sha256()
    for path in sorted(vae_folder.iterdir()):
        if path.is_file() and (path.suffix in (".json", ".safetensors", ".bin")):
            h.update(path.name.encode())
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


class VaeEncoder:
    """The frozen VAE encoder, loaded on first use (a fully cached run loads nothing)."""

    def __init__(self, vae_folder: Path, device: str | None) -> None:
        self.folder = vae_folder
        self.device_name = device
        self._vae: Any = None

    def moments(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float in [0, 1] -> (N, 2 * latent channels, H/8, W/8) float32 mean and log-variance."""
        import torch
        from diffusers import AutoencoderKL

        if self._vae is None:
            device = torch.device(self.device_name or ("cuda" if torch.cuda.is_available() else "cpu"))
            self._vae = AutoencoderKL.from_pretrained(self.folder, torch_dtype=torch.float32,
                                                      local_files_only=True).to(device).eval()
        vae = self._vae
        device = next(vae.parameters()).device
        out = []
        with torch.no_grad():
            for image in images:  # one at a time: a 768^2 encode is the memory peak
                pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() * 2.0 - 1.0
                dist = vae.encode(pixels.to(device)).latent_dist
                out.append(torch.cat([dist.mean, dist.logvar], dim=1).float().cpu())
        return torch.cat(out).numpy()


def prepare_asset(source: Path, options: TexturePrepareOptions, encoder: VaeEncoder
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from PIL import Image

    from ...neural.texture.conditioning import prepare_reference
    from ...pipeline.base import PipelineError
    from .render import front_rgba, render_training_views

    asset = load_asset(source)
    colours, control, masks = render_training_views(asset, options.resolution)
    if not masks[0].any():
        raise PrepError("the front view sees nothing of the mesh")
    ref_path = reference_file(source)
    try:
        rgba = np.asarray(Image.open(ref_path).convert("RGBA")) if ref_path else front_rgba(colours[0], masks[0])
        reference = prepare_reference(rgba, options.resolution)
    except (OSError, PipelineError) as exc:
        what = ref_path.name if ref_path else "the front view"
        raise PrepError(f"unusable reference image {what} ({exc})") from None
    moments = encoder.moments(np.concatenate([colours, reference[None].astype(np.float32) / 255.0]))
    textured = sum(p.texture is not None for p in asset.parts)
    info = {
        "summary": f"{len(asset.faces)} faces, {len(asset.parts)} part(s) ({textured} textured), reference: "
                   f"{ref_path.name if ref_path else 'front view'}",
        "faces": int(len(asset.faces)), "reference": ref_path.name if ref_path else None,
        "mean_colour": [float(x) for x in colours[masks].mean(0)],
    }
    arrays = {"view_moments": moments[:6], "ref_moments": moments[6:], "control": control.astype(np.float16),
              "preview": np.round(colours[:, ::max(1, options.resolution // 64), ::max(1, options.resolution // 64)]
                                  * 255).astype(np.uint8),
              # What the validation sheet needs to generate and bake this asset as a job would.
              "reference": np.ascontiguousarray(reference[..., :3]), "positions": asset.positions.astype(np.float32),
              "faces": asset.faces.astype(np.int32), "uvs": asset.uvs.astype(np.float32)}
    return arrays, info


def texture_sources(data_dir: Path, run: PrepRun) -> list[Path]:
    """The meshes of ``data_dir``; other files that are not a mesh's companions are reported as skipped."""
    sources = []
    for path in scan_sources(data_dir):
        name = path.name.lower()
        if name.endswith(MESH_SUFFIXES):
            sources.append(path)
        elif not (name.endswith(REFERENCE_SUFFIX) or name.endswith(COMPANION_SUFFIXES)):
            run.skip(path, "not a textured mesh (GLB, glTF, OBJ + MTL or coloured PLY)")
    return sources


def prepare_textures(data_dir: Path, out: Path, vae_dir: Path, options: TexturePrepareOptions,
                     log: Callable[[str], None] = print) -> PrepRun:
    """Prepare every textured mesh under ``data_dir`` into ``out``; one report line per file via ``log``."""
    from ...neural.texture.loading import resolve_vae_dir
    from ...pipeline.base import PipelineError

    options.check()
    try:
        vae_folder = resolve_vae_dir(vae_dir)
    except PipelineError as exc:
        raise PrepError(str(exc)) from None
    params = {"format": FORMAT, "kind": "texture", "vae": vae_folder.name, "vae_digest": vae_digest(vae_folder),
              **{k: v for k, v in asdict(options).items() if k != "device"}}
    run = PrepRun(data_dir, out, params)
    sources = texture_sources(data_dir, run)
    for line in run.lines:
        log(line)
    if not sources:
        raise PrepError(f"{data_dir} holds no GLB/glTF/OBJ/PLY meshes; see {out / 'report.txt'}")
    encoder = VaeEncoder(vae_folder, options.device)
    for source in sources:
        try:
            key = run.key(source)
            ref = reference_file(source)
            if ref is not None:  # a changed concept image must redo the asset
                key = hashlib.sha256((key + run.key(ref)).encode()).hexdigest()[:16]
        except OSError as exc:
            run.skip(source, f"cannot read it ({exc.strerror or exc})")
            log(run.lines[-1])
            continue
        info = run.cached(source, key)
        if info is not None:
            run.add(source, key, info, "cached")
        else:
            try:
                arrays, info = prepare_asset(source, options, encoder)
            except PrepError as exc:
                run.skip(source, str(exc))
            else:
                run.store(source, key, arrays, info)
        log(run.lines[-1])
    if not run.entries:
        reasons = "; ".join(f"{s}: {r}" for s, r in run.skipped[:3])
        raise PrepError(f"no usable textured meshes in {data_dir} ({reasons}); see {out / 'report.txt'}")
    return run
