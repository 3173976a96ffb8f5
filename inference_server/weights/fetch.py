"""``step1x3d weights fetch``: download exactly the files our loaders read, into the one layout.

Plan first (one repository listing per hub repository, with sizes and LFS SHA-256s), state the
total and check free disk space, then download file by file with ``huggingface_hub``: it shows
progress and resumes after a dropped connection (an HTTP range request); a run that was killed
leaves ``<file>.part`` and the next run resumes it. Files already complete are not fetched again. Every file is then checked: LFS files (the weights) against the hub's
SHA-256, small files against their size. A file that does not match is deleted and fetched once
more; a second mismatch is an error.

All files of one repository come from the commit its listing names, so a branch moving in the
middle of a fetch cannot mix versions. ``--endpoint`` (or ``HF_ENDPOINT``) selects a mirror; the
token is huggingface_hub's usual one (``HF_TOKEN`` or ``hf auth login``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blender_addon.protocol.errors import Step1X3DError

from .catalog import Source, sources_for

HASH_CHUNK = 8 * 1024 * 1024
PARTIAL_SUFFIX = ".part"  # an unfinished download, resumed by the next run
# Room left over on the disk beyond the download itself (metadata, the filesystem's own needs).
DISK_MARGIN_BYTES = 256 * 1024**2


def _failed(message: str) -> Step1X3DError:
    """A fetch that cannot go on; the message is one actionable sentence."""
    return Step1X3DError(message, "fetch_failed")


@dataclass(frozen=True)
class PlannedFile:
    repo_id: str
    commit: str  # the commit the repository listing named
    repo_path: str  # path inside the repository
    local_dir: Path  # huggingface_hub's local_dir for this repository
    size: int
    sha256: str | None  # LFS files only

    @property
    def local_path(self) -> Path:
        return self.local_dir / self.repo_path


@dataclass
class FetchReport:
    files: list[PlannedFile]
    total_bytes: int
    downloaded: list[str]  # repo paths fetched over the network in this run (not already complete)
    refetched: list[str]  # repo paths whose local copy failed verification and were fetched again


def _hub() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.constants  # noqa: F401 - submodules the package loads lazily
        import huggingface_hub.errors  # noqa: F401
        import huggingface_hub.utils  # noqa: F401
    except ImportError:
        raise Step1X3DError("fetching weights needs huggingface_hub: pip install 'step1x3d[assets]'",
                            "not_installed") from None
    return huggingface_hub


def _hub_error(exc: Exception, repo_id: str, endpoint: str) -> Step1X3DError:
    hub = _hub()
    errors = hub.errors
    if isinstance(exc, errors.GatedRepoError):
        return _failed(f"{repo_id} is gated: accept its terms on the hub and log in (`hf auth login` or HF_TOKEN)")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return _failed(f"{repo_id} was not found on {endpoint} (or it needs a token: `hf auth login` or HF_TOKEN)")
    if isinstance(exc, errors.RevisionNotFoundError):
        return _failed(f"{repo_id} has no such revision on {endpoint}")
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return _failed("HF_HUB_OFFLINE is set; unset it to fetch weights")
    text = " ".join(str(exc).split())
    return _failed(f"cannot fetch from {endpoint} ({repo_id}): {text[:300]}")


def plan_fetch(root: Path, models: tuple[str, ...], *, endpoint: str, revision: str | None,
               token: str | bool | None = None) -> list[PlannedFile]:
    """The files to fetch, resolved against the repositories' listings (one request per repository)."""
    hub = _hub()
    api = hub.HfApi(endpoint=endpoint, token=token)
    plan: list[PlannedFile] = []
    listings: dict[tuple[str, str | None], Any] = {}
    for src in sources_for(models):
        rev = revision if src.follows_revision else None
        key = (src.repo_id, rev)
        if key not in listings:
            try:
                listings[key] = api.model_info(src.repo_id, revision=rev, files_metadata=True)
            except Exception as exc:  # noqa: BLE001 - every hub/network failure becomes one sentence
                raise _hub_error(exc, src.repo_id, endpoint) from exc
        plan.extend(_resolve(src, listings[key], root))
    return plan


def _resolve(src: Source, info: Any, root: Path) -> list[PlannedFile]:
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    commit = str(info.sha or "main")
    out: list[PlannedFile] = []
    for want in src.wants:
        name = next((n for n in want.names if n in siblings), None)
        if name is None:
            if want.optional:
                continue
            raise _failed(f"{src.repo_id} at {commit[:12]} has no {' or '.join(want.names)}; "
                          "is the revision or the mirror right?")
        sib = siblings[name]
        lfs = getattr(sib, "lfs", None)
        size = int(lfs.size if lfs is not None else (sib.size or 0))
        out.append(PlannedFile(src.repo_id, commit, name, root / src.folder if src.folder else root, size,
                               str(lfs.sha256) if lfs is not None else None))
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(f: PlannedFile) -> str | None:
    """None when the local copy is the hub's file, else why not."""
    path = f.local_path
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != f.size:
        return f"{size} bytes, the hub's file has {f.size}"
    if f.sha256 is not None and sha256_of(path) != f.sha256:
        return "its SHA-256 differs from the hub's"
    return None


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def _complete(f: PlannedFile) -> bool:
    return f.local_path.is_file() and f.local_path.stat().st_size == f.size


