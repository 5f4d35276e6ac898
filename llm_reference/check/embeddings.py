"""embeddings: token and learned position embeddings, and rotary positions (RoPE).

Protocol: a module (or any object) with two functions

    embed(idx, tok_emb, pos_emb) -> x
    rope(x, positions, theta=10000.0) -> x_rotated

`embed`: idx (B, T) int64 token ids, tok_emb (V, C) and pos_emb (P, C) float
tables, T <= P; x (B, T, C) is the token's row of tok_emb plus the row of pos_emb
for its position 0 .. T - 1.

`rope`: x (B, H, T, D) queries or keys, positions (T,) int64, the position of each
of the T rows (not always 0 .. T - 1: with a KV cache new tokens come later). Pair i
of a head, channels (i, i + D/2) (the "rotate half" layout of HF Llama), turns by
the angle position * theta^(-2i / D).

Reference: `llm_reference.model` (the embedding tables of `GPT.forward`,
`rope_tables` and `apply_rope`).
Command: python -m llm_reference check embeddings --impl my_model
Tolerance: float32, |Δ| <= 1e-5 + 1e-4 |expected|.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F

from ..model import apply_rope, rope_tables
from .runner import Node, Suspect, as_tensor, expect_close, fail, generator, randn


def reference_embed(idx: torch.Tensor, tok_emb: torch.Tensor,
                    pos_emb: torch.Tensor) -> torch.Tensor:
    """What GPT.forward does with its two tables (learned positions)."""
    positions = torch.arange(idx.size(1))  # (T,)
    return F.embedding(idx, tok_emb) + F.embedding(positions, pos_emb)  # (B, T, C)


def reference_rope(x: torch.Tensor, positions: torch.Tensor,
                   theta: float = 10000.0) -> torch.Tensor:
    cos, sin = rope_tables(x.size(-1), int(positions.max()) + 1, theta)
    return apply_rope(x, cos[positions], sin[positions])  # (B, H, T, D)


node = Node(
    id="embeddings",
    title="Token and position embeddings, RoPE",
    protocol=__doc__,
    example="my_model",
    reference=lambda: SimpleNamespace(embed=reference_embed, rope=reference_rope),
    parts=("embed", "rope"),
)


def tables(V: int = 11, P: int = 7, C: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    return randn(V, C, seed=1), randn(P, C, seed=2)


@node.check("embed_matches_reference", uses=["embed"],
            section="Token and position embeddings",
            hint="x = tok_emb[idx] + pos_emb[positions 0 .. T - 1]")
def embed_matches_reference(embed: Callable) -> None:
    tok_emb, pos_emb = tables()
    idx = torch.randint(0, 11, (2, 5), generator=generator(3))
    expected = reference_embed(idx, tok_emb, pos_emb)
    expect_close(embed(idx, tok_emb, pos_emb), expected, "x", suspects=[
        Suspect(F.embedding(idx, tok_emb), "the token embeddings alone",
                "add the position embedding of each position")])


@node.check("embed_single_token", uses=["embed"],
            section="Token and position embeddings",
            hint="a single token is at position 0: tok_emb[id] + pos_emb[0]")
def embed_single_token(embed: Callable) -> None:
    tok_emb, pos_emb = tables()
    idx = torch.tensor([[4]])
    expect_close(embed(idx, tok_emb, pos_emb), (tok_emb[4] + pos_emb[0])[None, None],
                 "x for one token")


@node.check("embed_full_context", uses=["embed"],
            section="Token and position embeddings",
            hint="T may equal the number of positions P: use rows 0 .. T - 1")
def embed_full_context(embed: Callable) -> None:
    tok_emb, pos_emb = tables(P=7)
    idx = torch.randint(0, 11, (1, 7), generator=generator(4))
    expect_close(embed(idx, tok_emb, pos_emb), reference_embed(idx, tok_emb, pos_emb),
                 "x at the full context (T = P)")


def interleaved_rope(x: torch.Tensor, positions: torch.Tensor,
                     theta: float) -> torch.Tensor:
    """RoPE with pairs (2i, 2i + 1): the paper's layout, not the one we use."""
    D = x.size(-1)
    inv_freq = 1.0 / theta ** (torch.arange(0, D, 2).float() / D)  # (D/2,)
    angles = torch.outer(positions.float(), inv_freq)  # (T, D/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, T, D/2)
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)  # (B, H, T, D)


