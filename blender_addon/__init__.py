"""Step1X-3D for Blender.

The package root must stay importable without ``bpy``: the server and the CLI
import ``blender_addon.protocol`` and ``blender_addon.client`` from it.
Blender-facing code lives in ``blender_addon.blender`` and is imported lazily.
"""


def register() -> None:
    from .blender import registration

    registration.register()


def unregister() -> None:
    from .blender import registration

    registration.unregister()
