"""LoRA: fine-tune a few million numbers instead of the whole model.

Low-Rank Adaptation (Hu et al., 2021) freezes a pretrained weight W (out x in) and
learns a low-rank change to it, B @ A, with A (r x in) and B (out x r), r small:

    y = x W^T + (alpha / r) * dropout(x) A^T B^T

A starts random (Kaiming-uniform, as nn.Linear's own init), B starts at zero, so at
step 0 the adapted model is exactly the base model. Only A and B are trained:
r * (in + out) numbers per wrapped layer instead of in * out, so the optimizer state
is tiny and a whole fine-tune fits in a small file of adapters. `alpha / r` keeps the
update's scale steady when you change r.

After training, `merge_lora` folds the update into the weight, W += (alpha / r) B @ A,
and the model is a plain GPT again: no extra cost at inference.

Which layers to adapt is chosen by name patterns matched against module names such
as `blocks.0.attn.qkv`: `attn.qkv`, `attn.proj`, `mlp.*` (fnmatch wildcards; a
pattern matches a full name or its tail after a dot). The tied output head is the
token embedding, not a Linear, so it is never wrapped.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from .atomic import write_bytes, write_json
from .errors import UserError

ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter.safetensors", "adapter.json"


@dataclass
class LoRAConfig:
    """Which Linear layers to adapt and how: the content of adapter.json."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("attn.qkv", "attn.proj")

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets)
        if not isinstance(self.rank, int) or self.rank < 1:
            raise UserError(f"LoRA rank = {self.rank!r}: must be an integer >= 1")
        if self.alpha <= 0:
            raise UserError(f"LoRA alpha = {self.alpha}: must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"LoRA dropout = {self.dropout}: must be in [0, 1)")
        if not self.targets:
            raise UserError("LoRA targets: give at least one layer name pattern, "
                            "e.g. attn.qkv")


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (alpha / r) * B @ A."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base.requires_grad_(False)  # W and its bias stay as they are
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's init
        self.dropout = nn.Dropout(dropout)
        self.to(base.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        down = F.linear(self.dropout(x), self.lora_A)  # (..., r): x A^T
        update = F.linear(down, self.lora_B)  # (..., out): x A^T B^T
        return self.base(x) + self.scaling * update

    def delta_weight(self) -> torch.Tensor:
        """The learned change to W: (alpha / r) * B @ A, shape (out, in)."""
        return self.scaling * (self.lora_B @ self.lora_A)


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """Does module name `blocks.0.attn.qkv` match a pattern like `attn.qkv`?"""
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, f"*.{p}")
               for p in patterns)


def apply_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Freeze the model and wrap every Linear matching `config.targets` in LoRA.

    Returns the names of the wrapped layers; only their A and B are trainable.
    """
    model.requires_grad_(False)
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and matches(name, config.targets)]
    if not names:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise UserError(f"LoRA targets {', '.join(config.targets)} match no Linear "
                        f"layer; the model has e.g. {', '.join(linears[:4])}")
    for name in names:
        parent, attr = _parent(model, name)
        base = getattr(parent, attr)
        setattr(parent, attr,
                LoRALinear(base, config.rank, config.alpha, config.dropout))
    return names


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold each adapter into its weight (W += (alpha / r) B @ A) and unwrap it.

    The model becomes a plain network again, in place, with the adapted behaviour.
    """
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            module.base.weight += module.delta_weight().to(module.base.weight.dtype)
            parent, attr = _parent(model, name)
            setattr(parent, attr, module.base)
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_parameter_count(model: nn.Module) -> int:
    """Trainable adapter numbers: r * (in + out) summed over the wrapped layers."""
    return sum(m.lora_A.numel() + m.lora_B.numel() for m in lora_layers(model).values())


def save_adapters(model: nn.Module, config: LoRAConfig, out_dir: str | Path,
                  extra: dict | None = None) -> None:
    """Write only the adapters: adapter.safetensors (A and B of each layer) and
    adapter.json (rank, alpha, dropout, targets, wrapped layers, `extra`)."""
    out_dir = Path(out_dir)
    layers = lora_layers(model)
    tensors = {f"{name}.{part}": getattr(m, part).detach().contiguous().cpu()
               for name, m in layers.items() for part in ("lora_A", "lora_B")}
    write_bytes(out_dir / ADAPTER_WEIGHTS, safetensors_bytes(tensors))
    write_json(out_dir / ADAPTER_CONFIG,
               {**asdict(config), "targets": list(config.targets),
                "layers": list(layers), **(extra or {})})


def load_adapters(model: nn.Module, adapter_dir: str | Path) -> LoRAConfig:
    """Wrap `model` as recorded in adapter.json and load the saved A and B."""
    adapter_dir = Path(adapter_dir)
    try:
        saved = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        tensors = load_file(adapter_dir / ADAPTER_WEIGHTS)
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read LoRA adapters in {adapter_dir} ({e}); point "
                        "to a folder written by `finetune --method lora`") from None
    config = LoRAConfig(saved["rank"], saved["alpha"], saved["dropout"],
                        tuple(saved["targets"]))
    names = apply_lora(model, config)
    if names != saved["layers"]:
        raise UserError(f"{adapter_dir / ADAPTER_CONFIG}: its layers do not match "
                        "this model's; load the adapters onto their own base run")
    with torch.no_grad():
        for name, module in lora_layers(model).items():
            module.lora_A.copy_(tensors[f"{name}.lora_A"])
            module.lora_B.copy_(tensors[f"{name}.lora_B"])
    return config


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding submodule `name` and the attribute it is stored under."""
    parent_name, _, attr = name.rpartition(".")
    return model.get_submodule(parent_name), attr
