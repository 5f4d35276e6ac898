"""quantization: int8 weight-only quantization, symmetric, per output channel.

Protocol: a module (or any object) with two functions

    quantize(w) -> (q, scale)
    dequantize(q, scale) -> w

w (out, in) float32; q (out, in) int8 in [-127, 127] and scale (out,) float32, one
per row: scale = max |row| / 127 and q = round(w / scale), so each row's largest
weight becomes ±127 and zero stays exactly zero. An all-zero row gets a scale that
is not zero (the reference: 1). dequantize gives q * scale, row by row, as float32.

Reference: `llm_reference.quantize.quantize_per_channel` and
`dequantize_per_channel`.
Command: python -m llm_reference check quantization --impl my_quantize
Tolerance: q exactly; scales and weights |Δ| <= 1e-7 + 1e-6 |expected|.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import torch

from ..quantize import dequantize_per_channel, quantize_per_channel
from .runner import Node, Suspect, as_tensor, expect_close, expect_equal, fail, randn

node = Node(
    id="quantization",
    title="int8 weight-only",
    protocol=__doc__,
    example="my_quantize",
    reference=lambda: SimpleNamespace(quantize=quantize_per_channel,
                                      dequantize=dequantize_per_channel),
    parts=("quantize", "dequantize"),
)
TOL = dict(atol=1e-7, rtol=1e-6)


def quantized(quantize: Callable, w: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    out = quantize(w.clone())
    if not isinstance(out, tuple) or len(out) != 2:
        fail(f"quantize returned {type(out).__name__}, expected (q, scale)")
    return as_tensor(out[0], "q"), as_tensor(out[1], "scale")


def roundtrip(quantize: Callable, dequantize: Callable,
              w: torch.Tensor) -> torch.Tensor:
    q, scale = quantized(quantize, w)
    return as_tensor(dequantize(q, scale), "dequantize(q, scale)").float()


@node.check("quantize_dtype_and_shape", uses=["quantize"], section="int8 per channel",
            hint="q is int8 with w's shape; scale has one float32 per output row")
def quantize_dtype_and_shape(quantize: Callable) -> None:
    q, scale = quantized(quantize, randn(6, 10, seed=1))
    expect_equal(q.dtype, torch.int8, "q.dtype")
    expect_equal(tuple(q.shape), (6, 10), "q.shape")
    expect_equal(tuple(scale.shape), (6,), "scale.shape")


@node.check("quantize_matches_reference", uses=["quantize"],
            section="int8 per channel",
            hint="scale = max |row| / 127, q = round(w / scale[:, None])")
def quantize_matches_reference(quantize: Callable) -> None:
    w = randn(8, 16, seed=2)
    q, scale = quantized(quantize, w)
    q_ref, scale_ref = quantize_per_channel(w)
    expect_close(scale, scale_ref, "scale", **TOL, suspects=[Suspect(
        scale_ref * 127 / 255, "an asymmetric scale over 255 levels",
        "symmetric: divide max |row| by 127, not the range by 255")])
    expect_close(q, q_ref, "q", atol=0, rtol=0)


@node.check("full_range_per_row", uses=["quantize"], section="int8 per channel",
            hint="each row's largest |w| must map to ±127; never use -128")
def full_range_per_row(quantize: Callable) -> None:
    q, _ = quantized(quantize, randn(8, 16, seed=3))
    q = q.int()
    if q.min() < -127 or q.max() > 127:
        fail(f"q spans [{int(q.min())}, {int(q.max())}], expected [-127, 127]")
    peaks = q.abs().amax(dim=1).tolist()
    if any(p != 127 for p in peaks):
        fail(f"the largest |q| of each row is {peaks}, expected 127 everywhere")


@node.check("error_within_half_a_step", uses=["quantize", "dequantize"],
            section="int8 per channel",
            hint="round to the nearest level (round, not floor or truncation): "
                 "the error is at most scale / 2")
def error_within_half_a_step(quantize: Callable, dequantize: Callable) -> None:
    w = randn(8, 16, seed=4)
    _, scale = quantize_per_channel(w)
    error = (roundtrip(quantize, dequantize, w) - w).abs()  # (out, in)
    over = error > scale[:, None] / 2 + 1e-6
    if over.any():
        row, col = over.nonzero()[0].tolist()
        fail(f"|dequantize(quantize(w)) - w| at ({row}, {col}) is "
             f"{error[row, col]:.3g}, more than scale / 2 = {scale[row] / 2:.3g}")


@node.check("one_scale_per_row", uses=["quantize", "dequantize"],
            section="int8 per channel",
            hint="one scale per output row, so a row of large weights does not "
                 "crush the small rows to a few levels")
def one_scale_per_row(quantize: Callable, dequantize: Callable) -> None:
    w = randn(4, 16, seed=5)
    w[0] *= 1000.0  # one row of huge weights
    error = (roundtrip(quantize, dequantize, w) - w).abs()[1:]  # the small rows
    relative = float(error.max() / w[1:].abs().max())
    if relative > 0.01:
        fail(f"small rows next to a large one lost precision: max error "
             f"{relative:.1%} of their largest weight")


@node.check("zero_row", uses=["quantize", "dequantize"], section="int8 per channel",
            hint="an all-zero row has max |row| = 0: use scale 1 there instead of "
                 "dividing by 0")
def zero_row(quantize: Callable, dequantize: Callable) -> None:
    w = randn(3, 8, seed=6)
    w[1] = 0.0
    back = roundtrip(quantize, dequantize, w)
    if not back.isfinite().all():
        fail("dequantize(quantize(w)) has NaN or inf for an all-zero row")
    expect_close(back[1], w[1], "the all-zero row after the round trip", **TOL)


@node.check("dequantize_matches_reference", uses=["dequantize"],
            section="int8 per channel",
            hint="w = q.float() * scale[:, None]: row o uses scale[o]")
def dequantize_matches_reference(dequantize: Callable) -> None:
    q, scale = quantize_per_channel(randn(5, 7, seed=7))
    expect_close(dequantize(q.clone(), scale.clone()),
                 dequantize_per_channel(q, scale), "dequantize(q, scale)", **TOL)
