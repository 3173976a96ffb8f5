"""Latent texture synchronisation: the six views denoised as one texture for the first steps.

Upstream (SyncMVD-style) keeps a 4-channel *latent* UV texture during the first half of the
denoising steps. Every synchronised step predicts x0 in each view, bakes the six x0 views into
the texture, takes the DDPM posterior step *in texture space* and renders the texture back into
the views, so surface points seen by several views share one latent value and the views cannot
drift apart (which later shows as seams in the baked texture). The background of each view
(pixels off the mesh) is a noised flat colour, reshuffled every step, so that the model never
learns to rely on it.

What is done once per job (:meth:`LatentProjection.build`, numpy + ``kernels`` on the CPU or
GPU) and what every step costs (gathers and one ``index_add_`` on the device, no host copies):

* Rendering is nearest sampling at fixed latent pixels, so "render" is a gather
  ``views[pixel] = texture[pixel_texel]`` and the texture only ever matters at the set S of
  texels that some latent pixel reads. The texture state lives on S only (at most
  6 x 96 x 96 texels instead of 1536^2), which changes nothing the views can see.
* Baking one view is a scatter-mean of its pixels onto the texels they read ("slots"), then a
  nearest-seed (Voronoi) fill over the whole atlas. Only the fill's value at S is ever used, and
  the seeds are the same texels every step, so the fill is a precomputed index map
  ``nearest_slot[view, texel]`` (exact Euclidean nearest texel, from a k-d tree).
* Views are combined with weight ``visible x cos^exp``; ``visible`` (the texel lies on a face
  that the view sees at 512^2, dilated by one texel, as upstream) and ``log cos`` are
  precomputed, only ``exp`` changes per step. The weights are normalised in log space so that a
  high ``exp`` with small cosines cannot underflow to 0/0.

Differences from upstream, all deliberate:

* Every random number (noise texture, background colours and noise, step noise) comes from the
  job's generator, drawn up front in a fixed order, so a seed reproduces the result (upstream
  uses the global ``random`` and ``torch.normal``).
* A texel that a view's latent pixels land on counts as seen by that view even when the 512^2
  visibility test misses its face; so a rendered texel always has weight and upstream's final
  "fill where the total weight is 0" never applies to texels the views can see.
* ``exp = 0`` means cos^0 = 1 (upstream's ``if not exp: exp = 1`` turns the first step's 0 into 1).
* The cameras are the geometry renders' own (``kernels.upstream_views``), so the latent render
  lines up with the position/normal maps by construction; cosines use the orthographic view
  direction and the welded smooth normals of the geometry renders; no back-face culling (the
  z-buffer keeps the nearest surface, as in our renders).
* Background colour latents are the VAE posterior means (upstream samples them), computed once
  per pipeline and cached; the first composite does not re-noise the per-view initial noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers import DDPMScheduler

from inference_server import kernels

from .conditioning import ViewMesh, on_device, to_host

# Upstream's settings (``texture_sync_config`` of its texture pipeline).
DEFAULT_RATIO = 0.5  # synchronise while t > (1 - ratio) * num_train_timesteps
DEFAULT_TEXTURE_SIZE = 1536
EXP_START, EXP_END = 0.0, 6.0  # cos exponent, rising linearly over the steps
SHUFFLE_CHANGE = 0.4  # background colours drawn from all colours while 1 - t/T < this ...
SHUFFLE_END = 0.99  # ... then from black and white only, then kept
VISIBILITY_RESOLUTION = 512  # faces "visible in a view" are those hit at this resolution

# Flat background colours in the VAE's input range [-1, 1]. Black and white come first:
# the late steps draw from those two only.
BACKGROUND_COLOURS: tuple[tuple[float, float, float], ...] = (
    (-1.0, -1.0, -1.0),  # black
    (1.0, 1.0, 1.0),  # white
    (0.0, -1.0, -1.0),  # maroon
    (1.0, -1.0, -1.0),  # red
    (0.0, 0.0, -1.0),  # olive
    (1.0, 1.0, -1.0),  # yellow
    (-1.0, 0.0, -1.0),  # green
    (-1.0, 1.0, -1.0),  # lime
    (-1.0, 0.0, 0.0),  # teal
    (-1.0, 1.0, 1.0),  # aqua
    (-1.0, -1.0, 0.0),  # navy
    (-1.0, -1.0, 1.0),  # blue
    (0.0, -1.0, 0.0),  # purple
    (1.0, -1.0, 1.0),  # fuchsia
)
BLACK_AND_WHITE = 2  # the first two colours
MIN_COS = 1e-6  # log(0) guard: a view seeing a texel edge-on keeps a vanishing, not a NaN, weight


def check_ratio(ratio: float) -> float:
    """``ratio`` as a float in [0, 1], or a ValueError that says what the setting means."""
    value = float(ratio)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"texture_sync_ratio must be between 0 (off) and 1 (every step), got {ratio!r}; upstream "
                         "uses 0.5 (the first half of the steps)")
    return value


@dataclass(frozen=True)
class SyncSettings:
    ratio: float = DEFAULT_RATIO
    texture_size: int = DEFAULT_TEXTURE_SIZE
    exp_start: float = EXP_START
    exp_end: float = EXP_END
    shuffle_change: float = SHUFFLE_CHANGE
    shuffle_end: float = SHUFFLE_END

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        if not 8 <= int(self.texture_size) <= 8192:
            raise ValueError(f"the latent sync texture size must be within 8..8192, got {self.texture_size}")

    def active(self, t: int, num_train_timesteps: int) -> bool:
        return t > (1.0 - self.ratio) * num_train_timesteps


# --------------------------------------------------------------------------- projection
@dataclass
class LatentProjection:
    """Where every covered latent pixel of every view reads the latent texture (built once per job).

    Index spaces: pixels P (covered latent pixels of all views, flat ``view * h * w + row * w +
    col``), texels S (the distinct atlas texels the pixels read), slots (distinct (view, texel)
    pairs: where one view's bake writes).
    """

    num_views: int
    height: int  # latent rows per view
    width: int
    texture_size: int
    num_texels: int  # |S|
    pixel: torch.Tensor  # (P,) int64 flat pixel index
    pixel_texel: torch.Tensor  # (P,) int64 into S
    pixel_slot: torch.Tensor  # (P,) int64 into slots
    slot_count: torch.Tensor  # (slots,) float32 pixels per slot (>= 1)
    nearest_slot: torch.Tensor  # (V, S) int64: view v's value at texel s (its nearest seed)
    visible: torch.Tensor  # (V, S) bool: view v's weight at texel s is not 0
    log_cos: torch.Tensor  # (V, S) float32, log of the view's cosine at that texel (finite)
    texels: np.ndarray = field(repr=False)  # (S,) int64 atlas texel ids row * size + col (diagnostics)

    def to(self, device: torch.device | str) -> LatentProjection:
        moved = {name: getattr(self, name).to(device) for name in
                 ("pixel", "pixel_texel", "pixel_slot", "slot_count", "nearest_slot", "visible", "log_cos")}
        return LatentProjection(self.num_views, self.height, self.width, self.texture_size, self.num_texels,
                                texels=self.texels, **moved)

    # ---------------------------------------------------------------- per step
    def gather(self, views: torch.Tensor) -> torch.Tensor:
        """(V, C, h, w) views -> (C, P) values of the covered pixels."""
        channels = views.shape[1]
        return views.transpose(0, 1).reshape(channels, -1)[:, self.pixel]

    def view_means(self, values: torch.Tensor) -> torch.Tensor:
        """(C, P) pixel values -> (C, slots): each view's mean at each texel its pixels read."""
        sums = torch.zeros(values.shape[0], self.slot_count.shape[0], dtype=values.dtype, device=values.device)
        sums.index_add_(1, self.pixel_slot, values)
        return sums / self.slot_count.to(values.dtype)

    def weights(self, exponent: float) -> torch.Tensor:
        """(V, S) view weights ``visible x cos^exponent``, normalised to sum 1 per texel."""
        log_w = torch.where(self.visible, self.log_cos * float(exponent), torch.full_like(self.log_cos, -math.inf))
        return torch.softmax(log_w, dim=0)  # every texel has a visible view, so no 0/0

    def bake(self, values: torch.Tensor, exponent: float) -> torch.Tensor:
        """(C, P) pixel values -> (C, S) texture: per-view scatter-mean + Voronoi fill, cos-weighted blend."""
        means = self.view_means(values)  # (C, slots)
        per_view = means[:, self.nearest_slot]  # (C, V, S)
        return (per_view * self.weights(exponent)).sum(dim=1)

    def render(self, texture: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        """(C, S) texture over (V, C, h, w) background -> (V, C, h, w) views (nearest sampling)."""
        channels = background.shape[1]
        flat = background.transpose(0, 1).reshape(channels, -1).clone()
        flat[:, self.pixel] = texture[:, self.pixel_texel].to(flat.dtype)
        return flat.reshape(channels, self.num_views, self.height, self.width).transpose(0, 1)

    # ---------------------------------------------------------------- construction
    @classmethod
    def build(
        cls,
        mesh: ViewMesh,
        uvs: np.ndarray,
        views: Sequence[kernels.View],
        latent_size: int | tuple[int, int],
        texture_size: int = DEFAULT_TEXTURE_SIZE,
        *,
        visibility_resolution: int = VISIBILITY_RESOLUTION,
        kernel_device: str | None = None,
    ) -> LatentProjection:
        """Rasterise the views at latent resolution and the atlas at ``texture_size`` (once per job).

        ``uvs``: (V, 2) glTF UVs of ``mesh``'s vertices (texel row = v * size, column = u * size).
        """
        height, width = (latent_size, latent_size) if isinstance(latent_size, int) else latent_size
        size = int(texture_size)
        uv = np.asarray(uvs, np.float32)

        def dev(array: Any) -> Any:
            return on_device(array, kernel_device)

        positions, faces = dev(mesh.positions), dev(mesh.faces)
        attributes = dev(np.concatenate([uv, mesh.normals], axis=1).astype(np.float32))
        num_faces = len(mesh.faces)

        pixels, texels, cosines, views_of = [], [], [], []
        face_seen = np.zeros((len(views), num_faces + 1), bool)  # last column: "no face" (-1)
        for index, view in enumerate(views):
            toward = kernels.camera_info(view.view_proj).toward_camera
            raster = kernels.rasterize(positions, faces, dev(view.view_proj), width, height)
            hit = to_host(raster.face_id) >= 0
            values = to_host(kernels.interpolate(raster, faces, attributes))[hit]
            col = np.clip(np.floor(values[:, 0] * size), 0, size - 1).astype(np.int64)
            row = np.clip(np.floor(values[:, 1] * size), 0, size - 1).astype(np.int64)
            normal = values[:, 2:5] / np.maximum(np.linalg.norm(values[:, 2:5], axis=1, keepdims=True), 1e-12)
            pixels.append(index * height * width + np.flatnonzero(hit))
            texels.append(row * size + col)
            cosines.append(np.clip(normal @ toward, 0.0, 1.0))
            views_of.append(np.full(len(col), index, np.int64))
            fine = to_host(kernels.rasterize(positions, faces, dev(view.view_proj),
                                             visibility_resolution, visibility_resolution).face_id)
            face_seen[index, np.unique(fine[fine >= 0])] = True
        pixel = np.concatenate(pixels)
        if len(pixel) == 0:
            raise ValueError("no view sees the mesh: nothing to synchronise")
        texel_of_pixel, view_of_pixel = np.concatenate(texels), np.concatenate(views_of)
        cos_of_pixel = np.concatenate(cosines)

        unique_texels, pixel_texel = np.unique(texel_of_pixel, return_inverse=True)
        slot_keys, pixel_slot = np.unique(view_of_pixel * size * size + texel_of_pixel, return_inverse=True)
        slot_count = np.bincount(pixel_slot).astype(np.float64)
        slot_cos = np.bincount(pixel_slot, weights=cos_of_pixel) / slot_count  # upstream bakes the cosines too
        slot_view, slot_texel = slot_keys // (size * size), slot_keys % (size * size)

        # Upstream's "visible triangle" mask at the texels of S: the texel's face (or one of its
        # 8 neighbours' faces, the one-texel dilation) is hit in the view at 512^2.
        uv_face = to_host(kernels.rasterize_uv(dev(uv), faces, size, size).face_id).astype(np.int64)
        rows, cols = unique_texels // size, unique_texels % size
        neighbours = np.stack([uv_face[np.clip(rows + dr, 0, size - 1), np.clip(cols + dc, 0, size - 1)]
                               for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=1)  # (S, 9), -1 = empty

        from scipy.spatial import cKDTree

        num_views, count = len(views), len(unique_texels)
        nearest_slot = np.zeros((num_views, count), np.int64)
        visible = np.zeros((num_views, count), bool)
        log_cos = np.zeros((num_views, count), np.float32)
        coords = np.stack([rows, cols], axis=1).astype(np.float64)
        for index in range(num_views):
            own = np.flatnonzero(slot_view == index)
            if len(own) == 0:  # the view sees nothing: it has no value to give anywhere
                continue
            seeds = slot_texel[own]
            _, nearest = cKDTree(np.stack([seeds // size, seeds % size], axis=1).astype(np.float64)).query(coords)
            nearest_slot[index] = own[nearest]
            seen_face = face_seen[index][neighbours].any(axis=1)
            is_seed = np.isin(unique_texels, seeds)
            visible[index] = seen_face | is_seed
            log_cos[index] = np.log(np.maximum(slot_cos[nearest_slot[index]], MIN_COS))

        return cls(
            num_views=num_views, height=height, width=width, texture_size=size, num_texels=count,
            pixel=torch.from_numpy(pixel.astype(np.int64)),
            pixel_texel=torch.from_numpy(pixel_texel.reshape(-1).astype(np.int64)),
            pixel_slot=torch.from_numpy(pixel_slot.reshape(-1).astype(np.int64)),
            slot_count=torch.from_numpy(slot_count.astype(np.float32)),
            nearest_slot=torch.from_numpy(nearest_slot), visible=torch.from_numpy(visible),
            log_cos=torch.from_numpy(log_cos), texels=unique_texels,
        )


# --------------------------------------------------------------------------- the DDPM step
@dataclass(frozen=True)
class PosteriorCoefficients:
    """DDPM at timestep t (diffusers' ``DDPMScheduler.step``): x0 from the prediction, then
    ``x_prev = original * x0 + current * x_t + std * noise``."""

    timestep: int
    alpha_prod: float  # abar_t
    original: float
    current: float
    std: float


def ddpm_posterior(scheduler: DDPMScheduler, t: int) -> PosteriorCoefficients:
    """The posterior-mean coefficients and noise scale of ``scheduler.step`` at ``t`` (closed form)."""
    if scheduler.config.variance_type not in ("fixed_small", "fixed_small_log"):
        raise ValueError(f"texture sync supports the fixed_small DDPM variance, not {scheduler.config.variance_type!r}")
    t = int(t)
    prev_t = int(scheduler.previous_timestep(t))
    abar = scheduler.alphas_cumprod.double()
    alpha_prod = float(abar[t])
    alpha_prod_prev = float(abar[prev_t]) if prev_t >= 0 else 1.0
    alpha, beta = alpha_prod / alpha_prod_prev, 1.0 - alpha_prod / alpha_prod_prev
    variance = max((1.0 - alpha_prod_prev) / (1.0 - alpha_prod) * beta, 1e-20)  # diffusers clamps too
    return PosteriorCoefficients(
        timestep=t,
        alpha_prod=alpha_prod,
        original=math.sqrt(alpha_prod_prev) * beta / (1.0 - alpha_prod),
        current=math.sqrt(alpha) * (1.0 - alpha_prod_prev) / (1.0 - alpha_prod),
        std=math.sqrt(variance) if t > 0 else 0.0,
    )


def predict_original(scheduler: DDPMScheduler, c: PosteriorCoefficients, model_output: torch.Tensor,
                     sample: torch.Tensor) -> torch.Tensor:
    """x0 from the model output, as ``scheduler.step`` computes it (clipping included)."""
    config = scheduler.config
    a, b = math.sqrt(c.alpha_prod), math.sqrt(1.0 - c.alpha_prod)
    if config.prediction_type == "epsilon":
        x0 = (sample - b * model_output) / a
    elif config.prediction_type == "v_prediction":
        x0 = a * sample - b * model_output
    elif config.prediction_type == "sample":
        x0 = model_output
    else:
        raise ValueError(f"unknown prediction_type {config.prediction_type!r}")
    if config.thresholding:
        raise ValueError("texture sync does not support dynamic thresholding")
    if config.clip_sample:
        x0 = x0.clamp(-config.clip_sample_range, config.clip_sample_range)
    return x0


# --------------------------------------------------------------------------- one denoising call
@dataclass
class TextureSync:
    """What ``MultiViewSDXL.__call__`` needs to synchronise a job: the projection and the settings."""

    projection: LatentProjection
    settings: SyncSettings = field(default_factory=SyncSettings)

    def start(
        self,
        scheduler: DDPMScheduler,
        background_latents: torch.Tensor,
        generator: torch.Generator,
        *,
        channels: int,
        device: torch.device,
    ) -> SyncRun:
        return SyncRun(self, scheduler, background_latents, generator, channels, device)


class SyncRun:
    """The state of one denoising call: the texture, and every random number drawn up front.

    Draw order from the job's generator (after the initial latents and the reference sample):
    the noise texture (C, S); then for each synchronised step k: the background colour of each
    view (when it changes), the texture noise (C, S), the background noise (V, C, h, w).
    """

    def __init__(self, sync: TextureSync, scheduler: DDPMScheduler, background_latents: torch.Tensor,
                 generator: torch.Generator, channels: int, device: torch.device) -> None:
        s, p = sync.settings, sync.projection
        self.projection = p.to(device)
        self.scheduler = scheduler
        timesteps = [int(t) for t in scheduler.timesteps]
        total = scheduler.config.num_train_timesteps
        self.steps = [i for i, t in enumerate(timesteps) if s.active(t, total)]
        assert self.steps == list(range(len(self.steps)))  # t decreases: the synchronised steps lead
        self.exponents = [s.exp_start + (s.exp_end - s.exp_start) * i / len(timesteps) for i in self.steps]
        self.coefficients = [ddpm_posterior(scheduler, timesteps[i]) for i in self.steps]
        if background_latents.shape[0] != len(BACKGROUND_COLOURS):
            raise ValueError("one background latent per BACKGROUND_COLOURS entry is needed")

        views, count, shape = p.num_views, p.num_texels, (p.num_views, channels, p.height, p.width)
        texture = torch.randn((channels, count), generator=generator)
        colours, texture_noise, background_noise = [], [], []
        current = torch.randint(len(BACKGROUND_COLOURS), (views,), generator=generator)
        for k in range(len(self.steps)):
            if k > 0:  # re-drawn after every step from the previous step's t, as upstream
                progress = 1.0 - timesteps[k - 1] / total
                if progress < s.shuffle_change:
                    current = torch.randint(len(BACKGROUND_COLOURS), (views,), generator=generator)
                elif progress < s.shuffle_end:
                    current = torch.randint(BLACK_AND_WHITE, (views,), generator=generator)
            colours.append(current)
            texture_noise.append(torch.randn((channels, count), generator=generator))
            background_noise.append(torch.randn(shape, generator=generator))
        # One host-to-device copy per job; the loop below never leaves the device.
        self.texture = texture.to(device)
        self.colours = torch.stack(colours).to(device) if colours else torch.zeros(0, views, dtype=torch.long)
        self.texture_noise = torch.stack(texture_noise).to(device) if texture_noise else None
        self.background_noise = torch.stack(background_noise).to(device) if background_noise else None
        self.background = background_latents.to(device, torch.float32)

    def active(self, index: int) -> bool:
        return index < len(self.steps)

    def initial_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The noise texture rendered over the per-view initial noise (foreground only)."""
        return self.projection.render(self.texture, latents.float()).to(latents.dtype)

    def step(self, index: int, model_output: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Synchronised step ``index``: x0 per view -> texture -> DDPM posterior -> views over noised backgrounds."""
        assert self.texture_noise is not None and self.background_noise is not None
        c, p = self.coefficients[index], self.projection
        # float32 in texture space whatever the model dtype: the texture accumulates over steps.
        x0 = predict_original(self.scheduler, c, p.gather(model_output.float()), p.gather(latents.float()))
        x0_texture = p.bake(x0, self.exponents[index])
        self.texture = c.original * x0_texture + c.current * self.texture + c.std * self.texture_noise[index]
        # Upstream's background: (1 - abar_t) * noise + abar_t * colour, at the step's own t.
        colour = self.background[self.colours[index]]
        background = (1.0 - c.alpha_prod) * self.background_noise[index] + c.alpha_prod * colour
        return p.render(self.texture, background).to(latents.dtype)


__all__ = [
    "BACKGROUND_COLOURS",
    "DEFAULT_RATIO",
    "DEFAULT_TEXTURE_SIZE",
    "LatentProjection",
    "PosteriorCoefficients",
    "SyncRun",
    "SyncSettings",
    "TextureSync",
    "check_ratio",
    "ddpm_posterior",
    "predict_original",
]
