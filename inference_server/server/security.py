"""CURVE encryption and the client allow-list (ZeroMQ's ZAP handler via ``zmq.auth``).

Key files are the ones ``step1x3d keys`` writes (``zmq.auth.create_certificates``):
``NAME.key`` holds the public key, ``NAME.key_secret`` both keys. The server
loads its secret file and trusts exactly the public keys in the allow-list
folder; an unknown key fails the handshake and never reaches our code.
"""

from __future__ import annotations

from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


def load_secret_keypair(path: Path) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(str(path))
    if not secret:
        raise ValueError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


def enable_curve_server(context: zmq.Context, socket: zmq.Socket, server_key: Path, allow_keys: Path) -> ThreadAuthenticator:
    """Make ``socket`` a CURVE server that admits only keys found in ``allow_keys``."""
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    # location=<folder>: only the public keys in that folder pass; everything else is refused.
    authenticator.configure_curve(domain="*", location=str(allow_keys))
    public, secret = load_secret_keypair(server_key)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return authenticator


def create_keypair(folder: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret (mode 600) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(str(folder), name)
    Path(secret_file).chmod(0o600)
    return Path(public_file), Path(secret_file)
