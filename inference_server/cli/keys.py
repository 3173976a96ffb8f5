"""``step1x3d keys``: create a CURVE key pair."""

from __future__ import annotations

import argparse
import re
import socket
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="create a CURVE key pair for using a server over the network")
    keys.add_argument("--dir", type=Path, default=Path.home() / ".config" / "step1x3d" / "keys",
                      help="folder for the key files (default: %(default)s)")
    keys.add_argument("--name", default=None, help="key name (default: this computer's host name)")
    keys.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..server.security import create_keypair

    name = args.name or re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "client"
    public, secret = create_keypair(args.dir.expanduser(), name)
    print(f"public key: {public}  (give this file to the other side)")
    print(f"secret key: {secret}  (keep it here, mode 600)")
    print("server: step1x3d serve --host 0.0.0.0 --server-key SERVER.key_secret --allow-keys DIR_OF_CLIENT_KEYS")
    print("client: step1x3d generate ... --server tcp://HOST:5555 --client-key CLIENT.key_secret --server-public-key SERVER.key")
    return 0
