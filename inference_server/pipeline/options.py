"""Backend options on the server side: reading a job's value of a declared option.

The declaration type and its checks are the wire contract's (``blender_addon.protocol.options``,
shared with the add-on); each backend lists its :class:`OptionSpec` s in
``capabilities()["options"]``. The server checks a submit against that list before it queues the
job; a backend run in-process (``step1x3d generate`` without ``--server``, tests) reads its
values through :func:`option_value`, which applies the same checks and defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from blender_addon.protocol.options import OptionSpec, SettingsError, specs_from_wire, specs_to_wire
from blender_addon.protocol.settings import JobSettings

from .base import PipelineError

__all__ = ["OptionSpec", "check_job_options", "declared_options", "option_name", "option_value", "specs_to_wire"]


def option_value(settings: JobSettings, spec: OptionSpec) -> Any:
    """The job's value of ``spec``: checked, or the declared default when the job does not set it."""
    if spec.name not in settings.options:
        return spec.default
    try:
        return spec.check(settings.options[spec.name])
    except SettingsError as exc:
        raise PipelineError(str(exc), code="bad_settings") from None


def option_name(settings: JobSettings, spec: OptionSpec) -> str:
    """A choice whose choices are a server folder's listing (LoRA names): the job's name, unchecked
    against that listing here (the submit check did that; the loader refuses path escapes)."""
    value = settings.options.get(spec.name, spec.default)
    if not isinstance(value, str):
        raise PipelineError(f"option {spec.name} must be a name, got {value!r}", code="bad_settings")
    return value


def declared_options(capabilities: dict[str, Any] | None) -> tuple[OptionSpec, ...] | None:
    """The options a backend's capabilities declare; None when the capabilities are not known yet."""
    if capabilities is None or capabilities.get("loading"):
        return None
    return specs_from_wire(capabilities.get("options", []))


def check_job_options(settings: JobSettings, specs: Sequence[OptionSpec], backend: str) -> JobSettings:
    """``settings`` with its options checked against ``specs`` (an in-process run's equivalent of the
    server's submit check): an undeclared or out-of-range option fails as ``bad_settings``."""
    try:
        return settings.with_options(specs, backend=f"the {backend} backend")
    except SettingsError as exc:
        raise PipelineError(str(exc), code="bad_settings") from None
