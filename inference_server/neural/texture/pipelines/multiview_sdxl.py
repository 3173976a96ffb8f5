"""Image + geometry -> six views: SDXL with the MV-Adapter and the geometry adapter.

Upstream's ``IG2MVSDXLPipeline`` re-done on diffusers' building blocks (the UNet, VAE, CLIP
encoders and DDPM scheduler) with what a server needs on top:

* every random draw (initial latents, the reference image's VAE sample, the DDPM step noise)
  comes from one ``torch.Generator`` seeded by the job, on the CPU so a seed gives the same
  noise on any device;
* the classifier-free-guidance pair runs as one batch of 12 views; SDPA everywhere;
* prompt embeddings are computed once and cached: the prompts are fixed, so the text
  encoders leave the GPU after the first job;
* sub-stage placement: with ``staged=True`` only the models of the running sub-stage sit on
  the GPU (VAE for the reference and the decode, UNet + adapters for the denoising);
* the six views are VAE-decoded one at a time (a 768^2 decode is the memory peak otherwise);
* a callback after every step, which raises to cancel between steps;
* optionally upstream's latent texture synchronisation over the first steps (``texture_sync``,
  see :mod:`..sync`); without it the loop is the plain DDPM loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from diffusers import DDPMScheduler
from torch import nn

from ..config import NEGATIVE_PROMPT, PROMPT
from ..loading import TextureModels
from ..models import NUM_VIEWS
from ..sync import BACKGROUND_COLOURS, TextureSync

StepCallback = Callable[[int, int], None]  # (steps done, total steps)


def _cast(module: nn.Module, dtype: torch.dtype) -> None:
    # Only when needed: diffusers logs a warning on every dtype ``to()`` of a model.
    parameter = next(module.parameters(), None)
    if parameter is not None and parameter.dtype != dtype:
        module.to(dtype=dtype)


@dataclass
class PromptEmbeds:
    negative: torch.Tensor  # [1, tokens, C1 + C2]
    positive: torch.Tensor
    negative_pooled: torch.Tensor  # [1, projection_dim]
    positive_pooled: torch.Tensor


class MultiViewSDXL:
    def __init__(self, models: TextureModels, device: torch.device | str, dtype: torch.dtype, staged: bool = False) -> None:
        self.models = models
        self.device = torch.device(device)
        self.dtype = dtype
        self.staged = staged
        self._prompt_cache: dict[tuple[str, str], PromptEmbeds] = {}
        self._background_cache: dict[tuple[int, int, torch.dtype], torch.Tensor] = {}
        for module in self._all_modules():
            _cast(module, dtype)

    # ----------------------------------------------------------------- placement
    def _all_modules(self) -> list[nn.Module]:
        m = self.models
        # Text encoders may be absent when the prompt embeddings were supplied (benchmarks).
        return [x for x in (m.unet, m.cond_encoder, m.vae, m.text_encoder, m.text_encoder_2) if x is not None]

    def place(self, *wanted: nn.Module) -> None:
        """Move ``wanted`` onto the device; when staged, move every other model to the CPU first."""
        if self.staged:
            ids = {id(w) for w in wanted}
            for module in self._all_modules():
                if id(module) not in ids:
                    module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        for module in wanted:
            module.to(self.device)

    def offload_all(self) -> None:
        for module in self._all_modules():
            module.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.models.vae.config.block_out_channels) - 1)

    # ----------------------------------------------------------------- text
    @torch.inference_mode()
    def set_prompt_embeds(self, embeds: PromptEmbeds, prompt: str = PROMPT, negative_prompt: str = NEGATIVE_PROMPT) -> None:
        """Use precomputed embeddings for this prompt pair (e.g. a server that stores them)."""
        self._prompt_cache[(prompt, negative_prompt)] = embeds

    def encode_prompt(self, prompt: str = PROMPT, negative_prompt: str = NEGATIVE_PROMPT) -> PromptEmbeds:
        cached = self._prompt_cache.get((prompt, negative_prompt))
        if cached is not None:
            return cached
        m = self.models
        encoders = (m.text_encoder, m.text_encoder_2)
        for encoder in encoders:
            encoder.to(self.device)
        embeds: list[torch.Tensor] = []
        pooled: list[torch.Tensor] = []
        for text in (negative_prompt, prompt):
            hidden, pool = [], None
            for tokenizer, encoder in zip((m.tokenizer, m.tokenizer_2), encoders):
                ids = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length,
                                truncation=True, return_tensors="pt").input_ids.to(self.device)
                out = encoder(ids, output_hidden_states=True)
                hidden.append(out.hidden_states[-2])  # SDXL conditions on the penultimate layer
                pool = getattr(out, "text_embeds", None)
            assert pool is not None  # text_encoder_2 is a CLIPTextModelWithProjection
            embeds.append(torch.cat(hidden, dim=-1).cpu())
            pooled.append(pool.cpu())
        # The prompts never change, so the encoders are not needed on the GPU again.
        for encoder in encoders:
            encoder.to("cpu")
        result = PromptEmbeds(embeds[0], embeds[1], pooled[0], pooled[1])
        self._prompt_cache[(prompt, negative_prompt)] = result
        return result

    # ----------------------------------------------------------------- VAE
    def _vae_dtype(self) -> torch.dtype:
        # The stock SDXL VAE overflows in float16 (its config says force_upcast); the fp16-fix one does not.
        vae = self.models.vae
        if self.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            return torch.float32
        return self.dtype

    @torch.inference_mode()
    def encode_reference(self, image: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        """``image``: (H, W, 3) uint8 at the view resolution -> scaled latents [1, 4, h, w]."""
        vae = self.models.vae
        self.place(vae)
        _cast(vae, self._vae_dtype())
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        posterior = vae.encode(pixels.to(self.device, self._vae_dtype())).latent_dist
        latents = posterior.sample(generator=generator) * vae.config.scaling_factor
        return latents.to(self.dtype)

    @torch.inference_mode()
    def background_latents(self, height: int, width: int) -> torch.Tensor:
        """Latents [len(BACKGROUND_COLOURS), 4, h, w] (float32, CPU) of flat colour images at the view size.

        The texture sync composites them behind the object. Posterior means rather than samples:
        they are the same for every job, so they are encoded once per pipeline and cached.
        """
        dtype = self._vae_dtype()
        key = (height, width, dtype)
        cached = self._background_cache.get(key)
        if cached is not None:
            return cached
        vae = self.models.vae
        self.place(vae)
        _cast(vae, dtype)
        latents = []
        for colour in BACKGROUND_COLOURS:  # one at a time: a 768^2 encode batch of 14 is gigabytes
            pixels = torch.tensor(colour, dtype=dtype, device=self.device).view(1, 3, 1, 1).expand(1, 3, height, width)
            latents.append(vae.encode(pixels.contiguous()).latent_dist.mode().float().cpu() * vae.config.scaling_factor)
        result = torch.cat(latents)
        self._background_cache[key] = result
        return result

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [N, 4, h, w] -> images [N, 3, H, W] float32 in [0, 1] on the CPU, one view at a time."""
        vae = self.models.vae
        self.place(vae)
        dtype = self._vae_dtype()
        _cast(vae, dtype)
        images = []
        for view in latents:
            image = vae.decode(view[None].to(self.device, dtype) / vae.config.scaling_factor).sample
            images.append((image.float() * 0.5 + 0.5).clamp(0, 1).cpu())
        return torch.cat(images)

    # ----------------------------------------------------------------- UNet
    def _time_ids(self, height: int, width: int) -> torch.Tensor:
        # SDXL micro-conditioning: original size, crop top-left, target size.
        return torch.tensor([[height, width, 0, 0, height, width]], dtype=self.dtype, device=self.device)

    @torch.inference_mode()
    def reference_states(self, ref_latents: torch.Tensor, prompt: PromptEmbeds) -> dict[str, torch.Tensor]:
        """Self-attention inputs of every layer for the reference latents at t = 0 (one UNet pass)."""
        unet = self.models.unet
        cache: dict[str, torch.Tensor] = {}
        height, width = (s * self.vae_scale_factor for s in ref_latents.shape[-2:])
        unet(
            ref_latents.to(self.device, self.dtype),
            torch.zeros((), device=self.device, dtype=torch.long),
            encoder_hidden_states=prompt.positive.to(self.device, self.dtype),
            added_cond_kwargs={"text_embeds": prompt.positive_pooled.to(self.device, self.dtype),
                               "time_ids": self._time_ids(height, width)},
            cross_attention_kwargs={"cache_hidden_states": cache, "use_mv": False, "use_ref": False},
            return_dict=False,
        )
        return cache

    @torch.inference_mode()
    def __call__(
        self,
        reference_image: np.ndarray,
        control: torch.Tensor,
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        generator: torch.Generator,
        mv_scale: float = 1.0,
        reference_scale: float = 1.0,
        control_scale: float = 1.0,
        prompt: str = PROMPT,
        negative_prompt: str = NEGATIVE_PROMPT,
        callback: StepCallback | None = None,
        output_latents: bool = False,
        texture_sync: TextureSync | None = None,
    ) -> torch.Tensor:
        """Six views [6, 3, H, W] in [0, 1] (CPU, float32), or their latents with ``output_latents``.

        ``reference_image``: (H, W, 3) uint8, preprocessed (object centred on grey).
        ``control``: [6, 6, H, W] position and normal maps in [0, 1] for the six views.
        ``texture_sync``: synchronise the views through a latent texture while its settings'
        ratio says so (its projection must be built for these views at the latent resolution).
        """
        m = self.models
        views, channels, height, width = control.shape
        if views != NUM_VIEWS or channels != 6:
            raise ValueError(f"control must be [{NUM_VIEWS}, 6, H, W], got {tuple(control.shape)}")
        if reference_image.shape[:2] != (height, width):
            raise ValueError("the reference image must have the views' resolution")
        cfg = guidance_scale > 1.0
        embeds = self.encode_prompt(prompt, negative_prompt)
        scheduler: DDPMScheduler = DDPMScheduler.from_config(m.scheduler.config)  # per-call state
        scheduler.set_timesteps(num_inference_steps, device=self.device)

        # Draw order is fixed (initial noise, then reference sample, then step noise) so a seed
        # always gives the same result.
        latent_shape = (views, m.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = torch.randn(latent_shape, generator=generator, dtype=torch.float32)
        latents = (latents * scheduler.init_noise_sigma).to(self.device, self.dtype)
        ref_latents = self.encode_reference(reference_image, generator)
        sync = None
        if texture_sync is not None:
            projection = texture_sync.projection
            if (projection.num_views, projection.height, projection.width) != (views, *latent_shape[2:]):
                raise ValueError(f"the texture sync projection is for {projection.num_views} views of "
                                 f"{projection.height}x{projection.width} latents, not {latent_shape}")
            # Its random numbers come next in the draw order; the VAE is still placed.
            sync = texture_sync.start(scheduler, self.background_latents(height, width), generator,
                                      channels=latent_shape[1], device=self.device)
            latents = sync.initial_latents(latents)

        self.place(m.unet, m.cond_encoder)
        ref_states = self.reference_states(ref_latents, embeds)
        if cfg:  # the unconditional half sees an all-zero reference, as in training
            ref_states = {k: torch.cat([torch.zeros_like(v), v]) for k, v in ref_states.items()}
        adapter_states = [s * control_scale for s in m.cond_encoder(control.to(self.device, self.dtype))]
        if cfg:
            adapter_states = [torch.cat([s, s]) for s in adapter_states]

        def batch(negative: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
            parts = [negative, positive] if cfg else [positive]
            return torch.cat([p.to(self.device, self.dtype).expand(views, *p.shape[1:]) for p in parts])

        text = batch(embeds.negative, embeds.positive)
        added = {"text_embeds": batch(embeds.negative_pooled, embeds.positive_pooled),
                 "time_ids": self._time_ids(height, width).expand(text.shape[0], -1)}
        attention_kwargs = {"mv_scale": mv_scale, "ref_hidden_states": ref_states, "ref_scale": reference_scale,
                            "num_views": views}

        total = len(scheduler.timesteps)
        for index, t in enumerate(scheduler.timesteps):
            model_input = torch.cat([latents, latents]) if cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            noise = m.unet(
                model_input,
                t,
                encoder_hidden_states=text,
                added_cond_kwargs=added,
                cross_attention_kwargs=attention_kwargs,
                down_intrablock_additional_residuals=list(adapter_states),  # the UNet pops from this list
                return_dict=False,
            )[0]
            if cfg:
                uncond, cond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
            if sync is not None and sync.active(index):
                latents = sync.step(index, noise, latents)
            else:
                latents = scheduler.step(noise, t, latents, generator=generator, return_dict=False)[0]
            if callback is not None:
                callback(index + 1, total)  # may raise to cancel: nothing is left half-updated

        del ref_states, adapter_states, sync
        if output_latents:
            return latents.float().cpu()
        return self.decode(latents)


__all__ = ["MultiViewSDXL", "PromptEmbeds"]
