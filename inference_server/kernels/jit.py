"""Numba's JIT, with its on-disk cache in a per-user folder, never beside the installed code.

Every module that compiles CPU kernels imports ``njit``/``prange`` from here, so the cache
folder is set before numba reads it. Without this, ``cache=True`` writes ``__pycache__``
folders into ``site-packages``; a later editable install then leaves them behind as a
namespace package that shadows the project (the quick-start breakage of issue 11).

The folder is ``$STEP1X3D_CACHE_DIR/numba`` when that variable is set, else the platform's
per-user cache folder (``~/.cache/step1x3d/numba`` on Linux). ``NUMBA_CACHE_DIR`` set by the
user wins over both. An unwritable choice falls back to a per-user temporary folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE_ENV = "STEP1X3D_CACHE_DIR"


def cache_root() -> Path:
    """The per-user folder for everything step1x3d caches (compiled kernels, ...)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("step1x3d", appauthor=False))


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def _choose_numba_cache_dir() -> str:
    for candidate in (os.environ.get("NUMBA_CACHE_DIR"), str(cache_root() / "numba")):
        if candidate and _writable(Path(candidate)):
            return candidate
    fallback = Path(tempfile.gettempdir()) / f"step1x3d-{os.getuid() if hasattr(os, 'getuid') else 'user'}" / "numba"
    fallback.mkdir(parents=True, exist_ok=True)
    return str(fallback)


NUMBA_CACHE_DIR = _choose_numba_cache_dir()
# numba reads the variable when it is first imported (here, and in spawned worker processes);
# setting its config as well covers a numba that someone imported before us.
os.environ["NUMBA_CACHE_DIR"] = NUMBA_CACHE_DIR

import numba  # noqa: E402 - must follow the cache folder's choice
from numba import njit, prange  # noqa: E402

setattr(numba.config, "CACHE_DIR", NUMBA_CACHE_DIR)  # numba.config is untyped

__all__ = ["CACHE_ENV", "NUMBA_CACHE_DIR", "cache_root", "get_num_threads", "njit", "on_compile", "prange"]

get_num_threads = numba.get_num_threads


@contextmanager
def on_compile(callback: Callable[[str], None]) -> Iterator[None]:
    """Call ``callback(function name)`` each time a kernel is compiled (not loaded from the cache).

    The CLI uses it to say, once, that the first run compiles the CPU kernels, instead of
    leaving a newcomer to wonder why the first job takes longer.
    """
    from numba.core import event

    class _Listener(event.Listener):  # type: ignore[misc]
        def on_start(self, ev: event.Event) -> None:
            dispatcher = ev.data.get("dispatcher")
            func = getattr(dispatcher, "py_func", None)
            callback(getattr(func, "__qualname__", "kernel"))

        def on_end(self, ev: event.Event) -> None:
            pass

    with event.install_listener("numba:compile", _Listener()):
        yield
