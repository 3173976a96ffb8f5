"""The pipeline on tiny weights: shapes, seeds, progress/cancel, labels, and a whole image -> mesh run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from blender_addon.protocol.settings import JobSettings
from inference_server.neural.geometry.labels import labels_from_settings
from inference_server.neural.options import EDGE_TYPE, POSE, SYMMETRY
from inference_server.neural.geometry.models.condition import (
    GEOMETRY_QUALITY_CLASSES,
    POSE_CLASSES,
    SYMMETRY_CLASSES,
)
from inference_server.neural.geometry.preprocess import condition_image
from inference_server.neural.geometry.surface import LatentField
from inference_server.pipeline.base import JobCancelled, JobContext

STEPS = 4
RES = 32  # octree resolution of the tiny runs (coarse 32 -> a single dense level)


def run_latents(pipe: Any, image: np.ndarray, seed: int, **kw: Any) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return pipe(image, num_inference_steps=STEPS, generator=g, output_type="latent", **kw).mesh[0]


def test_condition_and_latent_shapes(base_pipe: Any, label_pipe: Any, reference_rgba: np.ndarray) -> None:
    img = condition_image(reference_rgba)
    assert img.mode == "RGB" and img.size[0] == img.size[1]
    cond = base_pipe.encode_condition([img], None, cfg=True)
    assert cond.shape == (2, base_pipe.visual_encoder.tokens_per_image(), 64)
    assert torch.count_nonzero(cond[0]) == 0  # the unconditional half is upstream's zero embedding
    lcond = label_pipe.encode_condition([img], [{"symmetry": "x"}], cfg=True)
    assert lcond.shape == (2, label_pipe.visual_encoder.tokens_per_image() + 3, 64)
    lat = run_latents(base_pipe, reference_rgba, 0)
    assert lat.shape == base_pipe.vae.latent_shape and lat.dtype == torch.float32
    decoded = base_pipe.decode(lat[None])
    assert decoded.shape == (1, base_pipe.vae.config.num_latents, base_pipe.vae.config.width)
    field = LatentField(base_pipe.vae, decoded, chunk_size=100)
    values = field(np.random.default_rng(0).uniform(-1, 1, (250, 3)).astype(np.float32))
    assert values.shape == (250,) and values.dtype == np.float32 and np.isfinite(values).all()


def test_field_chunking_does_not_change_values(base_pipe: Any, reference_rgba: np.ndarray) -> None:
    decoded = base_pipe.decode(run_latents(base_pipe, reference_rgba, 0)[None])
    pts = np.random.default_rng(1).uniform(-1, 1, (300, 3)).astype(np.float32)
    a = LatentField(base_pipe.vae, decoded, chunk_size=7)(pts)
    b = base_pipe.vae.query(torch.from_numpy(pts)[None], decoded)[0].numpy()  # no cached keys/values
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_same_seed_same_result_other_seed_differs(base_pipe: Any, reference_rgba: np.ndarray) -> None:
    a, b = run_latents(base_pipe, reference_rgba, 7), run_latents(base_pipe, reference_rgba, 7)
    assert torch.equal(a, b)
    assert not torch.equal(a, run_latents(base_pipe, reference_rgba, 8))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    m1 = base_pipe(reference_rgba, num_inference_steps=STEPS, generator=g1, octree_resolution=RES, output_type="np")
    m2 = base_pipe(reference_rgba, num_inference_steps=STEPS, generator=g2, octree_resolution=RES, output_type="np")
    assert np.array_equal(m1.mesh[0][0], m2.mesh[0][0]) and np.array_equal(m1.mesh[0][1], m2.mesh[0][1])


def test_progress_per_step_and_cancel_between_steps(base_pipe: Any, reference_rgba: np.ndarray,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, int, int]] = []
    ctx = JobContext(lambda stage, step, total, _msg: events.append((stage, step, total)))
    base_pipe(reference_rgba, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
              octree_resolution=RES, ctx=ctx)
    sampling = [(s, t) for stage, s, t in events if stage == "sampling"]
    assert sampling == [(i, STEPS) for i in range(STEPS + 1)]
    stages = [stage for stage, _s, _t in events]
    assert stages.index("condition") < stages.index("sampling") < stages.index("extract") < stages.index("cleanup")

    calls: list[int] = []
    original = base_pipe.transformer.forward

    def counting(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(base_pipe.transformer, "forward", counting)

    def cancel_at_two(stage: str, step: int, _total: int, _msg: str) -> None:
        if stage == "sampling" and step == 2:
            ctx2.cancel()

    ctx2 = JobContext(cancel_at_two)
    with pytest.raises(JobCancelled):
        base_pipe(reference_rgba, num_inference_steps=10, generator=torch.Generator().manual_seed(0), ctx=ctx2)
    assert len(calls) == 2  # step 1's forward was skipped (zero velocity), step 2 ran, then the cancel landed


def test_label_tokens_are_wired(label_pipe: Any) -> None:
    enc = label_pipe.label_encoder
    tables = (enc.embedding_table_tpose, enc.embedding_table_symmetry_type, enc.embedding_table_geometry_quality)
    rows = enc.encode([{"symmetry": "x", "edge_type": "sharp", "pose": "t-pose"}])[0]
    assert torch.equal(rows[0], tables[0].weight[POSE_CLASSES.index("t-pose")])
    assert torch.equal(rows[1], tables[1].weight[SYMMETRY_CLASSES.index("x")])
    assert torch.equal(rows[2], tables[2].weight[GEOMETRY_QUALITY_CLASSES.index("sharp")])  # upstream ignored it
    defaults = enc.encode([{"symmetry": "x"}])[0]  # absent keys take class 0, as upstream
    assert torch.equal(defaults[0], tables[0].weight[0]) and torch.equal(defaults[2], tables[2].weight[0])
    assert torch.count_nonzero(enc.unconditional(1)) == 0


def test_option_choices_cover_the_label_tables() -> None:
    assert len(SYMMETRY.choices) - 1 == len(SYMMETRY_CLASSES)
    assert len(EDGE_TYPE.choices) - 1 == len(GEOMETRY_QUALITY_CLASSES)
    assert len(POSE.choices) - 1 == len(POSE_CLASSES)
    assert labels_from_settings(JobSettings()) is None
    for sym in SYMMETRY.choices[1:]:
        for edge in EDGE_TYPE.choices[1:]:
            for pose in POSE.choices[1:]:
                label = labels_from_settings(JobSettings(options={"symmetry": sym, "edge_type": edge, "pose": pose}))
                assert label is not None
                assert label["symmetry"] in SYMMETRY_CLASSES and label["edge_type"] in GEOMETRY_QUALITY_CLASSES
                assert label["pose"] in POSE_CLASSES
    assert labels_from_settings(JobSettings(options={"edge_type": "sharp"})) == {"edge_type": "sharp"}


def test_edge_type_changes_the_label_models_output(label_pipe: Any, reference_rgba: np.ndarray) -> None:
    sharp = run_latents(label_pipe, reference_rgba, 3, label={"edge_type": "sharp"})
    smooth = run_latents(label_pipe, reference_rgba, 3, label={"edge_type": "smooth"})
    none = run_latents(label_pipe, reference_rgba, 3)
    assert not torch.equal(sharp, smooth) and not torch.equal(sharp, none)


def test_image_to_trimesh_end_to_end(base_pipe: Any, reference_rgba: np.ndarray, tmp_path: Path) -> None:
    """Upstream's example, with a PIL image and a path as well as an array."""
    import trimesh

    path = tmp_path / "ref.png"
    Image.fromarray(reference_rgba, "RGBA").save(path)
    for image in (str(path), Image.open(path)):
        g = torch.Generator(device=base_pipe.device).manual_seed(2025)
        out = base_pipe(image, guidance_scale=7.5, num_inference_steps=STEPS, generator=g, octree_resolution=RES,
                        max_facenum=3000)
        mesh = out.mesh[0]
        assert isinstance(mesh, trimesh.Trimesh)
        assert len(mesh.faces) <= 3000 and mesh.is_watertight
        assert np.abs(mesh.vertices).max() <= 1.05 + 1e-6
        assert set(out.timings) >= {"condition", "sampling", "decode", "extract", "cleanup"}
    glb = mesh.export(file_type="glb")
    assert glb[:4] == b"glTF"


