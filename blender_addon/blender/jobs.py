"""Starting and finishing jobs: shared by the panel's timer, the operators and the blocking API."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import bpy

from ..client.connection import ServerConnection
from ..core import wording
from ..core.history import History, HistoryEntry
from ..core.naming import asset_name, new_job_id
from ..core.payload import (
    ResultPayload,
    load_payload,
    payload_from_result,
    save_payload,
    save_references,
)
from ..client.session import JobFailed, JobRequestSpec, JobSession, SessionView
from ..client.tracker import DONE
from ..core.views import views_setting
from ..protocol.errors import ERROR_CODES, Step1X3DError
from ..protocol.provenance import JOB_ID, SOURCE_IMAGES
from ..protocol.settings import JobSettings, SettingsError
from . import importer, material, retexture
from .preferences import Prefs, results_root, user_dir
from .references import InputError, References

GENERATE = "generate"
RETEXTURE = "retexture"
ADDED_UV_MAP = "added_uv_map"  # ActiveJob.extra: a UV map this job added (removed again if it fails)
REPLACE = "replace"  # ActiveJob.extra: regenerate -- the object whose mesh and material the result replaces
LOCATION = "location"  # ActiveJob.extra: variations -- where the result goes instead of the 3D cursor
BATCH = "batch"  # ActiveJob.extra: variations -- (batch id, index, size)


@dataclass
class ActiveJob:
    session: JobSession
    kind: str
    name: str  # asset name (generate) or target object name (retexture)
    image_names: list[str]
    settings: dict[str, Any]
    sent_mesh: dict[str, Any] | None = None
    uv_map: str = importer.UV_MAP
    extra: dict[str, Any] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return self.session.job_id


def connector(prefs: Prefs) -> Callable[[], ServerConnection]:
    """A factory so the socket is created when the session starts (and never at import time)."""

    def connect() -> ServerConnection:
        return ServerConnection(prefs.server_address, curve=prefs.curve(), offline_after_s=prefs.connect_timeout_s)

    return connect


def resolve_settings(
    base: dict[str, Any], overrides: dict[str, Any], *, randomize_seed: bool = False
) -> dict[str, Any]:
    """Merge and validate against the shared schema; a bad value becomes one sentence."""
    merged = {**base, **overrides}
    if randomize_seed:
        merged["seed"] = random.randint(0, 2**31 - 1)
    try:
        return JobSettings.from_wire(merged).to_wire()
    except SettingsError as exc:
        raise InputError(wording.sentence(str(exc))) from None


def _session(prefs: Prefs, spec: JobRequestSpec) -> JobSession:
    return JobSession(
        connector(prefs), spec.images, spec.settings, job_id=spec.job_id, image_names=spec.image_names, mesh=spec.mesh,
        address=prefs.server_address, address_hint=wording.ADDON_ADDRESS_HINT,
        no_answer_s=prefs.connect_timeout_s, lost_after_s=prefs.stall_timeout_s,
    )


def start_generate(
    refs: References, settings: dict[str, Any], prefs: Prefs, *, name: str = "", extra: dict[str, Any] | None = None
) -> ActiveJob:
    if settings.get("mode") == "texture":
        raise InputError("Texture-only jobs paint a selected mesh: use Retexture Selected.")
    settings = {**settings, **views_setting(refs.views)}
    spec = JobRequestSpec(new_job_id(), refs.images, settings, image_names=refs.names)
    job = ActiveJob(_session(prefs, spec), GENERATE, name or asset_name(refs.names[0]), refs.names, settings,
                    views=list(refs.views))
    job.extra.update(extra or {})
    job.session.start()
    return job


def start_retexture(
    context: bpy.types.Context, obj: bpy.types.Object | None, refs: References, settings: dict[str, Any], prefs: Prefs
) -> ActiveJob:
    target = retexture.check_target(obj)
    uv_map, added = retexture.ensure_uv_map(context, target)
    try:
        mesh = retexture.extract_mesh(context, target)
    except InputError:
        if added:
            retexture.remove_uv_map(target, uv_map)
        raise
    settings = {**settings, "mode": "texture", **views_setting(refs.views)}
    spec = JobRequestSpec(new_job_id(), refs.images, settings, image_names=refs.names, mesh=mesh)
    job = ActiveJob(_session(prefs, spec), RETEXTURE, target.name, refs.names, settings, sent_mesh=mesh, uv_map=uv_map,
                    views=list(refs.views))
    if added:
        job.extra[ADDED_UV_MAP] = uv_map
    job.session.start()
    return job


def rollback(job: ActiveJob) -> None:
    """A job that ends without a result leaves its object as it was: remove the UV map it added.

    Idempotent; called on failure, cancel, Ctrl+C and when the add-on is disabled mid-job.
    """
    added = job.extra.pop(ADDED_UV_MAP, None)
    if added and job.kind == RETEXTURE:
        retexture.remove_uv_map(bpy.data.objects.get(job.name), added)


def complete(context: bpy.types.Context, job: ActiveJob, prefs: Prefs) -> bpy.types.Object:
    """Turn a finished session into an object in the scene (or raise JobFailed); records the history."""
    view = job.session.view
    if view.state != DONE or job.session.result is None:
        rollback(job)
        record(job, view, None, prefs)
        raise JobFailed(view.message or "The job did not finish.", _failure_code(job, view))
    payload = payload_from_result(job.session.result)
    payload.provenance.setdefault(JOB_ID, job.job_id)  # a server older than finalize_asset left these out
    payload.provenance.setdefault(SOURCE_IMAGES, list(job.image_names))
    try:
        if job.kind == GENERATE and job.extra.get(REPLACE):
            obj = _replace(context, job, payload)
        elif job.kind == GENERATE:
            obj = importer.import_payload(_scene(context), payload, name=job.name, location=job.extra.get(LOCATION))
        else:
            obj = _apply_texture(job, payload)
    except Step1X3DError as exc:  # the import failed or the target object is gone: nothing was changed
        rollback(job)
        record(job, SessionView(state="failed", message=str(exc)), None, prefs)
        raise JobFailed(str(exc), exc.code) from None
    job.extra.pop(ADDED_UV_MAP, None)  # the new texture lives in that map now: keep it
    record(job, view, obj, prefs, payload)
    return obj


def _failure_code(job: ActiveJob, view: SessionView) -> str:
    """The code of a job that ended without a result: the client tracker's, else its state's
    ("cancelled", "offline"), else ``internal_error``."""
    tracker = getattr(job.session, "tracker", None)
    for code in (getattr(tracker, "error_code", ""), view.state):
        if code in ERROR_CODES:
            return str(code)
    return "internal_error"


def _replace(context: bpy.types.Context, job: ActiveJob, payload: ResultPayload) -> bpy.types.Object:
    target = bpy.data.objects.get(job.extra[REPLACE])  # by name: ID references do not survive undo
    if target is None or target.type != "MESH":
        raise InputError(f"The object '{job.extra[REPLACE]}' to regenerate is gone.")
    return importer.replace_in_place(_scene(context), target, payload)


def done_message(job: ActiveJob, obj: bpy.types.Object) -> str:
    """What the panel says after a success, with the server's notes (e.g. "re-unwrapped UVs")."""
    verb = "Regenerated" if job.extra.get(REPLACE) else "Imported" if job.kind == GENERATE else "Retextured"
    notes = " ".join(wording.sentence(n) for n in job.session.notes)
    return f"{verb} '{obj.name}'." + (f" {notes}" if notes else "")