def expect_rope(rope: Callable, x: torch.Tensor, positions: torch.Tensor,
                theta: float, what: str) -> None:
    expected = reference_rope(x, positions, theta)
    got = rope(x.clone(), positions.clone(), theta)
    expect_close(got, expected, what, suspects=[Suspect(
        interleaved_rope(x, positions, theta), "RoPE on interleaved pairs (2i, 2i+1)",
        "pair channel i with channel i + D/2 (rotate half), as HF Llama does")])


@node.check("rope_matches_reference", uses=["rope"], section="Rotary positions",
            hint="angle = position * theta^(-2i / D) for pair i = channels "
                 "(i, i + D/2); x * cos + rotate_half(x) * sin")
def rope_matches_reference(rope: Callable) -> None:
    x = randn(2, 3, 6, 8, seed=5)
    expect_rope(rope, x, torch.arange(6), 10000.0, "rope(x, positions 0..5)")


@node.check("rope_later_positions", uses=["rope"], section="Rotary positions",
            hint="use the given positions, not 0 .. T - 1: cached generation "
                 "feeds tokens at later positions")
def rope_later_positions(rope: Callable) -> None:
    x = randn(1, 2, 4, 8, seed=6)
    expect_rope(rope, x, torch.arange(10, 14), 10000.0, "rope(x, positions 10..13)")


@node.check("rope_theta", uses=["rope"], section="Rotary positions",
            hint="the base of the angles is theta, an argument")
def rope_theta(rope: Callable) -> None:
    x = randn(1, 2, 5, 8, seed=7)
    expect_rope(rope, x, torch.arange(5), 500000.0, "rope with theta = 500000")


@node.check("rope_position_zero_unchanged", uses=["rope"], section="Rotary positions",
            hint="at position 0 every angle is 0: the rotation is the identity")
def rope_position_zero_unchanged(rope: Callable) -> None:
    x = randn(1, 2, 1, 8, seed=8)
    expect_close(rope(x.clone(), torch.tensor([0]), 10000.0), x, "rope at position 0")


@node.check("rope_keeps_length", uses=["rope"], section="Rotary positions",
            hint="a rotation keeps each vector's length: rotate pairs, do not "
                 "scale them")
def rope_keeps_length(rope: Callable) -> None:
    x = randn(2, 2, 6, 8, seed=9)
    y = as_tensor(rope(x.clone(), torch.arange(6), 10000.0), "rope(x)")
    if y.shape != x.shape:
        fail(f"rope(x) has shape {tuple(y.shape)}, expected {tuple(x.shape)}")
    expect_close(y.norm(dim=-1), x.norm(dim=-1), "|rope(x)| per vector")


@node.check("rope_depends_on_distance", uses=["rope"], section="Rotary positions",
            hint="rotate q and k by the same angles per position; then q·k "
                 "depends only on the distance between them")
def rope_depends_on_distance(rope: Callable) -> None:
    q, k = randn(1, 1, 1, 8, seed=10), randn(1, 1, 1, 8, seed=11)

    def score(m: int, n: int) -> torch.Tensor:
        qm = as_tensor(rope(q.clone(), torch.tensor([m]), 10000.0), "rope(q)")
        kn = as_tensor(rope(k.clone(), torch.tensor([n]), 10000.0), "rope(k)")
        return (qm * kn).sum()

    expect_close(score(9, 6), score(3, 0), "q·k at positions (9, 6) vs (3, 0)")
