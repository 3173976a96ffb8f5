"""Every sentence a client shows for a failure: the panel, the status bar, the headless API and the CLI.

One place, so one failure reads the same everywhere (``blender_addon.client`` uses it too:
it is pure Python). Server-side sentences arrive in ``error``/``rejected``/``state`` messages
and pass through :func:`failure_sentence`, which replaces the few the artist must act on.
"""

from __future__ import annotations

from urllib.parse import urlparse

ADDON_ADDRESS_HINT = " in the add-on preferences"  # where an artist fixes a wrong server address


def sentence(text: str) -> str:
    """Capitalise, strip and end with a full stop; collapse to one line (never a traceback)."""
    line = " ".join(str(text).split())
    if not line:
        return "Something went wrong."
    line = line[0].upper() + line[1:]
    return line if line[-1] in ".!?" else line + "."


def port_of(address: str) -> str:
    try:
        port = urlparse(address).port
    except ValueError:
        port = None
    return str(port) if port else "5555"


def offline(address: str, hint: str = "") -> str:
    """No server ever answered: the exact command that starts one, or where to fix the address."""
    return (
        f"No Step1X-3D server answers at {address}: start one with "
        f"'step1x3d serve --port {port_of(address)}' or fix the address{hint}."
    )


def lost(address: str, *, waiting: bool = False, silent_s: float | None = None) -> str:
    """The server answered, then went silent mid-job (still waiting, or given up after ``silent_s``)."""
    if waiting:
        return f"The Step1X-3D server at {address} went silent; waiting for it to answer again."
    silent = f" (silent for {silent_s:.0f} s)" if silent_s is not None else ""
    return (f"The Step1X-3D server at {address} stopped answering during the job{silent}; "
            "check that it is still running.")


def stopped(address: str) -> str:
    return (f"The Step1X-3D server at {address} stopped the job (it was shutting down); "
            "nothing was imported: retry once it runs again.")


def timed_out(seconds: float) -> str:
    return f"The job took longer than {seconds:.0f} s and was cancelled."


CANCELLED = "Cancelled."


def failure_sentence(code: str, message: str, *, address: str = "", retry_after_s: float | None = None) -> str:
    """One sentence an artist can act on, for a failure code from the protocol."""
    if code == "offline":
        return offline(address)
    if code == "busy":
        wait = f" in about {retry_after_s:.0f} s" if retry_after_s else " in a moment"
        return f"The server is busy with other jobs; try again{wait}."
    if code == "out_of_memory":
        return (
            "The server ran out of GPU memory; lower the face count or texture size, "
            "free VRAM, or close other GPU programs, and try again."
        )
    if code == "cancelled":
        return CANCELLED
    if code == "expired":
        return "The result was kept on the server past its retention time and deleted; generate it again."
    if code == "unknown_job":
        return "The server does not know this job (it was restarted or the job was closed); submit it again."
    if code == "server_stopped" and address:
        return stopped(address)  # the job was accepted, then the server stopped: as when it cancels it itself
    if code in ("shutting_down", "server_stopped"):
        return "The server is shutting down; start it again and resubmit."
    text = (message or code).strip()
    if text and text[-1] not in ".!?":
        text += "."
    return text  # not re-capitalised: it may start with a file name