def _apply_texture(job: ActiveJob, payload: ResultPayload) -> bpy.types.Object:
    obj = bpy.data.objects.get(job.name)  # resolved by name: ID references do not survive undo
    if obj is None or obj.type != "MESH":
        raise InputError(f"The object '{job.name}' to retexture is gone.")
    if job.sent_mesh is not None and not retexture.uvs_match(job.sent_mesh, payload.mesh):
        raise InputError(
            f"The server re-unwrapped '{job.name}' because its UV map was unusable; "
            "give it a UV map inside the 0-1 square (or none) and retry."
        )
    images: list[bpy.types.Image] = []
    try:
        mat = material.build_material(
            f"{job.name}_step1x3d", payload.textures, payload.material, uv_map=job.uv_map, created_images=images
        )
    except Exception as exc:
        for image in images:
            bpy.data.images.remove(image)
        raise Step1X3DError(f"Blender could not build the material: {exc}.", "import_failed") from None
    retexture.apply_material(obj, mat)
    importer.set_provenance(mat, payload.provenance, payload.timings)
    return obj


def record(
    job: ActiveJob, view: SessionView, obj: bpy.types.Object | None, prefs: Prefs, payload: ResultPayload | None = None
) -> HistoryEntry:
    """Append the job to the history (and keep its result for re-import when asked to)."""
    result_dir = ""
    save_error = ""
    reference_files: list[str] = []
    counts = (0, 0)
    if obj is not None and obj.type == "MESH":
        counts = importer.mesh_counts(obj.data)  # type: ignore[arg-type]
    if payload is not None and prefs.keep_results:
        folder = results_root(prefs) / job.job_id
        try:
            save_payload(payload, folder)
            result_dir = str(folder)
            reference_files = save_references(folder, job.views, job.image_names, list(job.session.request.images))
        except OSError as exc:  # a full disk must not undo a good import; say why re-import is missing
            save_error = wording.sentence(f"Not kept for re-import: {exc}")
    outcome = view.message if view.state != DONE else " ".join(job.session.notes)
    entry = HistoryEntry(
        job_id=job.job_id,
        name=obj.name if obj is not None else job.name,
        mode=str(job.settings.get("mode", "full")),
        state=view.state,
        message=" ".join(filter(None, [outcome, save_error])),
        images=list(job.image_names),
        settings=dict(job.settings),
        result_dir=result_dir,
        vertices=counts[0],
        faces=counts[1],
        backend=job.session.server.backend if job.session.server else "",
        views=list(job.views),
        reference_files=reference_files,
    )
    try:
        History(user_dir()).add(entry)
    except OSError:
        pass  # the history is a convenience; never fail an import over it
    return entry


def reimport(context: bpy.types.Context, entry: HistoryEntry) -> bpy.types.Object:
    if not entry.result_dir:
        raise JobFailed(f"The result of '{entry.name}' was not kept; run the job again.", "bad_input")
    try:
        payload = load_payload(Path(entry.result_dir))
    except (OSError, ValueError, KeyError):
        raise JobFailed(f"The stored result of '{entry.name}' is missing or damaged.", "bad_file") from None
    try:
        return importer.import_payload(_scene(context), payload, name=entry.name)
    except Step1X3DError as exc:
        raise JobFailed(str(exc), exc.code) from None


def _scene(context: bpy.types.Context) -> bpy.types.Scene:
    scene = context.scene
    if scene is None:
        raise JobFailed("There is no active scene to import into.", "bad_input")
    return scene
