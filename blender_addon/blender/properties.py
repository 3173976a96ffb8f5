"""Panel state on the WindowManager: never saved into the .blend, never in the Scene.

Reference images are stored by file path or by image *name* (not an ID pointer),
because ID references do not survive undo; they are resolved when a job starts.
"""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..core.views import VIEW_DESCRIPTIONS, VIEW_ORDER, view_label
from . import options_ui
from ..protocol.settings import NUMERIC_RANGES, TEXTURE_SIZES, JobSettings

_DEFAULTS = JobSettings()
VIEW_NAMES = tuple(view_label(v) for v in VIEW_ORDER)

MODE_ITEMS = [
    ("full", "Geometry + Texture", "Generate a textured asset from the reference images"),
    ("geometry", "Geometry Only", "Generate an untextured mesh"),
    ("texture", "Texture Selected", "Paint the selected mesh from the reference images"),
]
TEXTURE_SIZE_ITEMS = [(str(s), f"{s} px", f"{s}x{s} texture maps") for s in TEXTURE_SIZES]
SOURCE_ITEMS = [
    ("FILE", "File", "An image file on disk"),
    ("IMAGE", "Image", "An image already in this .blend"),
]


def _range(name: str) -> tuple[Any, Any]:
    _, lo, hi = NUMERIC_RANGES[name]
    return lo, hi


class STEP1X3D_PG_reference(bpy.types.PropertyGroup):
    source: EnumProperty(name="Source", items=SOURCE_ITEMS, default="FILE")  # type: ignore[valid-type]
    filepath: StringProperty(  # type: ignore[valid-type]
        name="File", subtype="FILE_PATH", default="", description="Reference image file for this view"
    )
    image_name: StringProperty(  # type: ignore[valid-type]
        name="Image", default="", description="An image of this .blend as the reference for this view"
    )


def _preset_items(self: Any, context: Any) -> list[tuple[str, str, str]]:
    from . import runtime

    return runtime.preset_enum_items()


