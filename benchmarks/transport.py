"""Transport benchmark: deliver a finished asset from server to client, ours vs two HTTP baselines.

Asset: a 1M-triangle mesh with UVs, normals and tangents plus three 2048x2048 PNG maps
(base colour, ORM, normal). Every side ships the same float32/uint32 arrays and the same
three maps; only the transport (and its container) differs.

- ours: the real job server (``step1x3d serve`` with this module's
  ``BigAssetPipeline``), ``fetch`` -> ``result``: a msgpack header plus raw
  frames read from the results file, decoded by ``ServerConnection`` into
  numpy views and PNG bytes.
- HTTP + GLB: one GET answered with the GLB bytes as ``application/octet-stream``
  (how the Hunyuan3D-2 Blender add-on receives its result), the GLB written by our
  exporter from the same asset; the client parses the GLB into numpy views and PNG bytes.
  The strong baseline: a plain binary body, no text encoding.
- HTTP + JSON + base64: one JSON document with every array and PNG base64-encoded
  (how several other image-to-3D add-ons talk to their servers), decoded back to numpy
  arrays and PNG bytes.

Both HTTP baselines are served by stdlib ``http.server`` in a child process (as our server
is), with their bodies built once up front: no per-request encoding on the server. The
three sides are timed interleaved (ours, GLB, JSON, ours, GLB, JSON, ...) after one
warm-up each, so a change in machine load hits all of them alike; the ratios are the
medians of the per-round ratios. Every side's delivery is checked: the arrays it decoded
equal the arrays that were sent, and its PNG maps decode to the maps that were sent.

Run: ``python benchmarks/transport.py [--rounds 7]``. Prints the times and both ratios.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
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
ARRAYS = ("positions", "faces", "uvs", "normals", "tangents")


def big_mesh(triangles: int = TRIANGLES) -> MeshData:
    """A wavy grid with ``triangles`` faces (two per quad), UVs, normals and tangents."""
    side = int(np.ceil(np.sqrt(triangles / 2)))
    u, v = np.meshgrid(np.linspace(0, 1, side + 1, dtype=np.float32), np.linspace(0, 1, side + 1, dtype=np.float32))
    height = 0.05 * np.sin(u * 40) * np.cos(v * 40)
    positions = np.stack([u * 2 - 1, height, v * 2 - 1], axis=-1).reshape(-1, 3).astype(np.float32)
    idx = np.arange((side + 1) ** 2, dtype=np.uint32).reshape(side + 1, side + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])[:triangles]
    normals = np.zeros_like(positions)
    normals[:, 1] = 1.0
    tangents = np.zeros((len(positions), 4), np.float32)
    tangents[:, 0] = tangents[:, 3] = 1.0  # +X along u, right-handed: what the exporter keeps as is
    uvs = np.stack([u, v], axis=-1).reshape(-1, 2).astype(np.float32)
    return MeshData(positions=positions, faces=np.ascontiguousarray(faces), uvs=uvs, normals=normals,
                    tangents=tangents)


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


def big_asset() -> Asset:
    maps = texture_maps()
    return Asset(
        mesh=big_mesh(),
        material=PBRMaterial(base_color=maps["base_color"], orm=maps["orm"], normal=maps["normal"]),
        provenance={"backend": "transport-benchmark"},
    )


class BigAssetPipeline:
    """Benchmark backend: returns the big asset (built once per worker)."""

    name = "transport-benchmark"

    def __init__(self, **_options: Any) -> None:
        self.asset = big_asset()

    def capabilities(self) -> dict[str, Any]:
        return {"modes": ["full"], "pbr": True, "device": "cpu"}

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        ctx.progress("done", 1, 1)
        return self.asset

    def release_memory(self) -> None:
        pass


# A delivery: what the client holds afterwards, decoded arrays (by ARRAYS name) and PNG bytes by map name.
Delivery = tuple[dict[str, np.ndarray], dict[str, bytes]]


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


def fetch_ours(conn: ServerConnection) -> Delivery:
    conn.fetch("bench")
    result: Result = wait_for(conn, Result, 120)
    return {k: result.mesh[k] for k in ARRAYS}, dict(result.textures)


# ----------------------------------------------------------------------------- HTTP baselines


def json_body(asset: Asset, pngs: dict[str, bytes]) -> bytes:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    mesh = {key: getattr(asset.mesh, key) for key in ARRAYS}
    doc = {
        "mesh": {key: {"dtype": str(arr.dtype), "shape": list(arr.shape), "data": b64(arr.tobytes())}
                 for key, arr in mesh.items()},
        "textures": {name: b64(data) for name, data in pngs.items()},
    }
    return json.dumps(doc).encode("utf-8")


def fetch_json(url: str) -> Delivery:
    with urllib.request.urlopen(url) as response:
        doc = json.loads(response.read())
    mesh = {
        key: np.frombuffer(base64.b64decode(entry["data"]), dtype=entry["dtype"]).reshape(entry["shape"])
        for key, entry in doc["mesh"].items()
    }
    return mesh, {name: base64.b64decode(data) for name, data in doc["textures"].items()}


_GLTF_DTYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16}
_GLTF_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
_GLTF_ATTRIBUTES = {"POSITION": "positions", "TEXCOORD_0": "uvs", "NORMAL": "normals", "TANGENT": "tangents"}


def parse_glb(data: bytes) -> Delivery:
    """GLB bytes -> numpy views of the first primitive and the material's PNG bytes (as a client would)."""
    (json_len,) = struct.unpack_from("<I", data, 12)
    gltf = json.loads(data[20 : 20 + json_len])
    binary = memoryview(data)[20 + json_len + 8 :]

    def view(index: int) -> memoryview:
        bv = gltf["bufferViews"][index]
        start = bv.get("byteOffset", 0)
        return binary[start : start + bv["byteLength"]]

    def accessor(index: int) -> np.ndarray:
        acc = gltf["accessors"][index]
        width = _GLTF_WIDTH[acc["type"]]
        arr = np.frombuffer(view(acc["bufferView"]), _GLTF_DTYPES[acc["componentType"]], acc["count"] * width,
                            acc.get("byteOffset", 0))
        return arr.reshape(acc["count"], width) if width > 1 else arr

    prim = gltf["meshes"][0]["primitives"][0]
    mesh = {name: accessor(prim["attributes"][attr]) for attr, name in _GLTF_ATTRIBUTES.items()}
    # Small meshes get uint16 indices in a GLB; a client widens them (the 1M-face asset is uint32 already).
    mesh["faces"] = accessor(prim["indices"]).reshape(-1, 3).astype(np.uint32, copy=False)
    material = gltf["materials"][0]
    slots = {"base_color": material["pbrMetallicRoughness"]["baseColorTexture"],
             "orm": material["pbrMetallicRoughness"]["metallicRoughnessTexture"],
             "normal": material["normalTexture"]}
    pngs = {name: bytes(view(gltf["images"][gltf["textures"][slot["index"]]["source"]]["bufferView"]))
            for name, slot in slots.items()}
    return mesh, pngs


