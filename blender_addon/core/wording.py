"""One clear sentence per failure: what the artist reads in the panel and the status bar."""

from __future__ import annotations

from urllib.parse import urlparse


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


def offline(address: str) -> str:
    return (
        f"No Step1X-3D server answers at {address}: start one with "
        f"'step1x3d serve --port {port_of(address)}' or fix the address in the add-on preferences."
    )


def lost(address: str, *, waiting: bool = False) -> str:
    if waiting:
        return f"The Step1X-3D server at {address} went silent; waiting for it to answer again."
    return f"The Step1X-3D server at {address} stopped answering during the job; check that it is still running."


def stopped(address: str) -> str:
    return (f"The Step1X-3D server at {address} stopped the job (it was shutting down); "
            "nothing was imported: retry once it runs again.")
