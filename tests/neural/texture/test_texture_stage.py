"""The texture stage end to end on tiny random weights (CPU): geometry kept, determinism, CFG batch,
progress and cancel, LoRA, GLB export and the upstream-style API."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from safetensors.torch import save_file

from blender_addon.protocol.settings import JobSettings
from inference_server.assets import Asset, MeshData
from inference_server.pipeline.base import JobCancelled, JobContext, PipelineError

SETTINGS = JobSettings(mode="texture", texture_steps=3, texture_size=512, seed=7, pbr=False)


def reference_image() -> np.ndarray:
    image = np.zeros((96, 96, 4), np.uint8)
    image[16:80, 28:68] = (200, 60, 40, 255)
    image[30:50, 40:56] = (30, 120, 220, 255)
    return image


@pytest.fixture(scope="module")
def client_mesh() -> MeshData:
    """An artist's mesh with its own UVs (a sphere unwrapped once, off-centre, 1.7 units wide)."""
    from inference_server.uv.atlas import unwrap

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.85)
    mesh = MeshData(positions=(sphere.vertices + [0.2, 1.0, -0.3]).astype(np.float32),
                    faces=sphere.faces.astype(np.uint32))
    return unwrap(mesh, texture_size=512)


def test_texture_only_job_keeps_the_client_geometry(tiny_stage, client_mesh: MeshData) -> None:
    events: list[tuple[str, int, int]] = []
    ctx = JobContext(lambda stage, step, total, message: events.append((stage, step, total)))
    mesh, material, notes = tiny_stage.run(client_mesh, [reference_image()], SETTINGS, ctx)
    assert mesh.vertex_count == client_mesh.vertex_count
    np.testing.assert_array_equal(mesh.positions, client_mesh.positions)
    np.testing.assert_array_equal(mesh.faces, client_mesh.faces)
    np.testing.assert_array_equal(mesh.uvs, client_mesh.uvs)
    assert material.base_color.shape == (512, 512, 3) and material.base_color.dtype == np.uint8
    assert material.base_color.std() > 0  # something was painted
    assert not any("UV" in note for note in notes)
    diffusion = [step for stage, step, total in events if stage == "texture_diffusion"]
    assert diffusion == [0, 1, 2, 3]  # a report per denoising step
    assert any(stage == "texture_bake" for stage, _, _ in events)


def test_mesh_without_uvs_gets_an_atlas_and_a_note(tiny_stage) -> None:
    box = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    mesh = MeshData(positions=box.vertices.astype(np.float32), faces=box.faces.astype(np.uint32))
    out, material, notes = tiny_stage.run(mesh, [reference_image()], SETTINGS, JobContext())
    assert out.uvs is not None and out.vertex_count >= mesh.vertex_count
    assert any("had no UVs" in note for note in notes)
    assert material.base_color.shape == (512, 512, 3)


def test_pbr_output_and_glb_through_the_exporter(tiny_stage, client_mesh: MeshData) -> None:
    from inference_server.export.glb import asset_to_glb

    settings = SETTINGS.replace(pbr=True)
    mesh, material, notes = tiny_stage.run(client_mesh, [reference_image()], settings, JobContext())
    assert material.orm is not None and material.orm.shape == (512, 512, 3)
    glb = asset_to_glb(Asset(mesh=mesh, material=material, notes=notes, provenance={"backend": "step1x3d"}))
    scene = trimesh.load(io.BytesIO(glb), file_type="glb")
    loaded = next(iter(scene.geometry.values()))
    assert len(loaded.vertices) == client_mesh.vertex_count
    assert loaded.visual.material.baseColorTexture is not None


def test_same_seed_same_views_and_no_global_rng(tiny_stage) -> None:
    pipe = tiny_stage.load()
    ref = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    control = torch.rand(6, 6, 64, 64, generator=torch.Generator().manual_seed(0))

    def views(seed: int) -> torch.Tensor:
        return pipe(ref, control, num_inference_steps=3, guidance_scale=3.0, generator=torch.Generator().manual_seed(seed))

    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = views(5)
    assert torch.equal(torch.get_rng_state(), before), "the pipeline drew from the global generator"
    torch.manual_seed(999)  # global state must not matter
    assert torch.equal(views(5), first)
    assert not torch.equal(views(6), first)


