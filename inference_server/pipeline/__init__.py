"""Backends (pipelines) and the contract they share with the job server."""

from .base import JobCancelled, JobContext, JobRequest, Pipeline, PipelineError

__all__ = ["JobCancelled", "JobContext", "JobRequest", "Pipeline", "PipelineError"]
