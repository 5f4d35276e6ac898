"""A run's configuration: presets, TOML files, `--set` overrides and validation.

A config has two tables. `[model]` holds `ModelConfig` fields (the network's shape and
recipe); `[train]` holds `TrainConfig` fields (optimizer, schedule, batches, logging,
stability). Values are resolved in layers, later ones winning:

    preset (llm_reference/presets/NAME.toml)  <  --config FILE.toml  <  --set KEY=VALUE

`model.vocab_size` may be `"auto"` (or left out): the data's vocabulary size is used.
Every value is checked before any work starts, and a bad one is a one-line error that
names it: `config train.lr: must be > 0, got -1`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError
from .model_config import ModelConfig

if TYPE_CHECKING:
    import torch

PRESETS_DIR = Path(__file__).parent / "presets"
SCHEDULES = ("cosine", "wsd")
DTYPES = ("float32", "bfloat16", "float16")
ANOMALY_ACTIONS = ("skip", "rollback")
PARALLELS = ("ddp", "fsdp")
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass
class TrainConfig:
    """How to train: the `[train]` table of a run's config.toml."""

    data_dir: str = "data/stdlib"  # a folder written by `prepare`
    # a weighted mixture of folders, e.g. {"data/web" = 0.7, "data/code" = 0.3}
    # (mixture.py); data_dir must be one of them: it names the run's tokenizer
    data_mix: dict[str, float] | None = None
    # batches: tokens per optimizer step = batch_size * grad_accum * context_length
    # (times the number of processes under torchrun: see `parallel`)
    batch_size: int = 16  # sequences per micro-batch (one forward/backward)
    grad_accum: int = 1  # micro-batches whose gradients are summed per step
    max_steps: int = 1000  # optimizer steps
    # optimizer (AdamW) and learning-rate schedule
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 1e-4  # learning rate at the end of the decay
    warmup_steps: int = 100
    schedule: str = "cosine"  # "cosine" | "wsd" (warmup-stable-decay)
    decay_frac: float = 0.2  # wsd: fraction of max_steps spent decaying
    weight_decay: float = 0.1  # on >= 2-D weights only
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    # evaluation, checkpoints
    eval_interval: int = 100  # steps between validation-loss evaluations
    eval_steps: int = 10  # validation batches per evaluation (always the same ones)
    checkpoint_interval: int = 500  # steps between checkpoints
    # ... and at least every this many minutes of wall time (0: steps only), so a
    # stopped or killed run loses little work, whatever a step costs here
    checkpoint_minutes: float = 10.0
    keep_last: int = 3  # checkpoints kept on disk
    # reporting: off a terminal, one progress line every log_seconds (on one, a
    # bar); optional trackers (see tracking.py), off unless turned on here
    log_seconds: float = 10.0
    tensorboard: bool = False  # event files in RUN/tensorboard/
    wandb: bool = False  # Weights & Biases, offline: RUN/wandb/
    # numerics and hardware
    dtype: str = "float32"  # autocast dtype: "float32" | "bfloat16" | "float16"
    compile: bool = False  # torch.compile the model
    # keep only each block's input, recompute the rest in the backward pass: one
    # tensor per block instead of dozens, for ~1/3 more compute (the planner sets it)
    activation_checkpointing: bool = False
    seed: int = 1337
    device: str = "auto"  # "auto" (cuda, mps, else cpu) | "cpu" | "cuda[:N]" | "mps"
    # under torchrun (see distributed.py): a replica per process ("ddp") or FSDP2
    # shards ("fsdp"); batch_size and grad_accum are per process, so a step sees
    # batch_size * grad_accum * processes sequences
    parallel: str = "ddp"  # "ddp" | "fsdp"
    # stability (see stability.py)
    anomaly_action: str = "skip"  # "skip" | "rollback"
    spike_z: float = 6.0  # z-score above the EMA of the loss that counts as a spike
    spike_warmup: int = 50  # steps that only feed the statistics
    spike_ema_beta: float = 0.99
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    # fault injection, for tests and demonstrations of recovery: the 1-based step whose
    # loss is multiplied by inject_spike_scale / whose gradient gets a NaN
    inject_spike_at: int | None = None
    inject_spike_scale: float = 100.0
    inject_nan_at: int | None = None

    def validate(self) -> None:
        """Raise a UserError naming the first field with a bad value."""
        _check_types("train", self)
        positive_ints = ("batch_size", "grad_accum", "max_steps", "eval_interval",
                         "eval_steps", "checkpoint_interval", "keep_last")
        for key in positive_ints:
            _require(self, key, getattr(self, key) >= 1, "must be >= 1")
        for key in ("warmup_steps", "seed", "spike_warmup", "max_rollbacks"):
            _require(self, key, getattr(self, key) >= 0, "must be >= 0")
        for key in ("lr", "spike_z", "inject_spike_scale"):
            _require(self, key, getattr(self, key) > 0, "must be > 0")
        for key in ("weight_decay", "grad_clip", "checkpoint_minutes"):
            _require(self, key, getattr(self, key) >= 0, "must be >= 0")
        _require(self, "log_seconds", self.log_seconds > 0, "must be > 0")
        _require(self, "min_lr", 0 <= self.min_lr <= self.lr,
                 f"must be in [0, train.lr = {self.lr}]")
        for key in ("beta1", "beta2", "spike_ema_beta"):
            _require(self, key, 0 <= getattr(self, key) < 1, "must be in [0, 1)")
        for key in ("decay_frac", "rollback_lr_factor"):
            _require(self, key, 0 < getattr(self, key) <= 1, "must be in (0, 1]")
        for key in ("inject_spike_at", "inject_nan_at"):
            value = getattr(self, key)
            _require(self, key, value is None or value >= 1, "must be a step >= 1")
        for key, choices in (("schedule", SCHEDULES), ("dtype", DTYPES),
                             ("anomaly_action", ANOMALY_ACTIONS),
                             ("parallel", PARALLELS)):
            _require(self, key, getattr(self, key) in choices,
                     f"must be one of {', '.join(map(repr, choices))}")
        # float16's loss scaler decides per process whether to skip a step; with
        # sharded gradients the processes could disagree
        _require(self, "parallel", not (self.parallel == "fsdp"
                                        and self.dtype == "float16"),
                 "'fsdp' needs train.dtype 'bfloat16' or 'float32', not 'float16'")
        _require(self, "device", DEVICE_PATTERN.fullmatch(self.device) is not None,
                 "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        if self.data_mix is not None:
            for folder, weight in self.data_mix.items():
                _require(self, "data_mix", type(weight) in (int, float) and weight > 0,
                         f"the weight of {folder!r} must be a number > 0")
            _require(self, "data_mix", self.data_dir in self.data_mix,
                     f"must include train.data_dir ({self.data_dir!r}), whose "
                     "tokenizer the run keeps")


@dataclass
class RunConfig:
    """A whole run's config: the `[model]` table (kept as a dict until the data's
    vocabulary size is known) and the `[train]` table."""

    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Check tables, keys, types and ranges; `vocab_size` may still be "auto"."""
        for table, values in raw.items():
            if table not in ("model", "train") or not isinstance(values, dict):
                raise UserError(f"config: unknown table [{table}]; "
                                "a config has only [model] and [train]")
        model = dict(raw.get("model", {}))
        model_config(model, vocab_size=8192)  # validates; 8192 stands in for "auto"
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        for key in raw.get("train", {}):
            if key not in known:
                raise UserError(f"config train.{key}: unknown field; known fields "
                                f"are {', '.join(sorted(known))}")
        train = TrainConfig(**raw.get("train", {}))
        train.validate()
        return cls(model, train)

    def to_dict(self) -> dict[str, Any]:
        return {"model": dict(self.model), "train": dataclasses.asdict(self.train)}


def model_vocab(model: dict[str, Any]) -> int | None:
    """The `[model]` table's vocab_size, or None when it is "auto" or absent."""
    value = model.get("vocab_size", "auto")
    return None if value == "auto" else value


def model_config(model: dict[str, Any], vocab_size: int) -> ModelConfig:
    """A validated ModelConfig, with `vocab_size` filling in an "auto" one."""
    fields = {**model, "vocab_size": model_vocab(model) or vocab_size}
    try:
        return ModelConfig.from_dict(fields)
    except UserError as e:
        raise UserError(f"config {e}") from None


def load_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: typing.Sequence[str] = (),
) -> RunConfig:
    """Resolve preset < config file < `--set` overrides into a validated RunConfig."""
    raw: dict[str, Any] = {"model": {}, "train": {}}
    if preset is not None:
        merge(raw, load_preset(preset))
    if config_file is not None:
        merge(raw, load_toml(config_file))
    for item in overrides:
        table, key, value = parse_override(item)
        raw.setdefault(table, {})[key] = value
    return RunConfig.from_dict(raw)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_preset(name: str) -> dict[str, Any]:
    path = PRESETS_DIR / f"{name}.toml"
    if not path.is_file():
        raise UserError(f"unknown preset {name!r}; choose one of "
                        f"{', '.join(preset_names())}")
    return load_toml(path)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error is a UserError."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {path}: {e}") from None


