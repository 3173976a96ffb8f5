"""The one error type of the project and the one registry of its codes.

Every failure that reaches an artist, a pipeline engineer or the wire is a
:class:`Step1X3DError` (or a thin subclass kept only where a caller must catch one
family) carrying a ``code`` from :data:`ERROR_CODES`. The server sends the code in
``error``/``rejected``/``state`` messages; the client raises it back as the same
type, so a code means one thing end to end. Pure Python: no bpy, no numpy.
"""

from __future__ import annotations

from typing import ClassVar

ERROR_CODES: dict[str, str] = {
    "version_mismatch": "the client speaks another major protocol version",
    "bad_message": "the message could not be decoded or has missing/ill-typed fields",
    "unknown_type": "the message type is not one the server handles",
    "too_large": "a limit advertised in welcome was exceeded",
    "bad_job_id": "job ids are 1-64 characters of letters, digits, '-', '_' and '.'",
    "bad_settings": "a job setting is unknown or out of range",
    "bad_image": "an input image is not a readable PNG/JPEG/WebP within the pixel limit",
    "bad_mesh": "the mesh sent for a texture-only job is malformed",
    "unsupported": "the active backend cannot do what the job asks (e.g. its mode)",
    "busy": "the job queue is full; retry after retry_after_s",
    "shutting_down": "the server is stopping and accepts no new jobs",
    "job_id_conflict": "the job id is already used by a different job",
    "unknown_job": "no such job (never submitted, closed, or lost in a restart)",
    "not_ready": "the job has no result to fetch (yet)",
    "cancelled": "the job was cancelled",
    "expired": "the result was kept longer than the server's retention time and deleted",
    "worker_crashed": "the worker process died while running the job",
    "out_of_memory": "the job ran out of (GPU) memory",
    "server_stopped": "the server stopped before the job could finish",
    "internal_error": "an unexpected error inside the server (see its log)",
    "disk_full": "the server's results folder has too little free space; retry once space is freed",
    # Raised by the client itself, from the socket monitor (the server never says them):
    "auth_refused": "the CURVE handshake was refused: this client's key is not on the server's allow-list",
    "handshake_failed": "the connection's handshake did not complete (wrong server key, or encryption on one side only)",
    "offline": "no server answers at the address (or it stopped answering)",
    "timeout": "the job did not finish within the client's time limit",
    # Codes raised by pipelines (PipelineError.code) are passed through unchanged:
    "pipeline_error": "the backend failed",
    "weights_missing": "the backend needs model weights that are not configured",
    "not_installed": "the backend needs optional packages that are not installed",
    "bad_backend": "the backend name could not be resolved",
    "not_implemented": "the backend does not implement this feature",
    "content_refused": "the server's content filter refused an input image; nothing of the job was kept",
    "bad_request": "the job is incomplete or contradicts itself (e.g. no front view, an unknown model variant)",
    "weights_invalid": "a weights or config file cannot be read or is not what it claims to be",
    "weights_mismatch": "the weights do not match the model their config describes (names or shapes)",
    # Raised on the artist's or operator's machine (CLI, add-on, exporters), never by the server:
    "usage": "the command line is wrong (an option, a missing or contradictory argument); nothing ran",
    "startup_failed": "the server could not start (port in use, bad key or config, the backend failed to load)",
    "bad_file": "an input file (image, mesh, result to convert) cannot be read",
    "bad_input": "an input the artist gave in Blender (image, view, object) cannot be used; nothing was sent",
    "bad_config": "a configuration file (Ray Serve config, fine-tuning config) cannot be used",
    "export_failed": "the asset could not be written in the requested format",
    "import_failed": "Blender could not build the asset from the result; the scene is unchanged",
    "fetch_failed": "downloading model weights failed",
    "training_failed": "a fine-tuning run stopped (a rank failed or was interrupted); its checkpoint resumes it",
}

# Codes whose cause is expected to pass: a client may try the same job again later.
RETRYABLE_CODES: frozenset[str] = frozenset(
    {"busy", "shutting_down", "worker_crashed", "out_of_memory", "server_stopped", "disk_full"}
)


class Step1X3DError(Exception):
    """A failure told as one sentence, with a ``code`` from :data:`ERROR_CODES`.

    ``code`` defaults to the class's ``default_code`` (a thin subclass names its family's code there);
    ``retryable`` defaults from :data:`RETRYABLE_CODES`; ``job_id`` names the job
    the failure belongs to, when there is one.
    """

    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        *,
        retryable: bool | None = None,
        job_id: str | None = None,
    ) -> None:
        code = self.default_code if code is None else code
        if code not in ERROR_CODES:  # a code outside the registry is a programming error, caught by the tests
            raise ValueError(f"error code {code!r} is not in ERROR_CODES (blender_addon/protocol/errors.py)")
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = code in RETRYABLE_CODES if retryable is None else retryable
        self.job_id = job_id


__all__ = ["ERROR_CODES", "RETRYABLE_CODES", "Step1X3DError"]