def fetch_glb(url: str) -> Delivery:
    with urllib.request.urlopen(url) as response:
        if response.headers.get("Content-Type") != "application/octet-stream":
            raise RuntimeError("the GLB baseline must answer application/octet-stream")
        return parse_glb(response.read())


def http_child(folder: str) -> None:
    """Child process: serve ``folder``/body.json and body.glb from memory, print the port."""
    bodies = {"/json": ((Path(folder) / "body.json").read_bytes(), "application/json"),
              "/glb": ((Path(folder) / "body.glb").read_bytes(), "application/octet-stream")}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body, kind = bodies[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def start_http(folder: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--http-child", str(folder)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    if not port.isdigit():
        proc.kill()
        raise RuntimeError("the HTTP baseline server did not start")
    return proc, f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- checks and timing


def check(delivery: Delivery, asset: Asset, maps: dict[str, np.ndarray], first: dict[str, bytes] | None,
          side: str) -> None:
    """The client holds exactly what was sent: every array bit for bit, every map pixel for pixel.

    ``first``: this side's PNG bytes from its checked first delivery (None: this is it, decode and compare
    the pixels; afterwards comparing bytes is enough and keeps the check cheap).
    """
    mesh, pngs = delivery
    for key in ARRAYS:
        sent = np.asarray(getattr(asset.mesh, key))
        got = mesh[key]
        if got.dtype != sent.dtype or got.shape != sent.shape or not np.array_equal(got, sent):
            raise AssertionError(f"{side}: {key} differs from what was sent")
    if set(pngs) != set(maps):
        raise AssertionError(f"{side}: maps {sorted(pngs)} instead of {sorted(maps)}")
    for name, data in pngs.items():
        if first is None:
            if not np.array_equal(np.asarray(Image.open(io.BytesIO(data))), maps[name]):
                raise AssertionError(f"{side}: map {name} does not decode to the map that was sent")
        elif data != first[name]:
            raise AssertionError(f"{side}: map {name} bytes differ from its first delivery's")


def timed(fn: Callable[[], Delivery]) -> tuple[float, Delivery]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (ours, GLB, JSON) after one warm-up")
    parser.add_argument("--http-child", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.http_child:
        http_child(args.http_child)
        return 0

    from inference_server.export.glb import asset_to_glb

    asset = big_asset()  # the same arrays and maps the server's worker builds
    assert asset.material is not None
    maps: dict[str, np.ndarray] = {name: getattr(asset.material, name) for name in ("base_color", "orm", "normal")}
    with tempfile.TemporaryDirectory() as tmp:
        results, bodies = Path(tmp) / "results", Path(tmp) / "bodies"
        results.mkdir()
        bodies.mkdir()
        proc, address = start_server(results)
        http_proc = None
        try:
            png = io.BytesIO()
            Image.new("RGB", (8, 8)).save(png, format="PNG")
            with ServerConnection(address) as conn:
                conn.submit("bench", [png.getvalue()], {})
                wait_for(conn, ResultReady, 600)
                pngs_sent = fetch_ours(conn)[1]  # the server's PNGs: what the JSON side sends too
                (bodies / "body.json").write_bytes(json_body(asset, pngs_sent))
                (bodies / "body.glb").write_bytes(asset_to_glb(asset, xmp=False))
                http_proc, base = start_http(bodies)
                sides: dict[str, Callable[[], Delivery]] = {
                    "ours": lambda: fetch_ours(conn),
                    "glb": lambda: fetch_glb(f"{base}/glb"),
                    "json": lambda: fetch_json(f"{base}/json"),
                }
                times: dict[str, list[float]] = {name: [] for name in sides}
                firsts: dict[str, dict[str, bytes]] = {}
                for round_ in range(args.rounds + 1):
                    for name, fn in sides.items():  # interleaved: ours, GLB, JSON, ours, GLB, JSON, ...
                        seconds, delivery = timed(fn)
                        check(delivery, asset, maps, firsts.get(name), name)  # outside the timing
                        firsts.setdefault(name, delivery[1])
                        if round_:  # round 0 is the warm-up (page cache, socket buffers, imports)
                            times[name].append(seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if http_proc is not None:
                http_proc.terminate()
                http_proc.wait(timeout=30)
        sizes = {"ours": sum(getattr(asset.mesh, k).nbytes for k in ARRAYS) + sum(map(len, pngs_sent.values())),
                 "glb": (bodies / "body.glb").stat().st_size, "json": (bodies / "body.json").stat().st_size}

    labels = {"ours": "ZeroMQ + msgpack header + raw frames", "glb": "HTTP + GLB (octet-stream body)",
              "json": "HTTP + JSON + base64"}
    faces = asset.mesh.faces.shape[0]
    load = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f} (1 / 5 / 15 min) at the end")
    print(f"asset: {faces:,} triangles, {asset.mesh.vertex_count:,} vertices (positions, faces, UVs, normals, "
          f"tangents); PNG maps: " + ", ".join(f"{k} {len(v) / 1e6:.1f} MB" for k, v in pngs_sent.items()))
    print("payload: " + ", ".join(f"{labels[k]} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    print(f"{args.rounds} interleaved rounds after one warm-up, server -> decoded arrays + PNG bytes in the client; "
          "every delivery checked equal to what was sent:")
    print(f"  {'transport':<38}{'median s':>10}{'min s':>10}{'time / ours':>13}")
    for name, label in labels.items():
        ratios = [t / o for t, o in zip(times[name], times["ours"], strict=True)]
        ratio = "-" if name == "ours" else f"{statistics.median(ratios):.1f}x"
        print(f"  {label:<38}{statistics.median(times[name]):>10.3f}{min(times[name]):>10.3f}{ratio:>13}")
    print("  time / ours: median over the rounds of (that side's time / ours in the same round); "
          "below 1: faster than ours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
