"""Operators: what the panel's buttons and headless scripts call.

``generate`` and ``retexture`` start a job and return at once in the UI (the
timer follows it); in background mode (``blender -b``) or with ``wait=True``
they block, driving the same poll step, and import before returning, so a
script can use the object right after the call.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Literal

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..core import wording
from ..core.history import HistoryEntry
from ..core.naming import asset_name, new_job_id
from ..core.views import VIEW_DESCRIPTIONS, VIEW_ORDER, view_label
from ..client.session import cancel_and_wait, wait
from ..protocol.options import LEGACY_OPTION_DEFAULTS
from ..protocol.provenance import JOB_ID, property_name
from ..protocol.settings import TEXTURE_SIZES
from . import jobs, options_ui, properties, runtime
from .preferences import get_prefs
from .properties import MODE_ITEMS, state
from .references import InputError, References, gather, gather_panel, slot_filled

# Background Blender (scripts, the bpy module) has no event loop to fire timers, so job operators
# block there. Tests set this False to drive the panel's path: return at once, then poll_step.
BLOCK_IN_BACKGROUND = True

# What Blender accepts back from execute()/invoke().
Result = set[Literal["RUNNING_MODAL", "CANCELLED", "FINISHED", "PASS_THROUGH", "INTERFACE"]]

_SETTING_PROPS = ("seed", "steps", "guidance", "max_faces", "texture_size", "inflate_depth")


class STEP1X3D_PG_path(bpy.types.PropertyGroup):
    """One image for ``images=[{"name": ...}]`` in scripts: a file path or the name of a .blend image.

    Blender converts a list of dicts to a collection only when each has "name",
    so the built-in ``name`` carries the path (like ``OperatorFileListElement``).
    """


class _JobOperator:
    """Shared properties and the start/block logic of generate and retexture."""

    images: CollectionProperty(type=STEP1X3D_PG_path, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    seed: IntProperty(name="Seed", min=0, max=2**31 - 1, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    steps: IntProperty(name="Steps", min=1, max=200, default=50, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    guidance: FloatProperty(  # type: ignore[valid-type]
        name="Guidance", min=0.0, max=30.0, default=7.5, options={"SKIP_SAVE"}
    )
    max_faces: IntProperty(  # type: ignore[valid-type]
        name="Max Faces", min=1000, max=2_000_000, default=200_000, options={"SKIP_SAVE"}
    )
    texture_size: IntProperty(  # type: ignore[valid-type]
        name="Texture Size", min=min(TEXTURE_SIZES), max=max(TEXTURE_SIZES), default=2048, options={"SKIP_SAVE"}
    )
    inflate_depth: FloatProperty(  # type: ignore[valid-type]
        name="Inflate Depth", description="Weight-free backend: the inflate_depth option (shorthand kept for "
        "scripts)", min=0.05, max=2.0, default=0.5, options={"SKIP_SAVE"}
    )
    backend_options: StringProperty(  # type: ignore[valid-type]
        name="Backend Options", default="", options={"SKIP_SAVE"},
        description='The backend\'s options as JSON over the panel\'s, e.g. \'{"lora": "ink", "lora_scale": 0.8}\'',
    )
    lod_levels: IntProperty(name="LODs", min=1, max=4, default=1, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    wait: BoolProperty(  # type: ignore[valid-type]
        name="Wait", description="Block until the asset is in the scene (always on in background mode)",
        default=False, options={"SKIP_SAVE"},
    )
    timeout: FloatProperty(  # type: ignore[valid-type]
        name="Timeout", description="Blocking mode: cancel after this many seconds (0: no limit)",
        default=0.0, min=0.0, options={"SKIP_SAVE"},
    )

    def _references(self, context: bpy.types.Context) -> References:
        op: Any = self
        if len(op.images):
            return gather([item.name for item in op.images])
        return gather_panel(state(context))

    def _settings(self, context: bpy.types.Context, mode: str) -> dict[str, Any]:
        op: Any = self
        st = state(context)
        base = properties.job_settings(st, st.seed)
        overrides: dict[str, Any] = {"mode": mode}
        options = dict(base.get("options", {}))
        for name in _SETTING_PROPS:
            if op.properties.is_property_set(name):
                if name in LEGACY_OPTION_DEFAULTS:  # an older keyword: a backend option now
                    options[name] = getattr(op, name)
                else:
                    overrides[name] = getattr(op, name)
        options.update(json_options(op.backend_options))
        overrides["options"] = options
        if op.properties.is_property_set("lod_levels"):
            overrides["lods"] = [] if op.lod_levels <= 1 else [0.5**i for i in range(op.lod_levels)]
        randomize = st.randomize_seed and not op.properties.is_property_set("seed")
        settings = jobs.resolve_settings(base, overrides, randomize_seed=randomize)
        if randomize:
            st.seed = settings["seed"]  # show the seed that was used, so a good result can be repeated
        return settings

    def _run(self, context: bpy.types.Context, job: jobs.ActiveJob) -> Result:
        op: Any = self
        if not (op.wait or _blocking()):
            runtime.add_job(job, context)
            return {"FINISHED"}
        try:
            wait(job.session, timeout_s=op.timeout or None)
            obj = jobs.complete(context, job, get_prefs(context))
        except jobs.JobFailed as exc:
            return self._fail(context, str(exc))
        except Exception as exc:  # an add-on bug must still read as one sentence, not a traceback
            jobs.rollback(job)
            return self._fail(context, wording.sentence(f"The job failed unexpectedly: {exc}"))
        except BaseException:  # Ctrl+C in a script: cancel on the server before the socket goes
            cancel_and_wait(job.session)
            jobs.rollback(job)
            raise
        finally:
            job.session.close()
        state(context).last_object = obj.name
        runtime.report(context, jobs.done_message(job, obj), failed=False)
        return {"FINISHED"}

    def _fail(self, context: bpy.types.Context, message: str) -> Result:
        op: Any = self
        op.report({"ERROR"}, message)
        runtime.report(context, message, failed=True)
        return {"CANCELLED"}


def json_options(text: str) -> dict[str, Any]:
    """The ``backend_options`` keyword of the job operators: a JSON map ("" for none); InputError otherwise."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InputError('options must be a JSON map of option name to value, e.g. {"lora": "ink"}.')
    return value