def test_cfg_pair_runs_as_one_batch(tiny_stage) -> None:
    pipe = tiny_stage.load()
    batches: list[int] = []
    hook = pipe.models.unet.register_forward_pre_hook(lambda module, args: batches.append(int(args[0].shape[0])))
    try:
        ref = np.full((64, 64, 3), 127, np.uint8)
        control = torch.full((6, 6, 64, 64), 0.5)
        pipe(ref, control, num_inference_steps=2, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
        assert batches == [1, 12, 12]  # one reference pass, then [uncond x 6, cond x 6] per step
        batches.clear()
        pipe(ref, control, num_inference_steps=2, guidance_scale=1.0, generator=torch.Generator().manual_seed(0))
        assert batches == [1, 6, 6]  # guidance 1: no unconditional half
    finally:
        hook.remove()


def test_adapter_branches_take_part(tiny_stage) -> None:
    """Turning the multi-view, reference or geometry branch off changes the views: each is wired in."""
    pipe = tiny_stage.load()
    ref = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    control = torch.rand(6, 6, 64, 64, generator=torch.Generator().manual_seed(1))

    def latents(**scales: float) -> torch.Tensor:
        return pipe(ref, control, num_inference_steps=1, guidance_scale=3.0, generator=torch.Generator().manual_seed(0),
                    output_latents=True, **scales)

    base = latents()
    for off in ({"mv_scale": 0.0}, {"reference_scale": 0.0}, {"control_scale": 0.0}):
        assert not torch.allclose(latents(**off), base), off


def test_cancel_lands_between_steps(tiny_stage, client_mesh: MeshData) -> None:
    cancel = threading.Event()
    steps: list[int] = []

    def progress(stage: str, step: int, total: int, message: str) -> None:
        if stage == "texture_diffusion":
            steps.append(step)
            if step == 1:
                cancel.set()  # the next progress call raises

    with pytest.raises(JobCancelled):
        tiny_stage.run(client_mesh, [reference_image()], SETTINGS, JobContext(progress, cancel))
    assert steps == [0, 1]
    # The stage is still usable afterwards.
    mesh, _, _ = tiny_stage.run(client_mesh, [reference_image()], SETTINGS, JobContext())
    assert mesh.vertex_count == client_mesh.vertex_count


def _write_lora(folder: Path, unet: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    state = {}
    targets = [n for n, m in unet.named_modules() if n.endswith("attn1.to_q") or n.endswith("attn2.to_v")][:3]
    targets.append("conv_in")
    for name in targets:
        module = dict(unet.named_modules())[name]
        rank = 2
        if isinstance(module, torch.nn.Conv2d):
            down = torch.randn(rank, module.in_channels, 3, 3, generator=g)
            up = torch.randn(module.out_channels, rank, 1, 1, generator=g)
        else:
            down = torch.randn(rank, module.in_features, generator=g)
            up = torch.randn(module.out_features, rank, generator=g)
        state[f"unet.{name}.lora_A.weight"] = down
        state[f"unet.{name}.lora_B.weight"] = up
    state["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"] = torch.zeros(2, 32)
    state["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"] = torch.zeros(32, 2)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "style.safetensors"))


def test_style_lora_from_a_local_file(tiny_stage, client_mesh: MeshData) -> None:
    unet = tiny_stage.load().models.unet
    _write_lora(tiny_stage.config.lora_dir, unet)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    base = tiny_stage.run(client_mesh, [reference_image()], SETTINGS, JobContext())[1].base_color
    zero = tiny_stage.run(client_mesh, [reference_image()], SETTINGS.replace(options={"lora": "style", "lora_scale": 0.0}), JobContext())
    styled = tiny_stage.run(client_mesh, [reference_image()], SETTINGS.replace(options={"lora": "style", "lora_scale": 1.5}), JobContext())
    np.testing.assert_array_equal(zero[1].base_color, base)
    assert not np.array_equal(styled[1].base_color, base)
    assert any("style LoRA 'style'" in note for note in styled[2])
    assert any("text-encoder" in note for note in styled[2])
    after = unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "LoRA weights were left merged"
    with pytest.raises(PipelineError) as info:
        tiny_stage.run(client_mesh, [reference_image()], SETTINGS.replace(options={"lora": "../escape"}), JobContext())
    assert info.value.code == "bad_settings"


def test_stage_with_texture_sync_end_to_end(tiny_weights: dict, tiny_stage, client_mesh: MeshData) -> None:
    from inference_server.neural.texture import TextureStage

    stage = TextureStage.from_paths(tiny_weights["adapter_file"], tiny_weights["sdxl_dir"], tiny_weights["vae_dir"],
                                    dtype="float32", device="cpu", resolution=64, bake_resolution=128,
                                    texture_sync_ratio=0.5)
    stage._pipe = tiny_stage.load()  # the same loaded models: only the setting differs
    events: list[tuple[str, int, int]] = []
    ctx = JobContext(lambda stage_name, step, total, message: events.append((stage_name, step, total)))
    mesh, material, _ = stage.run(client_mesh, [reference_image()], SETTINGS, ctx)
    np.testing.assert_array_equal(mesh.positions, client_mesh.positions)
    assert material.base_color is not None
    assert material.base_color.shape == (512, 512, 3) and material.base_color.std() > 0
    assert [step for name, step, _ in events if name == "texture_diffusion"] == [0, 1, 2, 3]
    plain = tiny_stage.run(client_mesh, [reference_image()], SETTINGS, JobContext())[1].base_color
    assert plain is not None and not np.array_equal(material.base_color, plain)  # the synchronised views differ


def test_upstream_style_api_returns_a_textured_trimesh(tiny_weights: dict, tmp_path: Path) -> None:
    from inference_server.neural.texture import Step1X3DTexturePipeline

    pipe = Step1X3DTexturePipeline.from_pretrained(
        tiny_weights["root"], subfolder="Step1X-3D-Texture", sdxl_dir=tiny_weights["sdxl_dir"],
        vae_dir=tiny_weights["vae_dir"], device="cpu", dtype="float32", resolution=64, bake_resolution=128,
    )
    image_path = tmp_path / "input.png"
    from PIL import Image

    Image.fromarray(reference_image()).save(image_path)
    untextured = trimesh.creation.icosphere(subdivisions=2)
    assert pipe.config.texture_sync_ratio == 0.5  # upstream's API synchronises the first half
    textured = pipe(str(image_path), untextured, num_inference_steps=2, texture_size=512)
    assert isinstance(textured, trimesh.Trimesh)
    assert textured.visual.uv is not None and textured.visual.material.baseColorTexture is not None
    out = tmp_path / "textured_mesh.glb"
    textured.export(out)
    assert out.stat().st_size > 0


def test_from_pretrained_needs_local_folders(tmp_path: Path) -> None:
    from inference_server.neural.texture import Step1X3DTexturePipeline

    with pytest.raises(PipelineError) as info:
        Step1X3DTexturePipeline.from_pretrained("stepfun-ai/Step1X-3D", subfolder="Step1X-3D-Texture",
                                                sdxl_dir=tmp_path, vae_dir=tmp_path, device="cpu")
    assert info.value.code == "weights_missing"
