"""efficiency: FLOPs per token, MFU, and unscaling fp16 gradients.

Protocol: a module with three functions

    flops_per_token(matmul_weights, n_layer, d_model, context_length) -> float
    mfu(tokens_per_second, flops_per_token, peak_flops) -> float
    unscale_(grads, scale) -> bool

`flops_per_token`: the training FLOPs (forward + backward) of one token,
6 N' + 12 L d T, where N' = matmul_weights is the number of weights a token is
multiplied by (the non-embedding parameters plus the output head), L = n_layer,
d = d_model and T = context_length (attention's scores and weighted sum).

`mfu`: model FLOPs utilisation, the FLOPs the model needs per second divided by
the hardware's peak: tokens_per_second * flops_per_token / peak_flops (a fraction,
0.4 for 40 %).

`unscale_`: the second half of fp16 loss scaling. The loss was multiplied by
`scale` before the backward pass, so every gradient in the list `grads` (float32
tensors) is `scale` times too large: divide each one in place by scale. Return True
if any gradient holds an inf or a NaN (the step must then be skipped and the scale
lowered), else False.

Reference: `llm_reference.flops.flops_per_token`; the MFU that `Trainer` logs;
`torch.amp.GradScaler`'s unscaling (`torch._amp_foreach_non_finite_check_and_unscale_`).
Command: python -m llm_reference check efficiency --impl my_efficiency
Tolerance: FLOPs and MFU to 1e-9 relative; gradients |Δ| <= 1e-7 + 1e-6 |expected|.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import torch

from ..flops import flops_per_token, matmul_weights
from ..model_config import ModelConfig
from .runner import (
    Node,
    Suspect,
    as_float64,
    expect_close,
    expect_equal,
    fail,
    randn,
)


def reference_flops_per_token(matmul_weights: float, n_layer: int, d_model: int,
                              context_length: int) -> float:
    """flops.flops_per_token of a config with these numbers."""
    return 6.0 * matmul_weights + 12.0 * n_layer * d_model * context_length


def reference_mfu(tokens_per_second: float, flops_per_token: float,
                  peak_flops: float) -> float:
    return tokens_per_second * flops_per_token / peak_flops


def reference_unscale_(grads: list[torch.Tensor], scale: float) -> bool:
    found_inf = torch.zeros(1)
    inv_scale = torch.full((1,), 1.0 / scale)
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale)
    return bool(found_inf.item())


node = Node(
    id="efficiency",
    title="Mixed precision, compile, flash attention, MFU",
    protocol=__doc__,
    example="my_efficiency",
    reference=lambda: SimpleNamespace(
        flops_per_token=reference_flops_per_token, mfu=reference_mfu,
        unscale_=reference_unscale_),
    parts=("flops_per_token", "mfu", "unscale_"),
)
CONFIGS = [  # GPT-2 small, and a Llama-style model with a long context
    ModelConfig(vocab_size=50304, context_length=1024, n_layer=12, n_head=12,
                d_model=768),
    ModelConfig(vocab_size=32000, context_length=4096, n_layer=4, n_head=8,
                n_kv_head=2, d_model=512, position="rope", norm="rmsnorm",
                mlp="swiglu", bias=False, tie_weights=False),
]




@node.check("flops_match_reference", uses=["flops_per_token"],
            section="MFU: how close to the peak",
            hint="C_token = 6 N' + 12 L d T: 6 FLOPs per weight, plus attention's "
                 "scores and weighted sum (4 L d T forward, twice that backward)")
def flops_match_reference(impl: Callable) -> None:
    for c in CONFIGS:
        n = matmul_weights(c)
        expected = torch.tensor(flops_per_token(c), dtype=torch.float64)
        ours = as_float64(impl(n, c.n_layer, c.d_model, c.context_length),
                      "flops_per_token")
        expect_close(ours, expected, f"FLOPs per token (L={c.n_layer}, "
                     f"d={c.d_model}, T={c.context_length})", atol=0, rtol=1e-9,
                     suspects=[
            Suspect(torch.tensor(6.0 * n, dtype=torch.float64),
                    "6 N' alone", "add attention's 12 L d T"),
            Suspect(torch.tensor(2.0 * n + 4.0 * c.n_layer * c.d_model
                                 * c.context_length, dtype=torch.float64),
                    "the forward pass only", "training adds the backward pass: "
                    "twice the forward FLOPs")])


@node.check("mfu_matches_reference", uses=["mfu"],
            section="MFU: how close to the peak",
            hint="MFU = tokens/s x FLOPs per token / peak FLOP/s, a fraction")
def mfu_matches_reference(mfu: Callable) -> None:
    for tps, fpt, peak in ((50_000.0, 7.8e8, 989e12), (1234.5, 1.2e9, 2.5e12)):
        expect_close(as_float64(mfu(tps, fpt, peak), "mfu"),
                     torch.tensor(reference_mfu(tps, fpt, peak), dtype=torch.float64),
                     f"mfu({tps}, {fpt:g}, {peak:g})", atol=0, rtol=1e-9,
                     suspects=[Suspect(torch.tensor(100 * tps * fpt / peak,
                                                    dtype=torch.float64),
                                       "a percentage", "return a fraction")])


@node.check("unscale_divides_in_place", uses=["unscale_"],
            section="Mixed precision: bf16 and fp16",
            hint="divide every gradient by the scale in place (g.div_(scale) or "
                 "g.mul_(1 / scale)); return False when all are finite")
def unscale_divides_in_place(unscale_: Callable) -> None:
    grads = [randn(4, 3, seed=1) * 65536, randn(5, seed=2) * 65536]
    expected = [g.clone() for g in grads]
    reference_unscale_(expected, 65536.0)
    found = unscale_(grads, 65536.0)
    for i, (g, e) in enumerate(zip(grads, expected)):
        expect_close(g, e, f"gradient {i} after unscale_ (in place, scale 2^16)",
                     atol=1e-7, rtol=1e-6)
    expect_equal(bool(found), False, "the return value with finite gradients")


@node.check("unscale_reports_overflow", uses=["unscale_"],
            section="Mixed precision: bf16 and fp16",
            hint="return True if any gradient has an inf or NaN "
                 "(torch.isfinite(g).all() is False): the step is skipped")
def unscale_reports_overflow(unscale_: Callable) -> None:
    for bad in (float("inf"), float("nan")):
        grads = [randn(3, seed=3), randn(2, 2, seed=4)]
        grads[1][1, 0] = bad
        found = unscale_(grads, 1024.0)
        if not isinstance(found, (bool, torch.Tensor)) or not bool(found):
            fail(f"a gradient holding {bad} was not reported (returned "
                 f"{found!r}, expected True)")