def option_values(values: dict[str, Any]) -> dict[str, Any]:
    """A history entry's or preset's backend options, older top-level keys included."""
    legacy = {k: values[k] for k in LEGACY_OPTION_DEFAULTS if k in values}
    options = values.get("options")
    return {**legacy, **(options if isinstance(options, dict) else {})}


def _blocking() -> bool:
    return bool(bpy.app.background and BLOCK_IN_BACKGROUND)


def _busy() -> bool:
    return runtime.active_job() is not None


class STEP1X3D_OT_generate(_JobOperator, bpy.types.Operator):
    """Generate a 3D asset from the reference images"""

    bl_idname = "step1x3d.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER", "UNDO"}

    mode: EnumProperty(  # type: ignore[valid-type]
        name="Mode", items=[m for m in MODE_ITEMS if m[0] != "texture"], default="full", options={"SKIP_SAVE"}
    )
    name: StringProperty(  # type: ignore[valid-type]
        name="Name", description="Object name (default: the first image's file name)", options={"SKIP_SAVE"}
    )

    def execute(self, context: bpy.types.Context) -> Result:
        if _busy():
            return self._fail(context, "A job is already running; cancel it or wait for it to finish.")
        try:
            mode = self.mode if self.properties.is_property_set("mode") else state(context).mode
            if mode == "texture":  # the panel's "Texture Selected": same job, on the active object
                forwarded = {n: getattr(self, n) for n in (*_SETTING_PROPS, "lod_levels", "wait", "timeout",
                                                            "backend_options")
                             if self.properties.is_property_set(n)}
                images = [{"name": item.name} for item in self.images]
                return bpy.ops.step1x3d.retexture(  # type: ignore[attr-defined]
                    "EXEC_DEFAULT", images=images, **forwarded
                )
            refs = self._references(context)
            job = jobs.start_generate(refs, self._settings(context, mode), get_prefs(context), name=self.name)
        except InputError as exc:
            return self._fail(context, str(exc))
        return self._run(context, job)


class STEP1X3D_OT_retexture(_JobOperator, bpy.types.Operator):
    """Paint the selected mesh from the reference images (keeps its transform, modifiers and name)"""

    bl_idname = "step1x3d.retexture"
    bl_label = "Retexture Selected"
    bl_options = {"REGISTER", "UNDO"}

    object_name: StringProperty(  # type: ignore[valid-type]
        name="Object", description="Object to retexture (default: the active object)", options={"SKIP_SAVE"}
    )

    def execute(self, context: bpy.types.Context) -> Result:
        if _busy():
            return self._fail(context, "A job is already running; cancel it or wait for it to finish.")
        obj = bpy.data.objects.get(self.object_name) if self.object_name else context.active_object
        if self.object_name and obj is None:
            return self._fail(context, f"There is no object named '{self.object_name}'.")
        try:
            refs = self._references(context)
            job = jobs.start_retexture(context, obj, refs, self._settings(context, "texture"), get_prefs(context))
        except InputError as exc:
            return self._fail(context, str(exc))
        return self._run(context, job)


