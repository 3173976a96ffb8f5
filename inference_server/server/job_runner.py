"""One job from its queued request to its finished asset, and to its typed ``result`` message.

Shared by the local worker process (``worker.py``), the Ray Serve replicas
(``inference_server.scale``) and ``step1x3d generate`` without a server
(``cli/generate.py``), so a job's result and provenance are the same whichever path ran it.
Writing the result (``ResultStore.stage``) and reporting the outcome stay with the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from blender_addon.protocol import provenance as prov
from blender_addon.protocol.result import Result

from ..assets import Asset
from ..export.glb import asset_to_glb
from ..pipeline.base import JobContext, JobRequest
from ..pipeline.stages import provenance
from ..result_asset import asset_to_result
from .intake import QueuedRequest

RunFn = Callable[[JobRequest, JobContext], Asset]


def finalize_asset(asset: Asset, request: JobRequest, *, backend: str, job_id: str, decode_s: float,
                   total_s: float) -> Asset:
    """Fill in what every result records, whichever path made it: the common provenance keys
    (``protocol/provenance.py``) and the ``decode_images``/``total`` timings.

    Keys the backend set itself win; ``job_id`` is always this run's.
    """
    asset.timings.setdefault("decode_images", decode_s)
    asset.timings.setdefault("total", total_s)
    common = provenance(backend, request.settings, request.image_names)
    asset.provenance = {**common, **asset.provenance, prov.JOB_ID: job_id, prov.AI_GENERATED: True}
    return asset


def run_to_asset(run: RunFn, backend: str, queued: QueuedRequest, job_id: str, ctx: JobContext) -> Asset:
    """Decode the images, run the pipeline, finalize the asset.

    Raises what the pipeline raises (``JobCancelled``, ``Step1X3DError``, anything else).
    """
    started = time.perf_counter()
    # Decoded here, not on the server's event loop: a bad image fails this job (code "bad_image"),
    # and a big one stalls no other client.
    request = queued.decode()
    queued.images = []  # the decoded arrays replace the encoded files
    ctx.check_cancelled()
    decode_s = time.perf_counter() - started
    asset = run(request, ctx)
    ctx.check_cancelled()
    return finalize_asset(asset, request, backend=backend, job_id=job_id, decode_s=decode_s,
                          total_s=time.perf_counter() - started)


def produce_result(
    run: RunFn, backend: str, queued: QueuedRequest, job_id: str, want_glb: bool, ctx: JobContext
) -> Result:
    """:func:`run_to_asset`, then the asset as its ``result`` message (with the GLB when asked).

    The caller turns it into frames with the one codec (``codec.encode_message``).
    """
    asset = run_to_asset(run, backend, queued, job_id, ctx)
    encode_started = time.perf_counter()
    glb = bytes(asset_to_glb(asset)) if want_glb else None
    result = asset_to_result(asset, job_id, glb=glb)
    result.timings["encode"] = time.perf_counter() - encode_started  # PNG maps and GLB: after the asset's own
    return result


__all__ = ["RunFn", "finalize_asset", "produce_result", "run_to_asset"]
