"""Blocking Python API for scripts (``blender -b --python script.py``) and the Python console.

    from bl_ext.user_default.step1x3d import api      # installed extension
    obj = api.generate(["/refs/chair.png"], seed=7, max_faces=50_000)
    api.retexture(bpy.data.objects["Crate"], ["/refs/crate.png"])

Both calls drive the same non-blocking poll step as the panel (no threads),
sleeping inside libzmq's poll between steps, and return only once the object
is in the scene. Failures raise :class:`Step1X3DError` whose message is the
same one sentence the panel would show. Settings are the keyword names of
``blender_addon.protocol.settings.JobSettings`` (seed, steps, guidance,
max_faces, texture_size, lods, ...) plus ``options={...}``, the server's backend
options by name (its welcome lists them: ``options={"lora": "ink"}``); the older
keywords ``inflate_depth``, ``lora``, ``geometry_lora``, ... still work and go into
``options``. Server address and timeouts default to the add-on preferences.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

import bpy

from .client.session import SessionView, cancel_and_wait, wait
from .protocol.errors import Step1X3DError  # the project's one error type, public here: str(exc) is one sentence
from .protocol.settings import JobSettings

ProgressCallback = Callable[[SessionView], None]
ImageSource = str | os.PathLike[str] | bpy.types.Image
# A list in the order front, right, back, left, or named views {"front": ..., "back": ...}.
Images = Sequence[ImageSource] | Mapping[str, ImageSource]

__all__ = ["Step1X3DError", "SessionView", "generate", "retexture"]


def generate(
    images: Images,
    *,
    name: str = "",
    progress: ProgressCallback | None = None,
    address: str | None = None,
    timeout: float | None = None,
    context: bpy.types.Context | None = None,
    **settings: Any,
) -> bpy.types.Object:
    """Generate an asset from reference images and return the new object.

    ``images``: a list (front, right, back, left: the first is the front view) or named views,
    ``{"front": "chair.png", "right": "chair_right.png"}``.

    ``progress(view)`` is called whenever the state, stage or percentage changes;
    ``view.state``, ``view.stage``, ``view.fraction`` (0-1), ``view.eta_s`` and
    ``view.progress_text()`` describe the job. ``timeout`` cancels the job after
    that many seconds. ``mode`` may be "full" (default) or "geometry".
    """
    from .blender import jobs, references

    ctx = context or bpy.context
    prefs = _prefs(ctx, address)
    refs = _gather(images)
    job_settings = jobs.resolve_settings(JobSettings().to_wire(), settings)
    job = jobs.start_generate(refs, job_settings, prefs, name=name)
    return _finish(ctx, job, prefs, progress, timeout)


def retexture(
    obj: bpy.types.Object,
    images: Images,
    *,
    progress: ProgressCallback | None = None,
    address: str | None = None,
    timeout: float | None = None,
    context: bpy.types.Context | None = None,
    **settings: Any,
) -> bpy.types.Object:
    """Paint ``obj`` (its evaluated mesh, with modifiers) from the images; returns the same object.

    The object keeps its name, transform, modifiers and mesh; it gets a new
    material. A mesh without a UV map is given one (Smart UV Project) first.
    """
    from .blender import jobs, references

    ctx = context or bpy.context
    prefs = _prefs(ctx, address)
    refs = _gather(images)
    job_settings = jobs.resolve_settings(JobSettings().to_wire(), {**settings, "mode": "texture"})
    job = jobs.start_retexture(ctx, obj, refs, job_settings, prefs)
    return _finish(ctx, job, prefs, progress, timeout)


def _finish(
    ctx: bpy.types.Context, job: Any, prefs: Any, progress: ProgressCallback | None, timeout: float | None
) -> bpy.types.Object:
    from .blender import jobs

    try:
        wait(job.session, progress=progress, timeout_s=timeout)
        return jobs.complete(ctx, job, prefs)
    except jobs.JobFailed:
        raise  # a Step1X3DError with its code; the job is over, nothing to cancel
    except BaseException:  # Ctrl+C in the console: cancel on the server, never leave the socket open
        cancel_and_wait(job.session)
        jobs.rollback(job)
        raise
    finally:
        job.session.close()


def _prefs(ctx: bpy.types.Context, address: str | None) -> Any:
    from .blender.preferences import get_prefs

    prefs = get_prefs(ctx)
    return dataclasses.replace(prefs, server_address=address) if address else prefs


def _gather(images: Images) -> Any:
    """A list (front, right, back, left) or a mapping of named views (``{"front": ..., "right": ...}``)."""
    from .blender import references

    if isinstance(images, Mapping):
        return references.gather_views(images)
    return references.gather(_as_list(images))


def _as_list(images: Iterable[Any] | str | os.PathLike[str] | bpy.types.Image) -> list[Any]:
    if isinstance(images, (str, os.PathLike, bpy.types.Image)):
        return [images]  # a single image is a common slip; accept it
    return list(images)
