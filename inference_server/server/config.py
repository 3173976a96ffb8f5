"""Everything the job server is configured with, in one place (the CLI fills it from flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from blender_addon.protocol.limits import Limits

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def default_results_dir() -> Path:
    return Path.home() / ".cache" / "step1x3d" / "results"


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 5555
    backend: str = "auto"
    weights: Path | None = None
    # "local": one supervised worker process here; "ray": Ray Serve replicas (inference_server.scale).
    engine: str = "local"
    ray_address: str | None = None  # ray: the cluster to join (None: start a local one)
    serve_config: Path | None = None  # ray: a Ray Serve config file (applications, deployments)
    engine_retries: int = 0  # ray: run a job again this many times when its replica dies mid-job
    results_dir: Path = field(default_factory=default_results_dir)
    limits: Limits = field(default_factory=Limits)
    # CURVE: the server's secret key file and a folder of allowed client public keys (*.key).
    server_key: Path | None = None
    allow_keys: Path | None = None
    heartbeat_s: float = 1.0
    result_ttl_s: float = 24 * 3600.0  # done results are deleted (state "expired") after this
    cancel_grace_s: float = 3.0  # a worker that ignores a cancel this long is killed
    shutdown_grace_s: float = 10.0  # SIGTERM: how long the running job may still finish
    worker_ready_timeout_s: float = 900.0  # loading big weights can take minutes
    backend_options: dict[str, object] = field(default_factory=dict)
    # A queued or running job none of whose clients is connected (none reachable, none attached) for
    # this long is cancelled and its result discarded; 0 keeps such jobs. Advertised in welcome.
    orphan_grace_s: float = 60.0
    # New jobs are refused (disk_full) while the results folder's disk has less free space than this.
    min_free_bytes: int = 512 * 1024 * 1024

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    @property
    def curve_enabled(self) -> bool:
        return self.server_key is not None

    def check(self) -> None:
        """Refuse unsafe or incomplete setups with one sentence (raised as ValueError)."""
        if (self.server_key is None) != (self.allow_keys is None):
            raise ValueError("CURVE needs both --server-key FILE and --allow-keys DIR (make them with `step1x3d keys`)")
        if self.host not in LOOPBACK_HOSTS and not self.curve_enabled:
            raise ValueError(
                f"binding {self.host} exposes the server to the network; that needs CURVE encryption: "
                "pass --server-key FILE and --allow-keys DIR (make them with `step1x3d keys`)"
            )
        if self.orphan_grace_s < 0:
            raise ValueError("--orphan-grace must be 0 (never cancel) or a positive number of seconds")
        if self.min_free_bytes < 0:
            raise ValueError("--min-free-mib must be 0 or more")
        if self.server_key is not None and not self.server_key.is_file():
            raise ValueError(f"server key file {self.server_key} does not exist")
        if self.allow_keys is not None and not self.allow_keys.is_dir():
            raise ValueError(f"allow-list folder {self.allow_keys} does not exist")