def _have(f: PlannedFile) -> int:
    """Bytes of ``f`` already on disk (complete, or a partial download to resume)."""
    if _complete(f):
        return f.size
    part = partial_path(f)
    return min(part.stat().st_size, f.size) if part.is_file() else 0


def check_space(root: Path, plan: list[PlannedFile]) -> int:
    """Bytes still to download; raises when the disk holding ``root`` cannot take them."""
    needed = sum(f.size - _have(f) for f in plan)
    probe = root
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + DISK_MARGIN_BYTES > free:
        raise _failed(f"the download needs {human_size(needed)} in {root} but only {human_size(free)} is free; "
                      "free some space or choose another --dir")
    return needed


def fetch(root: str | Path, models: tuple[str, ...], *, endpoint: str | None = None, revision: str | None = None,
          token: str | bool | None = None, say: Callable[[str], None] = print, progress: bool = True) -> FetchReport:
    """Fetch ``models`` into ``root`` (see the module docstring); returns what was done."""
    hub = _hub()
    if hub.constants.HF_HUB_OFFLINE:
        raise _failed("HF_HUB_OFFLINE is set; unset it to fetch weights")
    root = Path(root).expanduser().resolve()
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or hub.constants.ENDPOINT).rstrip("/")
    plan = plan_fetch(root, models, endpoint=endpoint, revision=revision, token=token)
    total = sum(f.size for f in plan)
    needed = check_space(root, plan)
    say(f"{len(plan)} files, {human_size(total)} in all; {human_size(needed)} to download into {root}")
    root.mkdir(parents=True, exist_ok=True)
    report = FetchReport(files=plan, total_bytes=total, downloaded=[], refetched=[])
    for f in plan:
        present = f.local_path.is_file()
        problem = verify(f) if present else "missing"
        if problem is None:
            continue  # complete and verified (a re-run)
        if present:
            say(f"{f.repo_path}: {problem}; fetching it again")
            f.local_path.unlink()
            partial_path(f).unlink(missing_ok=True)
            report.refetched.append(f.repo_path)
        _download(hub, f, endpoint, token, progress=progress)
        report.downloaded.append(f.repo_path)
        problem = verify(f)
        if problem is not None:
            say(f"{f.repo_path}: {problem}; fetching it again")
            f.local_path.unlink()
            report.refetched.append(f.repo_path)
            _download(hub, f, endpoint, token, progress=progress)
            problem = verify(f)
            if problem is not None:
                f.local_path.unlink()
                raise _failed(f"{f.repo_id}/{f.repo_path} fetched twice and still {problem}; "
                              "the mirror may be serving a damaged file")
    say(f"done: {len(plan)} files verified in {root}")
    return report


def partial_path(f: PlannedFile) -> Path:
    return f.local_path.with_name(f.local_path.name + PARTIAL_SUFFIX)


def _download(hub: Any, f: PlannedFile, endpoint: str, token: str | bool | None, *, progress: bool) -> None:
    """Download one file to ``<name>.part`` (appending to what an interrupted run left), then
    rename it into place. huggingface_hub resumes within one call; the ``.part`` file makes a
    killed or failed run resume too (its own temporary files are per process)."""
    from huggingface_hub.file_download import http_get

    if not progress:
        hub.utils.disable_progress_bars()
    part = partial_path(f)
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        url = hub.hf_hub_url(f.repo_id, f.repo_path, revision=f.commit, endpoint=endpoint)
        meta = hub.get_hf_file_metadata(url, token=token, endpoint=endpoint)
        headers = hub.utils.build_hf_headers(token=token)
        with open(part, "ab") as out:
            have = out.tell()
            if have > f.size:  # not a prefix of this file: start again
                out.truncate(0)
                have = 0
            http_get(meta.location, out, resume_size=have, headers=headers, expected_size=f.size,
                     displayed_filename=f.repo_path)
    except Exception as exc:  # noqa: BLE001 - every hub/network failure becomes one sentence
        raise _hub_error(exc, f.repo_id, endpoint) from exc
    os.replace(part, f.local_path)


__all__ = ["FetchReport", "PlannedFile", "check_space", "fetch", "plan_fetch", "sha256_of", "verify"]
