# %% [markdown]
# # int8 weights for a small trained model
#
# We take the book's model (`book_model.py`), quantize every
# Linear layer's weight to int8 with one scale per output row, look at the rounding
# error, and compare float32, our int8 model and PyTorch's dynamic int8
# quantization on size, memory, speed and perplexity. Then we time one large layer
# alone, where the cost of dequantizing is easy to see.

# %%
import json
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

from llm_reference.checkpoint import load_model
from llm_reference.quantize import (
    QuantizedLinear,
    dequantize_per_channel,
    format_report,
    quantize_per_channel,
    quantize_run,
    torch_dynamic_int8,
)
from llm_reference.quickstart import book_model

BOOK = {"timeout": 300, "seed": 0, "needs": ["book_model"],
        "settings": {"val_batches": 8, "new_tokens": 48, "repeats": 3,
                     "layer": [2048, 2048], "timing_repeats": 30}}
S = BOOK["settings"]
torch.manual_seed(BOOK["seed"])
torch.set_num_threads(1)

workdir = tempfile.TemporaryDirectory()
root = Path(workdir.name)

# %% [markdown]
# The model: the book's model, pretrained once per build on the standard library.

# %%
# the book's model (run/, data/, summary): book_model.py wrote it; the builder
# says where in BOOK_MODEL_DIR
book = book_model()
run_dir = book.run
model, tok, _ = load_model(run_dir)
steps = book.summary["train"]["max_steps"]
print(f"the book's model: {model.num_parameters():,} parameters trained for "
      f"{steps} steps, validation loss {book.summary['val_loss']:.2f}")

# %% [markdown]
# ## The rounding error, per channel and per tensor
#
# For every Linear weight: the error of each number in units of its row's step s
# (it must lie in [-1/2, 1/2]), and the mean squared error of one scale per row
# against one scale for the whole matrix.

# %% tags=["error"]
linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
steps_err, mse = [], {"per channel": 0.0, "per tensor": 0.0}
numbers = 0
for layer in linears.values():
    w = layer.weight.detach()  # (out, in)
    q, scale = quantize_per_channel(w)
    err = w - dequantize_per_channel(q, scale)  # (out, in)
    steps_err.append((err / scale[:, None]).flatten())
    s_tensor = w.abs().max() / 127  # one scale for the whole matrix
    err_tensor = w - torch.round(w / s_tensor).clamp(-127, 127) * s_tensor
    mse["per channel"] += err.pow(2).sum().item()
    mse["per tensor"] += err_tensor.pow(2).sum().item()
    numbers += w.numel()
steps_err = torch.cat(steps_err)
worst = steps_err.abs().max().item()
print(f"{len(linears)} Linear layers, {numbers:,} weights quantized")
print(f"largest |w - q s| / s = {worst:.4f} (bound: 0.5)")
for k in mse:
    print(f"{k:11} scale: mean squared error {mse[k] / numbers:.3e}")
assert worst <= 0.5 + 1e-4

# %% [markdown]
# ## The whole model: float32, ours, PyTorch's
#
# `quantize_run` writes the int8 model and measures each variant: file size,
# memory of parameters and buffers, greedy generation speed (best of 3), the
# perplexity on the same held-out batches, and how many greedy tokens match fp32.

# %% tags=["checkpoint"]
report = quantize_run(run_dir, root / "int8", data_dir=book.data,
                      val_batches=S["val_batches"],
                      new_tokens=S["new_tokens"], repeats=S["repeats"])
print(format_report(report))

# %% [markdown]
# ## One large layer, timed alone
#
# A 2048 x 2048 Linear applied to one token (batch 1, as in decoding): float32,
# our dequantize-then-matmul path, our int8_matmul path on the same int8 weights
# (int8 activations, torch._int_mm), and torch.ao's dynamic int8 layer. Best of 30
# calls each.

# %% tags=["layer"]
def best_ms(fn, x: torch.Tensor) -> float:
    times = []
    with torch.no_grad():
        for _ in range(S["timing_repeats"]):
            tick = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - tick)
    return 1000 * min(times)


d_out, d_in = S["layer"]
big = nn.Linear(d_in, d_out)
ours = QuantizedLinear.from_linear(big)
kernel = QuantizedLinear.from_linear(big, int8_kernel=True)
peer, _ = torch_dynamic_int8(nn.Sequential(big))
x = torch.randn(1, d_in)
layer_ms = {"fp32": best_ms(big, x), "ours (dequantize)": best_ms(ours, x),
            "ours (int8 kernel)": best_ms(kernel, x),
            "torch.ao dynamic int8": best_ms(peer, x)}
for k, v in layer_ms.items():
    print(f"{k:22} {v:7.3f} ms")
with torch.no_grad():
    gap = ((ours(x) - kernel(x)).norm() / ours(x).norm()).item()
print(f"dequantize vs int8 kernel: relative difference {gap:.1e} (the activations' "
      "rounding)")

# %%
rows = []
for r in report["rows"]:
    if "tokens_per_s" in r:
        rows.append({"name": r["name"], "disk": (r["disk_bytes"] or 0) / 1e6,
                     "memory": r["memory_bytes"] / 1e6, "speed": r["tokens_per_s"],
                     "ppl": r["perplexity"],
                     "same": f"{r['greedy_tokens_same_as_fp32']}/{S['new_tokens']}"})
json.dump({"rows": rows, "mse": {k: v / numbers for k, v in mse.items()},
           "worst": worst, "layers": len(linears), "numbers": numbers,
           "layer_ms": layer_ms, "layer": S["layer"], "steps": steps,
           "parameters": model.num_parameters(), "val_batches": S["val_batches"],
           "quantized_layers": report["quantized_layers"]},
          open("quantization.json", "w"), indent=1)

fig, (left, right) = plt.subplots(1, 2, figsize=(6.4, 2.5))
left.hist(steps_err.numpy(), bins=50, color="#0969da")
left.set_xlabel("error / step s of its row")
left.set_ylabel("weights")
w = linears["blocks.0.mlp.up"].weight.detach()  # (4C, C): one layer of the MLP
q, scale = quantize_per_channel(w)
row_ch = (w - dequantize_per_channel(q, scale)).pow(2).mean(1).sqrt()  # (out,)
s_t = w.abs().max() / 127
row_t = (w - torch.round(w / s_t) * s_t).pow(2).mean(1).sqrt()  # (out,)
right.plot(row_t.sort().values.numpy(), color="#bc4c00",
           label="one scale per tensor")
right.plot(row_ch.sort().values.numpy(), color="#0969da", label="one scale per row")
right.set_xlabel("output rows, sorted by error")
right.set_ylabel("RMS error")
right.set_ylim(bottom=0)
right.legend(frameon=False, fontsize=7, loc="lower right")
for ax in (left, right):
    ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("int8_error.svg")
workdir.cleanup()
