"""int8 weight-only quantization: a quarter of the bytes, almost the same model.

A Linear layer's weight W (out x in) is stored in float32, 4 bytes a number. We store
it as int8 (1 byte) plus one float32 scale per output channel (per row of W):

    scale_o = max_i |W[o, i]| / 127          q[o, i] = round(W[o, i] / scale_o)

so each row uses the whole range [-127, 127] (symmetric: zero stays exactly zero,
and -128 is left out so the range is the same on both sides). Dequantizing,
q * scale, gives back W with an error of at most scale_o / 2 per number. One scale
per row instead of one per matrix matters: a row of large weights would otherwise
crush every small row to a few levels.

Only the weights are stored in int8; the readable forward pass dequantizes the
weight and runs an ordinary float matmul. That is the reference, and it is slow: every
call writes a float copy of the whole weight and reads it again, more bytes than the
float32 model moves. The fast path (`int8_kernel`) never makes that copy. It rounds
each row of the activations to int8 too, on the fly, with its own scale ("dynamic"
quantization), multiplies int8 by int8 with PyTorch's integer matmul `torch._int_mm`
(exact: sums of products in int32), and applies both scales to the int32 result:

    x_n ~ a_n * xs_n,   y[n, o] = xs_n * scale_o * sum_i a[n, i] q[o, i]

The only new error is the rounding of the activations, at most xs_n / 2 each.

What is not quantized: the token (and position) embeddings, norms and biases. With
tied weights the output head *is* the token embedding; we keep it in float32,
because the embedding is a lookup (no matmul to speed up) and the head's logits
decide every token, so its precision is worth the bytes. An untied `lm_head` is a
Linear and is quantized like the others.

`python -m llm_reference quantize --run RUN --out OUT` writes the int8 model and a
report comparing float32, ours (both paths) and PyTorch's dynamic int8 quantization
(`torch.ao.quantization.quantize_dynamic`, deprecated in favour of the `torchao`
package, still the baseline to beat on a CPU) on size, memory, speed and perplexity.
"""

from __future__ import annotations

import copy
import io
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from tqdm import tqdm

from .atomic import write_bytes, write_json
from .config import resolve_device
from .errors import UserError
from .model import GPT, ModelConfig

WEIGHTS, INFO = "model.safetensors", "quantization.json"
FORMAT = "llm-reference-int8/1"


def quantize_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantization of each row of w (out, in).

    Returns q (out, in) int8 in [-127, 127] and scale (out,) float32, with
    w ~ q * scale[:, None] and |w - q * scale| <= scale / 2 everywhere.
    """
    w = w.detach().float()
    scale = w.abs().amax(dim=1) / 127  # (out,): the row's largest |w| maps to 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # all-zero rows
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)  # (out, in)
    return q, scale


def dequantize_per_channel(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int8 q (out, in) and scale (out,) back to a float32 weight (out, in)."""
    return q.float() * scale[:, None]


def quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 of each row of x (N, in), scales computed from x itself.

    Returns a (N, in) int8 and xs (N, 1) float32 with x ~ a * xs. |x| / xs <= 127
    by construction, so rounding never leaves [-127, 127] and needs no clamp.
    """
    amax = torch.linalg.vector_norm(x, float("inf"), dim=-1, keepdim=True)  # max |x|
    xs = amax.clamp_min_(1e-12).div_(127)  # (N, 1); an all-zero row stays zero
    return x.div(xs).round_().to(torch.int8), xs


def int8_matmul(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor
                ) -> torch.Tensor:
    """x (N, in) float times (q * scale)^T, in integer arithmetic: (N, out) float32.

    torch._int_mm sums int8 products in int32, exactly; both scales are applied to
    the sum afterwards.
    """
    a, xs = quantize_activations(x.float())  # (N, in) int8, (N, 1)
    acc = torch._int_mm(a, q.t())  # (N, out) int32
    return acc * (xs * scale)  # (N, out) float32


class QuantizedLinear(nn.Module):
    """A Linear layer whose weight is int8 with one float32 scale per output row.

    The weight, scales and bias are buffers, not parameters: this layer is for
    inference. Its forward pass dequantizes, which reads as the textbook formula;
    with `int8_kernel` on a CPU it runs `int8_matmul` instead, the fast path, which
    never makes a float copy of the weight.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 int8_kernel: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.int8_kernel = int8_kernel
        self.register_buffer(
            "weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, int8_kernel: bool = False
                    ) -> QuantizedLinear:
        layer = cls(linear.in_features, linear.out_features,
                    linear.bias is not None, int8_kernel)
        q, scale = quantize_per_channel(linear.weight)
        layer.weight_int8.copy_(q)
        layer.scale.copy_(scale)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        if self.int8_kernel and x.device.type == "cpu":
            y = int8_matmul(x.reshape(-1, self.in_features), self.weight_int8,
                            self.scale)  # (N, out)
            if self.bias is not None:
                y += self.bias
            y = y.reshape(*x.shape[:-1], self.out_features)  # (..., out)
            return y if y.dtype == x.dtype else y.to(x.dtype)
        w = dequantize_per_channel(self.weight_int8, self.scale)  # (out, in)
        return F.linear(x, w.to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, int8_kernel={self.int8_kernel}")


def quantize_model(model: nn.Module, int8_kernel: bool = False) -> list[str]:
    """Replace every nn.Linear of `model` by a QuantizedLinear, in place.

    Embeddings (and so a tied output head) are not Linear layers and stay float.
    Returns the names of the quantized layers.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, attr)
        setattr(parent, attr, QuantizedLinear.from_linear(linear, int8_kernel))
    return names


def set_int8_kernel(model: nn.Module, enabled: bool) -> None:
    """Switch every QuantizedLinear between int8_matmul and dequantize."""
    for module in model.modules():
        if isinstance(module, QuantizedLinear):
            module.int8_kernel = enabled


# -------------------------------------------------------------------- save, load


def save_quantized(model: GPT, layers: list[str], out_dir: str | Path,
                   extra: dict[str, Any] | None = None) -> None:
    """model.safetensors (int8 weights, scales, float tensors) + quantization.json."""
    out_dir = Path(out_dir)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    write_bytes(out_dir / WEIGHTS, safetensors_bytes(tensors))
    write_json(out_dir / INFO, {
        "format": FORMAT,
        "scheme": "int8 weight-only, symmetric, per output channel",
        "model": model.config.to_dict(), "layers": layers, **(extra or {})})


def load_quantized(out_dir: str | Path, device: str = "cpu", int8_kernel: bool = True
                   ) -> tuple[GPT, dict[str, Any]]:
    """The int8 GPT saved by `save_quantized` (eval mode) and its quantization.json.

    Its layers run the fast `int8_matmul` path unless `int8_kernel` is False."""
    out_dir = Path(out_dir)
    try:
        info = json.loads((out_dir / INFO).read_text(encoding="utf-8"))
        tensors = load_file(out_dir / WEIGHTS, device=device)
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read a quantized model in {out_dir} ({e}); write "
                        "one with `python -m llm_reference quantize`") from None
    if info.get("format") != FORMAT:
        raise UserError(f"{out_dir / INFO}: format {info.get('format')!r} is not "
                        f"{FORMAT!r}")
    model = GPT(ModelConfig.from_dict(info["model"]))
    if quantize_model(model, int8_kernel) != info["layers"]:
        raise UserError(f"{out_dir / INFO}: its layers do not match the model")
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), info


# ------------------------------------------------------------------- measuring


def memory_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers, including PyTorch's packed int8 weights
    (which `torch.ao` dynamic layers keep outside parameters and buffers)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    for module in model.modules():
        if type(module).__name__ == "LinearPackedParams":  # torch.ao's int8 weight
            weight, bias = module._weight_bias()
            tensors[id(weight)] = weight
            if weight.qscheme() == torch.per_channel_affine:
                scales = weight.q_per_channel_scales()
                zero_points = weight.q_per_channel_zero_points()
                tensors[id(scales)], tensors[id(zero_points)] = scales, zero_points
            if bias is not None:
                tensors[id(bias)] = bias
    return sum(t.numel() * t.element_size() for t in tensors.values())


def tokens_per_second(model: GPT, prompt_ids: list[int], new_tokens: int,
                      repeats: int) -> tuple[float, list[int]]:
    """Greedy generation speed (best of `repeats`) and the tokens generated."""
    from .generate import generate

    best, tokens = math.inf, []
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = list(generate(model, prompt_ids, new_tokens, temperature=0.0))
        best = min(best, time.perf_counter() - start)
    return len(tokens) / best, tokens


def validation_loss(model: nn.Module, batches: Any, n_batches: int,
                    device: torch.device) -> float:
    """Mean next-token loss over the first `n_batches` held-out batches."""
    from .evaluate import mean_loss

    return mean_loss(model, batches, range(n_batches), device)


def torch_dynamic_int8(model: nn.Module) -> tuple[nn.Module | None, str]:
    """PyTorch's dynamic int8 quantization of the Linear layers (per-channel weights,
    like ours; activations are quantized on the fly), or None and why not."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            from torch.ao.quantization import (
                per_channel_dynamic_qconfig,
                quantize_dynamic,
            )
        except ImportError as e:
            return None, f"torch.ao.quantization.quantize_dynamic unavailable: {e}"
        quantized = quantize_dynamic(copy.deepcopy(model),
                                     {nn.Linear: per_channel_dynamic_qconfig},
                                     dtype=torch.qint8)
    deprecated = sorted({str(w.message).split("\n")[0].strip() for w in caught
                         if issubclass(w.category, DeprecationWarning)})
    note = "per-channel int8 weights, dynamic int8 activations"
    if deprecated:
        note += "; torch warns: " + " ".join(deprecated)
    return quantized, note