class STEP1X3D_PG_state(bpy.types.PropertyGroup):
    # What to run and from what.
    # One slot per named view; the tooltip states the camera convention (core.views, one place).
    front: PointerProperty(  # type: ignore[valid-type]
        type=STEP1X3D_PG_reference, name="Front", description=VIEW_DESCRIPTIONS["front"]
    )
    right: PointerProperty(  # type: ignore[valid-type]
        type=STEP1X3D_PG_reference, name="Right", description=VIEW_DESCRIPTIONS["right"]
    )
    back: PointerProperty(  # type: ignore[valid-type]
        type=STEP1X3D_PG_reference, name="Back", description=VIEW_DESCRIPTIONS["back"]
    )
    left: PointerProperty(  # type: ignore[valid-type]
        type=STEP1X3D_PG_reference, name="Left", description=VIEW_DESCRIPTIONS["left"]
    )
    mode: EnumProperty(name="Mode", items=MODE_ITEMS, default="full")  # type: ignore[valid-type]

    # Main settings (ranges from the shared schema the server enforces).
    seed: IntProperty(name="Seed", default=_DEFAULTS.seed, min=0, max=2**31 - 1)  # type: ignore[valid-type]
    randomize_seed: BoolProperty(  # type: ignore[valid-type]
        name="Randomise", description="Pick a new seed for every job", default=True
    )
    steps: IntProperty(  # type: ignore[valid-type]
        name="Steps", default=_DEFAULTS.steps, min=_range("steps")[0], max=_range("steps")[1]
    )
    guidance: FloatProperty(  # type: ignore[valid-type]
        name="Guidance", default=_DEFAULTS.guidance, min=_range("guidance")[0], max=_range("guidance")[1]
    )
    max_faces: IntProperty(  # type: ignore[valid-type]
        name="Max Faces", default=_DEFAULTS.max_faces, min=_range("max_faces")[0], max=_range("max_faces")[1]
    )
    texture_size: EnumProperty(  # type: ignore[valid-type]
        name="Texture Size", items=TEXTURE_SIZE_ITEMS, default=str(_DEFAULTS.texture_size)
    )
    lod_levels: IntProperty(  # type: ignore[valid-type]
        name="LODs", description="Levels of detail (each halves the faces); 1 = none", default=1, min=1, max=4
    )
    # Largest dimension of the result (the wire's ``size``, metres = Blender units as imported);
    # off: the backend's own scale. LENGTH shows it in the scene's units.
    use_size: BoolProperty(  # type: ignore[valid-type]
        name="Set Size", description="Scale the result so its largest dimension is the size below", default=False
    )
    size: FloatProperty(  # type: ignore[valid-type]
        name="Size", description="Largest dimension of the result", default=1.0,
        min=_range("size")[0], max=_range("size")[1], subtype="DISTANCE", unit="LENGTH",
    )
    preset: EnumProperty(name="Preset", items=_preset_items)  # type: ignore[valid-type]
    # The backend's own options (inflate depth, LoRAs, labels...) are not here: options_ui builds
    # them from the server's welcome, on WindowManager.step1x3d_options.
    preset_name: StringProperty(name="Preset Name", default="")  # type: ignore[valid-type]

    # Runtime (copied from the active JobSession by the timer's poll step).
    job_id: StringProperty(default="")  # type: ignore[valid-type]
    job_state: StringProperty(default="")  # type: ignore[valid-type]
    job_fraction: FloatProperty(  # type: ignore[valid-type]
        name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR"
    )
    job_text: StringProperty(default="")  # type: ignore[valid-type]
    last_message: StringProperty(default="")  # type: ignore[valid-type]
    last_failed: BoolProperty(default=False)  # type: ignore[valid-type]
    server_line: StringProperty(default="Server: not checked yet")  # type: ignore[valid-type]
    server_online: BoolProperty(default=False)  # type: ignore[valid-type]
    last_object: StringProperty(default="")  # type: ignore[valid-type]
    vram_line: StringProperty(default="")  # type: ignore[valid-type]
    vram_failed: BoolProperty(default=False)  # type: ignore[valid-type]
    variation_count: IntProperty(  # type: ignore[valid-type]
        name="Variations", description="How many results (one seed each) Variations makes in one click",
        default=4, min=2, max=16,
    )
    history_index: IntProperty(default=0)  # type: ignore[valid-type]
    show_history: BoolProperty(name="History", default=False)  # type: ignore[valid-type]
    show_settings: BoolProperty(name="Settings", default=True)  # type: ignore[valid-type]


# Plain functions, not PropertyGroup methods: the bpy 4.2 module crashes at exit after a
# PropertyGroup class with Python methods was registered and unregistered.
def lods(st: Any) -> list[float]:
    return [] if st.lod_levels <= 1 else [0.5**i for i in range(st.lod_levels)]


def size_setting(st: Any) -> float | None:
    """The wire's ``size``: the chosen length when the toggle is on, else None (the backend's scale)."""
    return float(st.size) if st.use_size else None


def set_size_setting(st: Any, size: float | None) -> None:
    """The panel's toggle and length from a wire/preset ``size`` (None: off, the length kept)."""
    st.use_size = size is not None
    if size is not None:
        st.size = float(size)


def job_settings(st: Any, seed: int) -> dict[str, Any]:
    """The panel's settings as a wire dict (validated by ``JobSettings.from_wire`` before sending)."""
    wire: dict[str, Any] = {
        "mode": st.mode,
        "seed": seed,
        "steps": st.steps,
        "guidance": float(st.guidance),
        "max_faces": st.max_faces,
        "texture_size": int(st.texture_size),
        "lods": lods(st),
        "size": size_setting(st),
    }
    # Only the options the server declared (an older server declares none, and gets none).
    wire["options"] = options_ui.values(st.id_data)
    return JobSettings.from_wire(wire).to_wire()


CLASSES: tuple[type, ...] = (STEP1X3D_PG_reference, STEP1X3D_PG_state)


def register_props() -> None:
    bpy.types.WindowManager.step1x3d = PointerProperty(type=STEP1X3D_PG_state)  # type: ignore[attr-defined]


def unregister_props() -> None:
    options_ui.unregister()
    if hasattr(bpy.types.WindowManager, "step1x3d"):
        del bpy.types.WindowManager.step1x3d


def state(context: bpy.types.Context | None = None) -> STEP1X3D_PG_state:
    wm: Any = (context or bpy.context).window_manager
    return wm.step1x3d
