"""The four named reference views and their camera convention (pure: no bpy).

The server reads reference images in this order (``kernels/cameras.py``: glTF
frame, Y up, the object's front towards +Z). In Blender's frame (glTF
``(x, y, z)`` -> ``(x, -z, y)``) those cameras are exactly Blender's own
Front / Right / Back / Left viewpoints (Numpad 1, 3, Ctrl+1, Ctrl+3).
"""

from __future__ import annotations

from typing import Mapping, Sequence, TypeVar

from ..protocol.errors import Step1X3DError

T = TypeVar("T")

VIEW_ORDER: tuple[str, ...] = ("front", "right", "back", "left")

# What each slot's tooltip says: the one statement of the convention in the add-on.
VIEW_DESCRIPTIONS: dict[str, str] = {
    "front": (
        "Front view (required): the camera faces the object's front (on +Z in glTF, -Y in Blender: "
        "Blender's Front view, Numpad 1). The imported object faces -Y"
    ),
    "right": (
        "Right view: the camera on the right as you face the object's front (+X in glTF and Blender: "
        "Blender's Right view, Numpad 3); for a character facing you, that is its left side"
    ),
    "back": (
        "Back view: the camera behind the object, facing its back (-Z in glTF, +Y in Blender: "
        "Blender's Back view, Ctrl+Numpad 1)"
    ),
    "left": (
        "Left view: the camera on the left as you face the object's front (-X in glTF and Blender: "
        "Blender's Left view, Ctrl+Numpad 3)"
    ),
}


def view_label(view: str) -> str:
    return view.capitalize()


def ordered(slots: Mapping[str, T | None]) -> list[tuple[str, T]]:
    """Filled slots in the server's order (front, right, back, left); the front is required.

    Any subset of the other views may follow; when one is skipped (front + back), the job's
    ``views`` setting names each image's view (see :func:`views_setting`).
    """
    unknown = sorted(set(slots) - set(VIEW_ORDER))
    if unknown:
        raise Step1X3DError(f"Unknown view '{unknown[0]}': the views are {', '.join(VIEW_ORDER)}.", "bad_input")
    filled = [(v, slots[v]) for v in VIEW_ORDER if slots.get(v) is not None]
    if not filled or filled[0][0] != "front":
        raise Step1X3DError("Add a front reference image (the other views are optional).", "bad_input")
    return [(v, s) for v, s in filled if s is not None]


def views_setting(views: Sequence[str]) -> dict[str, list[str]]:
    """The job setting that names the views, needed only when they are not the slots in order."""
    names = list(views)
    return {} if names == list(VIEW_ORDER[: len(names)]) else {"views": names}
