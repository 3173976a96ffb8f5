"""What a client hears: the server's typed messages (:mod:`blender_addon.protocol.messages`) plus two events
the connection makes up itself (:class:`Offline`, :class:`Reconnected`).

The message classes are the wire schema itself, decoded by the one codec; nothing here
parses headers. Pure Python + numpy: the Blender add-on consumes these from its timer poll step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..protocol.messages import (
    Accepted,
    Closed,
    ErrorEvent,
    Pong,
    Progress,
    Rejected,
    Reserved,
    Result,
    ResultReady,
    ServerShutdown,
    StateChanged,
    VramFreed,
    Welcome,
)


@dataclass
class Offline:
    """Synthesised by the client: nothing heard from the server for ``silent_s`` seconds."""

    address: str
    silent_s: float


@dataclass
class Reconnected:
    """Synthesised by the client: a new connection to the server (it restarted, or the network dropped).

    The server may not know this client follows its jobs (or the jobs at all): re-attach them.
    """

    address: str
    reason: str


Event = Union[
    Welcome,
    Accepted,
    Rejected,
    Progress,
    StateChanged,
    ResultReady,
    Result,
    ErrorEvent,
    Pong,
    Closed,
    VramFreed,
    ServerShutdown,
    Offline,
    Reconnected,
    Reserved,
]
SERVER_EVENTS = (Welcome, Accepted, Rejected, Progress, StateChanged, ResultReady, Result, ErrorEvent, Pong, Closed,
                 VramFreed, ServerShutdown, Reserved)


__all__ = [
    "Accepted",
    "Closed",
    "ErrorEvent",
    "Event",
    "Offline",
    "Pong",
    "Progress",
    "Reconnected",
    "Rejected",
    "Reserved",
    "Result",
    "ResultReady",
    "SERVER_EVENTS",
    "ServerShutdown",
    "StateChanged",
    "VramFreed",
    "Welcome",
]
