"""Your sampling filters, sampler and KV cache, for the `generation` checkpoint.

Fill in each part, then run from this folder:

    python -m llm_reference check generation --impl my_generate

(`python -m llm_reference check --list generation` prints the full protocol.)
"""

from __future__ import annotations

import torch


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits (V,) or (B, V) with all but the k largest set to -inf."""
    raise NotImplementedError("top_k_filter")


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the fewest most likely tokens whose probabilities sum to at least p;
    set the others to -inf."""
    raise NotImplementedError("top_p_filter")


def sample(logits: torch.Tensor, temperature: float, top_k: int | None,
           top_p: float | None, generator: torch.Generator) -> int:
    """A token id from logits (V,): argmax at temperature 0, else a draw from
    softmax(filtered logits / temperature) using `generator`."""
    raise NotImplementedError("sample")


class KVCache:
    def __init__(self, *, n_layer: int, batch_size: int, n_kv_head: int,
                 head_dim: int, max_len: int):
        """Room for max_len keys and values per layer; pos = 0."""
        raise NotImplementedError("KVCache")

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, K, T, D) at pos .. pos + T - 1; return the layer's keys
        and values so far, (B, K, pos + T, D)."""
        raise NotImplementedError("KVCache.update")

    def advance(self, n: int) -> None:
        """pos += n, once every layer has written."""
        raise NotImplementedError("KVCache.advance")

    def reset(self) -> None:
        """pos = 0."""
        raise NotImplementedError("KVCache.reset")
