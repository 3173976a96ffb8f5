"""Every error code written in the source is one of ERROR_CODES (blender_addon/protocol/errors.py).

The source of ``inference_server`` and ``blender_addon`` is walked as syntax trees: string
literals passed as ``code=``, as the code argument of Step1X3DError and its subclasses, of the
wire's error/rejection messages and of the server's helpers, and the ``default_code`` of every
error subclass. A code outside the registry would raise ValueError only when that failure
happens; this finds it before.
"""

from __future__ import annotations

import ast
from pathlib import Path

from blender_addon.protocol.errors import ERROR_CODES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("inference_server", "blender_addon")
# Callables (besides Step1X3DError's family) whose code is a positional argument: name -> index.
CODE_POSITION = {
    "JobError": 0,  # server: a job's recorded failure, (code, message)
    "ErrorEvent": 1, "Rejected": 1, "_error": 1, "_reject": 2,  # wire messages and the server's senders
    "_fail": 0, "fail": 0,  # the client's tracker
}


def _name(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def error_classes(trees: list[ast.Module]) -> set[str]:
    """Step1X3DError and every class deriving from it (by name, transitively)."""
    found = {"Step1X3DError", "ProtocolError"}
    bases = {cls.name: {_name(b) for b in cls.bases} for tree in trees for cls in ast.walk(tree)
             if isinstance(cls, ast.ClassDef)}
    while True:
        more = {name for name, parents in bases.items() if parents & found} - found
        if not more:
            return found
        found |= more


def codes_in(tree: ast.Module, errors: set[str]) -> list[tuple[int, str]]:
    """(line, code) of every code literal in ``tree``."""
    out: list[tuple[int, str]] = []

    def literal(node: ast.expr | None) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            for kw in node.keywords:
                if kw.arg == "code":
                    literal(kw.value)
            index = CODE_POSITION.get(name, 1 if name in errors else None)
            if index is not None and len(node.args) > index:
                literal(node.args[index])
        elif isinstance(node, ast.Assign) and any(_name(t) == "default_code" for t in node.targets):
            literal(node.value)
    return out


def source_trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text("utf-8"), str(path))
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def test_every_code_in_the_source_is_registered() -> None:
    trees = source_trees()
    errors = error_classes(list(trees.values()))
    found = [(path, line, code) for path, tree in trees.items() for line, code in codes_in(tree, errors)]
    unknown = [f"{path.relative_to(ROOT)}:{line}: {code!r}" for path, line, code in found if code not in ERROR_CODES]
    assert not unknown, "codes missing from ERROR_CODES:\n" + "\n".join(unknown)
    # The walk sees what it should: the server's own answers and the error families' codes.
    seen = {code for _, _, code in found}
    assert {"unknown_type", "unknown_job", "not_ready", "bad_mesh", "disk_full", "startup_failed", "offline",
            "bad_input", "usage", "export_failed", "bad_file", "worker_crashed", "bad_image"} <= seen
    assert {"ProtocolError", "SubmitRefused", "Refusal", "ResultStoreError", "DiskFull", "StartupError",
            "ConnectionClosed", "CurveKeyError", "JobFailed"} <= errors


def test_the_walk_catches_an_unregistered_code() -> None:
    tree = ast.parse(
        "class Oops(Step1X3DError):\n    default_code = 'made_up_1'\n"
        "raise Oops('x', 'made_up_2')\n"
        "self._error(peer, 'made_up_3', 'm')\n"
        "raise Step1X3DError('x', code='made_up_4')\n"
        "raise JobError('made_up_5', 'm')\n"
    )
    codes = [code for _, code in codes_in(tree, error_classes([tree]))]
    assert sorted(codes) == [f"made_up_{i}" for i in range(1, 6)]
