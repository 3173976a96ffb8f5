"""Data preparation: normalisation, closing, sampling, caching, and reports on bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_server.finetune.geometry.meshes import (
    close_shell,
    is_closed,
    normalise,
    sample_sharp,
    sample_uniform,
)
from inference_server.finetune.prepcache import PrepError

from .conftest import TINY_PREP, write_meshes


def _box(half: tuple[float, float, float] = (1.0, 0.5, 0.25)) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    box = trimesh.creation.box(extents=[2 * h for h in half])
    return np.asarray(box.vertices, float), np.asarray(box.faces, np.int64)


def test_normalise_centres_the_box_and_scales_the_longest_side_to_two() -> None:
    v = np.array([[10.0, 5.0, 1.0], [14.0, 6.0, 2.0], [12.0, 5.5, 1.2]])
    out = normalise(v)
    assert np.allclose(out.min(0) + out.max(0), 0.0) and np.isclose(np.ptp(out, axis=0).max(), 2.0)
    z_up = normalise(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 4.0]]), up="z")
    assert np.allclose(z_up[:, 1], [-1.0, 1.0])  # +Z up becomes +Y up


def test_sharp_samples_lie_on_the_box_edges_and_uniform_ones_on_its_faces(rng: np.random.Generator) -> None:
    v, f = _box()
    sharp, edges = sample_sharp(v, f, 200, 15.0, rng)
    assert edges == 12 and sharp.shape == (200, 6)
    on_limit = np.isclose(np.abs(sharp[:, :3]), [1.0, 0.5, 0.25], atol=1e-9)
    assert (on_limit.sum(axis=1) >= 2).all()  # an edge point sits on two faces' planes
    assert np.allclose(np.linalg.norm(sharp[:, 3:], axis=1), 1.0)
    uniform = sample_uniform(v, f, 300, rng)
    assert (np.isclose(np.abs(uniform[:, :3]), [1.0, 0.5, 0.25], atol=1e-9).sum(axis=1) >= 1).all()
    # the normal is that face's: it points along the axis the point is extreme on
    axis = np.argmax(np.abs(uniform[:, 3:]), axis=1)
    assert np.allclose(np.abs(uniform[np.arange(300), axis]), np.take([1.0, 0.5, 0.25], axis))


def test_an_open_mesh_is_closed_into_a_watertight_shell() -> None:
    v, f = _box()
    open_faces = f[:-2]  # one side missing
    assert not is_closed(open_faces) and is_closed(f)
    cv, cf = close_shell(v, open_faces, resolution=24, samples=4000, seed=0)
    assert is_closed(cf) and len(cf) > 100
    assert np.abs(cv).max() <= 1.05 + 1e-6 and np.ptp(cv, axis=0)[0] == pytest.approx(2.0, abs=0.25)


def test_a_folder_with_bad_files_gets_one_report_line_each(tiny_model: Path, tmp_path: Path) -> None:
    from inference_server.finetune.geometry.prepare import PrepareOptions, prepare

    import trimesh

    data = tmp_path / "data"
    write_meshes(data)
    (data / "notes.txt").write_text("not a mesh")
    (data / "broken.obj").write_text("v 0 0 0\nv 1 0 0\nthis is not obj\n")
    (data / "cloud.ply").write_bytes(trimesh.PointCloud(np.random.default_rng(0).random((20, 3))).export(file_type="ply"))
    box = trimesh.creation.box()
    trimesh.Trimesh(box.vertices, box.faces[:-2]).export(data / "open_box.off")
    lines: list[str] = []
    run = prepare(data, tmp_path / "out", tiny_model, PrepareOptions(**TINY_PREP), log=lines.append)
    report = (tmp_path / "out" / "report.txt").read_text().splitlines()
    assert report == lines and len(lines) == 8  # one line per file, nothing silently dropped
    by_name = {line.split()[1]: line for line in lines}
    assert by_name["notes.txt"].startswith("skipped") and "not a mesh file" in by_name["notes.txt"]
    assert by_name["cloud.ply"].startswith("skipped") and "no triangles" in by_name["cloud.ply"]
    assert by_name["broken.obj"].startswith("skipped")
    assert by_name["open_box.off"].startswith("ok") and "closed at 24^3 (it was open)" in by_name["open_box.off"]
    assert by_name["crate.glb"].startswith("ok") and "12 sharp edges" in by_name["crate.glb"]
    assert len(run.entries) == 5 and len(run.skipped) == 3

    again: list[str] = []
    prepare(data, tmp_path / "out", tiny_model, PrepareOptions(**TINY_PREP), log=again.append)
    assert sum(line.startswith("cached") for line in again) == 5  # resumable: nothing is redone
    changed = dict(TINY_PREP, views=3)
    redo: list[str] = []
    prepare(data, tmp_path / "out", tiny_model, PrepareOptions(**changed), log=redo.append)
    assert sum(line.startswith("ok") for line in redo) == 5  # new parameters, new entries


def test_empty_and_useless_folders_are_refused_with_a_sentence(tiny_model: Path, tmp_path: Path) -> None:
    from inference_server.finetune.geometry.prepare import PrepareOptions, prepare

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PrepError, match="is empty"):
        prepare(empty, tmp_path / "o1", tiny_model, PrepareOptions(**TINY_PREP), log=lambda _l: None)
    useless = tmp_path / "useless"
    useless.mkdir()
    (useless / "a.txt").write_text("x")
    with pytest.raises(PrepError, match=r"no usable meshes .*a.txt: not a mesh file"):
        prepare(useless, tmp_path / "o2", tiny_model, PrepareOptions(**TINY_PREP), log=lambda _l: None)
    with pytest.raises(PrepError, match="data folder not found"):
        prepare(tmp_path / "missing", tmp_path / "o3", tiny_model, PrepareOptions(**TINY_PREP), log=lambda _l: None)


def test_the_trainer_refuses_data_prepared_for_another_model(prepared: Path, tmp_path: Path) -> None:
    import sys

    from inference_server.finetune.geometry.trainer import load_geometry_config, train_geometry

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "neural" / "geometry"))
    from geometry_tiny_models import write_tiny_model

    other = write_tiny_model(tmp_path / "Step1X-3D-Geometry-1300m", label=False, seed=9)
    cfg = load_geometry_config(None, base=str(other), data=str(prepared), out=str(tmp_path / "o"), steps=1)
    with pytest.raises(PrepError, match="prepared for another base model"):
        train_geometry(cfg)
