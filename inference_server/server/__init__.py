"""The job server: ROUTER socket, bounded queue, supervised worker, results on disk."""

from .config import ServerConfig
from .server import JobServer, StartupError, run_server

__all__ = ["JobServer", "ServerConfig", "StartupError", "run_server"]
