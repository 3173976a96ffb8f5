"""Transport benchmark: deliver a finished asset from server to client, ours vs HTTP + JSON + base64.

Asset: a 1M-triangle mesh with UVs and normals plus three 2048x2048 PNG maps
(base colour, ORM, normal). Both sides ship the same PNG bytes and the same
float32/uint32 arrays; only the transport differs.

- ours: the real job server (``step1x3d serve`` with this module's
  ``BigAssetPipeline``), ``fetch`` -> ``result``: a msgpack header plus raw
  frames read from the results file, decoded by ``ServerConnection`` into
  numpy views and PNG bytes.
- baseline: stdlib ``http.server`` on loopback returning one JSON document
  with every array and PNG base64-encoded (how other image-to-3D Blender
  add-ons talk to their servers), fetched with ``urllib`` and decoded back to
  numpy arrays and PNG bytes. Its JSON body is built once up front, so the
  baseline is timed at its best: no per-request encoding on the server.

Run: ``python benchmarks/transport.py [--repeats 7]``. Prints both times and the ratio.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from blender_addon.client import Result, ResultReady, ServerConnection  # noqa: E402
from inference_server.assets import Asset, MeshData, PBRMaterial  # noqa: E402
from inference_server.pipeline.base import JobContext, JobRequest  # noqa: E402

TRIANGLES = 1_000_000
MAP_SIZE = 2048


def big_mesh(triangles: int = TRIANGLES) -> MeshData:
    """A wavy grid with ``triangles`` faces (two per quad), UVs and normals."""
    side = int(np.ceil(np.sqrt(triangles / 2)))
    u, v = np.meshgrid(np.linspace(0, 1, side + 1, dtype=np.float32), np.linspace(0, 1, side + 1, dtype=np.float32))
    height = 0.05 * np.sin(u * 40) * np.cos(v * 40)
    positions = np.stack([u * 2 - 1, height, v * 2 - 1], axis=-1).reshape(-1, 3).astype(np.float32)
    idx = np.arange((side + 1) ** 2, dtype=np.uint32).reshape(side + 1, side + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])[:triangles]
    normals = np.zeros_like(positions)
    normals[:, 1] = 1.0
    uvs = np.stack([u, v], axis=-1).reshape(-1, 2).astype(np.float32)
    return MeshData(positions=positions, faces=np.ascontiguousarray(faces), uvs=uvs, normals=normals)


def texture_maps(size: int = MAP_SIZE) -> dict[str, np.ndarray]:
    """Maps that compress like real ones: smooth structure plus a little grain."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    grain = rng.integers(0, 12, (size, size), dtype=np.uint8)
    base = np.stack([(np.sin(x * 30) * 60 + 120), (np.cos(y * 25) * 50 + 110), (x * 80 + y * 60)], -1)
    orm = np.stack([np.full_like(x, 250), 140 + 60 * np.sin(x * 12 + y * 7), np.zeros_like(x)], -1)
    normal = np.stack([128 + 30 * np.sin(x * 50), 128 + 30 * np.cos(y * 50), np.full_like(x, 240)], -1)
    return {
        name: np.clip(arr + grain[..., None], 0, 255).astype(np.uint8)
        for name, arr in (("base_color", base), ("orm", orm), ("normal", normal))
    }


class BigAssetPipeline:
    """Benchmark backend: returns the big asset (built once per worker)."""

    name = "transport-benchmark"

    def __init__(self, **_options: Any) -> None:
        maps = texture_maps()
        self.asset = Asset(
            mesh=big_mesh(),
            material=PBRMaterial(base_color=maps["base_color"], orm=maps["orm"], normal=maps["normal"]),
        )

    def capabilities(self) -> dict[str, Any]:
        return {"modes": ["full"], "pbr": True, "device": "cpu"}

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        ctx.progress("done", 1, 1)
        return self.asset

    def release_memory(self) -> None:
        pass


