"""Finished results on disk: one file per job, written atomically, read back for every fetch.

File layout: ``MAGIC``, a little-endian uint32 frame count, one uint64 length per
frame, then the frames of the ``result`` message back to back. A fetch sends
those frames as they are.

Two steps, so that a job's outcome is decided in one place, the server:

1. the worker **stages** the result: temporary file, fsync, atomic rename to
   ``.staged-<job_id>``, then it reports ``done``;
2. the server, on that report, **commits** it: atomic rename to ``<job_id>.result``
   (and a directory fsync), then it announces ``result_ready``.

A worker killed between writing and reporting leaves only a staged file, which
the server discards when it ends the job failed or cancelled, and a restart
discards too; only committed ``.result`` files come back as ``done``. A crash
never leaves a half-written result under a job's name, and a result is on disk
before any client hears it is ready.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import time
from collections.abc import Sequence
from pathlib import Path

from blender_addon.protocol.errors import Step1X3DError
from blender_addon.protocol.messages import valid_job_id

MAGIC = b"S3DRES01"
SUFFIX = ".result"
TMP_PREFIX = ".tmp-"
STAGED_PREFIX = ".staged-"  # written by the worker, not yet accepted by the server (job ids never start with ".")


class ResultStoreError(Step1X3DError):
    """A result file that cannot be written or read (a subclass: the server and the Ray bridge catch this family)."""


class DiskFull(ResultStoreError):
    """The result did not fit on the disk (ENOSPC/EDQUOT); nothing of it is left behind (code ``disk_full``)."""

    default_code = "disk_full"

    def __init__(self, folder: Path, needed: int) -> None:
        super().__init__(
            f"the server's results folder {folder} is out of space: this result needs {needed / 2**20:.1f} MiB; "
            "free some space there and submit again"
        )
        self.folder = folder
        self.needed = needed


class ResultStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str) -> Path:
        if not valid_job_id(job_id):  # job ids become file names: never let one escape the folder
            raise ResultStoreError(f"invalid job id {job_id!r}")
        return self.root / f"{job_id}{SUFFIX}"

    def staged_path(self, job_id: str) -> Path:
        self.path(job_id)  # validates the id
        return self.root / f"{STAGED_PREFIX}{job_id}"

    def stage(self, job_id: str, frames: Sequence[bytes | bytearray | memoryview]) -> Path:
        """Worker side: write the result completely (fsynced) under its staged name; not yet a result."""
        staged = self.staged_path(job_id)
        tmp = self.root / f"{TMP_PREFIX}{job_id}-{os.getpid()}"
        lengths = [len(memoryview(f).cast("B")) for f in frames]
        self.root.mkdir(parents=True, exist_ok=True)  # someone may have cleared the cache folder
        try:
            with open(tmp, "wb") as fh:
                fh.write(MAGIC)
                fh.write(struct.pack(f"<I{len(lengths)}Q", len(lengths), *lengths))
                fh.writelines(frames)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, staged)
        except BaseException as exc:
            # Whatever went wrong, a partial file must not keep its space until the next restart.
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(self.root, len(MAGIC) + 4 + 8 * len(lengths) + sum(lengths)) from None
            raise
        return staged

    def commit(self, job_id: str) -> Path:
        """Server side: the job is done; its staged result becomes the job's result (atomically, durably)."""
        final = self.path(job_id)
        try:
            os.replace(self.staged_path(job_id), final)
        except FileNotFoundError:
            raise ResultStoreError(f"the result of job {job_id} was not written (its staged file is missing)") from None
        except OSError as exc:
            raise ResultStoreError(f"the result of job {job_id} could not be stored: {exc}") from None
        _fsync_dir(self.root)
        return final

    def discard_staged(self, job_id: str) -> None:
        """Server side: the job did not end done; drop whatever result its worker may have staged."""
        try:
            self.staged_path(job_id).unlink()
        except (FileNotFoundError, ResultStoreError):
            pass

    def write(self, job_id: str, frames: Sequence[bytes | bytearray | memoryview]) -> Path:
        """Stage and commit in one go (for callers that decide the outcome themselves)."""
        self.stage(job_id, frames)
        return self.commit(job_id)

    def read(self, job_id: str) -> list[memoryview]:
        """The stored frames as views over a read-only memory map: nothing is copied before the socket.

        The map lives as long as any view (ZeroMQ holds them until sent); a result
        deleted meanwhile stays readable through it (POSIX unlink semantics).
        """
        path = self.path(job_id)
        try:
            with open(path, "rb") as fh:
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise ResultStoreError(f"the result file of job {job_id} is gone") from None
        except ValueError:  # an empty file cannot be mapped
            raise ResultStoreError(f"{path} is empty") from None
        view = memoryview(data)
        if view[: len(MAGIC)] != MAGIC or len(view) < len(MAGIC) + 4:
            raise ResultStoreError(f"{path} is not a result file")
        (count,) = struct.unpack_from("<I", view, len(MAGIC))
        offset = len(MAGIC) + 4
        if count > 4096 or len(view) < offset + 8 * count:
            raise ResultStoreError(f"{path} is damaged")
        lengths = struct.unpack_from(f"<{count}Q", view, offset)
        offset += 8 * count
        if offset + sum(lengths) != len(view):
            raise ResultStoreError(f"{path} is damaged (sizes do not add up)")
        frames = []
        for length in lengths:
            frames.append(view[offset : offset + length])
            offset += length
        return frames

    def delete(self, job_id: str) -> None:
        try:
            self.path(job_id).unlink()
        except (FileNotFoundError, ResultStoreError):
            pass

    def scan(self, *, clean_tmp: bool = False) -> dict[str, float]:
        """Job id -> modification time of every stored result.

        ``clean_tmp`` removes temp files left by a crash and staged results no server
        committed (their jobs never ended done); only safe at startup, before a worker
        may be writing one.
        """
        found: dict[str, float] = {}
        self.root.mkdir(parents=True, exist_ok=True)  # someone may have cleared the cache folder
        for entry in self.root.iterdir():
            if entry.name.startswith((TMP_PREFIX, STAGED_PREFIX)):
                if clean_tmp:
                    entry.unlink(missing_ok=True)
            elif entry.suffix == SUFFIX and valid_job_id(entry.stem):
                try:
                    found[entry.stem] = entry.stat().st_mtime
                except FileNotFoundError:  # deleted meanwhile by someone else
                    continue
        return found

    def expired(self, ttl_s: float, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        return [job_id for job_id, mtime in self.scan().items() if now - mtime > ttl_s]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
