"""Fixtures for the export tests: a small unwrapped asset with a full PBR material."""

from __future__ import annotations

import pytest

from export_helpers import PROVENANCE, bumpy_sphere, make_material
from inference_server.assets import Asset, MeshData
from inference_server.uv import unwrap


@pytest.fixture(scope="session")
def unwrapped_mesh() -> MeshData:
    return unwrap(bumpy_sphere(4), texture_size=512)


@pytest.fixture(scope="session")
def textured_asset(unwrapped_mesh: MeshData) -> Asset:
    return Asset(mesh=unwrapped_mesh, material=make_material(512), provenance=dict(PROVENANCE))
