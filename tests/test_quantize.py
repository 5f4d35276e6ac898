"""int8 weight-only quantization: the per-channel error bound, QuantizedLinear (both
paths), quantizing a GPT, the safetensors round trip and the `quantize` report."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from llm_reference.__main__ import main
from llm_reference.checkpoint import load_model
from llm_reference.model import GPT, ModelConfig
from llm_reference.quantize import (
    QuantizedLinear,
    dequantize_per_channel,
    int8_matmul,
    load_quantized,
    memory_bytes,
    quantize_activations,
    quantize_model,
    quantize_per_channel,
    save_quantized,
    set_int8_kernel,
)

TINY = dict(vocab_size=97, context_length=32, n_layer=2, n_head=4, d_model=64)
RECIPES = {
    "gpt2": TINY,
    "llama": dict(TINY, position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2,
                  bias=False, tie_weights=False),
}


def trained_like(recipe: str) -> GPT:
    """A random GPT with a few outlier weights, as trained models have."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(**RECIPES[recipe])).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.view(-1)[::97] *= 8.0
    return model


@pytest.mark.parametrize("shape", [(16, 8), (96, 64), (3, 1)])
def test_per_channel_error_is_at_most_half_a_step(shape):
    torch.manual_seed(0)
    w = torch.randn(shape) * torch.logspace(-3, 1, shape[0])[:, None]  # rows differ
    q, scale = quantize_per_channel(w)
    assert q.dtype == torch.int8 and scale.dtype == torch.float32
    assert q.shape == w.shape and scale.shape == (shape[0],)
    assert q.min() >= -127 and q.max() <= 127
    assert (q.abs().amax(dim=1) == 127).all()  # each row uses its whole range
    error = (w - dequantize_per_channel(q, scale)).abs()  # (out, in)
    assert (error <= scale[:, None] / 2 * (1 + 1e-5)).all()


def test_all_zero_rows_stay_zero():
    w = torch.zeros(3, 5)
    w[1] = torch.tensor([0.5, -1.0, 0.0, 0.25, 1.0])
    q, scale = quantize_per_channel(w)
    assert torch.isfinite(scale).all()
    assert torch.equal(dequantize_per_channel(q, scale)[[0, 2]], torch.zeros(2, 5))


@pytest.mark.parametrize("bias", [True, False])
def test_quantized_linear_matches_the_float_layer(bias):
    torch.manual_seed(0)
    linear = nn.Linear(64, 48, bias=bias)
    layer = QuantizedLinear.from_linear(linear)
    x = torch.randn(2, 5, 64)
    q, scale = quantize_per_channel(linear.weight)
    expected = x @ dequantize_per_channel(q, scale).T
    if bias:
        expected = expected + linear.bias
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer(x), linear(x), rtol=0, atol=2e-2)
    layer.int8_kernel = True  # int8 activations too, torch._int_mm: close
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=2e-2)
    assert not any(True for _ in layer.parameters())  # inference only: buffers


def test_int8_matmul_is_the_exact_integer_product_of_both_roundings():
    torch.manual_seed(0)
    q, scale = quantize_per_channel(torch.randn(40, 24))
    x = torch.randn(3, 24) * torch.tensor([[1e-3], [1.0], [1e3]])  # rows differ
    a, xs = quantize_activations(x)
    assert a.dtype == torch.int8 and a.abs().max() <= 127 and xs.shape == (3, 1)
    assert (a.abs().amax(dim=1) == 127).all()
    assert ((x - a * xs).abs() <= xs / 2 * (1 + 1e-5)).all()
    exact = (a.double() @ q.double().T) * xs.double() * scale.double()  # (3, 40)
    torch.testing.assert_close(int8_matmul(x, q, scale).double(), exact)
    assert torch.equal(int8_matmul(torch.zeros(2, 24), q, scale), torch.zeros(2, 40))


