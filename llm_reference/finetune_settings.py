"""The settings of a fine-tune: everything that decides its result.

They are saved in the output's finetune.json, and `python -m llm_reference finetune`
shows their defaults in its `--help`; this module loads no torch, so that stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    from .lora import LoRAConfig

METHODS = ("sft", "lora", "dpo")
DEFAULT_LR = {"sft": 3e-4, "lora": 2e-3, "dpo": 1e-4}


@dataclass
class FinetuneSettings:
    """Everything that decides a fine-tune's result (saved in finetune.json)."""

    method: str = "sft"
    max_steps: int = 300
    batch_size: int = 16
    lr: float | None = None  # None: DEFAULT_LR[method]
    min_lr_ratio: float = 0.1  # the cosine schedule ends at lr * min_lr_ratio
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_interval: int = 50
    eval_batches: int = 10
    val_fraction: float = 0.05
    max_examples: int | None = None
    pack: bool = True
    seed: int = 1337
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("attn.qkv", "attn.proj")
    beta: float = 0.1

    def check(self) -> None:
        """Reject bad values before any work starts."""
        if self.method not in METHODS:
            raise UserError(f"--method {self.method}: choose one of "
                            f"{', '.join(METHODS)}")
        for name in ("max_steps", "batch_size", "eval_interval", "eval_batches"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1")
        if self.lr is not None and self.lr <= 0:
            raise UserError(f"--lr {self.lr}: must be > 0")
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"--val-fraction {self.val_fraction}: must be in [0, 1)")
        if self.max_examples is not None and self.max_examples < 1:
            raise UserError(f"--max-examples {self.max_examples}: must be >= 1")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"--min-lr-ratio {self.min_lr_ratio}: must be in [0, 1]")
        if self.beta <= 0:
            raise UserError(f"--beta {self.beta}: must be > 0")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise UserError("--warmup-steps, --weight-decay and --grad-clip must "
                            "be >= 0")
        if self.method == "lora":
            self.lora_config()  # validates rank, alpha, dropout, targets

    @property
    def peak_lr(self) -> float:
        return DEFAULT_LR[self.method] if self.lr is None else self.lr

    def lora_config(self) -> LoRAConfig:
        from .lora import LoRAConfig  # here: torch only once a fine-tune runs

        return LoRAConfig(self.lora_rank, self.lora_alpha, self.lora_dropout,
                          tuple(self.lora_targets))