class STEP1X3D_OT_regenerate(_JobOperator, bpy.types.Operator):
    """Run the selected result's job again with a new seed: same references and settings; the result
    replaces it in place (name, transform, parent and modifiers stay)"""

    bl_idname = "step1x3d.regenerate"
    bl_label = "Regenerate"
    bl_options = {"REGISTER", "UNDO"}

    object_name: StringProperty(  # type: ignore[valid-type]
        name="Object", description="Result to regenerate (default: the active object)", options={"SKIP_SAVE"}
    )

    def execute(self, context: bpy.types.Context) -> Result:
        if _busy():
            return self._fail(context, "A job is already running; cancel it or wait for it to finish.")
        obj = bpy.data.objects.get(self.object_name) if self.object_name else context.active_object
        try:
            entry = history_entry_of(obj)
            refs = gather(entry.reference_files)
            refs.names = list(entry.images) or refs.names
            settings = dict(entry.settings)
            if self.properties.is_property_set("seed"):
                settings["seed"] = self.seed
            settings = jobs.resolve_settings(settings, {}, randomize_seed=not self.properties.is_property_set("seed"))
            assert obj is not None  # history_entry_of raised otherwise
            job = jobs.start_generate(refs, settings, get_prefs(context), name=obj.name,
                                      extra={jobs.REPLACE: obj.name})
        except InputError as exc:
            return self._fail(context, str(exc))
        return self._run(context, job)


def history_entry_of(obj: bpy.types.Object | None) -> HistoryEntry:
    """The history entry of a generated result, with its references kept; InputError otherwise."""
    if obj is None or obj.type != "MESH":
        raise InputError("Select a Step1X-3D result to regenerate.")
    job_id = obj.get(property_name(JOB_ID))
    if not job_id:
        raise InputError(f"'{obj.name}' is not a Step1X-3D result; generate one, or use Retexture Selected.")
    entry = next((e for e in runtime.history_entries() if e.job_id == job_id), None)
    if entry is None or not entry.reference_files:
        raise InputError(f"The references of '{obj.name}' were not kept (see Keep Results in the preferences); "
                         "generate it again from the panel.")
    return entry


