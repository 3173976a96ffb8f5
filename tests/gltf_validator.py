"""Run the Khronos glTF-Validator (npm ``gltf-validator``) on GLB bytes from Python.

The validator lives in ``<repo>/.cache/node`` (git-ignored). ``ensure_validator()``
installs it there when missing, with the same idempotent command CI runs:

    [ -f .cache/node/node_modules/gltf-validator/index.js ] || npm install --prefix .cache/node --no-save --no-audit --no-fund gltf-validator@2.0.0-dev.3.10
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NODE_PREFIX = REPO / ".cache" / "node"
VALIDATOR_VERSION = "2.0.0-dev.3.10"
SCRIPT = REPO / "tests" / "tools" / "gltf_validate.mjs"


class ValidatorUnavailable(RuntimeError):
    """node/npm missing or the install failed: the message says which."""


def ensure_validator() -> Path:
    """Install ``gltf-validator`` into ``.cache/node`` if it is not there yet; return its folder."""
    package = NODE_PREFIX / "node_modules" / "gltf-validator"
    if (package / "index.js").is_file():
        return package
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ValidatorUnavailable("node and npm are needed for the glTF validator tests")
    NODE_PREFIX.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [npm, "install", "--prefix", str(NODE_PREFIX), "--no-save", "--no-audit", "--no-fund",
         f"gltf-validator@{VALIDATOR_VERSION}"],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0 or not (package / "index.js").is_file():
        raise ValidatorUnavailable(f"npm install gltf-validator failed: {proc.stderr[-2000:]}")
    return package


def validate_glb(data: bytes) -> dict[str, Any]:
    """Validate GLB bytes. Returns {"errors", "warnings", "infos", "hints", "messages", "report"}.

    ``messages`` lists "SEVERITY CODE pointer: message" strings for every issue
    (severity 0 error, 1 warning, 2 info, 3 hint).
    """
    ensure_validator()
    proc = subprocess.run(["node", str(SCRIPT)], input=data, capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise ValidatorUnavailable(f"gltf-validator crashed: {proc.stderr.decode(errors='replace')[-2000:]}")
    report = json.loads(proc.stdout)
    issues = report.get("issues", {})
    names = {0: "ERROR", 1: "WARNING", 2: "INFO", 3: "HINT"}
    messages = [
        f"{names.get(m.get('severity'), m.get('severity'))} {m.get('code')} {m.get('pointer', '')}: {m.get('message')}"
        for m in issues.get("messages", [])
    ]
    return {
        "errors": int(issues.get("numErrors", 0)),
        "warnings": int(issues.get("numWarnings", 0)),
        "infos": int(issues.get("numInfos", 0)),
        "hints": int(issues.get("numHints", 0)),
        "messages": messages,
        "report": report,
    }


__all__ = ["ValidatorUnavailable", "ensure_validator", "validate_glb"]
