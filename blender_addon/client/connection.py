"""One DEALER connection to the job server, driven by a non-blocking ``poll``.

Built for Blender: no threads of our own (libzmq's I/O thread does the
waiting), ``LINGER`` 0 so closing never hangs the host, and ``poll(0)`` that
returns at once with every decoded event. The connection also keeps the line
warm: when the server has been quiet for two heartbeats it sends a ping, and
after ``offline_after_s`` of silence ``poll`` reports one :class:`Offline`.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Sequence

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..protocol import messages as m
from ..protocol.codec import ProtocolError, decode_message, encode_message
from ..protocol.errors import Step1X3DError
from ..protocol.limits import Limits, MiB
from ..protocol.preflight import SubmitRefused, check_submit
from ..protocol.result import CLIENT_MESH_ARRAYS, mesh_arrays
from ..protocol.schema import WireMessage
from ..protocol.settings import JobSettings
from .curve import CurveKeys
from .events import SERVER_EVENTS, ErrorEvent, Event, Offline, Pong, Reconnected, Welcome

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
AUTO_PING_PREFIX = m.AUTO_TOKEN_PREFIX
# A dropped connection during the CURVE handshake, this many times in a row, is a server that could
# not read our hello (encrypted for another key); once could be a server restarting mid-handshake.
NO_DETAIL_FAILURES_REPORTED = 2
MONITORED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
)

# What a client accepts from its server: results are large (meshes, 4K maps, LOD chains).
RESULT_LIMITS = Limits(
    max_frames=128,
    max_header_bytes=16 * MiB,
    max_frame_bytes=4096 * MiB,
    max_total_bytes=8192 * MiB,
)


class ConnectionClosed(Step1X3DError):
    """The connection was closed (or its outgoing queue is full): nothing more can be sent on it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "internal_error")


def normalize_address(address: str) -> str:
    """``host:port`` -> ``tcp://host:port`` (people type what their browser taught them)."""
    address = address.strip()
    return address if "://" in address else f"tcp://{address}"