class STEP1X3D_OT_variations(_JobOperator, bpy.types.Operator):
    """Generate several results from the panel's references, one seed each, side by side along X
    (each import is its own undo step; Cancel stops the whole batch)"""

    bl_idname = "step1x3d.variations"
    bl_label = "Variations"
    bl_options = {"REGISTER"}  # each result is imported by its own undoable step1x3d.import_result

    count: IntProperty(name="Count", min=2, max=16, default=4, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    spacing: FloatProperty(  # type: ignore[valid-type]
        name="Spacing", description="Distance between the results along X (metres)", min=0.0, default=1.5,
        options={"SKIP_SAVE"},
    )

    def execute(self, context: bpy.types.Context) -> Result:
        if _busy():
            return self._fail(context, "A job is already running; cancel it or wait for it to finish.")
        st = state(context)
        count = self.count if self.properties.is_property_set("count") else st.variation_count
        try:
            refs = self._references(context)
            mode = "full" if st.mode == "texture" else st.mode
            first = self._settings(context, mode)
        except InputError as exc:
            return self._fail(context, str(exc))
        # Seeds: random ones (the panel's Randomise), or seed, seed + 1, ... so a batch can be repeated.
        randomize = st.randomize_seed and not self.properties.is_property_set("seed")
        loc: Any = context.scene.cursor.location if context.scene else (0.0, 0.0, 0.0)
        cursor = (float(loc[0]), float(loc[1]), float(loc[2]))
        batch, prefs, name = new_job_id(), get_prefs(context), asset_name(refs.names[0])
        started: list[jobs.ActiveJob] = []
        try:
            for i in range(count):
                if randomize:  # the first seed was drawn (and shown in the panel) by _settings
                    settings = jobs.resolve_settings(first, {}, randomize_seed=i > 0)
                else:
                    settings = jobs.resolve_settings(first, {"seed": (first["seed"] + i) % 2**31})
                location = (cursor[0] + i * self.spacing, cursor[1], cursor[2])
                started.append(jobs.start_generate(refs, settings, prefs, name=f"{name}_v{i + 1}",
                                                   extra={jobs.LOCATION: location, jobs.BATCH: (batch, i, count)}))
        except InputError as exc:
            for job in started:
                job.session.cancel()
                job.session.close()
            return self._fail(context, str(exc))
        for job in started:
            runtime.add_job(job, context)
        if not (self.wait or _blocking()):
            return {"FINISHED"}
        return self._drive(context, [job.job_id for job in started], self.timeout or None)

    def _drive(self, context: bpy.types.Context, job_ids: list[str], timeout_s: float | None) -> Result:
        """Blocking mode: the timer's poll step in a loop, so imports run exactly as in the UI."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while runtime.active_job() is not None:
                runtime.poll_step(context)
                if deadline is not None and time.monotonic() > deadline:
                    runtime.cancel_all()
                    deadline = None
                time.sleep(0.02)
        except BaseException:  # Ctrl+C in a script: the server hears the cancel before the sockets go
            for job in runtime.all_jobs():
                cancel_and_wait(job.session, 0.5)
                runtime.pop_job(job.job_id)
            raise
        ended = {e.job_id: e for e in runtime.history_entries() if e.job_id in job_ids}
        failures = [e.message or e.state for e in ended.values() if e.state != "done"]
        if failures:
            return self._fail(context, f"{len(failures)} of {len(job_ids)} variations did not finish: {failures[0]}")
        return {"FINISHED"}


class STEP1X3D_OT_free_vram(bpy.types.Operator):
    """Ask the server to free its GPU memory (models are loaded again by the next job); it waits for
    a running job to end first"""

    bl_idname = "step1x3d.free_vram"
    bl_label = "Free VRAM"

    wait: BoolProperty(name="Wait", default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> Result:
        runtime.free_vram(context)
        if self.wait or _blocking():
            while runtime.vram_pending():
                runtime.poll_step(context)
                time.sleep(0.02)
        st = state(context)
        if st.vram_failed:
            self.report({"ERROR"}, st.vram_line)
            return {"CANCELLED"}
        return {"FINISHED"}


class STEP1X3D_OT_free_vram_cancel(bpy.types.Operator):
    """Stop waiting for the server to free its GPU memory"""

    bl_idname = "step1x3d.free_vram_cancel"
    bl_label = "Stop Waiting"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return runtime.vram_pending()

    def execute(self, context: bpy.types.Context) -> Result:
        runtime.cancel_free_vram(context)
        return {"FINISHED"}


class STEP1X3D_OT_cancel(bpy.types.Operator):
    """Cancel the running job (nothing is added to the scene)"""

    bl_idname = "step1x3d.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _busy()

    def execute(self, context: bpy.types.Context) -> Result:
        runtime.cancel_all()
        state(context).job_text = "Cancelling…"
        return {"FINISHED"}


class STEP1X3D_OT_import_result(bpy.types.Operator):
    """Import a finished job's result (one undo step)"""

    bl_idname = "step1x3d.import_result"
    bl_label = "Import Step1X-3D Result"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    job_id: StringProperty(options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> Result:
        job = runtime.get_job(self.job_id)
        if job is None:
            self.report({"ERROR"}, "That job is no longer active.")
            return {"CANCELLED"}
        try:
            obj = jobs.complete(context, job, get_prefs(context))
        except jobs.JobFailed as exc:
            self.report({"ERROR"}, str(exc))
            runtime.report(context, str(exc), failed=True)
            return {"CANCELLED"}
        except Exception as exc:  # an add-on bug must still read as one sentence, not a traceback
            message = wording.sentence(f"The import failed unexpectedly: {exc}")
            self.report({"ERROR"}, message)
            runtime.report(context, message, failed=True)
            return {"CANCELLED"}
        state(context).last_object = obj.name
        runtime.report(context, jobs.done_message(job, obj), failed=False)
        return {"FINISHED"}


class STEP1X3D_OT_reimport(bpy.types.Operator):
    """Import a result from the history again"""

    bl_idname = "step1x3d.reimport"
    bl_label = "Re-import"
    bl_options = {"REGISTER", "UNDO"}

    job_id: StringProperty(options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> Result:
        entry = next((e for e in runtime.history_entries() if e.job_id == self.job_id), None)
        if entry is None:
            self.report({"ERROR"}, "That job is not in the history.")
            return {"CANCELLED"}
        try:
            obj = jobs.reimport(context, entry)
        except jobs.JobFailed as exc:
            self.report({"ERROR"}, str(exc))
            runtime.report(context, str(exc), failed=True)
            return {"CANCELLED"}
        state(context).last_object = obj.name
        runtime.report(context, f"Re-imported '{obj.name}'.", failed=False)
        return {"FINISHED"}


class STEP1X3D_OT_history_reuse(bpy.types.Operator):
    """Put this job's settings (seed included, Randomise off) and its kept reference images back in the panel"""

    bl_idname = "step1x3d.history_reuse"
    bl_label = "Reuse Settings"

    job_id: StringProperty(options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> Result:
        entry = next((e for e in runtime.history_entries() if e.job_id == self.job_id), None)
        if entry is None:
            self.report({"ERROR"}, "That job is not in the history.")
            return {"CANCELLED"}
        st = state(context)
        values = entry.settings
        for key in ("seed", "steps", "guidance", "max_faces"):
            if key in values:
                setattr(st, key, values[key])
        options_ui.set_values(context.window_manager, option_values(values))
        if "texture_size" in values:
            st.texture_size = str(values["texture_size"])
        if "lods" in values:
            st.lod_levels = max(1, len(values["lods"]))
        if "size" in values:
            properties.set_size_setting(st, values["size"])
        if values.get("mode") in ("full", "geometry", "texture"):
            st.mode = values["mode"]
        st.randomize_seed = False  # the seed shown is the one that made this result
        kept = [p for p in entry.reference_files if os.path.isfile(p)]
        if kept:
            views = entry.views or list(VIEW_ORDER)
            for view in VIEW_ORDER:
                slot = getattr(st, view)
                path = next((p for v, p in zip(views, kept) if v == view), "")
                slot.source, slot.filepath, slot.image_name = "FILE", path, ""
        runtime.report(context, f"Settings of '{entry.name}' restored" + (" with its references." if kept else
                       "; its reference images were not kept."), failed=False)
        return {"FINISHED"}


class STEP1X3D_OT_history_clear(bpy.types.Operator):
    """Forget the job history (stored results stay on disk)"""

    bl_idname = "step1x3d.history_clear"
    bl_label = "Clear History"

    def execute(self, context: bpy.types.Context) -> Result:
        from ..core.history import History
        from .preferences import user_dir

        History(user_dir()).clear()
        return {"FINISHED"}


_VIEW_ITEMS = [(v, view_label(v), VIEW_DESCRIPTIONS[v]) for v in VIEW_ORDER]


def _view_tooltip(verb: str, properties: Any) -> str:
    view = getattr(properties, "view", "front") if properties is not None else "front"
    return f"{verb}. {VIEW_DESCRIPTIONS.get(view, '')}"


class STEP1X3D_OT_reference_pick(bpy.types.Operator):
    """Pick the reference image file for this view"""

    bl_idname = "step1x3d.reference_pick"
    bl_label = "Pick Reference Image"

    view: EnumProperty(items=_VIEW_ITEMS, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        return _view_tooltip("Pick the reference image file for this view", properties)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> Result:
        wm: Any = context.window_manager
        wm.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> Result:
        slot = getattr(state(context), self.view)
        slot.source = "FILE"
        slot.filepath = self.filepath
        return {"FINISHED"}


class STEP1X3D_OT_reference_add(bpy.types.Operator):
    """Fill the empty view slots with image files, in the order front, right, back, left"""

    bl_idname = "step1x3d.reference_add"
    bl_label = "Add Image Files"

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    directory: StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    files: CollectionProperty(  # type: ignore[valid-type]
        type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"}
    )
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> Result:
        wm: Any = context.window_manager
        wm.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> Result:
        import os

        paths = [os.path.join(self.directory, f.name) for f in self.files if f.name] or (
            [self.filepath] if self.filepath else []
        )
        st = state(context)
        empty = [v for v in VIEW_ORDER if not slot_filled(getattr(st, v))]
        if len(paths) > len(empty):
            self.report({"ERROR"}, f"{len(paths)} images for {len(empty)} empty view slots; clear a slot first.")
            return {"CANCELLED"}
        for view, path in zip(empty, paths):
            slot = getattr(st, view)
            slot.source = "FILE"
            slot.filepath = path
        return {"FINISHED"}


class STEP1X3D_OT_reference_use_image(bpy.types.Operator):
    """Use an image already in this .blend for this view"""

    bl_idname = "step1x3d.reference_use_image"
    bl_label = "Use Blender Image"

    view: EnumProperty(items=_VIEW_ITEMS, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    image_name: StringProperty(options={"SKIP_SAVE"})  # type: ignore[valid-type]

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        return _view_tooltip("Use an image already in this .blend for this view", properties)

    def execute(self, context: bpy.types.Context) -> Result:
        slot = getattr(state(context), self.view)
        slot.source = "IMAGE"
        slot.image_name = self.image_name or (bpy.data.images[0].name if len(bpy.data.images) else "")
        return {"FINISHED"}


class STEP1X3D_OT_reference_clear(bpy.types.Operator):
    """Empty this view slot"""

    bl_idname = "step1x3d.reference_clear"
    bl_label = "Clear View"

    view: EnumProperty(items=_VIEW_ITEMS, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> Result:
        slot = getattr(state(context), self.view)
        slot.source, slot.filepath, slot.image_name = "FILE", "", ""
        return {"FINISHED"}


class STEP1X3D_OT_preset_apply(bpy.types.Operator):
    """Apply the chosen preset to the settings"""

    bl_idname = "step1x3d.preset_apply"
    bl_label = "Apply Preset"

    def execute(self, context: bpy.types.Context) -> Result:
        st = state(context)
        values = runtime.preset_store().all_presets().get(st.preset)
        if values is None:
            self.report({"ERROR"}, "Choose a preset first.")
            return {"CANCELLED"}
        for key in ("steps", "guidance", "max_faces"):
            if key in values:
                setattr(st, key, values[key])
        options_ui.set_values(context.window_manager, option_values(values))
        if "texture_size" in values:
            st.texture_size = str(values["texture_size"])
        if "lods" in values:
            st.lod_levels = max(1, len(values["lods"]))
        if "size" in values:
            properties.set_size_setting(st, values["size"])
        return {"FINISHED"}


class STEP1X3D_OT_preset_save(bpy.types.Operator):
    """Save the current settings as a preset"""

    bl_idname = "step1x3d.preset_save"
    bl_label = "Save Preset"

    def execute(self, context: bpy.types.Context) -> Result:
        st = state(context)
        values = {
            "steps": st.steps,
            "guidance": float(st.guidance),
            "max_faces": st.max_faces,
            "texture_size": int(st.texture_size),
            "lods": properties.lods(st),
            "options": options_ui.values(context.window_manager),
            "size": properties.size_setting(st),
        }
        try:
            runtime.preset_store().save(st.preset_name.strip(), values)
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, wording.sentence(str(exc)))
            return {"CANCELLED"}
        return {"FINISHED"}


class STEP1X3D_OT_preset_delete(bpy.types.Operator):
    """Delete the chosen preset (built-in presets cannot be deleted)"""

    bl_idname = "step1x3d.preset_delete"
    bl_label = "Delete Preset"

    def execute(self, context: bpy.types.Context) -> Result:
        runtime.preset_store().delete(state(context).preset)
        return {"FINISHED"}


class STEP1X3D_OT_refresh_status(bpy.types.Operator):
    """Check whether the server answers"""

    bl_idname = "step1x3d.refresh_status"
    bl_label = "Check Server"

    def execute(self, context: bpy.types.Context) -> Result:
        runtime.refresh_status(context)
        return {"FINISHED"}


class STEP1X3D_OT_start_server(bpy.types.Operator):
    """Start a local server with the command from the add-on preferences"""

    bl_idname = "step1x3d.start_server"
    bl_label = "Start Local Server"

    def execute(self, context: bpy.types.Context) -> Result:
        message = runtime.start_local_server(context)
        state(context).server_line = message
        runtime.refresh_status(context)
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (
    STEP1X3D_PG_path,
    STEP1X3D_OT_generate,
    STEP1X3D_OT_retexture,
    STEP1X3D_OT_regenerate,
    STEP1X3D_OT_variations,
    STEP1X3D_OT_free_vram,
    STEP1X3D_OT_free_vram_cancel,
    STEP1X3D_OT_cancel,
    STEP1X3D_OT_import_result,
    STEP1X3D_OT_reimport,
    STEP1X3D_OT_history_reuse,
    STEP1X3D_OT_history_clear,
    STEP1X3D_OT_reference_pick,
    STEP1X3D_OT_reference_add,
    STEP1X3D_OT_reference_use_image,
    STEP1X3D_OT_reference_clear,
    STEP1X3D_OT_preset_apply,
    STEP1X3D_OT_preset_save,
    STEP1X3D_OT_preset_delete,
    STEP1X3D_OT_refresh_status,
    STEP1X3D_OT_start_server,
)