def test_vae_encode_shapes_and_fps(base_pipe: Any) -> None:
    from inference_server.neural.geometry.models.vae import farthest_point_sample

    pts = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0], [1.0, 0, 0], [0.0, 1, 0], [0.5, 0.5, 0]]])
    assert farthest_point_sample(pts, 3)[0].tolist() == [0, 2, 3]  # start at 0, then the farthest each time
    vae = base_pipe.vae
    gen = torch.Generator().manual_seed(0)
    surface = torch.cat([torch.rand(1, 64, 3, generator=gen) * 2 - 1, torch.randn(1, 64, 3, generator=gen)], dim=-1)
    with torch.no_grad():
        z = vae.encode(surface, sharp_surface=surface.flip(1))
        again = vae.encode(surface, sharp_surface=surface.flip(1))
    assert z.shape == (1, *vae.latent_shape) and torch.equal(z, again)


def test_extraction_matches_upstreams_dense_marching_cubes(base_pipe: Any, reference_rgba: np.ndarray) -> None:
    """At a single-level resolution, our vertices are upstream's: MC on the same grid, i/(res+1)*2b-b."""
    from skimage.measure import marching_cubes

    res, b = 32, 1.05
    decoded = base_pipe.decode(run_latents(base_pipe, reference_rgba, 4)[None])
    axis = np.linspace(-b, b, res + 1, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    values = LatentField(base_pipe.vae, decoded)(grid).reshape((res + 1,) * 3)
    up_verts, up_faces, _n, _v = marching_cubes(values, 0.0, method="lewiner")
    up_verts = up_verts / (res + 1) * (2 * b) - b
    verts, faces = base_pipe.extract(decoded, bounds=b, octree_resolution=res)
    assert len(faces) == len(up_faces)
    ours = verts[np.lexsort(verts.T[::-1])]
    theirs = up_verts[np.lexsort(up_verts.T[::-1])]
    np.testing.assert_allclose(ours, theirs, atol=5e-5)  # float32 rounding of the two grid formulas
