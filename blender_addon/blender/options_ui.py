"""The active backend's options in the panel, built from what its ``welcome`` declares.

No per-option code: each declared option (``protocol.options.OptionSpec``) becomes one Blender
property of a PropertyGroup class made for the current declaration (a checkbox for ``bool``, a
number field with the option's min/max for ``int``/``float``, a drop-down for ``choice``; the
option's help is the tooltip), on ``WindowManager.step1x3d_options``. When a server declares other
options the group is rebuilt, keeping every value that is still valid. The geometry LoRA
drop-down and the texture Style drop-down are two such options of the neural backend.
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping, Sequence
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty

from ..protocol.options import OptionSpec, SettingsError

ATTR = "step1x3d_options"
NONE_ID = "__none__"  # Blender enum identifiers cannot be empty: the "" choice ("none") shows as this
_RESERVED = {"name", "rna_type", "bl_rna"}

_specs: tuple[OptionSpec, ...] = ()
_cls: type | None = None


def usable(spec: OptionSpec) -> bool:
    """Whether the option can be a Blender property (a plain identifier that is no RNA built-in)."""
    return spec.name.isidentifier() and not keyword.iskeyword(spec.name) and not spec.name.startswith("_") \
        and spec.name not in _RESERVED


def specs() -> tuple[OptionSpec, ...]:
    """The options the panel shows now (the last welcome's, those Blender can hold)."""
    return _specs


def _enum_id(choice: str) -> str:
    return choice or NONE_ID


def _property(spec: OptionSpec) -> Any:
    name, help_ = spec.display_name, spec.help
    if spec.kind == "bool":
        return BoolProperty(name=name, description=help_, default=bool(spec.default))
    if spec.kind == "int":
        return IntProperty(name=name, description=help_, default=int(spec.default), min=int(spec.minimum or 0),
                           max=int(spec.maximum or 0))
    if spec.kind == "float":
        return FloatProperty(name=name, description=help_, default=float(spec.default),
                             min=float(spec.minimum or 0.0), max=float(spec.maximum or 0.0))
    items = [(_enum_id(c), c or "None", help_) for c in spec.choices]
    return EnumProperty(name=name, description=help_, items=items, default=_enum_id(spec.default))


def declare(declared: Sequence[OptionSpec]) -> bool:
    """Show ``declared`` in the panel (from a welcome). Returns True when the group was rebuilt."""
    global _specs, _cls
    wanted = tuple(spec for spec in declared if usable(spec))
    if wanted == _specs and [s.display_name for s in wanted] == [s.display_name for s in _specs] \
            and (_cls is not None or not wanted):
        return False
    wm: Any = bpy.context.window_manager
    kept = values(wm) if _cls is not None else {}
    unregister()
    _specs = wanted
    if not wanted:
        return True
    cls = type("STEP1X3D_PG_backend_options", (bpy.types.PropertyGroup,),
               {"__annotations__": {spec.name: _property(spec) for spec in wanted}})
    bpy.utils.register_class(cls)
    setattr(bpy.types.WindowManager, ATTR, PointerProperty(type=cls))
    _cls = cls
    # The WindowManager keeps the old group's stored values under the same name; a choice is stored
    # as its index, which may now mean another item. Start from the defaults, then re-check what was kept.
    wm.property_unset(ATTR)
    set_values(wm, kept)
    return True


def values(wm: Any) -> dict[str, Any]:
    """The panel's option values as the wire's ``options`` map."""
    group = getattr(wm, ATTR, None) if _cls is not None else None
    if group is None:
        return {}
    out: dict[str, Any] = {}
    for spec in _specs:
        raw = getattr(group, spec.name)
        if spec.kind == "choice":
            out[spec.name] = "" if raw == NONE_ID else str(raw)
        elif spec.kind == "float":
            out[spec.name] = float(raw)
        else:
            out[spec.name] = raw
    return out


def set_values(wm: Any, given: Mapping[str, Any]) -> list[str]:
    """Put option values (a preset's, a history entry's) into the panel; returns the names taken.

    Values for options the current backend does not declare, or out of its range, are skipped:
    the panel only ever holds what the server accepts.
    """
    group = getattr(wm, ATTR, None) if _cls is not None else None
    if group is None:
        return []
    taken = []
    for spec in _specs:
        if spec.name not in given:
            continue
        try:
            value = spec.check(given[spec.name])
        except SettingsError:
            continue
        setattr(group, spec.name, _enum_id(value) if spec.kind == "choice" else value)
        taken.append(spec.name)
    return taken


def draw(layout: Any, wm: Any) -> None:
    """One row per declared option, with the widget its kind calls for."""
    group = getattr(wm, ATTR, None) if _cls is not None else None
    if group is None:
        return
    for spec in _specs:
        layout.prop(group, spec.name, text=spec.display_name)


def unregister() -> None:
    """Remove the group (add-on disabled, or before a rebuild)."""
    global _cls, _specs
    if hasattr(bpy.types.WindowManager, ATTR):
        delattr(bpy.types.WindowManager, ATTR)
    if _cls is not None and getattr(_cls, "is_registered", False):
        bpy.utils.unregister_class(_cls)
    _cls = None
    _specs = ()
