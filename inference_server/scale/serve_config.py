"""The Ray Serve config file: Ray Serve's own format, read by the gateway and by ``serve run/deploy``.

::

    applications:
      - name: step1x3d
        import_path: inference_server.scale.app:build_app
        args: {backend: inflate}            # or {backend: step1x3d, weights: /models/Step1X-3D, options: {...}}
        deployments:
          - name: WeightFree                 # Geometry and Texture for the step1x3d backend
            num_replicas: 2                  # or autoscaling_config: {min_replicas, max_replicas, ...}
            max_ongoing_requests: 1
            ray_actor_options: {num_cpus: 1, num_gpus: 1}

The gateway deploys the application it finds here (the one whose ``import_path`` is
:data:`IMPORT_PATH`), or attaches to it when it is already running under that name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blender_addon.protocol.errors import Step1X3DError

from ..pipeline.registry import resolve_backend

IMPORT_PATH = "inference_server.scale.app:build_app"
DEFAULT_APP_NAME = "step1x3d"
NEURAL_STAGES = ("Geometry", "Texture")
SINGLE_STAGE = "WeightFree"


def _invalid(message: str) -> Step1X3DError:
    """The config file cannot be used; the message is one sentence."""
    return Step1X3DError(message, "bad_config")


def stages_for(args: dict[str, Any]) -> tuple[str, ...]:
    """Deployment names for the application's ``args``: the neural backend is split into its two stages."""
    weights = args.get("weights")
    backend = resolve_backend(str(args.get("backend", "auto")), Path(weights) if weights else None)
    return NEURAL_STAGES if backend == "step1x3d" else (SINGLE_STAGE,)


def default_config(backend: str, weights: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """One replica per stage, one job each: what ``--engine ray`` runs without ``--serve-config``."""
    args: dict[str, Any] = {"backend": backend, "weights": weights, "options": dict(options)}
    return {
        "applications": [
            {
                "name": DEFAULT_APP_NAME,
                "import_path": IMPORT_PATH,
                "args": args,
                "deployments": [{"name": name, "num_replicas": 1, "max_ongoing_requests": 1} for name in stages_for(args)],
            }
        ]
    }


def load(path: Path) -> dict[str, Any]:
    """Read a config file (YAML only: the gateway never imports Ray; the bridge validates it)."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise _invalid(f"cannot read the Ray Serve config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise _invalid(f"the Ray Serve config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise _invalid(f"the Ray Serve config {path} must be a mapping with an 'applications' list")
    return raw


def validate(config: dict[str, Any]) -> None:
    """Check a config against Ray Serve's own schema (in the bridge, which has Ray loaded)."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise _invalid(f"the Ray Serve config is invalid at {where}: {first.get('msg')}") from None


def our_app(config: dict[str, Any]) -> dict[str, Any]:
    """The application the gateway serves: the one that imports :data:`IMPORT_PATH`."""
    apps = [a for a in config.get("applications", []) if a.get("import_path") == IMPORT_PATH]
    if len(apps) != 1:
        raise _invalid(
            f"the Ray Serve config needs exactly one application with import_path {IMPORT_PATH} (found {len(apps)})"
        )
    app = dict(apps[0])
    app.setdefault("name", DEFAULT_APP_NAME)
    app.setdefault("args", {})
    app.setdefault("deployments", [])
    return app


def deployment_options(app: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per deployment name, the options the file sets (what ``Deployment.options`` takes)."""
    return {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments", [])}


def capacity(options: dict[str, Any]) -> int:
    """Jobs one deployment runs at once: replicas (or autoscaling's maximum) x max_ongoing_requests."""
    ongoing = int(options.get("max_ongoing_requests", 1))
    replicas = options.get("num_replicas", 1)
    autoscaling = options.get("autoscaling_config")
    if autoscaling or replicas == "auto":
        replicas = int((autoscaling or {}).get("max_replicas", 1))
    return max(1, int(replicas) * ongoing)


def slots(app: dict[str, Any]) -> int:
    """Jobs the gateway keeps running: the capacity of every stage together (jobs pipeline through them)."""
    opts = deployment_options(app)
    return sum(capacity(opts.get(name, {})) for name in stages_for(app["args"]))


__all__ = [
    "DEFAULT_APP_NAME",
    "IMPORT_PATH",
    "NEURAL_STAGES",
    "SINGLE_STAGE",
    "capacity",
    "default_config",
    "deployment_options",
    "load",
    "our_app",
    "slots",
    "stages_for",
    "validate",
]
