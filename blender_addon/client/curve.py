"""CURVE keys for talking to a server on another machine (files made by ``step1x3d keys``).

A key file is ZeroMQ's certificate format: ``NAME.key`` holds ``public-key``,
``NAME.key_secret`` holds ``public-key`` and ``secret-key`` (Z85 text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq.auth

from ..protocol.errors import Step1X3DError


class CurveKeyError(Step1X3DError):
    """A key file is missing or unreadable (the message names it); a subclass: the CLI and preferences catch it."""

    default_code = "bad_file"


@dataclass(frozen=True)
class CurveKeys:
    client_public: bytes
    client_secret: bytes
    server_public: bytes

    @classmethod
    def load(cls, client_secret_file: str | Path, server_public_file: str | Path) -> "CurveKeys":
        """This machine's ``.key_secret`` file and the server's public ``.key`` file."""
        client_public, client_secret = _read(client_secret_file)
        if not client_secret:
            raise CurveKeyError(f"{client_secret_file} holds no secret key (use the .key_secret file)")
        server_public, _ = _read(server_public_file)
        return cls(client_public=client_public, client_secret=client_secret, server_public=server_public)


def _read(path: str | Path) -> tuple[bytes, bytes | None]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise CurveKeyError(f"key file {p} does not exist")
    try:
        public, secret = zmq.auth.load_certificate(str(p))
    except Exception as exc:  # noqa: BLE001 - malformed file: one sentence, no traceback
        raise CurveKeyError(f"{p} is not a ZeroMQ key file: {exc}") from None
    if not public:
        raise CurveKeyError(f"{p} holds no public key")
    return public, secret


__all__ = ["CurveKeys", "CurveKeyError"]
