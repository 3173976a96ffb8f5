"""register()/unregister(): classes, WindowManager properties, the timer; sockets closed on the way out."""

from __future__ import annotations

import bpy

from . import engine_operators, operators, panel, preferences, previews, properties, runtime

CLASSES: tuple[type, ...] = (
    preferences.STEP1X3D_AP_preferences,
    *properties.CLASSES,
    *operators.CLASSES,
    *engine_operators.CLASSES,
    *panel.CLASSES,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register_props()
    # The status line is filled by the first timer tick (never in background: no UI to show it).
    if not bpy.app.background:
        runtime.ensure_timer()


def unregister() -> None:
    # Sockets first: Blender must be able to quit at once even with a job in flight.
    runtime.shutdown()
    previews.clear()
    properties.unregister_props()
    for cls in reversed(CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
