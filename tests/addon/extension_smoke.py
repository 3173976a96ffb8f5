"""Run in a fresh process by test_extension.py: install a built zip with Blender's extension installer.

    python tests/addon/extension_smoke.py dist/step1x3d-0.1.0-linux_x64.zip

Uses a throw-away BLENDER_USER_RESOURCES (set by the caller), installs through
``bpy.ops.extensions.package_install_files`` (what Preferences > Get Extensions >
Install from Disk runs), enables, disables and re-enables it, drives one
operator, uninstalls it, and prints one JSON line of findings.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path


def main(zip_path: str) -> None:
    import bpy  # noqa: I001 - first: it puts Blender's script modules (addon_utils) on sys.path
    import addon_utils

    found: dict[str, object] = {}
    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    module = "bl_ext.user_default.step1x3d"
    found["install"] = sorted(result)
    found["enabled"] = module in bpy.context.preferences.addons
    found["operator"] = hasattr(bpy.types, "STEP1X3D_OT_generate")
    repo = next(r for r in bpy.context.preferences.extensions.repos if r.module == "user_default")
    site = next(Path(repo.directory).parent.glob(".local/lib/python*/site-packages"), None)
    found["bundled"] = sorted(p.name for p in site.iterdir() if p.name in ("zmq", "msgpack")) if site else []
    found["user_dir"] = bpy.utils.extension_path_user(module, create=True)

    cycles = []
    for _ in range(2):
        addon_utils.disable(module, default_set=True)
        off = not hasattr(bpy.types.WindowManager, "step1x3d")
        addon_utils.enable(module, default_set=True)
        cycles.append(off and hasattr(bpy.types.WindowManager, "step1x3d"))
    found["cycles"] = cycles

    # The installed copy really runs: an operator against a port nobody listens on.
    prefs = bpy.context.preferences.addons[module].preferences
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefs.server_address = f"tcp://127.0.0.1:{port}"
    prefs.connect_timeout_s = 1.0
    image = Path(found["user_dir"]) / "front.png"  # type: ignore[arg-type]
    image.write_bytes(bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5d6a1f40000000049454e44ae426082"
    ))
    try:
        bpy.ops.step1x3d.generate(images=[{"name": str(image)}])
        found["offline"] = "no error"
    except RuntimeError as exc:
        found["offline"] = str(exc)
    found["module_file"] = sys.modules[module].__file__

    bpy.ops.extensions.package_uninstall(repo_directory=repo.directory, pkg_id="step1x3d")
    found["uninstalled"] = module not in bpy.context.preferences.addons
    print("RESULT " + json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1])
