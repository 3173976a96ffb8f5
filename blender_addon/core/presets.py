"""Setting presets: a few built in, the artist's own saved as JSON next to the history."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..protocol.options import LEGACY_OPTION_DEFAULTS
from ..protocol.settings import JobSettings, SettingsError
from .files import write_atomic

# The panel's settings that a preset covers (seed is deliberately not in presets).
# "size" (largest dimension, metres; None: the backend's scale) only in presets that set it.
# "options": backend options (the panel applies those the server's backend declares).
PRESET_KEYS = ("steps", "guidance", "max_faces", "texture_size", "options", "lods", "size")
# The weight-free backend's flatter-than-round default of the built-in presets.
_FLATTER = {"inflate_depth": 0.5}

BUILTIN_PRESETS: dict[str, dict[str, Any]] = {
    "Draft": {
        "steps": 15, "guidance": 7.5, "max_faces": 20_000, "texture_size": 1024, "options": dict(_FLATTER), "lods": [],
    },
    "Standard": {
        "steps": 50, "guidance": 7.5, "max_faces": 200_000, "texture_size": 2048, "options": dict(_FLATTER), "lods": [],
    },
    "Game asset": {
        "steps": 50,
        "guidance": 7.5,
        "max_faces": 50_000,
        "texture_size": 2048,
        "options": dict(_FLATTER),
        "lods": [1.0, 0.5, 0.25],
    },
    "Hero": {
        "steps": 100, "guidance": 7.5, "max_faces": 1_000_000, "texture_size": 4096, "options": dict(_FLATTER),
        "lods": [],
    },
}

PRESETS_FILE = "presets.json"
_NAME = re.compile(r"^[\w .\-]{1,40}$")


def validate_preset(values: dict[str, Any]) -> dict[str, Any]:
    """Keep known keys and check them against the shared settings schema (raises SettingsError)."""
    picked = {k: values[k] for k in PRESET_KEYS if k in values}
    legacy = {k: values[k] for k in LEGACY_OPTION_DEFAULTS if k in values}  # a preset saved by an older add-on
    if legacy:
        picked["options"] = {**legacy, **(picked.get("options") or {})}
    JobSettings.from_wire(picked)  # same ranges the server enforces (options: their shape; the backend has the rest)
    return picked


class PresetStore:
    def __init__(self, folder: Path) -> None:
        self.path = folder / PRESETS_FILE

    def user_presets(self) -> dict[str, dict[str, Any]]:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        out: dict[str, dict[str, Any]] = {}
        for name, values in (raw.items() if isinstance(raw, dict) else []):
            try:
                out[str(name)] = validate_preset(dict(values))
            except (SettingsError, TypeError, ValueError):
                continue  # a hand-edited bad preset is skipped, not fatal
        return out

    def all_presets(self) -> dict[str, dict[str, Any]]:
        return {**BUILTIN_PRESETS, **self.user_presets()}

    def save(self, name: str, values: dict[str, Any]) -> None:
        if not _NAME.match(name) or name in BUILTIN_PRESETS:
            raise ValueError(f"'{name}' cannot be used as a preset name.")
        presets = self.user_presets()
        presets[name] = validate_preset(values)
        self._write(presets)

    def delete(self, name: str) -> None:
        presets = self.user_presets()
        presets.pop(name, None)
        self._write(presets)

    def _write(self, presets: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(presets, indent=1))
