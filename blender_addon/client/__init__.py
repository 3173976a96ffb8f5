"""Client library for the Step1X-3D job server (pure Python: pyzmq, msgpack, numpy; no bpy).

Used by the Blender add-on's timer poll step, the headless add-on API and the CLI::

    conn = ServerConnection("tcp://127.0.0.1:5555")
    session = JobSession(conn, [png_bytes], JobSettings(seed=1))
    session.start()
    while not session.tracker.finished:
        session.step(0)          # from a bpy.app.timers callback; never blocks
    result = session.tracker.result

or, blocking: ``result = run_job(address, [png_bytes], JobSettings())``.
"""

from .connection import DEFAULT_ADDRESS, RESULT_LIMITS, ConnectionClosed, ServerConnection, SubmitRefused
from .curve import CurveKeyError, CurveKeys
from .events import (
    Accepted,
    Closed,
    ErrorEvent,
    Event,
    Offline,
    Pong,
    Progress,
    Reconnected,
    Rejected,
    Reserved,
    Result,
    ResultReady,
    ServerShutdown,
    StateChanged,
    VramFreed,
    Welcome,
)
from .session import JobFailed, JobRequestSpec, JobSession, SessionView, cancel_and_wait, run_job, wait
from .tracker import JobTracker, format_eta

__all__ = [
    "Accepted",
    "Closed",
    "ConnectionClosed",
    "CurveKeyError",
    "CurveKeys",
    "DEFAULT_ADDRESS",
    "ErrorEvent",
    "Event",
    "JobFailed",
    "JobRequestSpec",
    "JobSession",
    "JobTracker",
    "Offline",
    "Pong",
    "Progress",
    "RESULT_LIMITS",
    "Reconnected",
    "Reserved",
    "Rejected",
    "Result",
    "ResultReady",
    "ServerConnection",
    "ServerShutdown",
    "SessionView",
    "StateChanged",
    "SubmitRefused",
    "VramFreed",
    "Welcome",
    "cancel_and_wait",
    "format_eta",
    "run_job",
    "wait",
]
