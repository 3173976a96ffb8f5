"""``step1x3d finetune prepare``: a folder of meshes -> cached VAE latents and condition tokens.

Per object: read and normalise the mesh, close it when it is open, sample ``n_samples`` uniform
and ``n_samples`` sharp-edge surface points with normals (``n_samples`` from the VAE's
``config.json``, 32768 in the release), encode them with the frozen VAE encoder into the
posterior's moments (the trainer draws a fresh latent from them every step, as upstream's
``sample_posterior=True``), render ``views`` condition images and encode them with the frozen
image encoder. Results are cached per object (see ``finetune.prepcache``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..prepcache import PrepError, PrepRun, scan_sources

FORMAT = 1
DEFAULT_SAMPLES = 32768  # upstream's data.n_samples, also in the release's vae/config.json
UPSTREAM_FOREGROUND_RATIO = 0.90  # upstream's geometry data loader default


@dataclass
class PrepareOptions:
    points: int | None = None  # None: n_samples from the VAE config
    views: int = 8
    render_size: int = 512  # upstream resizes its training renders to 512 before the encoder
    foreground_ratio: float = UPSTREAM_FOREGROUND_RATIO
    sharp_angle: float = 15.0  # degrees; Dora's sharp-edge sampling examples use 15
    watertight_resolution: int = 256
    watertight_samples: int = 200_000
    up: str = "y"
    seed: int = 0
    device: str | None = None

    def check(self) -> None:
        if self.points is not None and self.points < 1:
            raise PrepError("points must be at least 1")
        if self.views < 1:
            raise PrepError("views must be at least 1")
        if not 16 <= self.render_size <= 4096:
            raise PrepError("render_size must be between 16 and 4096")
        if not 0.1 <= self.foreground_ratio <= 1.0:
            raise PrepError("foreground_ratio must be between 0.1 and 1")
        if self.up not in ("y", "z"):
            raise PrepError("up must be y or z")
        if self.watertight_resolution < 8:
            raise PrepError("watertight_resolution must be at least 8")


def model_digest(model_dir: Path) -> str:
    """Identity of the frozen encoders the cache depends on (their config and weight files)."""
    h = hashlib.sha256()
    for name in ("vae", "visual_encoder"):
        for file in ("config.json", "diffusion_pytorch_model.safetensors"):
            path = model_dir / name / file
            if not path.is_file():
                raise PrepError(f"missing weights file: {path}")
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def vae_samples(model_dir: Path) -> int:
    from ...neural.geometry.configs import read_config

    value = read_config(model_dir / "vae" / "config.json").get("n_samples", DEFAULT_SAMPLES)
    return int(value) if isinstance(value, int) and value > 0 else DEFAULT_SAMPLES


class Encoders:
    """The frozen VAE and image encoder, loaded on first use (a fully cached run loads nothing)."""

    def __init__(self, model_dir: Path, device: str | None) -> None:
        self.model_dir = model_dir
        self.device_name = device
        self._loaded: Any = None

    def get(self) -> Any:
        if self._loaded is None:
            import torch

            from ...neural.geometry.loader import load_components

            comps = load_components(self.model_dir, torch.float32, torch.float32)
            device = torch.device(self.device_name or ("cuda" if torch.cuda.is_available() else "cpu"))
            comps.vae.to(device)
            comps.visual_encoder.to(device)
            self._loaded = (comps, device)
        return self._loaded

    def encode_points(self, surface: np.ndarray, sharp: np.ndarray) -> np.ndarray:
        """(num_latents, 2 * embed_dim) float32: the posterior's mean and log-variance."""
        import torch

        comps, device = self.get()
        vae = comps.vae
        feats = 3 + vae.config.point_feats
        with torch.no_grad():
            s = torch.from_numpy(surface[None, :, :feats].astype(np.float32)).to(device)
            sh = torch.from_numpy(sharp[None, :, :feats].astype(np.float32)).to(device)
            moments = vae.pre_kl(vae.encoder(s, sh if vae.config.with_sharp_data else None))
        return moments[0].float().cpu().numpy()

    def encode_images(self, images: list[Any]) -> np.ndarray:
        """(views, tokens, dim) float16 condition tokens (fp16 halves the cache; the encoder is frozen)."""
        import torch

        comps, _ = self.get()
        with torch.no_grad():
            tokens = comps.visual_encoder.encode(images)
        return tokens.float().cpu().numpy().astype(np.float16)


def prepare_object(source: Path, options: PrepareOptions, points: int, encoders: Encoders
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from ...neural.geometry.preprocess import condition_image
    from .meshes import prepare_mesh, sample_sharp, sample_uniform
    from .render import render_views

    mesh = prepare_mesh(source, up=options.up, watertight_resolution=options.watertight_resolution,
                        watertight_samples=options.watertight_samples, seed=options.seed)
    rng = np.random.default_rng(options.seed)
    surface = sample_uniform(mesh.vertices, mesh.faces, points, rng)
    sharp, sharp_edges = sample_sharp(mesh.vertices, mesh.faces, points, options.sharp_angle, rng)
    moments = encoders.encode_points(surface, sharp)
    renders = render_views(mesh.vertices, mesh.faces, mesh.colors, options.views, options.render_size, rng)
    images = [condition_image(r, options.foreground_ratio) for r in renders]
    tokens = encoders.encode_images(images)
    closed = (f"closed at {options.watertight_resolution}^3 (it was open)" if mesh.repaired else "watertight")
    sharp_text = f"{sharp_edges} sharp edges" if sharp_edges else "no sharp edges (uniform samples used)"
    info = {
        "summary": f"{mesh.source_faces} faces, {closed}, {points} + {points} points ({sharp_text}), "
                   f"{options.views} views",
        "faces": mesh.source_faces, "repaired": mesh.repaired, "sharp_edges": sharp_edges, "views": options.views,
    }
    preview = np.stack([np.asarray(img.resize((64, 64))) for img in images[:4]])
    return {"moments": moments, "visual": tokens, "preview": preview}, info


def prepare(data_dir: Path, out: Path, base: Path, options: PrepareOptions,
            log: Callable[[str], None] = print) -> PrepRun:
    """Prepare every mesh under ``data_dir`` into ``out``; one report line per file via ``log``."""
    from ...neural.geometry.loader import resolve_model_dir

    options.check()
    model_dir = resolve_model_dir(base)
    sources = scan_sources(data_dir)
    if not sources:
        raise PrepError(f"{data_dir} is empty: put GLB/glTF/OBJ/PLY/STL/OFF meshes in it")
    points = options.points or vae_samples(model_dir)
    params = {"format": FORMAT, "model": model_dir.name, "model_digest": model_digest(model_dir), "points": points,
              **{k: v for k, v in asdict(options).items() if k not in ("device", "points")}}
    run = PrepRun(data_dir, out, params)
    encoders = Encoders(model_dir, options.device)
    for source in sources:
        try:
            key = run.key(source)
        except OSError as exc:
            run.skip(source, f"cannot read it ({exc.strerror or exc})")
            log(run.lines[-1])
            continue
        info = run.cached(source, key)
        if info is not None:
            run.add(source, key, info, "cached")
        else:
            try:
                arrays, info = prepare_object(source, options, points, encoders)
            except PrepError as exc:
                run.skip(source, str(exc))
            else:
                run.store(source, key, arrays, info)
        log(run.lines[-1])
    if not run.entries:
        reasons = "; ".join(f"{s}: {r}" for s, r in run.skipped[:3])
        raise PrepError(f"no usable meshes in {data_dir} ({reasons}); see {out / 'report.txt'}")
    return run
