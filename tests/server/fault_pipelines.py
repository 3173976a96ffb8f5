"""Test-only backends that inject faults into the worker process (loaded with ``--backend tests.server.fault_pipelines:Name``).

The faults are injected here, in the test backend's own process, never through a
setting or an environment variable that production code would have to honour.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from inference_server.assets import Asset
from inference_server.pipeline.base import JobContext, JobRequest

from .pipelines import ScriptedPipeline, cube_asset


def fail_next_fsync_with_enospc() -> None:
    """Make the next ``os.fsync`` in this process fail as a full disk does: after the data was written."""
    original = os.fsync

    def fsync_on_a_full_disk(fd: Any) -> None:
        os.fsync = original  # type: ignore[assignment]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    os.fsync = fsync_on_a_full_disk  # type: ignore[assignment]


class DiskFullPipeline(ScriptedPipeline):
    """Produces a result whose write hits a full disk (the worker's result store fsyncs it)."""

    name = "test-disk-full"

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        ctx.progress("geometry", 1, 1, "")
        fail_next_fsync_with_enospc()
        return cube_asset(request, self.name)
