"""Training configuration: one dataclass, filled from a YAML/JSON file and then the command line.

The file may use our own flat keys (``rank: 64``, ``steps: 2000``) or upstream Step1X-3D's
nested ones, so a studio can start from upstream's configs: ``system.use_lora``,
``system.rank`` / ``training.lora_rank``, ``system.optimizer.args.lr``, ``trainer.max_steps``,
``trainer.precision: bf16-mixed``, ``checkpoint.every_n_train_steps``, ``data.batch_size``
(upstream's per-GPU batch) and a ``distributed: {num_nodes, gpus_per_node, strategy: ddp}``
block. Keys of upstream's sections that do not apply here (model sizes, loggers ...) are
ignored and listed in :attr:`TrainConfig.ignored`; an unknown top-level key is an error (a typo
must not silently train with defaults).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from blender_addon.protocol.errors import Step1X3DError

C = TypeVar("C", bound="TrainConfig")

# Top-level sections of upstream's training configs: their unused keys are ignored, not errors.
UPSTREAM_SECTIONS = ("system", "data", "trainer", "checkpoint", "training", "distributed", "exp_root_dir", "name",
                     "tag", "seed", "data_type", "system_type", "resume", "use_timestamp")
STRATEGIES = ("ddp",)
PRECISIONS = ("no", "bf16")


class ConfigError(Step1X3DError):
    """A configuration value is missing, unknown or out of range (the message names it)."""

    default_code = "bad_config"


@dataclass
class TrainConfig:
    """Everything a LoRA run needs. ``batch`` is the global batch: samples per optimizer step over all
    processes (each process takes ``batch / world_size``, in ``grad_accum`` micro-batches)."""

    base: str | None = None  # the base model folder (official layout)
    data: str | None = None  # a folder written by ``step1x3d finetune prepare``
    out: str | None = None  # where the LoRA, checkpoints, loss.csv and loss.png go
    rank: int = 64  # upstream's LoRA guide uses rank 64
    alpha: float | None = None  # None: alpha = rank (upstream keeps them equal), i.e. scale 1
    lora_layers: tuple[str, ...] | None = None  # None: the trainer's upstream default targets
    steps: int = 1000
    batch: int = 1
    grad_accum: int = 1
    lr: float = 1e-4  # upstream AdamW: lr 1e-4, betas (0.9, 0.99), eps 1e-6
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-6
    weight_decay: float = 1e-2  # torch's AdamW default; upstream does not set it
    seed: int = 0
    mixed_precision: str = "no"  # "bf16": autocast to bf16 and keep the frozen base in bf16
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = False
    device: str | None = None  # None: cuda:<local rank> when there is a GPU, else cpu
    num_nodes: int = 1
    gpus_per_node: int = 1
    strategy: str = "ddp"
    name: str | None = None  # the LoRA file's stem (default: the output folder's name)
    validation_objects: int = 2  # objects on the validation sheet written at each checkpoint (0: none)
    validation_steps: int = 30  # sampling steps of the sheet's generations
    validation_holdout: float = 0.0  # objects kept out of training: a count, a fraction < 1, or 0 (no split)
    validation_draws: int = 4  # fixed noise/timestep draws per held-out object for the validation loss
    ignored: tuple[str, ...] = field(default=(), compare=False)

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else float(self.rank)

    @property
    def expected_world_size(self) -> int:
        return self.num_nodes * self.gpus_per_node

    def with_overrides(self: C, **values: Any) -> C:
        """A copy with the given (non-None) values, checked."""
        known = {f.name for f in fields(self)}
        unknown = sorted(k for k in values if k not in known)
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
        out = replace(self, **{k: v for k, v in values.items() if v is not None})
        out.check()
        return out

    def check(self) -> None:
        positive = {"rank": self.rank, "steps": self.steps, "batch": self.batch, "grad_accum": self.grad_accum,
                    "checkpoint_every": self.checkpoint_every, "keep_checkpoints": self.keep_checkpoints,
                    "num_nodes": self.num_nodes, "gpus_per_node": self.gpus_per_node}
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.alpha is not None and not self.alpha > 0:
            raise ConfigError(f"alpha must be positive, got {self.alpha}")
        if self.mixed_precision not in PRECISIONS:
            raise ConfigError(f"mixed_precision must be one of {', '.join(PRECISIONS)}, got {self.mixed_precision!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"distributed strategy {self.strategy!r} is not supported; use ddp "
                              "(PyTorch DistributedDataParallel)")
        from .split import check_holdout  # split.py words its refusals with ConfigError

        if self.validation_objects < 0 or self.validation_steps < 1:
            raise ConfigError("validation_objects must be >= 0 and validation_steps >= 1")
        check_holdout(self.validation_holdout)
        if not isinstance(self.validation_draws, int) or self.validation_draws < 1:
            raise ConfigError(f"validation_draws must be a whole number of at least 1, got {self.validation_draws!r}")


# Upstream / alternative spelling (dotted path) -> our field, plus a converter.
def _precision(value: Any) -> str:
    text = str(value).lower()
    if text in ("bf16", "bf16-mixed", "bfloat16"):
        return "bf16"
    if text in ("32", "32-true", "fp32", "no", "none", "false"):
        return "no"
    raise ConfigError(f"precision {value!r} is not supported; use bf16-mixed or 32")


def _layers(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(x.strip() for x in value.split(",") if x.strip())
    if isinstance(value, (list, tuple)):
        return tuple(str(x) for x in value)
    raise ConfigError("lora_layers must be a comma-separated string or a list of module names")


COMMON_KEYS: dict[str, tuple[str, Any]] = {
    "system.rank": ("rank", int),
    "training.lora_rank": ("rank", int),
    "system.alpha": ("alpha", float),
    "training.lora_alpha": ("alpha", float),
    "system.lora_layers": ("lora_layers", _layers),
    "training.lora_layers": ("lora_layers", _layers),
    "system.optimizer.args.lr": ("lr", float),
    "training.lr": ("lr", float),
    "training.learning_rate": ("lr", float),
    "system.optimizer.args.betas": ("betas", lambda v: (float(v[0]), float(v[1]))),
    "system.optimizer.args.eps": ("eps", float),
    "system.optimizer.args.weight_decay": ("weight_decay", float),
    "trainer.max_steps": ("steps", int),
    "training.steps": ("steps", int),
    "training.max_steps": ("steps", int),
    "training.batch": ("batch", int),
    "training.gradient_accumulation_steps": ("grad_accum", int),
    "trainer.accumulate_grad_batches": ("grad_accum", int),
    "trainer.precision": ("mixed_precision", _precision),
    "training.mixed_precision": ("mixed_precision", _precision),
    "training.gradient_checkpointing": ("gradient_checkpointing", bool),
    "checkpoint.every_n_train_steps": ("checkpoint_every", int),
    "training.checkpoint_every": ("checkpoint_every", int),
    "trainer.num_nodes": ("num_nodes", int),
    "distributed.num_nodes": ("num_nodes", int),
    "distributed.gpus_per_node": ("gpus_per_node", int),
    "distributed.strategy": ("strategy", str),
    "seed": ("seed", int),
    "validation.holdout": ("validation_holdout", float),
    "validation.objects": ("validation_objects", int),
    "validation.draws": ("validation_draws", int),
}


def read_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON file as a mapping (YAML needs pyyaml, part of the ``train`` extra)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            try:
                import yaml
            except ImportError:
                raise ConfigError("YAML configs need pyyaml: pip install '.[train]' (or write the config as JSON)") from None
            data = yaml.safe_load(text)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - yaml/json parse errors: one sentence naming the file
        raise ConfigError(f"cannot parse {path}: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of option names to values")
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


_INTERPOLATION = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


def _resolve(value: Any, flat: dict[str, Any]) -> Any:
    """Upstream's OmegaConf ``${a.b}`` references to another key (the plain form only)."""
    for _ in range(8):
        if isinstance(value, str) and (m := _INTERPOLATION.match(value)) and m.group(1) in flat:
            value = flat[m.group(1)]
        else:
            break
    return value


