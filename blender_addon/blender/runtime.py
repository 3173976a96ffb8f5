"""Live jobs, the status probe, the optional local server, and the timer that drives them.

Python objects that cannot live in RNA (sockets, sessions) stay in this module,
keyed by job id; everything the panel shows is copied onto the WindowManager
(``wm.step1x3d``) by :func:`poll_step`, a plain function that tests and the
headless API can call in a loop (timers never fire in the PyPI ``bpy``).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from typing import Any

import bpy

from ..core import wording
from ..core.history import History, HistoryEntry
from ..core.presets import PresetStore
from ..core.probe import StatusProbe
from ..core.vram import VramRequest
from ..client.session import SessionView
from ..protocol.options import specs_from_wire
from . import jobs, options_ui
from .preferences import get_prefs, user_dir
from .properties import state

JOB_INTERVAL_S = 0.1
IDLE_INTERVAL_S = 5.0

_jobs: dict[str, jobs.ActiveJob] = {}
_probe: StatusProbe | None = None
_last_probe = 0.0
_server_process: subprocess.Popen[bytes] | None = None
_vram: VramRequest | None = None
_preset_items: list[tuple[str, str, str]] = []  # kept alive: Blender does not copy dynamic enum strings


# -- jobs ------------------------------------------------------------------------------------------


def add_job(job: jobs.ActiveJob, context: bpy.types.Context | None = None) -> None:
    _jobs[job.job_id] = job
    st = state(context)
    st.job_id = job.job_id
    st.last_message = ""
    st.last_failed = False
    if len(_jobs) == 1:
        _sync(st, job.session.view, job)
    set_status_bar(context, None)
    ensure_timer()


def get_job(job_id: str) -> jobs.ActiveJob | None:
    return _jobs.get(job_id)


def active_job() -> jobs.ActiveJob | None:
    return next(iter(_jobs.values()), None)


def all_jobs() -> list[jobs.ActiveJob]:
    return list(_jobs.values())


def pop_job(job_id: str) -> jobs.ActiveJob | None:
    job = _jobs.pop(job_id, None)
    if job is not None:
        job.session.close()
    return job


def cancel_all() -> None:
    for job in list(_jobs.values()):
        job.session.cancel()


def _sync(st: Any, view: SessionView, job: jobs.ActiveJob | None = None) -> None:
    st.job_state = view.state
    fraction, text = view.fraction, view.progress_text()
    batch = job.extra.get(jobs.BATCH) if job is not None else None
    if batch is not None:  # variations: one bar for the whole batch, "Variation 2 of 4: ..."
        size = batch[2]
        ended = size - sum(1 for j in _jobs.values() if (j.extra.get(jobs.BATCH) or ("",))[0] == batch[0])
        fraction = (ended + view.fraction) / size
        text = f"Variation {ended + 1} of {size}: {text}"
    st.job_fraction = fraction
    st.job_text = text


def poll_step(context: bpy.types.Context | None = None) -> bool:
    """Advance every live job, the status probe and a Free VRAM request once, without blocking.

    True while work remains. The jobs of a batch (variations) wait in the server's queue
    together; the panel follows the one running (else the oldest), and each finished one is
    imported as its own undo step.
    """
    ctx = context or bpy.context
    st = state(ctx)
    changed = _probe_step(st) | _vram_step(st)
    views = {job_id: job.session.step(0) for job_id, job in list(_jobs.items())}
    if views:
        shown = next((i for i, v in views.items() if v.state == "running"), next(iter(views)))
        _sync(st, views[shown], _jobs[shown])
        changed = True
    for job_id, view in views.items():
        if view.terminal:
            finish(ctx, job_id)
    if changed:
        tag_redraw(ctx)
    return bool(_jobs) or (_probe is not None and not _probe.finished) or vram_pending()


def finish(context: bpy.types.Context, job_id: str) -> bpy.types.Object | None:
    """Import (or apply) a finished job through the UNDO operator, or report its failure."""
    job = _jobs.get(job_id)
    if job is None:
        return None
    st = state(context)
    st.last_message = ""
    obj = None
    try:
        if job.session.view.state == "done":
            # An UNDO operator makes the whole import one undo step. Called from Python, Blender pushes
            # that step only when asked: the second positional argument is `undo`.
            result = bpy.ops.step1x3d.import_result("EXEC_DEFAULT", True, job_id=job_id)  # type: ignore[attr-defined]
            if "FINISHED" in result:
                obj = bpy.data.objects.get(st.last_object)
        else:
            jobs.complete(context, job, get_prefs(context))  # records history, raises JobFailed
    except jobs.JobFailed as exc:
        report(context, str(exc), failed=job.session.view.state != "cancelled")
    except RuntimeError as exc:
        # bpy raises the operator's ERROR report as RuntimeError; the operator has already put its
        # sentence in the panel. Anything else (no usable context) gets one sentence here.
        jobs.rollback(job)
        if not st.last_message:
            report(context, wording.sentence(f"Could not import the result: {exc}"), failed=True)
    finally:
        pop_job(job_id)
        nxt = active_job()
        st.job_id = nxt.job_id if nxt is not None else ""
    return obj


def report(context: bpy.types.Context | None, message: str, *, failed: bool) -> None:
    st = state(context)
    st.last_message = message
    st.last_failed = failed
    st.job_text = message
    set_status_bar(context, message)
    print(f"Step1X-3D: {message}")


def set_status_bar(context: bpy.types.Context | None, message: str | None) -> None:
    ctx = context or bpy.context
    workspace = getattr(ctx, "workspace", None)
    if workspace is not None:
        try:
            workspace.status_text_set(f"Step1X-3D: {message}" if message else None)
        except (RuntimeError, TypeError):
            pass


def tag_redraw(context: bpy.types.Context | None = None) -> None:
    wm = (context or bpy.context).window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


# -- server status ---------------------------------------------------------------------------------


def refresh_status(context: bpy.types.Context | None = None) -> None:
    """Start a new probe (the previous one is closed)."""
    global _probe, _last_probe
    prefs = get_prefs(context)
    if _probe is not None:
        _probe.close()
    _probe = StatusProbe(jobs.connector(prefs), prefs.server_address, timeout_s=prefs.connect_timeout_s)
    _probe.start()
    _last_probe = time.monotonic()
    st = state(context)
    st.server_line = _probe.line
    ensure_timer()


def _probe_step(st: Any) -> bool:
    if _probe is None or _probe.finished:
        return False
    if _probe.step():
        st.server_line = _probe.line
        st.server_online = _probe.online
        if _probe.finished and _probe.server is not None:
            caps = _probe.server.backends.get(_probe.server.backend) or {}
            # The backend's own options (its LoRAs among them) become the panel's option widgets.
            options_ui.declare(specs_from_wire(caps.get("options") if isinstance(caps, dict) else None))
        return True
    return False


def free_vram(context: bpy.types.Context | None = None) -> None:
    """Ask the server to release its models' GPU memory (answered once no job runs)."""
    global _vram
    prefs = get_prefs(context)
    if _vram is not None:
        _vram.close()
    _vram = VramRequest(jobs.connector(prefs), prefs.server_address, timeout_s=prefs.connect_timeout_s)
    _vram.start()
    st = state(context)
    st.vram_line, st.vram_failed = _vram.line, _vram.failed
    ensure_timer()


