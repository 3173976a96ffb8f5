"""One job from its queued request to the fields and parts of its ``result`` message.

Shared by the local worker process (``worker.py``) and the Ray Serve replicas
(``inference_server.scale``), so a job's result is the same whichever engine ran it.
Writing the result (``ResultStore.stage``) and reporting the outcome stay with the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from blender_addon.protocol.codec import PartValue

from ..assets import Asset
from ..pipeline.base import JobContext, JobRequest
from .intake import QueuedRequest
from .result_codec import asset_to_result

RunFn = Callable[[JobRequest, JobContext], Asset]


def glb_bytes(asset: Asset, notes: list[str]) -> bytes | None:
    try:
        from ..export import asset_to_glb  # optional: the export package may be missing in slim installs
    except ImportError:
        notes.append("GLB export is not available on this server; use the mesh arrays.")
        return None
    return bytes(asset_to_glb(asset))


def produce_result(
    run: RunFn, backend: str, queued: QueuedRequest, job_id: str, want_glb: bool, ctx: JobContext
) -> tuple[dict[str, Any], list[tuple[str, PartValue]]]:
    """Decode the images, run the pipeline, fill in timings and provenance, encode the asset.

    Raises what the pipeline raises (``JobCancelled``, ``PipelineError``, anything else).
    """
    started = time.perf_counter()
    # Decoded here, not on the server's event loop: a bad image fails this job (ImageError is a
    # PipelineError with code "bad_image"), and a big one stalls no other client.
    request = queued.decode()
    queued.images = []  # the decoded arrays replace the encoded files
    ctx.check_cancelled()
    decode_s = time.perf_counter() - started
    asset = run(request, ctx)
    ctx.check_cancelled()
    asset.timings.setdefault("decode_images", decode_s)
    asset.timings.setdefault("total", time.perf_counter() - started)
    asset.provenance.setdefault("backend", backend)
    asset.provenance.setdefault("job_id", job_id)
    asset.provenance.setdefault("settings", request.settings.to_wire())
    asset.provenance.setdefault("ai_generated", True)
    encode_started = time.perf_counter()
    glb = glb_bytes(asset, asset.notes) if want_glb else None
    fields, parts = asset_to_result(asset, job_id, glb=glb)
    fields["timings"]["encode"] = time.perf_counter() - encode_started
    return fields, parts


__all__ = ["RunFn", "glb_bytes", "produce_result"]
