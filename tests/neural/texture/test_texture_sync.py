"""Latent texture synchronisation: the projection (render/bake), the texture-space DDPM step,
consistency by construction, determinism, settings, and the stage end to end (tiny models, CPU)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from texture_tiny_models import SDXL_SCHEDULER_CONFIG

from inference_server.neural.texture.conditioning import (
    mv_views,
    prepare_view_mesh,
    render_geometry,
)
from inference_server.neural.texture.scheduler import make_shifted_ddpm
from inference_server.neural.texture.sync import (
    BACKGROUND_COLOURS,
    LatentProjection,
    SyncSettings,
    TextureSync,
    ddpm_posterior,
)
from inference_server.kernels.meshes import uv_sphere

LATENT = 8  # the tiny models' 64x64 views


@pytest.fixture(scope="module")
def sphere():
    positions, faces, uvs = uv_sphere(12, 24, radius=0.5)
    return prepare_view_mesh(positions, faces), uvs


def projection_for(sphere, latent: int = LATENT, texture_size: int = 32, views=None) -> LatentProjection:
    view_mesh, uvs = sphere
    return LatentProjection.build(view_mesh, uvs, views or mv_views(), latent, texture_size)


def shared_texel_groups(p: LatentProjection) -> list[torch.Tensor]:
    """Pixel groups (indices into P) that read one texel from at least two different views."""
    view = p.pixel // (p.height * p.width)
    groups = []
    for texel in range(p.num_texels):
        members = (p.pixel_texel == texel).nonzero().flatten()
        if len(set(view[members].tolist())) > 1:
            groups.append(members)
    return groups


# --------------------------------------------------------------------------- (a) projection
def test_render_then_bake_reproduces_the_seen_texels(sphere) -> None:
    p = projection_for(sphere, latent=24, texture_size=128)
    g = torch.Generator().manual_seed(0)
    texture = torch.randn(4, p.num_texels, generator=g)
    background = torch.randn(6, 4, 24, 24, generator=g)
    views = p.render(texture, background)
    # Off the surface the background is untouched; on it every pixel shows its texel.
    covered = torch.zeros(6 * 24 * 24, dtype=torch.bool)
    covered[p.pixel] = True
    flat_views, flat_background = views.transpose(0, 1).reshape(4, -1), background.transpose(0, 1).reshape(4, -1)
    assert torch.equal(flat_views[:, ~covered], flat_background[:, ~covered])
    assert torch.equal(p.gather(views), texture[:, p.pixel_texel])
    # Each view's own bake (scatter-mean onto the texels its pixels read) gives the texels back.
    means = p.view_means(p.gather(views))
    torch.testing.assert_close(means[:, p.pixel_slot], texture[:, p.pixel_texel], rtol=1e-6, atol=1e-6)
    # The six-view blend is a convex combination of texel values...
    baked = p.bake(p.gather(views), exponent=6.0)
    assert bool((baked <= texture.max(1, keepdim=True).values + 1e-5).all())
    assert bool((baked >= texture.min(1, keepdim=True).values - 1e-5).all())
    # ...so a constant texture comes back exactly, at every exponent.
    constant = torch.full((4, p.num_texels), 0.37)
    for exponent in (0.0, 3.0, 6.0):
        torch.testing.assert_close(p.bake(p.gather(p.render(constant, background)), exponent), constant)
    # With one view nothing is mixed in: the round trip is exact at every texel it sees.
    front = projection_for(sphere, latent=24, texture_size=128, views=mv_views()[:1])
    tex = torch.randn(4, front.num_texels, generator=g)
    round_trip = front.bake(front.gather(front.render(tex, torch.zeros(1, 4, 24, 24))), exponent=2.0)
    torch.testing.assert_close(round_trip, tex, rtol=1e-6, atol=1e-6)


def test_blend_weights_follow_visibility_and_cosines(sphere) -> None:
    p = projection_for(sphere, latent=24, texture_size=128)
    for exponent in (0.0, 6.0):
        w = p.weights(exponent)
        torch.testing.assert_close(w.sum(0), torch.ones(p.num_texels))
        assert bool((w[~p.visible] == 0).all())
    # exp 0: every view that sees the texel counts the same (upstream's visible-triangle mask)
    w0 = p.weights(0.0)
    expected = p.visible.float() / p.visible.float().sum(0, keepdim=True)
    torch.testing.assert_close(w0, expected)
    # A texel seen head-on by the front view: the front view dominates more as exp rises.
    view0 = p.pixel < 24 * 24
    head_on = p.pixel_texel[view0][p.log_cos[0, p.pixel_texel[view0]].argmax()]
    assert p.weights(6.0)[0, head_on] > p.weights(0.0)[0, head_on]


def test_a_view_always_sees_the_texels_its_pixels_read(sphere) -> None:
    """Even when the coarse visibility test misses a face, so no rendered texel is left without weight."""
    view_mesh, uvs = sphere
    p = LatentProjection.build(view_mesh, uvs, mv_views(), 16, 64, visibility_resolution=2)
    view = p.pixel // (16 * 16)
    assert bool(p.visible[view, p.pixel_texel].all())
    w = p.weights(6.0)
    assert bool(torch.isfinite(w).all())
    torch.testing.assert_close(w.sum(0), torch.ones(p.num_texels))


def test_projection_matches_the_geometry_renders(sphere) -> None:
    """The latent pixels the sync writes are exactly those the geometry maps show the object at."""
    view_mesh, _ = sphere
    p = projection_for(sphere, latent=16)
    _, masks = render_geometry(view_mesh, mv_views(), 16)
    covered = np.zeros(6 * 16 * 16, bool)
    covered[p.pixel.numpy()] = True
    np.testing.assert_array_equal(covered.reshape(6, 16, 16), masks)


# --------------------------------------------------------------------------- (c) DDPM step
def test_posterior_coefficients_equal_the_scheduler_step() -> None:
    scheduler = make_shifted_ddpm(SDXL_SCHEDULER_CONFIG)
    scheduler.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    for t in scheduler.timesteps:
        c = ddpm_posterior(scheduler, int(t))
        x, eps = torch.randn(2, 4, 5, 5, generator=g), torch.randn(2, 4, 5, 5, generator=g)
        seed = int(torch.randint(1 << 30, (1,), generator=g))
        noise = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(seed))
        x0 = (x - math.sqrt(1 - c.alpha_prod) * eps) / math.sqrt(c.alpha_prod)
        ours = c.original * x0 + c.current * x + c.std * noise
        theirs = scheduler.step(eps, t, x, generator=torch.Generator().manual_seed(seed), return_dict=False)[0]
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # The closed form: posterior mean of DDPM with abar from the scheduler.
    t = int(scheduler.timesteps[3])
    prev = int(scheduler.timesteps[4])
    a, a_prev = (float(scheduler.alphas_cumprod[i]) for i in (t, prev))
    c = ddpm_posterior(scheduler, t)
    assert c.original == pytest.approx(math.sqrt(a_prev) * (1 - a / a_prev) / (1 - a), rel=1e-5)
    assert c.current == pytest.approx(math.sqrt(a / a_prev) * (1 - a_prev) / (1 - a), rel=1e-5)
    assert c.std == pytest.approx(math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev)), rel=1e-5)


def identity_projection(views: int, size: int) -> LatentProjection:
    """Every pixel its own texel, seen by its view only: bake and render are the identity."""
    n = views * size * size
    arange = torch.arange(n)
    return LatentProjection(
        num_views=views, height=size, width=size, texture_size=size, num_texels=n,
        pixel=arange, pixel_texel=arange, pixel_slot=arange, slot_count=torch.ones(n),
        nearest_slot=arange.expand(views, n).clone(),
        visible=(arange // (size * size))[None] == torch.arange(views)[:, None],
        log_cos=torch.zeros(views, n), texels=np.arange(n),
    )


def test_synchronised_step_is_the_scheduler_step_when_projection_is_identity() -> None:
    scheduler = make_shifted_ddpm(SDXL_SCHEDULER_CONFIG)
    scheduler.set_timesteps(6)
    sync = TextureSync(identity_projection(2, 4), SyncSettings(ratio=1.0, texture_size=8))
    background = torch.zeros(len(BACKGROUND_COLOURS), 4, 4, 4)
    run = sync.start(scheduler, background, torch.Generator().manual_seed(0), channels=4, device=torch.device("cpu"))
    assert run.steps == list(range(6))
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 4, 4, generator=g)
    run.texture = latents.transpose(0, 1).reshape(4, -1).clone()
    for index, t in enumerate(scheduler.timesteps):
        eps = torch.randn(2, 4, 4, 4, generator=g)
        step_noise = torch.Generator().manual_seed(100 + index)
        assert run.texture_noise is not None
        run.texture_noise[index] = torch.randn(2, 4, 4, 4, generator=step_noise).transpose(0, 1).reshape(4, -1)
        ours = run.step(index, eps, latents)
        theirs = scheduler.step(eps, t, latents, generator=torch.Generator().manual_seed(100 + index),
                                return_dict=False)[0]
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
        latents = theirs


def test_scheduler_without_fixed_small_variance_is_refused() -> None:
    scheduler = DDPMScheduler.from_config({**SDXL_SCHEDULER_CONFIG, "variance_type": "learned"})
    scheduler.set_timesteps(4)
    with pytest.raises(ValueError, match="fixed_small"):
        ddpm_posterior(scheduler, int(scheduler.timesteps[0]))


# --------------------------------------------------------------------------- (b), (d) with the tiny models
def _inputs(sphere):
    view_mesh, _ = sphere
    control, _ = render_geometry(view_mesh, mv_views(), 64)
    reference = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    return reference, torch.from_numpy(control)


def test_full_sync_makes_views_agree_where_they_share_a_texel(tiny_stage, sphere) -> None:
    pipe = tiny_stage.load()
    reference, control = _inputs(sphere)
    p = projection_for(sphere)
    groups = shared_texel_groups(p)
    assert len(groups) >= 10  # the test needs texels read from several views

    def spread(ratio: float) -> float:
        sync = TextureSync(p, SyncSettings(ratio=ratio, texture_size=32)) if ratio else None
        latents = pipe(reference, control, num_inference_steps=4, guidance_scale=3.0, output_latents=True,
                       generator=torch.Generator().manual_seed(3), texture_sync=sync)
        values = p.gather(latents)
        return max(float((values[:, m].max(1).values - values[:, m].min(1).values).max()) for m in groups)

    assert spread(1.0) == 0.0  # one texel, one value: identical by construction
    assert spread(0.0) > 1e-2  # without sync the views are independent


def test_sync_is_deterministic_and_leaves_the_global_rng_alone(tiny_stage, sphere) -> None:
    pipe = tiny_stage.load()
    reference, control = _inputs(sphere)
    sync = TextureSync(projection_for(sphere), SyncSettings(ratio=0.5, texture_size=32))

    def views(seed: int) -> torch.Tensor:
        return pipe(reference, control, num_inference_steps=4, guidance_scale=3.0,
                    generator=torch.Generator().manual_seed(seed), texture_sync=sync, output_latents=True)

    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = views(5)
    assert torch.equal(torch.get_rng_state(), before), "the texture sync drew from the global generator"
    torch.manual_seed(99)
    assert torch.equal(views(5), first)
    assert not torch.equal(views(6), first)
    plain = pipe(reference, control, num_inference_steps=4, guidance_scale=3.0,
                 generator=torch.Generator().manual_seed(5), output_latents=True)
    assert not torch.equal(plain, first)  # the sync took part


def test_projection_for_other_views_is_refused(tiny_stage, sphere) -> None:
    pipe = tiny_stage.load()
    reference, control = _inputs(sphere)
    wrong = TextureSync(projection_for(sphere, latent=16), SyncSettings(ratio=0.5, texture_size=32))
    with pytest.raises(ValueError, match="projection"):
        pipe(reference, control, num_inference_steps=2, generator=torch.Generator().manual_seed(0), texture_sync=wrong)


# --------------------------------------------------------------------------- (f) settings
@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan")])
def test_bad_ratio_is_a_clear_error(tiny_weights: dict, ratio: float) -> None:
    from inference_server.neural.texture import TextureStage

    with pytest.raises(ValueError, match="texture_sync_ratio must be between 0"):
        TextureStage.from_paths(tiny_weights["adapter_file"], tiny_weights["sdxl_dir"], tiny_weights["vae_dir"],
                                device="cpu", texture_sync_ratio=ratio)


def test_settings_defaults() -> None:
    from inference_server.neural.texture import TextureConfig

    config = TextureConfig(adapter_file=Path("a"), sdxl_dir=Path("s"), vae_dir=Path("v"))
    assert config.texture_sync_ratio == 0.0 and config.texture_sync_size == 1536  # off by default
    assert SyncSettings().ratio == 0.5  # upstream's value
    with pytest.raises(ValueError, match="texture size"):
        TextureConfig(adapter_file=Path("a"), sdxl_dir=Path("s"), vae_dir=Path("v"), texture_sync_size=4)