def torch_serialized_bytes(model: nn.Module) -> int:
    """Size of the peer's state dict in its own format (torch.save, in memory only:
    packed int8 weights have no safetensors form)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


# ---------------------------------------------------------------------- report


def quantize_run(run_dir: str | Path, out: str | Path, step: int | None = None,
                 data_dir: str | None = None, val_batches: int = 10,
                 prompt: str = "def ", new_tokens: int = 64, repeats: int = 3,
                 peer: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Quantize a run into `out` and measure fp32, ours and the peer: report.json."""
    from .checkpoint import find_checkpoint, load_model
    from .data import Batches

    if val_batches < 1 or new_tokens < 1 or repeats < 1:
        raise UserError("--val-batches, --new-tokens and --repeats must be >= 1")
    run_dir, out, dev = Path(run_dir), Path(out), resolve_device(device)
    if out.resolve() == run_dir.resolve():
        raise UserError(f"--out {out} is the run itself; choose a new folder")
    model, tokenizer, state = load_model(run_dir, step, str(dev))
    train = state["config"]["train"]
    data_dir = data_dir or train["data_dir"]
    if not (Path(data_dir) / "meta.json").is_file():
        raise UserError(f"held-out data {data_dir}/meta.json not found; pass --data "
                        "with the run's prepared data folder")
    batches = Batches(data_dir, "val", train["batch_size"],
                      model.config.context_length, seed=train["seed"])
    prompt_ids = tokenizer.encode(prompt) or [tokenizer.special_tokens["<|endoftext|>"]]

    ours = copy.deepcopy(model)
    layers = quantize_model(ours)
    extra = {"base_run": str(run_dir), "base_step": state["step"]}
    save_quantized(ours, layers, out, extra)
    for name in ("tokenizer.json", "tokenizer_config.json"):  # the second: imported
        if (run_dir / name).is_file():  # models' own chat template (hf_tokenizer.py)
            write_bytes(out / name, (run_dir / name).read_bytes())

    sizes = ((find_checkpoint(run_dir, step) / WEIGHTS).stat().st_size,
             (out / WEIGHTS).stat().st_size)
    rows = measure(variants(model, ours, sizes, dev, peer), prompt_ids, new_tokens,
                   repeats, batches, val_batches, dev)
    report = {"run": str(run_dir), "step": state["step"], "out": str(out),
              "device": str(dev), "data_dir": str(data_dir), "val_batches": val_batches,
              "prompt": prompt, "new_tokens": new_tokens, "repeats": repeats,
              "quantized_layers": len(layers),
              "kept_float": "token/position embeddings (and the tied head), norms, "
                            "biases",
              "torch": torch.__version__, "rows": rows}
    write_json(out / "report.json", report)
    return report


