"""Per-backend options: each backend declares its own knobs; ``welcome`` advertises them.

A job's settings carry the common settings (``protocol.settings``) plus ``options``, a map of
option name to value. Which names exist, their type, range and default is not the wire
contract's business: the active backend declares them (:class:`OptionSpec`, listed in its
``capabilities()["options"]``), the server copies that list into ``welcome`` and checks every
submit against it, and the Blender panel draws them from it. So a new backend option is an
edit in the backend alone.

Pure Python (the add-on bundles this package alone into Blender): no bpy, no numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import Step1X3DError

OPTION_KINDS = ("bool", "int", "float", "choice")
MAX_OPTIONS = 64  # per job: far above any backend's count, low enough to bound a hostile map
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 200  # a choice value (e.g. a LoRA file name)

# Options that were top-level settings in protocol 1.0 (the weight-free and neural backends'
# knobs), with the value that meant "not set". Deprecated: accepted at the top level until
# protocol 2.0 and moved into ``options`` (see JobSettings.from_wire and docs/protocol.md).
LEGACY_OPTION_DEFAULTS: dict[str, Any] = {
    "inflate_depth": 1.0,
    "mirror_front_detail": False,
    "octree_resolution": 384,
    "symmetry": "auto",
    "edge_type": "auto",
    "pose": "auto",
    "lora": "",
    "lora_scale": 1.0,
    "geometry_lora": "",
    "geometry_lora_scale": 1.0,
}


class SettingsError(Step1X3DError, ValueError):
    """A setting or option is missing, of the wrong type or out of range (the message names it).

    Also a ValueError, so callers that validate user input with ``except ValueError`` keep working.
    """

    default_code = "bad_settings"


@dataclass(frozen=True)
class OptionSpec:
    """One backend option: what the panel draws and what the server checks.

    ``kind``: ``bool``, ``int``, ``float`` (``minimum``..``maximum``, both inclusive) or ``choice``
    (one of ``choices``, strings; "" may be one of them, meaning "none"). ``help`` is one line
    (the panel's tooltip, the CLI's help). ``label`` is the panel's text (default: from ``name``).
    """

    name: str
    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    label: str = field(default="", compare=False)  # display only: the advertised copy always has one

    def __post_init__(self) -> None:  # a malformed declaration is the backend author's bug: fail loudly
        if self.kind not in OPTION_KINDS:
            raise ValueError(f"option {self.name!r}: kind must be one of {', '.join(OPTION_KINDS)}")
        if self.kind in ("int", "float") and (self.minimum is None or self.maximum is None):
            raise ValueError(f"option {self.name!r}: a number option needs minimum and maximum")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"option {self.name!r}: a choice option needs choices")
        self.check(self.default)  # the default must itself be valid

    @property
    def display_name(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def allowed(self) -> str:
        """The allowed values, as the end of a sentence ("between 0.05 and 2.0", "one of a, b")."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) if c == "" else c for c in self.choices)
        return f"between {self.minimum} and {self.maximum}"

    def check(self, raw: Any) -> Any:
        """``raw`` as this option's type; SettingsError naming the option and what it allows."""
        wrong = SettingsError(f"option {self.name} must be {self.allowed()}, got {raw!r}")
        if self.kind == "bool":
            if not isinstance(raw, bool):
                raise wrong
            return raw
        if self.kind == "choice":
            if not isinstance(raw, str) or raw not in self.choices:
                raise wrong
            return raw
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise wrong
        if self.kind == "int":
            if isinstance(raw, float) and not raw.is_integer():
                raise SettingsError(f"option {self.name} must be a whole number {self.allowed()}, got {raw!r}")
            value: float = int(raw)
        else:
            value = float(raw)
        assert self.minimum is not None and self.maximum is not None  # __post_init__
        if not self.minimum <= value <= self.maximum:
            raise wrong
        return value

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "default": self.default, "help": self.help,
                               "label": self.display_name}
        if self.kind in ("int", "float"):
            out["min"], out["max"] = self.minimum, self.maximum
        if self.kind == "choice":
            out["choices"] = list(self.choices)
        return out

    @classmethod
    def from_wire(cls, data: Any) -> "OptionSpec":
        """One advertised declaration; ValueError when it is not one this client understands."""
        if not isinstance(data, Mapping):
            raise ValueError("an option declaration must be a map")
        name, kind = data.get("name"), data.get("kind")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS or not isinstance(kind, str):
            raise ValueError("an option declaration needs a name and a kind")
        choices = data.get("choices") or ()
        if not isinstance(choices, (list, tuple)) or not all(isinstance(c, str) for c in choices):
            raise ValueError(f"option {name!r}: choices must be strings")
        return cls(name=name, kind=kind, default=data.get("default"), help=str(data.get("help", "")),
                   minimum=data.get("min"), maximum=data.get("max"), choices=tuple(choices),
                   label=str(data.get("label", "")))


def specs_to_wire(specs: Iterable[OptionSpec]) -> list[dict[str, Any]]:
    """The ``capabilities()["options"]`` list a backend advertises."""
    return [spec.to_wire() for spec in specs]


def specs_from_wire(data: Any) -> tuple[OptionSpec, ...]:
    """The declarations a ``welcome`` (or capabilities map) advertises. A declaration this client
    cannot read (a kind added by a newer server) is left out rather than failing the whole list."""
    out: list[OptionSpec] = []
    for item in data if isinstance(data, (list, tuple)) else ():
        try:
            out.append(OptionSpec.from_wire(item))
        except (ValueError, TypeError):
            continue
    return tuple(out)


def check_option_map(raw: Any) -> dict[str, Any]:
    """The shape of a job's ``options`` before any backend looks at it: a small map of name to scalar."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SettingsError("options must be a map of option name to value")
    if len(raw) > MAX_OPTIONS:
        raise SettingsError(f"options may name at most {MAX_OPTIONS} options")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
            raise SettingsError(f"option names are 1-{MAX_NAME_CHARS} characters, got {name!r}")
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            raise SettingsError(f"option {name} is longer than {MAX_TEXT_CHARS} characters")
        if not isinstance(value, (bool, int, float, str)):
            raise SettingsError(f"option {name} must be true/false, a number or a name, got {type(value).__name__}")
        out[name] = value
    return out


def resolve_options(
    specs: Sequence[OptionSpec],
    given: Mapping[str, Any],
    *,
    backend: str = "the server's backend",
    lenient: Iterable[str] = (),
) -> dict[str, Any]:
    """Every declared option's value for one job: ``given`` checked against ``specs``, defaults filled in.

    An option the backend does not declare is refused with one sentence naming the options it has,
    except the names in ``lenient`` (legacy top-level settings an older client sends whatever the
    backend; backends always ignored the ones they did not use), which are dropped.
    """
    by_name = {spec.name: spec for spec in specs}
    skip = set(lenient)
    unknown = sorted(name for name in given if name not in by_name and name not in skip)
    if unknown:
        offered = ", ".join(sorted(by_name)) or "none"
        raise SettingsError(f"{backend} has no option {', '.join(unknown)} (its options: {offered})")
    values = {spec.name: spec.default for spec in specs}
    for name, raw in given.items():
        if name in by_name:
            values[name] = by_name[name].check(raw)
    return values


__all__ = [
    "LEGACY_OPTION_DEFAULTS",
    "OPTION_KINDS",
    "OptionSpec",
    "SettingsError",
    "check_option_map",
    "resolve_options",
    "specs_from_wire",
    "specs_to_wire",
]