def parse_override(item: str) -> tuple[str, str, Any]:
    """`train.lr=3e-4` -> ("train", "lr", 0.0003).

    The value is read as a TOML literal (`3e-4`, `true`, `"wsd"`, `[1, 2]`); anything
    that is not one is taken as a bare string, so `train.schedule=wsd` works too.
    """
    key, sep, text = item.partition("=")
    table, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise UserError(f"--set {item!r}: expected TABLE.KEY=VALUE, "
                        "e.g. train.lr=3e-4 or model.n_layer=2")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return table, name, value


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> None:
    """Copy the overlay's tables key by key into base (tables merge, values replace)."""
    for table, values in overlay.items():
        if not isinstance(values, dict):
            raise UserError(f"config: unknown table [{table}]; "
                            "a config has only [model] and [train]")
        base.setdefault(table, {}).update(values)


def to_toml(config: dict[str, dict[str, Any]]) -> str:
    """Write a two-level config as TOML; None values are left out (TOML has no null)."""
    lines = []
    for table, values in config.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # TOML uses JSON's escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()
                                if v is not None) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def resolve_device(name: str) -> torch.device:
    """A torch device; "auto" means CUDA, then Apple MPS, then the CPU."""
    import torch  # here: reading a config (or a command's --help) needs no torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r}: CUDA is not available here; "
                        'use "auto" or "cpu"')
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError('device "mps": not available here; use "auto" or "cpu"')
    return device


def _require(config: TrainConfig, key: str, ok: bool, rule: str) -> None:
    if not ok:
        value = _show(getattr(config, key))
        raise UserError(f"config train.{key}: {rule}, got {value}")


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML: -1 (not -1.0), "wsd", true."""
    if isinstance(value, float):
        return repr(value).removesuffix(".0")
    return json.dumps(value, default=str)


def _check_types(table: str, config: Any) -> None:
    """Check each field against its annotation; ints are accepted where floats are."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        allowed = tuple(typing.get_origin(t) or t for t in  # dict[str, float] -> dict
                        typing.get_args(hints[f.name]) or (hints[f.name],))
        if value is None and type(None) in allowed:
            continue
        if float in allowed and type(value) is int:
            setattr(config, f.name, float(value))
            continue
        if type(value) not in allowed:  # bool is not accepted as an int
            names = " or ".join(_TYPE_NAMES[t] for t in allowed if t is not type(None))
            raise UserError(f"config {table}.{f.name}: must be {names}, "
                            f"got {_show(value)}")


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string",
               bool: "true/false", dict: "a table"}
