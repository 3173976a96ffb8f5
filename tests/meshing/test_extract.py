"""Hierarchical extraction against analytic fields and dense marching cubes."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from inference_server.meshing.extract import extract_dense, extract_surface, grid_to_world, level_resolutions
from inference_server.meshing.topology import signed_volume, topology_report
from inference_server.pipeline.base import JobCancelled, JobContext

BOUNDS = 1.05


class CountingField:
    """Wraps an analytic field; remembers every point it was asked for."""

    def __init__(self, fn) -> None:  # type: ignore[no-untyped-def]
        self.fn = fn
        self.points: list[np.ndarray] = []
        self.calls = 0

    def __call__(self, p: np.ndarray) -> np.ndarray:
        assert p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 3
        self.calls += 1
        self.points.append(p.copy())
        return self.fn(p)

    @property
    def count(self) -> int:
        return sum(len(p) for p in self.points)


def sphere(p: np.ndarray, radius: float = 0.8) -> np.ndarray:
    return radius - np.linalg.norm(p, axis=1)


def torus(p: np.ndarray, big: float = 0.6, small: float = 0.25) -> np.ndarray:
    ring = np.hypot(p[:, 0], p[:, 2]) - big
    return small - np.hypot(ring, p[:, 1])


def dense_grid(fn, res: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    axis = grid_to_world(np.arange(res + 1), res, BOUNDS)
    pts = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    return fn(pts).reshape((res + 1,) * 3).astype(np.float32)


def assert_closed(v: np.ndarray, f: np.ndarray) -> None:
    report = topology_report(f, len(v))
    assert report.closed_manifold, report
    assert trimesh.Trimesh(v, f, process=False).is_watertight
    assert signed_volume(v, f) > 0  # counter-clockwise seen from outside


def test_level_resolutions() -> None:
    assert level_resolutions(384, 96) == [96, 192, 384]
    assert level_resolutions(256, 64) == [64, 128, 256]
    assert level_resolutions(300, 96) == [75, 150, 300]  # not 96 * 2^k
    assert level_resolutions(385, 96) == [97, 193, 385]  # odd: the finest level is still exact
    assert level_resolutions(64, 96) == [64]  # coarser than the coarse level: one dense level
    assert level_resolutions(150, 96) == [75, 150]


def test_sphere_matches_dense_with_far_fewer_evaluations() -> None:
    res = 192
    field = CountingField(sphere)
    v, f = extract_surface(field, resolution=res, coarse_resolution=48)
    dv, df = extract_dense(dense_grid(sphere, res), BOUNDS)
    assert_closed(v, f)
    assert_closed(dv, df)
    # Identical surface: the same cells are straddled, so the same triangles come out.
    assert len(f) == len(df)
    d, _ = cKDTree(dv).query(v)
    assert d.max() < 1e-5
    # Near-surface refinement: a sphere's shell at 192^3 needs well under a fifth of the dense points.
    assert field.count < 0.2 * (res + 1) ** 3
    assert field.calls >= 2  # batched
    r = np.linalg.norm(v, axis=1)
    cell = 2 * BOUNDS / res
    assert np.abs(r - 0.8).max() < 0.05 * cell  # linear interpolation of an exact distance field


def test_torus_keeps_its_hole_and_matches_dense() -> None:
    res = 160
    field = CountingField(torus)
    v, f = extract_surface(field, resolution=res, coarse_resolution=40)
    dv, df = extract_dense(dense_grid(torus, res), BOUNDS)
    assert_closed(v, f)
    assert len(f) == len(df)
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.euler_number == 0  # genus 1
    assert mesh.volume == pytest.approx(2 * np.pi**2 * 0.6 * 0.25**2, rel=0.01)
    assert field.count < 0.25 * (res + 1) ** 3


def test_never_evaluated_cells_produce_no_faces() -> None:
    res = 128
    field = CountingField(torus)
    v, f = extract_surface(field, resolution=res, coarse_resolution=32)
    cell = 2 * BOUNDS / res
    pts = np.concatenate(field.points)
    known = {tuple(i) for i in np.rint((pts + BOUNDS) / cell).astype(np.int64)}
    centroids = v[f].mean(axis=1)
    cells = np.floor((centroids + BOUNDS) / cell).astype(np.int64)
    for c in np.unique(cells, axis=0):
        for off in np.ndindex(2, 2, 2):
            assert tuple(c + off) in known


def test_surface_missed_by_the_coarse_grid_is_followed() -> None:
    """A plate thinner than a coarse cell, attached to a ball: refinement must grow along it."""

    def ball_and_plate(p: np.ndarray) -> np.ndarray:
        plate = np.minimum(0.010 - np.abs(p[:, 1] - 0.016), 0.8 - np.hypot(p[:, 0], p[:, 2]))
        return np.maximum(sphere(p, 0.3), plate)

    res = 256
    v, f = extract_surface(ball_and_plate, resolution=res, coarse_resolution=64)
    dv, df = extract_dense(dense_grid(ball_and_plate, res), BOUNDS)
    assert_closed(v, f)
    assert np.hypot(v[:, 0], v[:, 2]).max() > 0.79  # the plate's rim was reached
    assert len(f) == len(df)


def test_seeds_find_a_part_the_coarse_grid_steps_over() -> None:
    """A ball smaller than a coarse cell, far from anything else: invisible unless seeded."""

    def two_balls(p: np.ndarray) -> np.ndarray:
        return np.maximum(sphere(p, 0.5), 0.02 - np.linalg.norm(p - np.float32([0.8, 0.8, 0.8]), axis=1))

    plain_v, _ = extract_surface(two_balls, resolution=128, coarse_resolution=16)
    assert np.linalg.norm(plain_v, axis=1).max() < 0.51
    seed = np.float32([[0.8, 0.8, 0.82]])  # on the small ball's surface
    v, f = extract_surface(two_balls, resolution=128, coarse_resolution=16, seeds=seed)
    assert_closed(v, f)
    small = v[np.linalg.norm(v - 0.8, axis=1) < 0.05]
    assert len(small) > 20
    assert np.abs(np.linalg.norm(small - 0.8, axis=1) - 0.02).max() < 0.003


@pytest.mark.parametrize("res", [300, 203])
def test_resolutions_that_do_not_double_evenly(res: int) -> None:
    """203 -> 51, 102, 203: the last step is not an exact doubling, cells map by position."""
    field = CountingField(torus)
    v, f = extract_surface(field, resolution=res, coarse_resolution=64)
    dv, df = extract_dense(dense_grid(torus, res), BOUNDS)
    assert_closed(v, f)
    assert len(f) == len(df)  # the same surface as a dense grid of exactly `res` cells
    assert field.count < 0.3 * (res + 1) ** 3


def test_level_other_than_zero() -> None:
    """An occupancy-like field thresholded at 0.1 (and +inf deep inside) still gives the right shell."""

    def field(p: np.ndarray) -> np.ndarray:
        out = sphere(p)
        out[np.linalg.norm(p, axis=1) < 0.2] = np.inf
        return out

    v, f = extract_surface(field, resolution=96, coarse_resolution=24, level=0.1)
    assert_closed(v, f)
    assert np.abs(np.linalg.norm(v, axis=1) - 0.7).max() < 0.002


def test_field_touching_the_bounds_is_closed() -> None:
    v, f = extract_surface(lambda p: 1.5 - np.abs(p).max(axis=1), resolution=64, coarse_resolution=16)
    assert_closed(v, f)
    assert np.abs(v).max() <= BOUNDS + 1e-6


def test_band_refines_near_misses() -> None:
    """With a band, cells close to the level are refined even without a sign change."""
    field_plain, field_band = CountingField(sphere), CountingField(sphere)
    extract_surface(field_plain, resolution=128, coarse_resolution=32)
    extract_surface(field_band, resolution=128, coarse_resolution=32, band=0.2)
    assert field_band.count > field_plain.count


def test_no_surface_gives_empty_arrays() -> None:
    v, f = extract_surface(lambda p: -np.ones(len(p)), resolution=64, coarse_resolution=16)
    assert v.shape == (0, 3) and f.shape == (0, 3)


def test_nan_and_exact_level_values_stay_closed() -> None:
    def quantised(p: np.ndarray) -> np.ndarray:
        out = np.round(sphere(p) * 20) / 20  # many values exactly 0
        out[p[:, 0] > 0.99] = np.nan
        return out

    v, f = extract_surface(quantised, resolution=64, coarse_resolution=16)
    assert_closed(v, f)


def test_progress_per_level_and_cancellation() -> None:
    seen: list[tuple[str, int, int]] = []
    ctx = JobContext(lambda stage, step, total, msg: seen.append((stage, step, total)))
    extract_surface(sphere, resolution=128, coarse_resolution=32, ctx=ctx)
    assert [s for s in seen if s[0] == "extract"] == [("extract", k, 3) for k in range(4)]

    cancel = threading.Event()

    def cancel_at_level_two(stage: str, step: int, total: int, msg: str) -> None:
        if step == 1:
            cancel.set()

    field = CountingField(sphere)
    with pytest.raises(JobCancelled):
        extract_surface(field, resolution=128, coarse_resolution=32, ctx=JobContext(cancel_at_level_two, cancel))
    assert field.count == 33**3  # stopped before any level-two point was evaluated


def test_extract_dense_rejects_bad_grids() -> None:
    with pytest.raises(ValueError):
        extract_dense(np.zeros((4, 4, 5)))
