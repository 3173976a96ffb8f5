"""Job settings: one schema, checked on both ends of the wire.

The common settings every backend understands (mode, seed, steps, sizes, LODs, views) are
fields here; the ranges are what the server advertises in ``welcome`` and enforces on
``submit``, and the add-on uses the same table to clamp its UI. A backend's own knobs travel
in ``options`` (name -> value), declared by the backend itself (``protocol.options``), so a
new backend option needs no edit here. Pure Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .options import LEGACY_OPTION_DEFAULTS, OptionSpec, SettingsError, check_option_map, resolve_options

MODES = ("full", "geometry", "texture")
TEXTURE_SIZES = (512, 1024, 2048, 4096)
# The reference views a job's images may be, in their slot order (the camera convention is in
# docs/views.md): without ``views`` the images fill these slots in order.
VIEW_NAMES = ("front", "right", "back", "left")


# name -> (type, min, max) for numbers; (type, allowed values) for choices.
NUMERIC_RANGES: dict[str, tuple[type, float, float]] = {
    "seed": (int, 0, 2**31 - 1),
    "steps": (int, 1, 200),
    "guidance": (float, 0.0, 30.0),
    "texture_steps": (int, 1, 200),
    "texture_guidance": (float, 0.0, 30.0),
    "max_faces": (int, 1_000, 2_000_000),
    "size": (float, 0.001, 1000.0),
}
# Settings whose default is None ("not set"); when set they are checked like the numbers above.
OPTIONAL_SETTINGS = ("size",)
CHOICES: dict[str, tuple[Any, ...]] = {
    "mode": MODES,
    "texture_size": TEXTURE_SIZES,
}
MAX_LODS = 4


@dataclass(frozen=True)
class JobSettings:
    """Everything a client may ask of one job. Defaults are upstream's."""

    mode: str = "full"  # full: geometry + texture; geometry: mesh only; texture: paint a client mesh
    seed: int = 0
    steps: int = 50  # geometry sampling steps
    guidance: float = 7.5  # geometry CFG scale
    texture_steps: int = 50
    texture_guidance: float = 3.0
    max_faces: int = 200_000
    texture_size: int = 2048
    pbr: bool = True  # ORM + normal maps beyond base colour
    lods: tuple[float, ...] = ()  # e.g. (1.0, 0.5, 0.25): face fractions of an LOD chain
    size: float | None = None  # largest dimension of the result in metres (glTF units); None: backend's own scale
    views: tuple[str, ...] = ()  # the view of each image, in image order (e.g. front, back); (): VIEW_NAMES in order
    # The active backend's own options (name -> value), checked against its declaration
    # (capabilities()["options"]); after the server's check every declared option is present.
    options: dict[str, Any] = field(default_factory=dict)
    # Options that arrived as deprecated top-level keys (protocol 1.0) and are not checked against a
    # declaration yet: a backend that does not declare one ignores it, as backends always did.
    legacy_keys: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_wire(
        cls, data: Any, declared: Sequence[OptionSpec] | None = None, backend: str = "the server's backend"
    ) -> "JobSettings":
        """Validate a dict from the wire; unknown keys are an error, missing keys take defaults.

        With ``declared`` (the active backend's options) the options are checked against it and every
        declared option gets its value (default when not given); without, only their shape is checked.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SettingsError("settings must be a map of name to value")
        known = {f.name for f in fields(cls)} - {"legacy_keys"}
        unknown = sorted(str(k) for k in data if k not in known and k not in LEGACY_OPTION_DEFAULTS)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        options = check_option_map(data.get("options"))
        legacy: list[str] = []
        for name, raw in data.items():
            if name == "options":
                continue
            if name in LEGACY_OPTION_DEFAULTS:
                # Deprecated top-level key: an option now. Its old default meant "not set".
                if name not in options and not _same(raw, LEGACY_OPTION_DEFAULTS[name]):
                    options.update(check_option_map({name: raw}))
                    legacy.append(name)
                continue
            values[name] = _check(name, raw)
        if declared is not None:
            options = resolve_options(declared, options, backend=backend, lenient=legacy)
            legacy = []
        return cls(**values, options=options, legacy_keys=tuple(legacy))

    def to_wire(self) -> dict[str, Any]:
        out = asdict(self)
        del out["legacy_keys"]
        out["lods"] = list(self.lods)
        out["views"] = list(self.views)
        # Still-unchecked legacy values go back out as the legacy keys they came in as, so the
        # server keeps treating them leniently.
        out["options"] = {k: v for k, v in self.options.items() if k not in self.legacy_keys}
        out.update({k: self.options[k] for k in self.legacy_keys if k in self.options})
        return out

    def replace(self, **changes: Any) -> "JobSettings":
        merged = self.to_wire()
        merged.update(changes)
        return JobSettings.from_wire(merged)

    def with_options(self, declared: Sequence[OptionSpec], backend: str = "the server's backend") -> "JobSettings":
        """These settings with their options checked against ``declared`` and defaults filled in."""
        return JobSettings.from_wire(self.to_wire(), declared, backend)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and not isinstance(a, bool)
                                               and isinstance(b, float) and float(a) == b)


def _check(name: str, raw: Any) -> Any:
    if raw is None and name in OPTIONAL_SETTINGS:
        return None
    if name in NUMERIC_RANGES:
        kind, lo, hi = NUMERIC_RANGES[name]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise SettingsError(f"{name} must be a number")
        if kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise SettingsError(f"{name} must be a whole number")
            raw = int(raw)
        else:
            raw = float(raw)
            if raw != raw:  # NaN
                raise SettingsError(f"{name} must be a number")
        if not lo <= raw <= hi:
            raise SettingsError(f"{name} must be between {lo} and {hi}, got {raw}")
        return raw
    if name in CHOICES:
        allowed = CHOICES[name]
        if raw not in allowed or isinstance(raw, bool):
            raise SettingsError(f"{name} must be one of {', '.join(map(str, allowed))}, got {raw!r}")
        return raw
    if name == "pbr":
        if not isinstance(raw, bool):
            raise SettingsError(f"{name} must be true or false")
        return raw
    if name == "views":
        if not isinstance(raw, (list, tuple)) or len(raw) > len(VIEW_NAMES):
            raise SettingsError(f"views must be a list of at most {len(VIEW_NAMES)} view names")
        if any(v not in VIEW_NAMES for v in raw) or len(set(raw)) != len(raw):
            raise SettingsError(f"views must name each of {', '.join(VIEW_NAMES)} at most once, got {list(raw)!r}")
        if raw and raw[0] != "front":
            raise SettingsError("views must start with the front view")
        return tuple(raw)
    if name == "lods":
        if not isinstance(raw, (list, tuple)) or len(raw) > MAX_LODS:
            raise SettingsError(f"lods must be a list of at most {MAX_LODS} fractions")
        out = []
        for x in raw:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.01 <= float(x) <= 1.0:
                raise SettingsError("each LOD fraction must be between 0.01 and 1.0")
            out.append(float(x))
        return tuple(out)
    raise SettingsError(f"unknown setting: {name}")  # pragma: no cover - guarded by from_wire


def advertised_ranges() -> dict[str, Any]:
    """The table sent in ``welcome`` so clients can clamp their UI."""
    table: dict[str, Any] = {
        name: {"type": kind.__name__, "min": lo, "max": hi} for name, (kind, lo, hi) in NUMERIC_RANGES.items()
    }
    for name, allowed in CHOICES.items():
        table[name] = {"choices": list(allowed)}
    table["lods"] = {"max_items": MAX_LODS, "min": 0.01, "max": 1.0}
    table["views"] = {"choices": list(VIEW_NAMES), "first": "front"}
    table["defaults"] = JobSettings().to_wire()
    return table


__all__ = ["VIEW_NAMES", "JobSettings", "OptionSpec", "SettingsError", "advertised_ranges", "view_slots"]


def view_slots(images: list[Any], views: tuple[str, ...]) -> list[Any]:
    """The images placed in their view slots (front, right, back, left), ``None`` where a view is missing.

    ``views`` names each image's view in image order; empty means the images fill the slots in order.
    """
    if not views:
        if len(images) > len(VIEW_NAMES):
            raise SettingsError(f"at most {len(VIEW_NAMES)} reference images (front, right, back, left)")
        return list(images)
    if len(views) != len(images):
        raise SettingsError(f"views names {len(views)} view(s) but the job has {len(images)} image(s)")
    slots: list[Any] = [None] * (max(VIEW_NAMES.index(v) for v in views) + 1)
    for view, image in zip(views, images):
        slots[VIEW_NAMES.index(view)] = image
    return slots
