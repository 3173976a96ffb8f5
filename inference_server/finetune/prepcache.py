"""The data-preparation cache and its report, shared by the trainers.

``<out>/objects/<stem>-<key>.npz`` holds one prepared object; the key hashes the source file's
bytes and every preparation parameter, so a re-run skips what is done (resumable after an
interruption: each entry is written atomically and the manifest after every object), redoes
what changed, and never mixes objects prepared for another base model. ``report.txt`` has one
line per source file (``ok``, ``cached`` or ``skipped`` with the reason); ``manifest.json``
lists the usable entries for the trainer.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blender_addon.protocol.errors import Step1X3DError

from ..export.files import write_atomic

MANIFEST = "manifest.json"
REPORT = "report.txt"
OBJECTS = "objects"


class PrepError(Step1X3DError):
    """One source file cannot be used; the message says why (it goes into the report)."""

    default_code = "bad_file"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def params_digest(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def scan_sources(data_dir: Path) -> list[Path]:
    """Every non-hidden file under ``data_dir`` (sorted, so reports and manifests are stable)."""
    if not data_dir.is_dir():
        raise PrepError(f"data folder not found: {data_dir}")
    files = [p for p in data_dir.rglob("*") if p.is_file() and not any(part.startswith(".")
                                                                        for part in p.relative_to(data_dir).parts)]
    return sorted(files)


@dataclass
class Entry:
    source: str  # path relative to the data folder
    file: str  # path of the .npz relative to the output folder
    key: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrepRun:
    """One preparation pass over a data folder into ``out``."""

    data_dir: Path
    out: Path
    params: dict[str, Any]
    entries: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.out / OBJECTS).mkdir(parents=True, exist_ok=True)
        self._params_key = params_digest(self.params)

    def key(self, source: Path) -> str:
        return hashlib.sha256((file_digest(source) + self._params_key).encode()).hexdigest()[:16]

    def entry_path(self, source: Path, key: str) -> Path:
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in source.stem)[:60] or "object"
        return self.out / OBJECTS / f"{stem}-{key}.npz"

    def rel(self, source: Path) -> str:
        return source.relative_to(self.data_dir).as_posix()

    def cached(self, source: Path, key: str) -> dict[str, Any] | None:
        """The stored info of a finished entry for this key, or None."""
        path = self.entry_path(source, key)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return dict(json.loads(str(data["info"])))
        except Exception:  # noqa: BLE001 - a torn or foreign file is simply redone
            return None

    def store(self, source: Path, key: str, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> Entry:
        path = self.entry_path(source, key)
        buf = io.BytesIO()
        np.savez(buf, info=np.array(json.dumps(info)), **arrays)
        write_atomic(path, buf.getvalue())
        return self.add(source, key, info, "ok")

    def add(self, source: Path, key: str, info: dict[str, Any], status: str) -> Entry:
        entry = Entry(self.rel(source), self.entry_path(source, key).relative_to(self.out).as_posix(), key, info)
        self.entries.append(entry)
        self.lines.append(f"{status:<8}{entry.source}  {info.get('summary', '')}".rstrip())
        self.flush()
        return entry

    def skip(self, source: Path, reason: str) -> None:
        self.skipped.append((self.rel(source), reason))
        self.lines.append(f"{'skipped':<8}{self.rel(source)}  {reason}")
        self.flush()

    def flush(self) -> None:
        manifest = {
            "params": self.params,
            "objects": [{"source": e.source, "file": e.file, "key": e.key, "info": e.info} for e in self.entries],
            "skipped": [{"source": s, "reason": r} for s, r in self.skipped],
        }
        write_atomic(self.out / MANIFEST, json.dumps(manifest, indent=2, default=str))
        write_atomic(self.out / REPORT, "\n".join(self.lines) + "\n")

    def summary(self) -> str:
        cached = sum(1 for line in self.lines if line.startswith("cached"))
        return (f"{len(self.entries)} object(s) ready ({cached} from the cache), {len(self.skipped)} skipped; "
                f"report: {self.out / REPORT}")


def read_manifest(data_dir: Path) -> dict[str, Any]:
    path = data_dir / MANIFEST
    if not path.is_file():
        raise PrepError(f"{data_dir} is not a prepared data folder (no {MANIFEST}); run "
                        "'step1x3d finetune prepare' on your meshes first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise PrepError(f"{path} is damaged ({exc}); run 'step1x3d finetune prepare' again") from exc
    if not manifest.get("objects"):
        raise PrepError(f"{data_dir} holds no usable objects; see {data_dir / REPORT}")
    return dict(manifest)