class ServerConnection:
    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        curve: CurveKeys | None = None,
        heartbeat_s: float = 1.0,
        offline_after_s: float = 5.0,
        client_name: str = "step1x3d-client",
    ) -> None:
        self.address = address = normalize_address(address)
        self.heartbeat_s = heartbeat_s
        self.offline_after_s = offline_after_s
        self.client_name = client_name
        self._context = zmq.Context()
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)  # never block the host application on close
        hb_ms = max(int(heartbeat_s * 1000), 100)
        sock.setsockopt(zmq.HEARTBEAT_IVL, hb_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, hb_ms * 5)
        sock.setsockopt(zmq.HEARTBEAT_TTL, hb_ms * 5)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        sock.setsockopt(zmq.RCVHWM, 10_000)
        self._curve = curve is not None
        if curve is not None:
            sock.curve_publickey = curve.client_public
            sock.curve_secretkey = curve.client_secret
            sock.curve_serverkey = curve.server_public
        # Watch the handshake: a refused key or a mismatched encryption setting otherwise looks
        # exactly like an absent server, and a second successful handshake is a new connection
        # (a restarted server, or a network drop) on which the server knows nothing of our jobs.
        self._monitor: zmq.Socket | None = sock.get_monitor_socket(MONITORED)
        try:
            sock.connect(address)
        except zmq.ZMQError as exc:
            self._monitor.close(0)  # every socket must be closed, or term() waits forever
            sock.close(0)
            self._context.term()
            raise ValueError(f"{address} is not a valid server address (expected tcp://HOST:PORT): {exc}") from None
        self._socket: zmq.Socket | None = sock
        self._tokens = itertools.count(1)
        now = time.monotonic()
        self._last_rx = now
        self._last_ping = now
        self._offline_reported = False
        self._auth_reported = False
        self._handshakes = 0  # successful ones; every one after the first is a reconnection
        self._no_detail_failures = 0
        # One reconnection can be seen twice, by the monitor (new handshake) and by a new instance id,
        # in either order: whichever reports it first leaves a note so that the other stays quiet.
        self._reported_by_handshake = False  # until the next instance id is seen
        self._reported_by_instance_at: float | None = None  # until the handshake event follows (or 5 s)
        self.server_instance = ""  # the instance id of the server we last heard from
        self.welcome: Welcome | None = None  # the last Welcome, for limits and capabilities

    # ------------------------------------------------------------------ sending

    @property
    def limits(self) -> Limits:
        """What ``submit`` checks a job against: the last welcome's limits, the defaults before one arrived."""
        return Limits.from_wire(self.welcome.limits) if self.welcome is not None else Limits()

    def _send(self, msg: WireMessage) -> None:
        self._send_frames(encode_message(msg))

    def _send_frames(self, frames: list[Any]) -> None:
        if self._socket is None:
            raise ConnectionClosed("the connection is closed")
        try:
            self._socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise ConnectionClosed(f"cannot send to {self.address}: the outgoing queue is full") from None

    def hello(self) -> None:
        self._send(m.Hello(client=self.client_name))

    def submit(
        self,
        job_id: str,
        images: Sequence[bytes],
        settings: JobSettings | dict[str, Any],
        *,
        image_names: list[str] | None = None,
        mesh: dict[str, Any] | None = None,
        want_glb: bool = False,
        prepare_only: bool = False,
    ) -> list[Any]:
        """Send a job. The id is yours to choose; sending the same job again is harmless.

        Returns its frames; with ``prepare_only`` they are checked and returned but not sent
        (see :meth:`send_prepared`).

        Checked first against :attr:`limits` (the server's, once its welcome arrived): a job the
        server would refuse for its size raises :class:`SubmitRefused` (code ``too_large``, one
        sentence naming the image or mesh array) and nothing is sent.
        """
        if not m.valid_job_id(job_id):
            raise Step1X3DError(f"job id {job_id!r}: {m.ERROR_CODES['bad_job_id']}", "bad_job_id")
        wire_settings = settings.to_wire() if isinstance(settings, JobSettings) else dict(settings)
        message = m.Submit(
            job_id=job_id,
            settings=wire_settings,
            image_names=list(image_names) if image_names is not None else None,
            want_glb=bool(want_glb),
            images=list(images),
            mesh=mesh,
        )
        frames = encode_message(message)  # zero-copy views: cheap even when refused below
        wire_mesh = mesh_arrays("mesh", dict(message.wire_parts()), CLIENT_MESH_ARRAYS)
        try:
            check_submit(self.limits, images, image_names=image_names, mesh=wire_mesh, header_bytes=len(frames[0]))
        except SubmitRefused as exc:
            exc.job_id = job_id
            raise
        if prepare_only:
            return frames
        self._send_frames(frames)
        return frames

    def send_prepared(self, frames: list[Any]) -> None:
        """Send a submit made by ``submit(..., prepare_only=True)`` (after the server reserved room for it)."""
        self._send_frames(frames)

    def reserve(self, job_id: str, nbytes: int) -> None:
        """Ask the server to hold room for an upload of ``nbytes`` before sending it (answer: reserved or rejected)."""
        self._send(m.Reserve(job_id, int(nbytes)))

    def cancel(self, job_id: str) -> None:
        self._send(m.Cancel(job_id))

    def attach(self, job_id: str) -> None:
        self._send(m.Attach(job_id))

    def fetch(self, job_id: str) -> None:
        self._send(m.Fetch(job_id))

    def close_job(self, job_id: str) -> None:
        self._send(m.Close(job_id))

    def ping(self, token: str = "") -> None:
        self._send(m.Ping(token or None))

    def free_vram(self) -> None:
        self._send(m.FreeVram())

    # ------------------------------------------------------------------ receiving

    def seconds_since_last_message(self) -> float:
        return time.monotonic() - self._last_rx

    def poll(self, timeout_ms: int = 0) -> list[Event]:
        """Every event waiting now (waits at most ``timeout_ms`` for the first one)."""
        if self._socket is None:
            return []
        events: list[Event] = self._drain_monitor()
        if self._socket.poll(max(int(timeout_ms), 0), zmq.POLLIN):
            while True:
                try:
                    frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._last_rx = time.monotonic()
                self._offline_reported = False
                event = self._decode(frames, events)
                if event is not None:
                    events.append(event)
        self._keep_alive(events)
        return events

    def _decode(self, frames: list[zmq.Frame], events: list[Event]) -> Event | None:
        try:
            event = decode_message([f.buffer for f in frames], RESULT_LIMITS)
        except ProtocolError as exc:
            return ErrorEvent(exc.job_id, exc.code, f"the server sent a message this client cannot read: {exc.message}")
        if not isinstance(event, SERVER_EVENTS):
            return ErrorEvent(None, "bad_message", f"the server sent a message this client cannot read: {event.TYPE!r}")
        if isinstance(event, (Pong, Welcome)):
            self._note_instance(event.instance_id or "", events)
        if isinstance(event, Pong) and (event.token or "").startswith(AUTO_PING_PREFIX):
            return None  # our own keep-alive (or the server's probe): it already refreshed _last_rx
        if isinstance(event, Welcome):
            self.welcome = event
        return event

    def _keep_alive(self, events: list[Event]) -> None:
        now = time.monotonic()
        silent = now - self._last_rx
        # Once the server counts as offline, ping rarely: unanswered pings queue up in the socket.
        interval = self.heartbeat_s if silent <= self.offline_after_s else max(5.0, self.heartbeat_s)
        if silent > 2 * self.heartbeat_s and now - self._last_ping > interval:
            self._last_ping = now
            try:
                self._send(m.Ping(f"{AUTO_PING_PREFIX}{next(self._tokens)}"))
            except ConnectionClosed:
                pass
        if silent > self.offline_after_s and not self._offline_reported:
            self._offline_reported = True
            events.append(Offline(self.address, round(silent, 1)))

    def _note_instance(self, instance_id: str, events: list[Event]) -> None:
        """A new server instance id means a restarted server, even if the connection never looked down."""
        if not instance_id:
            return  # an older server: only the socket monitor tells
        changed = bool(self.server_instance) and instance_id != self.server_instance
        self.server_instance = instance_id
        if changed and not self._reported_by_handshake:
            events.append(Reconnected(self.address, "the server restarted"))
            self._reported_by_instance_at = time.monotonic()
        self._reported_by_handshake = False

    def _handshake_failed(self, value: int) -> ErrorEvent | None:
        """The sentence for a handshake that failed, or None when it is too early to tell."""
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            if self._curve:
                text = (
                    f"The server at {self.address} does not use encryption, but this client does: remove the "
                    "client and server key settings, or start the server with --server-key and --allow-keys."
                )
            else:
                text = (
                    f"The server at {self.address} requires CURVE encryption and this client has none: set the "
                    "client key and the server's public key (generate: --client-key and --server-public-key)."
                )
            return ErrorEvent(None, "handshake_failed", text)
        self._no_detail_failures += 1
        if self._curve and self._no_detail_failures >= NO_DETAIL_FAILURES_REPORTED:
            return ErrorEvent(
                None,
                "handshake_failed",
                f"The encrypted handshake with the server at {self.address} did not complete: check that the "
                "server public key this client uses (--server-public-key, or the add-on's server key file) is "
                "the public .key file of the key pair the server runs with (its --server-key).",
            )
        return None

    def _drain_monitor(self) -> list[Event]:
        events: list[Event] = []
        if self._monitor is None:
            return events
        while self._monitor.poll(0, zmq.POLLIN):
            try:
                info = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            kind = info["event"]
            failure: ErrorEvent | None = None
            if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                failure = ErrorEvent(
                    None,
                    "auth_refused",
                    f"The server at {self.address} refused this computer's key; ask its owner to add "
                    "your public key (.key file) to the server's --allow-keys folder.",
                )
            elif kind in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                failure = self._handshake_failed(int(info["value"]))
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._auth_reported = False
                self._no_detail_failures = 0
                self._handshakes += 1
                reported_at, self._reported_by_instance_at = self._reported_by_instance_at, None
                if self._handshakes > 1 and (reported_at is None or time.monotonic() - reported_at > 5.0):
                    # A new connection: the server (maybe a new one) has no record that we follow our jobs.
                    self._reported_by_handshake = True
                    events.append(Reconnected(self.address, "the connection was re-established"))
            if failure is not None and not self._auth_reported:
                self._auth_reported = True
                events.append(failure)
        return events

    # ------------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        return self._socket is None

    def close(self) -> None:
        """Close at once (LINGER 0): unsent messages are dropped, nothing blocks."""
        if self._socket is None:
            return
        if self._monitor is not None:
            try:
                self._socket.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(0)
            self._monitor = None
        self._socket.close(0)
        self._socket = None
        self._context.term()

    def __enter__(self) -> "ServerConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # last resort; callers should close() (Blender: in unregister())
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to report to
            pass


__all__ = [
    "ServerConnection", "ConnectionClosed", "DEFAULT_ADDRESS", "RESULT_LIMITS", "SubmitRefused", "normalize_address",
]