@pytest.mark.parametrize("recipe", RECIPES)
def test_quantized_gpt_logits_stay_close_to_fp32(recipe):
    model = trained_like(recipe)
    idx = torch.randint(0, 97, (2, 32))
    with torch.no_grad():
        reference = model(idx)[0]
        layers = quantize_model(model)
        quantized = model(idx)[0]
        set_int8_kernel(model, True)
        kernel = model(idx)[0]
    per_block = 4 if recipe == "gpt2" else 5
    assert len(layers) == 2 * per_block + (recipe == "llama")  # + untied lm_head
    assert isinstance(model.tok_emb, nn.Embedding)  # embeddings (tied head) stay float
    relative = (quantized - reference).norm() / reference.norm()
    assert relative < 0.02
    assert (quantized.argmax(-1) == reference.argmax(-1)).float().mean() > 0.95
    relative = (kernel - quantized).norm() / quantized.norm()  # activations' rounding
    assert relative < 0.02
    assert (kernel.argmax(-1) == quantized.argmax(-1)).float().mean() > 0.95


def test_quantized_model_is_smaller_in_memory():
    model = trained_like("gpt2")
    before = memory_bytes(model)
    linear_weights = sum(m.weight.numel() for m in model.modules()
                         if isinstance(m, nn.Linear))
    quantize_model(model)
    assert before - memory_bytes(model) == linear_weights * 3 - sum(
        m.scale.numel() * 4 for m in model.modules() if isinstance(m, QuantizedLinear))


@pytest.mark.parametrize("recipe", RECIPES)
def test_save_load_round_trip_is_exact(recipe, tmp_path):
    model = trained_like(recipe)
    layers = quantize_model(model, int8_kernel=True)
    save_quantized(model, layers, tmp_path, {"base_run": "runs/x"})
    loaded, info = load_quantized(tmp_path)
    assert info["layers"] == layers and info["base_run"] == "runs/x"
    saved = load_file(tmp_path / "model.safetensors")
    assert saved["blocks.0.attn.qkv.weight_int8"].dtype == torch.int8
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    idx = torch.randint(0, 97, (1, 32))
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], model(idx)[0])  # both int8_matmul
        set_int8_kernel(loaded, False)
        set_int8_kernel(model, False)
        assert torch.equal(loaded(idx)[0], model(idx)[0])  # both dequantize


def test_quantize_command_writes_weights_and_a_report(tiny_run, tmp_path, capsys):
    out = tmp_path / "int8"
    assert main(["quantize", "--run", str(tiny_run), "--out", str(out),
                 "--val-batches", "2", "--new-tokens", "8", "--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    for name in ("fp32", "ours int8", "torch.ao dynamic int8", "perplexity"):
        assert name in printed
    report = json.loads((out / "report.json").read_text())
    rows = {row["name"]: row for row in report["rows"]}
    assert {"fp32", "ours int8", "torch.ao dynamic int8"} <= rows.keys()
    for row in rows.values():
        assert {"disk_bytes", "memory_bytes", "tokens_per_s", "val_loss",
                "perplexity", "greedy_tokens_same_as_fp32", "note"} <= row.keys()
    assert rows["ours int8"]["disk_bytes"] < rows["fp32"]["disk_bytes"]
    assert rows["ours int8"]["memory_bytes"] < rows["fp32"]["memory_bytes"]
    assert rows["ours int8"]["val_loss"] == pytest.approx(rows["fp32"]["val_loss"],
                                                          rel=0.01)
    assert report["quantized_layers"] == 8
    model, _ = load_quantized(out)
    fp32, _, _ = load_model(tiny_run)
    idx = torch.randint(0, fp32.config.vocab_size, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], fp32(idx)[0], rtol=0, atol=0.05)
    assert all(m.int8_kernel for m in model.modules()
               if isinstance(m, QuantizedLinear))  # a loaded model runs fast
    fast, reference = rows["ours int8 (kernel)"], rows["ours int8"]
    assert round(fast["perplexity"], 2) == round(reference["perplexity"], 2)


def test_quantize_command_errors(tiny_run, tmp_path, capsys):
    assert main(["quantize", "--run", str(tiny_run), "--out", str(tiny_run)]) == 2
    assert "is the run itself" in capsys.readouterr().err
    assert main(["quantize", "--run", str(tiny_run), "--out", str(tmp_path / "q"),
                 "--data", str(tmp_path / "nowhere")]) == 2
    assert "--data" in capsys.readouterr().err