def vram_pending() -> bool:
    return _vram is not None and not _vram.finished


def cancel_free_vram(context: bpy.types.Context | None = None) -> None:
    if _vram is not None and not _vram.finished:
        _vram.cancel()
        st = state(context)
        st.vram_line, st.vram_failed = _vram.line, _vram.failed


def _vram_step(st: Any) -> bool:
    if _vram is None or _vram.finished:
        return False
    changed = _vram.step()
    st.vram_line, st.vram_failed = _vram.line, _vram.failed
    if _vram.finished:
        print(f"Step1X-3D: {_vram.line}")
    return changed


def start_local_server(context: bpy.types.Context) -> str:
    """Start the configured server as a child process (not a thread); returns a sentence for the panel."""
    global _server_process
    prefs = get_prefs(context)
    if _server_process is not None and _server_process.poll() is None:
        return "The local server is already running."
    if not prefs.server_python:
        return "Set 'Server Python' in the add-on preferences to the Python where the server is installed."
    args = [bpy.path.abspath(prefs.server_python), "-m", "inference_server.cli", *shlex.split(prefs.server_command)]
    log = user_dir() / "server.log"
    try:
        with open(log, "ab") as out:
            _server_process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        return wording.sentence(f"Could not start the server: {exc}")
    return f"Starting the local server (log: {log})."


def stop_local_server() -> None:
    """Only the process this add-on started; never waits more than a moment (Blender must quit fast)."""
    global _server_process
    proc, _server_process = _server_process, None
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- history --------------------------------------------------------------------------------------

_history_cache: tuple[tuple[int, int], list[HistoryEntry]] = ((-1, -1), [])


def history_entries() -> list[HistoryEntry]:
    """The history, re-read only when the file changed (the panel redraws often)."""
    global _history_cache
    history = History(user_dir())
    try:
        stat = history.path.stat()
    except OSError:
        return []
    key = (stat.st_mtime_ns, stat.st_size)  # size too: coarse file-system clocks can repeat an mtime
    if key != _history_cache[0]:
        _history_cache = (key, history.load())
    return _history_cache[1]


# -- presets ---------------------------------------------------------------------------------------


def preset_store() -> PresetStore:
    return PresetStore(user_dir())


def preset_enum_items() -> list[tuple[str, str, str]]:
    global _preset_items
    try:
        names = list(preset_store().all_presets())
    except OSError:
        names = []
    _preset_items = [(n, n, f"Apply the '{n}' preset") for n in names] or [("", "(none)", "")]
    return _preset_items


# -- timer -----------------------------------------------------------------------------------------


def _timer() -> float | None:
    """Registered with ``bpy.app.timers``; keeps going while jobs or probes are live."""
    try:
        busy = poll_step(bpy.context)
    except Exception as exc:  # a timer that raises is unregistered silently: end the jobs, say why
        for job_id in list(_jobs):
            job = pop_job(job_id)
            if job is not None:
                jobs.rollback(job)
        report(bpy.context, wording.sentence(f"The job failed unexpectedly: {exc}"), failed=True)
        busy = False
    if busy:
        return JOB_INTERVAL_S
    if time.monotonic() - _last_probe > 30.0:  # idle: refresh the status line now and then
        refresh_status(bpy.context)
        return JOB_INTERVAL_S
    return IDLE_INTERVAL_S


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=JOB_INTERVAL_S, persistent=True)


def shutdown() -> None:
    """unregister(): stop the timer, close every socket and its context (LINGER 0), stop our server.

    Never blocks: each ServerConnection owns its zmq context and terminates it in close().
    """
    global _probe, _vram
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    for job_id in list(_jobs):
        job = _jobs.get(job_id)
        if job is not None:
            job.session.cancel()  # best effort: tell the server before the socket goes
            jobs.rollback(job)  # the object stays as it was before the job
        pop_job(job_id)
    if _probe is not None:
        _probe.close()
        _probe = None
    if _vram is not None:
        _vram.close()
        _vram = None
    stop_local_server()

