"""Your per-row int8 quantizer, for the `quantization` checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check quantization --impl my_quantize

(`python -m llm_reference check --list quantization` prints the full protocol.)
"""

from __future__ import annotations

import torch


def quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w (out, in) float32 -> q (out, in) int8 in [-127, 127] and scale (out,):
    scale = max |row| / 127 (not zero for an all-zero row), q = round(w / scale)."""
    raise NotImplementedError("quantize")


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """q * scale, row by row, as float32."""
    raise NotImplementedError("dequantize")
