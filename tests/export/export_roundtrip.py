"""Helpers: load GLB bytes back with trimesh and with Blender's importer (in a subprocess)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import trimesh

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_trimesh_scene(data: bytes) -> trimesh.Scene:
    return trimesh.load(io.BytesIO(data), file_type="glb", process=False)


def blender_import(path: Path) -> dict[str, Any]:
    """Import ``path`` with ``bpy.ops.import_scene.gltf`` in a fresh Python; return the summary."""
    proc = subprocess.run([sys.executable, str(TOOLS / "blender_import_glb.py"), str(path)],
                          capture_output=True, text=True, timeout=300)
    for line in proc.stdout.splitlines():
        if line.startswith("@@JSON@@"):
            return json.loads(line[len("@@JSON@@"):])
    raise AssertionError(f"Blender import failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
