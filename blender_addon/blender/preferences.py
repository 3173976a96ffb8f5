"""Add-on preferences: where the server is, how to start one, keys, timeouts, output folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
from bpy.props import BoolProperty, FloatProperty, StringProperty

# "bl_ext.<repo>.step1x3d" when installed as an extension, "blender_addon" when imported from a checkout.
ADDON_PACKAGE: str = (__package__ or "blender_addon").rpartition(".")[0]
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"


class STEP1X3D_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    server_address: StringProperty(  # type: ignore[valid-type]
        name="Server Address",
        description="ZeroMQ address of the Step1X-3D server, e.g. tcp://127.0.0.1:5555 or tcp://gpu-box:5555",
        default=DEFAULT_ADDRESS,
    )
    server_command: StringProperty(  # type: ignore[valid-type]
        name="Start Command",
        description="Arguments for 'Start Local Server', run as: <Python> -m inference_server.cli <arguments>",
        default="serve --host 127.0.0.1 --port 5555",
    )
    server_python: StringProperty(  # type: ignore[valid-type]
        name="Server Python",
        description="The Python interpreter (of the environment where the server is installed) to run it with",
        default="",
        subtype="FILE_PATH",
    )
    curve_server_key_file: StringProperty(  # type: ignore[valid-type]
        name="Server Public Key",
        description="The remote server's public key file (.key, made by 'step1x3d keys'); empty for a local server",
        default="",
        subtype="FILE_PATH",
    )
    curve_client_secret_file: StringProperty(  # type: ignore[valid-type]
        name="Client Secret Key",
        description="This computer's secret key file (.key_secret); give the matching .key to the server's owner",
        default="",
        subtype="FILE_PATH",
    )
    connect_timeout_s: FloatProperty(  # type: ignore[valid-type]
        name="Connect Timeout",
        description="Seconds to wait for the server to answer before reporting it offline",
        default=5.0,
        min=0.5,
        max=120.0,
        unit="TIME_ABSOLUTE",
    )
    stall_timeout_s: FloatProperty(  # type: ignore[valid-type]
        name="Silence Timeout",
        description="Seconds without any message from a running job before the server is pinged and, "
        "without an answer, reported lost",
        default=60.0,
        min=5.0,
        max=3600.0,
        unit="TIME_ABSOLUTE",
    )
    output_folder: StringProperty(  # type: ignore[valid-type]
        name="Output Folder",
        description="Where results are kept for History re-import; empty: the extension's user directory",
        default="",
        subtype="DIR_PATH",
    )
    keep_results: BoolProperty(  # type: ignore[valid-type]
        name="Keep Results", description="Store every result so it can be re-imported from History", default=True
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        col = layout.column()
        col.prop(self, "server_address")
        box = col.box()
        box.label(text="Local Server")
        box.prop(self, "server_python")
        box.prop(self, "server_command")
        box = col.box()
        box.label(text="Remote GPU Box (CURVE encryption)")
        box.prop(self, "curve_server_key_file")
        box.prop(self, "curve_client_secret_file")
        row = col.row()
        row.prop(self, "connect_timeout_s")
        row.prop(self, "stall_timeout_s")
        col.prop(self, "keep_results")
        col.prop(self, "output_folder")
        col.label(text=f"Results: {results_root()}")


@dataclass
class Prefs:
    """Plain copy of the preferences, so the headless API works without the add-on being enabled."""

    server_address: str = DEFAULT_ADDRESS
    server_command: str = "serve --host 127.0.0.1 --port 5555"
    server_python: str = ""
    curve_server_key_file: str = ""
    curve_client_secret_file: str = ""
    connect_timeout_s: float = 5.0
    stall_timeout_s: float = 60.0
    output_folder: str = ""
    keep_results: bool = True

    def curve(self) -> Any:
        """``CurveKeys`` for a remote server, None for a plain local one; raises ``CurveKeyError``."""
        if not self.curve_server_key_file:
            return None
        from ..client.curve import CurveKeys

        return CurveKeys.load(
            bpy.path.abspath(self.curve_client_secret_file), bpy.path.abspath(self.curve_server_key_file)
        )


def get_prefs(context: bpy.types.Context | None = None) -> Prefs:
    ctx = context or bpy.context
    addon = ctx.preferences.addons.get(ADDON_PACKAGE) if ctx.preferences else None
    if addon is None or addon.preferences is None:
        return Prefs()
    p = addon.preferences
    return Prefs(**{name: getattr(p, name) for name in Prefs.__dataclass_fields__})


def user_dir() -> Path:
    """The extension's user directory (survives upgrades); never the add-on's own folder.

    ``STEP1X3D_USER_DIR`` overrides it (tests); a checkout imported as a plain
    module is not an extension, so it falls back to a folder in Blender's config.
    """
    override = os.environ.get("STEP1X3D_USER_DIR")
    if override:
        path = Path(override)
    else:
        try:
            path = Path(bpy.utils.extension_path_user(ADDON_PACKAGE, create=True))
        except (ValueError, KeyError, TypeError):  # not loaded as bl_ext.<repo>.<id>
            path = Path(bpy.utils.user_resource("CONFIG", path="step1x3d"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_root(prefs: Prefs | None = None) -> Path:
    prefs = prefs or get_prefs()
    folder = bpy.path.abspath(prefs.output_folder) if prefs.output_folder else ""
    return Path(folder) if folder else user_dir() / "results"