# ----------------------------------------------------------------------------- ours


def start_server(results: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "inference_server.cli", "serve", "--port", "0", "--results-dir", str(results),
         "--backend", "benchmarks.transport:BigAssetPipeline", "--log-level", "WARNING"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError("the server did not start")
    return proc, line.split()[-1]


def wait_for(conn: ServerConnection, kind: type, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in conn.poll(100):
            if isinstance(event, kind):
                return event
    raise TimeoutError(f"no {kind.__name__} within {timeout_s} s")


def time_ours(address: str, repeats: int) -> tuple[list[float], int, Result]:
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    with ServerConnection(address) as conn:
        conn.submit("bench", [png.getvalue()], {})
        wait_for(conn, ResultReady, 600)
        times = []
        result = None
        for i in range(repeats + 1):
            start = time.perf_counter()
            conn.fetch("bench")
            result = wait_for(conn, Result, 120)
            if i:  # the first delivery is a warm-up (page cache, socket buffers), as for the baseline
                times.append(time.perf_counter() - start)
        assert result is not None
        size = sum(a.nbytes for a in result.mesh.values() if isinstance(a, np.ndarray))
        size += sum(len(b) for b in result.textures.values())
        return times, size, result


# ----------------------------------------------------------------------------- baseline


def json_body(result: Result) -> bytes:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    doc = {
        "mesh": {
            key: {"dtype": str(arr.dtype), "shape": list(arr.shape), "data": b64(arr.tobytes())}
            for key, arr in result.mesh.items()
            if isinstance(arr, np.ndarray)
        },
        "textures": {name: b64(data) for name, data in result.textures.items()},
        "material": result.material,
    }
    return json.dumps(doc).encode("utf-8")


def serve_http(body: bytes) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/result"


def fetch_http(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url) as response:
        doc = json.loads(response.read())
    mesh = {
        key: np.frombuffer(base64.b64decode(entry["data"]), dtype=entry["dtype"]).reshape(entry["shape"])
        for key, entry in doc["mesh"].items()
    }
    textures = {name: base64.b64decode(data) for name, data in doc["textures"].items()}
    return {"mesh": mesh, "textures": textures}


def time_http(body: bytes, repeats: int, reference: Result) -> list[float]:
    server, url = serve_http(body)
    try:
        times = []
        for i in range(repeats + 1):
            start = time.perf_counter()
            got = fetch_http(url)
            if i:
                times.append(time.perf_counter() - start)
        np.testing.assert_array_equal(got["mesh"]["faces"], reference.mesh["faces"])
        assert got["textures"] == reference.textures
        return times
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed deliveries after one warm-up each")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        proc, address = start_server(Path(tmp))
        try:
            ours, size, result = time_ours(address, args.repeats)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    body = json_body(result)
    baseline = time_http(body, args.repeats, result)
    faces = result.mesh["faces"].shape[0]
    maps = ", ".join(f"{k} {len(v) / 1e6:.1f} MB" for k, v in result.textures.items())
    ours_s, http_s = statistics.median(ours), statistics.median(baseline)
    print(f"asset: {faces:,} triangles, {result.mesh['positions'].shape[0]:,} vertices; PNG maps: {maps}")
    print(f"payload: {size / 1e6:.1f} MB raw (ours) vs {len(body) / 1e6:.1f} MB JSON (baseline)")
    print(f"median of {args.repeats} deliveries after one warm-up, server -> decoded arrays + PNG bytes in the client:")
    print(f"  {'transport':<36}{'median s':>10}{'min s':>10}")
    print(f"  {'ZeroMQ + msgpack header + raw frames':<36}{ours_s:>10.3f}{min(ours):>10.3f}")
    print(f"  {'HTTP + JSON + base64 (stdlib)':<36}{http_s:>10.3f}{min(baseline):>10.3f}")
    print(f"  ratio (HTTP / ours): {http_s / ours_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
