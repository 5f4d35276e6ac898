"""The chunked cross-entropy: equal to the plain one, in value and gradients, while
no (B, T, V) logits outlive the forward pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_reference.cross_entropy import chunked_cross_entropy
from llm_reference.model import GPT, ModelConfig
from llm_reference.quantize import quantize_model


def batch(N: int = 37, C: int = 16, V: int = 50):
    torch.manual_seed(0)
    x = torch.randn(N, C, requires_grad=True)
    weight = torch.randn(V, C, requires_grad=True)
    targets = torch.randint(0, V, (N,))
    targets[::5] = -100  # ignored positions (a finetuning run's prompt tokens)
    return x, weight, targets


@pytest.mark.parametrize("rows_per_chunk", [1, 4, 37, 1000])
def test_chunked_equals_plain_cross_entropy_and_its_gradients(rows_per_chunk):
    x, weight, targets = batch()
    ours = chunked_cross_entropy(x, weight, targets, chunk_logits=50 * rows_per_chunk)
    (3 * ours).backward()  # a scaled loss, as under grad_accum or float16 scaling
    grads = x.grad.clone(), weight.grad.clone()
    x.grad = weight.grad = None
    plain = F.cross_entropy(x @ weight.t(), targets, ignore_index=-100)
    (3 * plain).backward()
    torch.testing.assert_close(ours, plain)
    torch.testing.assert_close(grads[0], x.grad)
    torch.testing.assert_close(grads[1], weight.grad)
    assert torch.count_nonzero(grads[0][::5]) == 0  # ignored rows send nothing back


def test_chunked_cross_entropy_under_bfloat16_autocast():
    x, weight, targets = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = chunked_cross_entropy(x, weight, targets, chunk_logits=200)
        plain = F.cross_entropy(x @ weight.t(), targets, ignore_index=-100)
    assert ours.dtype == plain.dtype == torch.float32
    torch.testing.assert_close(ours, plain, rtol=1e-3, atol=1e-3)
    ours.backward()
    assert x.grad.dtype == weight.grad.dtype == torch.float32


def test_every_target_ignored_gives_nan_like_f_cross_entropy():
    x, weight, targets = batch()
    targets[:] = -100
    assert chunked_cross_entropy(x, weight, targets).isnan()
    assert F.cross_entropy(x @ weight.t(), targets, ignore_index=-100).isnan()


@pytest.mark.parametrize("tie", [True, False])
def test_training_forward_keeps_no_full_logits(tie):
    """With targets, the forward returns no logits and saves none of (B, T, V) size
    for the backward pass: what the memory planner counts."""
    B, T, V = 4, 16, 512
    model = GPT(ModelConfig(vocab_size=V, context_length=T, n_layer=1, n_head=2,
                            d_model=32, tie_weights=tie))
    x, y = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
    saved = []  # the numel of every tensor autograd keeps for the backward pass
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.numel()) or t, lambda t: t):
        logits, loss = model(x, y)
    assert logits is None
    assert max(saved) < B * T * V
    loss.backward()
    full_logits, _ = model(x)
    expected = F.cross_entropy(full_logits.flatten(0, 1), y.flatten())
    torch.testing.assert_close(loss, expected)


def test_a_quantized_head_gets_the_plain_cross_entropy():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, context_length=8, n_layer=1, n_head=2,
                            d_model=16, tie_weights=False))
    quantize_model(model)  # lm_head becomes a QuantizedLinear, not a plain matrix
    x, y = torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8))
    logits, _ = model(x)
    _, loss = model(x, y)
    torch.testing.assert_close(loss, F.cross_entropy(logits.flatten(0, 1),
                                                     y.flatten()))
