"""Job preparation every backend gets: the content filter, then the learned cut-out.

:func:`with_preparation` wraps a backend when the options name a content filter or a matting
model (``content_filter``, ``content_filter_labels``, ``content_filter_threshold``,
``matting_model``); it runs in the worker, on the decoded images, before the backend sees the
job. A refused job fails with ``content_refused`` and one sentence; its images go no further
(nothing is stored for a failed job) and the refusal is logged with the label and score only.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from ..assets import Asset
from .base import JobContext, JobRequest, Pipeline, PipelineError

log = logging.getLogger(__name__)

OPTION_KEYS = ("matting_model", "content_filter", "content_filter_labels", "content_filter_threshold")
REFUSED_MESSAGE = "The server's content filter refused this image; the job was not run."


class PreparedPipeline:
    """A backend behind the content filter and the learned cut-out (the Pipeline protocol)."""

    def __init__(self, inner: Pipeline, matting: Any = None, content_filter: Any = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.matting = matting
        self.content_filter = content_filter

    def capabilities(self) -> dict[str, Any]:
        caps = dict(self.inner.capabilities())
        caps["content_filter"] = self.content_filter is not None
        caps["matting"] = self.matting is not None
        return caps

    def release_memory(self) -> None:
        self.inner.release_memory()

    def run(self, request: JobRequest, ctx: JobContext) -> Asset:
        if self.content_filter is not None and request.images:
            ctx.check_cancelled()
            refusal = self.content_filter.check(request.images)
            if refusal is not None:
                # Label and score only: the image itself is never logged or kept.
                log.warning("content filter refused a job: image %d scored %.3f for %r",
                            refusal.image_index + 1, refusal.score, refusal.label)
                request.images.clear()
                raise PipelineError(REFUSED_MESSAGE, code="content_refused")
        if self.matting is not None and request.images:
            ctx.check_cancelled()
            request = replace(request, images=[self.matting.cut_out(img) for img in request.images])
        return self.inner.run(request, ctx)


def split_options(options: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """(preparation options, the backend's own options)."""
    prep = {k: options[k] for k in OPTION_KEYS if options.get(k) is not None}
    rest = {k: v for k, v in options.items() if k not in OPTION_KEYS}
    return prep, rest


def build_preparation(prep: dict[str, object], device: str = "cpu") -> tuple[Any, Any]:
    """(matting model, content filter) the options configure, each None when not configured.

    A model or labels file that cannot be used raises ``PipelineError(code="bad_backend")`` with
    one sentence, so the server refuses to start rather than run jobs unfiltered.
    """
    matting = content_filter = None
    try:
        if prep.get("matting_model"):
            from ..imaging.matting import MattingModel

            matting = MattingModel(str(prep["matting_model"]), device=device)
        if prep.get("content_filter"):
            from ..imaging.content_filter import DEFAULT_THRESHOLD, ContentFilter

            if not prep.get("content_filter_labels"):
                raise ValueError("--content-filter needs --content-filter-labels FILE (the classes it refuses)")
            threshold = float(prep.get("content_filter_threshold") or DEFAULT_THRESHOLD)  # type: ignore[arg-type]
            content_filter = ContentFilter(str(prep["content_filter"]), str(prep["content_filter_labels"]),
                                           threshold, device=device)
        elif prep.get("content_filter_labels") or prep.get("content_filter_threshold") is not None:
            raise ValueError("--content-filter-labels and --content-filter-threshold need --content-filter MODEL.onnx")
    except ValueError as exc:
        raise PipelineError(str(exc), code="bad_backend") from None
    return matting, content_filter


def with_preparation(pipeline: Pipeline, prep: dict[str, object]) -> Pipeline:
    """``pipeline`` behind the configured preparation steps (itself when none is configured)."""
    if not prep:
        return pipeline
    matting, content_filter = build_preparation(prep, str(pipeline.capabilities().get("device", "cpu")))
    return PreparedPipeline(pipeline, matting, content_filter)


__all__ = ["OPTION_KEYS", "PreparedPipeline", "REFUSED_MESSAGE", "build_preparation", "split_options",
           "with_preparation"]
