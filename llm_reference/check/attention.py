"""attention: causal scaled dot-product attention, with MHA, GQA and MQA.

Protocol: a function

    attention(q, k, v) -> y

q is (B, H, T, D); k and v are (B, K, S, D) with K dividing H and S >= T; y is
(B, H, T, D). Scores q·k are divided by sqrt(D) and softmaxed over the keys. Query
head h reads key/value head h // (H / K): with H = 4 and K = 2, heads 0 and 1 share
head 0 (MHA: K = H; GQA: 1 < K < H; MQA: K = 1). The attention is causal, and the
queries are the last T of S positions (the keys before them come from a KV cache):
query t sits at position S - T + t and sees keys 0 .. S - T + t. q, k and v are
left unchanged.

Reference: `llm_reference.model.explicit_attention`.
Command: python -m llm_reference check attention --impl my_attention:attention
Tolerance: float32, |Δ| <= 1e-5 + 1e-4 |expected|.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..model import causal_mask, explicit_attention
from .runner import Node, Suspect, as_tensor, expect_close, fail, randn

node = Node(
    id="attention",
    title="Causal self-attention; MHA, GQA, MQA",
    protocol=__doc__,
    example="my_attention:attention",
    reference=lambda: explicit_attention,
)


def qkv(B: int, H: int, K: int, T: int, S: int, D: int = 16, seed: int = 0
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (randn(B, H, T, D, seed=seed), randn(B, K, S, D, seed=seed + 1),
            randn(B, K, S, D, seed=seed + 2))


def attend(attention: Callable, q: torch.Tensor, k: torch.Tensor,
           v: torch.Tensor) -> torch.Tensor:
    """The reader's attention on copies, so that nothing it does leaks back."""
    return as_tensor(attention(q.clone(), k.clone(), v.clone()), "y")


def mistakes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[Suspect]:
    """The outputs of common mistakes, to name the one a wrong output matches."""
    H, K, D = q.size(1), k.size(1), q.size(-1)
    kr = k.repeat_interleave(H // K, dim=1)  # (B, H, S, D)
    vr = v.repeat_interleave(H // K, dim=1)
    scores = q @ kr.transpose(-2, -1)  # (B, H, T, S), unscaled
    mask = causal_mask(q.size(2), k.size(2))
    masked = scores.masked_fill(~mask, float("-inf"))
    suspects = [
        Suspect(F.softmax(masked, -1) @ vr, "attention without the 1/sqrt(D) scale",
                "divide the scores by sqrt(D) before the softmax"),
        Suspect(F.softmax(scores / math.sqrt(D), -1) @ vr, "attention without the "
                "causal mask", "mask the future (-inf above the diagonal) before "
                "the softmax"),
        Suspect(F.softmax(scores / math.sqrt(D), -1).masked_fill(~mask, 0) @ vr,
                "a mask applied after the softmax (rows no longer sum to 1)",
                "mask the scores with -inf before the softmax, not the weights "
                "after it"),
    ]
    if K not in (1, H):  # GQA: which query heads share a key/value head
        reps = (1, H // K, 1, 1)  # tiles the K heads: 0, 1, 0, 1 …
        suspects.append(Suspect(
            explicit_attention(q, k.repeat(*reps), v.repeat(*reps)),
            "k and v tiled with .repeat (head h reads kv head h % K)",
            "query head h reads kv head h // (H / K): use repeat_interleave"))
    return suspects


def expect_reference(attention: Callable, q: torch.Tensor, k: torch.Tensor,
                     v: torch.Tensor, what: str) -> None:
    expect_close(attend(attention, q, k, v), explicit_attention(q, k, v), what,
                 suspects=mistakes(q, k, v))


@node.check("mha_matches_reference", section="Scaled dot-product attention",
            hint="softmax(q k^T / sqrt(D) + causal mask) v, per head")
def mha_matches_reference(attention: Callable) -> None:
    expect_reference(attention, *qkv(B=2, H=4, K=4, T=8, S=8), "y (MHA, H = K = 4)")


@node.check("causal", section="The causal mask",
            hint="apply the causal mask before softmax")
def causal(attention: Callable) -> None:
    q, k, v = qkv(B=1, H=2, K=2, T=10, S=10)
    y = attend(attention, q, k, v)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 7], v2[:, :, 7] = randn(1, 2, 16, seed=9), randn(1, 2, 16, seed=10)
    y2 = attend(attention, q, k2, v2)
    if y.shape != q.shape or y2.shape != q.shape:
        fail(f"y has shape {tuple(y.shape)}, expected {tuple(q.shape)}")
    change = (y2 - y).abs().amax(dim=(0, 1, 3))  # (T,): per position
    for t in range(7):
        if not change[t] <= 1e-6:
            fail(f"output at position {t} changed when token 7 changed "
                 f"(max |Δ| = {change[t]:.2g})")


@node.check("sees_itself_and_the_past", section="The causal mask",
            hint="query t attends to keys 0 .. t, itself included: "
                 "tril(ones(T, S)), diagonal kept")
def sees_itself_and_the_past(attention: Callable) -> None:
    q, k, v = qkv(B=1, H=2, K=2, T=6, S=6)
    y = attend(attention, q, k, v)
    v2 = v.clone()
    v2[:, :, 3] += 1.0
    change = (attend(attention, q, k, v2) - y).abs().amax(dim=(0, 1, 3))  # (T,)
    for t in range(3, 6):
        if not change[t] > 1e-4:
            fail(f"output at position {t} did not change when token 3's value "
                 "changed")


@node.check("gqa_matches_reference", section="Fewer key/value heads: GQA and MQA",
            hint="query head h reads kv head h // (H / K)")
def gqa_matches_reference(attention: Callable) -> None:
    expect_reference(attention, *qkv(B=2, H=4, K=2, T=8, S=8), "y (GQA, H=4, K=2)")


@node.check("mqa_matches_reference", section="Fewer key/value heads: GQA and MQA",
            hint="with K = 1 every query head reads the one kv head")
def mqa_matches_reference(attention: Callable) -> None:
    expect_reference(attention, *qkv(B=2, H=4, K=1, T=8, S=8), "y (MQA, H=4, K=1)")


@node.check("queries_after_cached_keys", section="The causal mask",
            hint="with S > T, query t sits at position S - T + t: keep "
                 "tril(ones(T, S), diagonal=S - T)")
def queries_after_cached_keys(attention: Callable) -> None:
    expect_reference(attention, *qkv(B=1, H=4, K=2, T=3, S=8), "y (T=3, S=8)")
    expect_reference(attention, *qkv(B=1, H=4, K=2, T=1, S=8), "y (T=1, S=8)")


@node.check("single_token", section="Scaled dot-product attention",
            hint="one token attends only to itself: its weight is 1")
def single_token(attention: Callable) -> None:
    q, k, v = qkv(B=2, H=2, K=2, T=1, S=1)
    expect_close(attend(attention, q, k, v), v, "y for a single token (= v)")


@node.check("inputs_unchanged", section="Scaled dot-product attention",
            hint="compute new tensors; do not modify q, k or v in place "
                 "(q /= …, masked_fill_)")
def inputs_unchanged(attention: Callable) -> None:
    q, k, v = qkv(B=1, H=2, K=1, T=4, S=4)
    copies = q.clone(), k.clone(), v.clone()
    attention(q, k, v)
    for name, before, after in zip("qkv", copies, (q, k, v)):
        if not torch.equal(before, after):
            fail(f"{name} was modified by attention(q, k, v)")