Variant = tuple[str, nn.Module | None, int | None, str]  # name, model, disk bytes, note


def variants(model: GPT, ours: GPT, sizes: tuple[int, int], device: torch.device,
             peer: bool) -> list[Variant]:
    """What the report compares: float32, ours (the readable dequantize path and, on
    a CPU, the int8_matmul path) and PyTorch's dynamic int8. `sizes`: fp32 and int8
    bytes on disk."""
    fp32_bytes, int8_bytes = sizes
    found: list[Variant] = [
        ("fp32", model, fp32_bytes, "float32 checkpoint"),
        ("ours int8", ours, int8_bytes, "dequantize, then float matmul"),
    ]
    if device.type == "cpu":
        fast = copy.deepcopy(ours)
        set_int8_kernel(fast, True)
        found.append(("ours int8 (kernel)", fast, int8_bytes,
                      "same weights; dynamic int8 activations, torch._int_mm"))
    if peer:
        if device.type != "cpu":
            found.append(("torch.ao dynamic int8", None, None,
                          "skipped: quantize_dynamic runs on the CPU only"))
        else:
            peer_model, note = torch_dynamic_int8(model)
            size = torch_serialized_bytes(peer_model) if peer_model else None
            found.append(("torch.ao dynamic int8", peer_model, size, note))
    return found


def measure(found: list[Variant], prompt_ids: list[int], new_tokens: int,
            repeats: int, batches: Any, n_batches: int, device: torch.device
            ) -> list[dict[str, Any]]:
    """One report row per variant: speed, memory, held-out loss, and for how many
    greedy tokens it agrees with the first variant (fp32)."""
    rows, reference_tokens = [], None
    for name, variant, disk, note in tqdm(found, desc="measure", unit="variant",
                                          file=sys.stderr, disable=None):
        row: dict[str, Any] = {"name": name, "disk_bytes": disk, "note": note}
        if variant is not None:
            speed, tokens = tokens_per_second(variant, prompt_ids, new_tokens, repeats)
            reference_tokens = reference_tokens or tokens
            same = next((i for i, (a, b) in enumerate(zip(tokens, reference_tokens))
                         if a != b), len(tokens))
            loss = validation_loss(variant, batches, n_batches, device)
            row.update(memory_bytes=memory_bytes(variant), tokens_per_s=speed,
                       greedy_tokens_same_as_fp32=same, val_loss=loss,
                       perplexity=math.exp(loss))
        rows.append(row)
    return rows


def format_report(report: dict[str, Any]) -> str:
    """The report as a table, each row also relative to fp32."""
    header = ("variant", "disk MB", "memory MB", "tokens/s", "val loss", "perplexity",
              "greedy = fp32")
    table = [header]
    for row in report["rows"]:
        if "tokens_per_s" not in row:
            table.append((row["name"], *["-"] * 6))
            continue
        disk = "-" if row["disk_bytes"] is None else f"{row['disk_bytes'] / 1e6:.2f}"
        table.append((row["name"], disk, f"{row['memory_bytes'] / 1e6:.2f}",
                      f"{row['tokens_per_s']:.1f}", f"{row['val_loss']:.4f}",
                      f"{row['perplexity']:.2f}",
                      f"{row['greedy_tokens_same_as_fp32']}/{report['new_tokens']}"))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                       for i, (v, w) in enumerate(zip(r, widths))) for r in table]
    lines += [f"note: {row['name']}: {row['note']}" for row in report["rows"]]
    return "\n".join(lines)
