"""Test pipelines for the Ray engine, loaded by replicas as ``tests.scale.pipelines:Name``."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from inference_server.assets import Asset
from inference_server.pipeline.base import JobContext, JobRequest
from inference_server.pipeline.options import option_value
from tests.server.pipelines import BEHAVIOUR, ScriptedPipeline


class CrashOncePipeline(ScriptedPipeline):
    """Option ``behaviour="crash-once"``: the first such job kills its replica mid-job, a rerun succeeds.

    The marker lives in the folder named by the ``marker_dir`` option (shared by the replicas,
    which all run on this machine in the tests).
    """

    def __init__(self, marker_dir: str = "", **options: Any) -> None:
        super().__init__(**options)
        self.marker_dir = Path(marker_dir) if marker_dir else None

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        if option_value(request.settings, BEHAVIOUR) == "crash-once" and self.marker_dir is not None:
            marker = self.marker_dir / f"crashed-seed-{request.settings.seed}"
            ctx.progress("geometry", 1, 3, "")
            if not marker.exists():
                marker.write_text("1")
                os._exit(17)
            request.settings = replace(request.settings, options={**request.settings.options, BEHAVIOUR.name: "fast"})
        return super().run(request, ctx)
