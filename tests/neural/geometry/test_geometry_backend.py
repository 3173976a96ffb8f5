"""``Step1X3DBackend`` on tiny weights: jobs through the Pipeline protocol produce valid Assets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blender_addon.protocol.settings import JobSettings
from inference_server.assets import Asset
from inference_server.pipeline.base import JobContext, JobRequest, PipelineError
from inference_server.pipeline.registry import create_pipeline

GEOMETRY = dict(mode="geometry", steps=3, max_faces=20_000)
RES = {"octree_resolution": 64}


@pytest.fixture(scope="module")
def backend(tiny_repo: Path):
    from inference_server.neural.backend import Step1X3DBackend

    return Step1X3DBackend(tiny_repo, device="cpu")


def assert_valid_mesh(asset: Asset, max_faces: int) -> None:
    mesh = asset.mesh
    assert mesh.positions.dtype == np.float32 and mesh.faces.dtype == np.uint32
    assert 0 < mesh.face_count <= max_faces
    assert int(mesh.faces.max()) < mesh.vertex_count
    assert mesh.normals is not None and np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-3)
    assert np.abs(mesh.positions).max() <= 1.05 + 1e-6


def test_registry_builds_the_backend(tiny_repo: Path) -> None:
    pipe = create_pipeline("auto", tiny_repo, device="cpu")
    assert pipe.name == "step1x3d"
    caps = pipe.capabilities()
    assert caps["labels"] is True and caps["needs_weights"] and "sampling" in caps["stages"]
    with pytest.raises(PipelineError) as err:
        create_pipeline("step1x3d", tiny_repo / "missing")
    assert err.value.code == "weights_missing"


def test_geometry_job(backend, reference_rgba: np.ndarray) -> None:
    events: list[str] = []
    ctx = JobContext(lambda stage, *_: events.append(stage))
    request = JobRequest(images=[reference_rgba], settings=JobSettings(**GEOMETRY, seed=5, options=RES), image_names=["ref.png"])
    asset = backend.run(request, ctx)
    assert_valid_mesh(asset, GEOMETRY["max_faces"])
    assert asset.material is None
    assert asset.provenance["backend"] == "step1x3d" and asset.provenance["seed"] == 5
    assert asset.provenance["geometry_model"] == "Step1X-3D-Geometry-1300m"  # no label asked: base model
    assert {"geometry_sampling", "geometry_extract"} <= set(asset.timings)
    assert {"condition", "sampling", "extract", "cleanup"} <= set(events)
    again = backend.run(request, JobContext())
    assert np.array_equal(again.mesh.positions, asset.mesh.positions)  # same seed, same mesh
    from inference_server.export.glb import asset_to_glb

    assert asset_to_glb(asset)[:4] == b"glTF"


def test_label_settings_pick_the_label_model(backend, reference_rgba: np.ndarray) -> None:
    settings = JobSettings(**GEOMETRY, options={**RES, "symmetry": "symmetric", "edge_type": "sharp"})
    asset = backend.run(JobRequest(images=[reference_rgba], settings=settings), JobContext())
    assert asset.provenance["geometry_model"] == "Step1X-3D-Geometry-Label-1300m"
    assert not any("Label model" in n for n in asset.notes)
    backend.release_memory()


def test_label_options_are_declared_only_with_the_label_model(backend, tiny_repo: Path,
                                                             reference_rgba: np.ndarray) -> None:
    from inference_server.neural.backend import Step1X3DBackend

    assert [o["name"] for o in backend.capabilities()["options"]] == ["octree_resolution", "symmetry", "edge_type",
                                                                      "pose"]
    base_only = Step1X3DBackend(tiny_repo / "Step1X-3D-Geometry-1300m", device="cpu")
    caps = base_only.capabilities()
    assert caps["labels"] is False and [o["name"] for o in caps["options"]] == ["octree_resolution"]
    settings = JobSettings(**GEOMETRY, options={**RES, "pose": "t_pose"})
    with pytest.raises(PipelineError) as err:
        base_only.run(JobRequest(images=[reference_rgba], settings=settings), JobContext())
    assert err.value.code == "bad_settings"
    assert str(err.value) == "the step1x3d backend has no option pose (its options: octree_resolution)"


def test_a_forced_base_variant_notes_that_labels_were_ignored(tiny_repo: Path, reference_rgba: np.ndarray) -> None:
    from inference_server.neural.backend import Step1X3DBackend

    forced = Step1X3DBackend(tiny_repo, device="cpu", variant="base")
    settings = JobSettings(**GEOMETRY, options={**RES, "pose": "t_pose"})
    asset = forced.run(JobRequest(images=[reference_rgba], settings=settings), JobContext())
    assert asset.provenance["geometry_model"] == "Step1X-3D-Geometry-1300m"
    assert any("Label model" in n for n in asset.notes)


def test_full_job_falls_back_to_projection_texturing(backend, reference_rgba: np.ndarray) -> None:
    pytest.importorskip("xatlas")
    settings = JobSettings(mode="full", steps=3, options=RES, max_faces=4_000, texture_size=512, pbr=False)
    asset = backend.run(JobRequest(images=[reference_rgba], settings=settings), JobContext())
    assert asset.material is not None and asset.material.base_color is not None
    assert asset.mesh.uvs is not None
    assert any("projecting the reference image" in n for n in asset.notes)


def test_cli_texture_options_reach_the_texture_stage(tiny_repo: Path, tmp_path: Path) -> None:
    # --texture-sync and --offload must arrive in the texture stage's config, not be swallowed
    # by the backend's catch-all options.
    from inference_server.cli import backend_options, build_parser
    from inference_server.neural.backend import Step1X3DBackend

    adapter = tmp_path / "step1x-3d-ig2v.safetensors"
    adapter.write_bytes(b"")  # only its presence is checked before the first texture job
    args = build_parser().parse_args([
        "serve", "--weights", str(tiny_repo), "--device", "cpu", "--offload", "stages", "--texture-sync", "0.5",
        "--sdxl-dir", str(tmp_path), "--sdxl-vae-dir", str(tmp_path),
    ])
    options = backend_options(args)
    assert options["texture_sync_ratio"] == 0.5
    backend = Step1X3DBackend(tiny_repo, texture_adapter=adapter, **options)
    stage = backend._neural_texture([])
    assert stage is not None
    assert stage.config.texture_sync_ratio == 0.5 and stage.config.offload == "stages"
    default = Step1X3DBackend(tiny_repo, texture_adapter=adapter, sdxl_dir=tmp_path, sdxl_vae_dir=tmp_path,
                              device="cpu")._neural_texture([])
    assert default.config.texture_sync_ratio == 0.0 and default.config.offload == "auto"


def test_texture_and_geometry_loras_are_choices_of_the_declared_options(tiny_repo: Path, tmp_path: Path) -> None:
    # Issue 14: the style LoRAs of --lora-dir are listed in welcome (capabilities) and are the
    # choices of the "lora" option the panel's Style drop-down draws.
    from inference_server.neural.backend import Step1X3DBackend

    styles, shapes = tmp_path / "styles", tmp_path / "shapes"
    styles.mkdir(), shapes.mkdir()
    for name in ("ink.safetensors", "clay.safetensors", "notes.txt", ".hidden.safetensors"):
        (styles / name).write_bytes(b"")
    (shapes / "props.safetensors").write_bytes(b"")
    caps = Step1X3DBackend(tiny_repo, device="cpu", lora_dir=styles, geometry_lora_dir=shapes).capabilities()
    assert caps["texture_loras"] == ["clay", "ink"] and caps["geometry_loras"] == ["props"]
    declared = {o["name"]: o for o in caps["options"]}
    assert declared["lora"]["choices"] == ["", "clay", "ink"] and declared["lora"]["label"] == "Style"
    assert declared["geometry_lora"]["choices"] == ["", "props"]
    assert (declared["lora_scale"]["min"], declared["lora_scale"]["max"], declared["lora_scale"]["default"]) == (
        0.0, 2.0, 1.0)
    plain = Step1X3DBackend(tiny_repo, device="cpu").capabilities()
    assert plain["texture_loras"] == [] and not {"lora", "geometry_lora"} & {o["name"] for o in plain["options"]}
