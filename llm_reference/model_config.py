"""The shape and recipe of a GPT, as plain data: `ModelConfig`.

Every choice that separates the classic GPT-2 recipe from the modern Llama-style one
is one field:

| field       | GPT-2 recipe  | Llama-style recipe         |
| ----------- | ------------- | -------------------------- |
| position    | "learned"     | "rope"                     |
| norm        | "layernorm"   | "rmsnorm"                  |
| mlp         | "gelu"        | "swiglu"                   |
| n_kv_head   | = n_head (MHA)| < n_head (GQA), 1 (MQA)    |
| bias        | True          | False                      |
| tie_weights | True          | False (or True when small) |

The network itself is in model.py. This module needs no torch, so that the planner,
which only does arithmetic on shapes, and the command line's `--help` start fast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import UserError

POSITIONS = ("learned", "rope")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
ATTENTIONS = ("sdpa", "explicit")


def default_ff_dim(d_model: int, mlp: str) -> int:
    """Hidden width of the MLP when `d_ff` is not given.

    GELU: 4 d_model, as in GPT-2. SwiGLU has three matrices instead of two, so it
    gets ~2/3 of that, 8/3 d_model, rounded up to a multiple of 64 for the matmul
    kernels: the same parameter count as the GELU MLP (Shazeer 2020, Llama).
    """
    if mlp == "swiglu":
        return 64 * math.ceil(8 * d_model / 3 / 64)
    return 4 * d_model


@dataclass
class ModelConfig:
    """The shape and recipe of a GPT; the `[model]` table of a run's config.toml.

    `n_kv_head=None` means one key/value head per query head (MHA). `d_ff=None` means
    the recipe's default width (`default_ff_dim`).
    """

    vocab_size: int = 8192
    context_length: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None
    d_model: int = 256
    d_ff: int | None = None
    position: str = "learned"  # "learned" | "rope"
    rope_theta: float = 10000.0
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    norm_eps: float = 1e-5
    mlp: str = "gelu"  # "gelu" | "swiglu"
    bias: bool = True
    tie_weights: bool = True
    dropout: float = 0.0
    attention: str = "sdpa"  # "sdpa" | "explicit"

    def __post_init__(self) -> None:
        self._validate()

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_head, or n_head when it is None."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def ff_dim(self) -> int:
        """Hidden width of the MLP: d_ff, or the recipe's default when it is None."""
        if self.d_ff is not None:
            return self.d_ff
        return default_ff_dim(self.d_model, self.mlp)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build a config from a dict (a TOML table); unknown keys are a UserError."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in known:
                raise UserError(f"model.{key}: unknown field; known fields are "
                                f"{', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """All fields with n_kv_head and d_ff resolved (TOML has no null)."""
        d = dataclasses.asdict(self)
        d["n_kv_head"], d["d_ff"] = self.kv_heads, self.ff_dim
        return d

    def _validate(self) -> None:
        def fail(field: str, why: str) -> None:
            value = getattr(self, field)
            raise UserError(f"model.{field} = {value!r}: {why}")

        for field in ("vocab_size", "context_length", "n_layer", "n_head", "d_model",
                      "n_kv_head", "d_ff"):
            value = getattr(self, field)
            if value is None and field in ("n_kv_head", "d_ff"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                fail(field, "must be a positive integer")
        for field, choices in (("position", POSITIONS), ("norm", NORMS),
                               ("mlp", MLPS), ("attention", ATTENTIONS)):
            if getattr(self, field) not in choices:
                fail(field, f"must be one of {', '.join(map(repr, choices))}")
        for field in ("bias", "tie_weights"):
            if not isinstance(getattr(self, field), bool):
                fail(field, "must be true or false")
        for field in ("rope_theta", "norm_eps", "dropout"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                fail(field, "must be a number")
            setattr(self, field, float(value))
        if self.rope_theta <= 0:
            fail("rope_theta", "must be > 0")
        if self.norm_eps <= 0:
            fail("norm_eps", "must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", "must be in [0, 1)")
        if self.d_model % self.n_head:
            fail("n_head", f"must divide d_model = {self.d_model}")
        if self.n_head % self.kv_heads:
            fail("n_kv_head", f"must divide n_head = {self.n_head} (1 = MQA)")
        if self.position == "rope" and self.head_dim % 2:
            fail("n_head", f"RoPE needs an even head_dim, got d_model / n_head = "
                           f"{self.head_dim}")