def config_from_mapping(cls: type[C], data: dict[str, Any], extra_keys: dict[str, tuple[str, Any]] | None = None) -> C:
    """Build ``cls`` from a file's mapping: our flat keys, or upstream's dotted ones."""
    keys = dict(COMMON_KEYS, **(extra_keys or {}))
    names = {f.name for f in fields(cls)} - {"ignored"}
    flat = flatten(data)
    values: dict[str, Any] = {}
    ignored: list[str] = []
    for path, raw in flat.items():
        raw = _resolve(raw, flat)
        try:
            if path in keys:
                name, convert = keys[path]
                values[name] = convert(raw)
            elif path == "lora_layers":
                values[path] = _layers(raw)
            elif path in names:
                values[path] = tuple(raw) if isinstance(raw, list) else raw
            elif path == "system.use_lora":
                if not raw:
                    raise ConfigError("system.use_lora is false, but only LoRA fine-tuning is supported here "
                                      "(full fine-tuning of the 1.3B transformer is upstream's train.py)")
            elif path == "data.batch_size":
                values["_per_gpu_batch"] = int(raw)
            elif path.split(".")[0] in UPSTREAM_SECTIONS:
                ignored.append(path)
            else:
                raise ConfigError(f"unknown config key {path!r}")
        except (TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"config key {path!r} has an unusable value {raw!r}") from exc
    per_gpu = values.pop("_per_gpu_batch", None)
    if per_gpu is not None and "batch" not in values:
        # Upstream's data.batch_size is per GPU; ours is the global batch.
        values["batch"] = per_gpu * int(values.get("num_nodes", 1)) * int(values.get("gpus_per_node", 1))
    try:
        config = cls(**values, ignored=tuple(ignored))
    except TypeError as exc:
        raise ConfigError(f"bad config: {exc}") from exc
    config.check()
    return config


def load_config(cls: type[C], path: Path | None, extra_keys: dict[str, tuple[str, Any]] | None = None,
                **overrides: Any) -> C:
    """The file's values (if any), then the command line's non-None ``overrides``."""
    base = config_from_mapping(cls, read_file(path), extra_keys) if path is not None else cls()
    return base.with_overrides(**overrides)


def to_plain(config: TrainConfig) -> dict[str, Any]:
    """JSON-safe dict of a config (for checkpoints, metadata and the run's ``config.json``)."""
    out: dict[str, Any] = {}
    for f in fields(config):
        if f.name == "ignored":
            continue
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
