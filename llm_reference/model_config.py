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
LLAMA3_SCALING = ("factor", "low_freq_factor", "high_freq_factor",
                  "original_max_position_embeddings")
GATES = ("softmax", "sigmoid")
# The mixture-of-experts fields and their dense defaults: a config whose moe_experts
# is 0 writes none of them (see `to_dict`), so dense configs stay as they were.
MOE_DEFAULTS: dict[str, Any] = {
    "moe_experts": 0, "moe_top_k": 2, "moe_shared": 0, "moe_gate": "softmax",
    "moe_renorm": True, "moe_aux_coef": 0.01, "moe_z_coef": 0.001,
    "moe_bias_rate": 0.0,
}


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

    Some fields exist so that open models load as they are (see hf.py): `d_head`
    (None = d_model / n_head; Qwen3 uses wider heads), `qkv_bias` (None = `bias`;
    Qwen2 has biases on q, k and v only), `qk_norm` (Qwen3's RMSNorm of each
    query and key head before RoPE) and `rope_scaling` (None = plain RoPE; Llama
    3.1+'s {rope_type = "llama3", factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings}, see model.py's `llama3_inv_freq`).

    The `moe_*` fields make every layer's MLP a mixture of experts (moe.py):
    `moe_experts` routed experts (0 = a dense MLP), each an MLP of the recipe
    (`mlp`) and width `ff_dim`, of which a router picks `moe_top_k` per token;
    `moe_shared` experts every token also goes through (DeepSeekMoE), fused into one
    MLP of moe_shared x ff_dim. `moe_gate` turns router logits into scores:
    "softmax" (Switch, Mixtral, Qwen-MoE) or "sigmoid" (DeepSeek-V3);
    `moe_renorm` rescales the k chosen scores to sum to 1 (Mixtral: yes; Qwen3-MoE
    has it as `norm_topk_prob`). Routing is dropless: every token reaches its k
    experts, however many pick the same one (no capacity factor, no dropped
    tokens). Training adds `moe_aux_coef` x the load-balancing loss (Switch) and
    `moe_z_coef` x the router z-loss (ST-MoE) to the cross-entropy.
    `moe_bias_rate` > 0 turns on DeepSeek-V3's auxiliary-loss-free balancing: a
    per-expert bias, added to the scores only to choose the experts, moves by
    that much after each step toward the under-loaded ones.
    """

    vocab_size: int = 8192
    context_length: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None
    d_model: int = 256
    d_ff: int | None = None
    d_head: int | None = None
    position: str = "learned"  # "learned" | "rope"
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    norm_eps: float = 1e-5
    mlp: str = "gelu"  # "gelu" | "swiglu"
    bias: bool = True
    qkv_bias: bool | None = None
    qk_norm: bool = False
    tie_weights: bool = True
    dropout: float = 0.0
    attention: str = "sdpa"  # "sdpa" | "explicit"
    moe_experts: int = 0  # routed experts per layer; 0 = a dense MLP
    moe_top_k: int = 2  # experts per token
    moe_shared: int = 0  # experts every token goes through
    moe_gate: str = "softmax"  # "softmax" | "sigmoid"
    moe_renorm: bool = True  # the k chosen gate weights sum to 1
    moe_aux_coef: float = 0.01  # load-balancing loss weight
    moe_z_coef: float = 0.001  # router z-loss weight
    moe_bias_rate: float = 0.0  # loss-free balancing bias step; 0 = off

    def __post_init__(self) -> None:
        self._validate()

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_head, or n_head when it is None."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def head_dim(self) -> int:
        """Channels per head: d_head, or d_model / n_head when it is None."""
        return self.d_model // self.n_head if self.d_head is None else self.d_head

    @property
    def has_qkv_bias(self) -> bool:
        """Biases on the q, k, v projection: qkv_bias, or `bias` when it is None."""
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def is_moe(self) -> bool:
        """Whether the MLPs are mixtures of experts (moe_experts > 0)."""
        return self.moe_experts > 0

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
        """All fields with n_kv_head and d_ff resolved (TOML has no null); d_head
        and qkv_bias only when set, so that a config whose d_model or bias is
        changed later (`--set model.d_model=...`) does not keep a stale one. The
        moe_* fields only for a mixture of experts: a dense config's dict is the
        same as before they existed."""
        d = dataclasses.asdict(self)
        d["n_kv_head"], d["d_ff"] = self.kv_heads, self.ff_dim
        return {k: v for k, v in d.items()
                if not (k in ("d_head", "qkv_bias", "rope_scaling") and v is None)
                and not (k in MOE_DEFAULTS and not self.is_moe)}

    def _validate(self) -> None:
        def fail(field: str, why: str) -> None:
            value = getattr(self, field)
            raise UserError(f"model.{field} = {value!r}: {why}")

        for field in ("vocab_size", "context_length", "n_layer", "n_head", "d_model",
                      "n_kv_head", "d_ff", "d_head"):
            value = getattr(self, field)
            if value is None and field in ("n_kv_head", "d_ff", "d_head"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                fail(field, "must be a positive integer")
        for field, choices in (("position", POSITIONS), ("norm", NORMS),
                               ("mlp", MLPS), ("attention", ATTENTIONS)):
            if getattr(self, field) not in choices:
                fail(field, f"must be one of {', '.join(map(repr, choices))}")
        for field in ("bias", "qkv_bias", "qk_norm", "tie_weights"):
            value = getattr(self, field)
            if not isinstance(value, bool) and not (field == "qkv_bias"
                                                    and value is None):
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
        if self.d_head is None and self.d_model % self.n_head:
            fail("n_head", f"must divide d_model = {self.d_model}")
        if self.n_head % self.kv_heads:
            fail("n_kv_head", f"must divide n_head = {self.n_head} (1 = MQA)")
        if self.position == "rope" and self.head_dim % 2:
            fail("n_head", f"RoPE needs an even head_dim, got {self.head_dim}")
        if self.rope_scaling is not None:
            self._validate_rope_scaling(fail)
        self._validate_moe(fail)

    def _validate_rope_scaling(self, fail: Any) -> None:
        """rope_scaling: Llama 3's table of four positive numbers, on RoPE only."""
        scaling = self.rope_scaling
        if self.position != "rope":
            fail("rope_scaling", "needs position = 'rope'")
        if not isinstance(scaling, dict) or scaling.get("rope_type") != "llama3":
            fail("rope_scaling", "must be a table with rope_type = \"llama3\"")
        keys = set(LLAMA3_SCALING)
        if set(scaling) - {"rope_type"} != keys:
            fail("rope_scaling",
                 f"needs exactly rope_type and {', '.join(sorted(keys))}")
        for key in keys:
            value = scaling[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or (
                    value <= 0):
                fail("rope_scaling", f"{key} must be a positive number")
        if scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
            fail("rope_scaling", "high_freq_factor must exceed low_freq_factor")

    def _validate_moe(self, fail: Any) -> None:
        for field in ("moe_experts", "moe_top_k", "moe_shared"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                fail(field, "must be an integer >= 0")
        if not self.is_moe:
            for field, default in MOE_DEFAULTS.items():
                if getattr(self, field) != default:
                    fail(field, "needs model.moe_experts > 0 (a mixture of experts)")
            return
        if not 1 <= self.moe_top_k <= self.moe_experts:
            fail("moe_top_k", f"must be in 1 .. moe_experts = {self.moe_experts}")
        if self.moe_gate not in GATES:
            fail("moe_gate", f"must be one of {', '.join(map(repr, GATES))}")
        if not isinstance(self.moe_renorm, bool):
            fail("moe_renorm", "must be true or false")
        for field in ("moe_aux_coef", "moe_z_coef", "moe_bias_rate"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
                    math.isfinite(value) and value >= 0):
                fail(field, "must be a number >= 0")
            setattr(self, field, float(value))
