"""The job history: one JSON file under the extension's user directory.

It lists jobs of this Blender session and earlier ones so the artist can
re-import a result without running the job again. The file is rewritten
atomically (temp file + ``os.replace``) and a damaged file is set aside
instead of breaking the panel.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .files import write_atomic

HISTORY_FILE = "history.json"
MAX_ENTRIES = 200  # oldest entries drop off; their result folders stay until the artist deletes them


@dataclass
class HistoryEntry:
    job_id: str
    name: str  # asset (object) name
    mode: str
    state: str  # done | failed | cancelled
    created: float = field(default_factory=time.time)  # Unix time
    message: str = ""  # failure sentence or notes
    images: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    result_dir: str = ""  # folder with mesh.npz/meta.json, "" when nothing was kept
    vertices: int = 0
    faces: int = 0
    backend: str = ""
    views: list[str] = field(default_factory=list)  # the view of each reference image, in order
    reference_files: list[str] = field(default_factory=list)  # copies kept with the result (regenerate, reuse)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "HistoryEntry":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def label(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        return f"{when}  {self.name}  ({self.state})"


class History:
    def __init__(self, folder: Path) -> None:
        self.path = folder / HISTORY_FILE

    def load(self) -> list[HistoryEntry]:
        """Newest first. A missing file is an empty history; a damaged one is renamed aside."""
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            return [HistoryEntry.from_json(item) for item in raw.get("jobs", []) if isinstance(item, dict)]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError, AttributeError):
            try:
                os.replace(self.path, self.path.with_suffix(".damaged.json"))
            except OSError:
                pass
            return []

    def add(self, entry: HistoryEntry) -> None:
        entries = [e for e in self.load() if e.job_id != entry.job_id]
        entries.insert(0, entry)
        self._write(entries[:MAX_ENTRIES])

    def find(self, job_id: str) -> HistoryEntry | None:
        return next((e for e in self.load() if e.job_id == job_id), None)

    def clear(self) -> None:
        self._write([])

    def _write(self, entries: list[HistoryEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"version": 1, "jobs": [asdict(e) for e in entries]}, indent=1, default=str))
