# %% [markdown]
# # Efficiency on this CPU: precision, attention kernels, MFU
#
# Everything here is measured on the machine that builds the book, briefly (a few
# steps each), so the numbers are noisy. Like `hardware.measure_cpu`, we time one thread
# in CPU time (`time.process_time`), which other programs on a shared machine barely
# disturb, and alternate the variants being compared. GPU numbers in the chapter
# come from the planner's table of datasheet peaks (`hardware.HARDWARE`), never from
# this machine.

# %%
import json
import statistics
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from llm_reference.hardware import HARDWARE, measure_cpu
from llm_reference.model import GPT, ModelConfig, explicit_attention
from llm_reference.optim import make_optimizer

BOOK = {"timeout": 240, "seed": 0,
        "settings": {"threads": 1, "vocab_size": 2048, "batch_size": 16,
                     "context_length": 128, "steps": 4,
                     "attention_lengths": [128, 256, 512], "attention_batch": 8}}
S = BOOK["settings"]
torch.manual_seed(BOOK["seed"])
torch.set_num_threads(S["threads"])


def median_seconds(fns: dict, repeats: int) -> dict:
    """Median CPU time of each `fns[name]()` over `repeats` rounds, after one warm-up
    round; the functions alternate within each round, so that a change in the
    machine's load affects them alike."""
    times: dict = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            start = time.process_time()
            fn()
            if round_ > 0:
                times[name].append(time.process_time() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# %% [markdown]
# ## What the 16-bit formats can hold

# %% tags=["formats"]
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    fi = torch.finfo(dtype)
    print(f"{str(dtype):15} max {fi.max:9.3g}  smallest normal {fi.tiny:9.3g}  "
          f"epsilon {fi.eps:8.3g}")
grad = torch.tensor([1e-3, 1e-6, 1e-8])
print("a gradient      ", grad.tolist())
print("in float16      ", grad.half().float().tolist())
print("x 2**16, fp16, / 2**16", (grad * 2**16).half().float().div(2**16).tolist())
print("in bfloat16     ", grad.bfloat16().float().tolist())

# %% [markdown]
# ## A training step in fp32 and under bf16 autocast
#
# The `small` preset's shape (2 layers, width 128, context 128, batch 16) on random
# token ids: forward, backward and the AdamW step.

# %% tags=["precision"]
config = ModelConfig(vocab_size=S["vocab_size"], context_length=S["context_length"],
                     n_layer=2, n_head=4, d_model=128)
x = torch.randint(0, S["vocab_size"], (S["batch_size"], S["context_length"]))
tokens = x.numel()


def training_step(dtype: str):
    """A function that runs one training step of a fresh model under `dtype`."""
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = make_optimizer(model, 1e-3, 0.1)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16,
                            enabled=dtype == "bfloat16"):
            _, loss = model(x, x)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


seconds = median_seconds({d: training_step(d) for d in ("float32", "bfloat16")},
                         S["steps"])
rates = {dtype: tokens / s for dtype, s in seconds.items()}
for dtype, rate in rates.items():
    print(f"{dtype:9} {rate:8,.0f} tokens per CPU-second (one thread)")
flops_per_token = GPT(config).flops_per_token()
print(f"{flops_per_token / 1e6:.2f} MFLOPs per token (6N + attention)")

# %% [markdown]
# ## Attention: written out vs the fused kernel
#
# Forward and backward of causal attention, 4 heads of 32 dimensions, batch 8.

# %% tags=["attention"]
attention = []
for T in S["attention_lengths"]:
    q, k, v = (torch.randn(S["attention_batch"], 4, T, 32, requires_grad=True)
               for _ in range(3))

    def fwd_bwd(fn, q=q, k=k, v=v):
        return lambda: fn(q, k, v).sum().backward()

    t = median_seconds({
        "explicit": fwd_bwd(explicit_attention),
        "sdpa": fwd_bwd(lambda q, k, v: F.scaled_dot_product_attention(
            q, k, v, is_causal=True))}, 3)
    explicit, sdpa = t["explicit"], t["sdpa"]
    scores_mib = S["attention_batch"] * 4 * T * T * 4 / 2**20
    attention.append({"T": T, "explicit_ms": 1e3 * explicit, "sdpa_ms": 1e3 * sdpa,
                      "speedup": explicit / sdpa, "scores_mib": scores_mib})
    print(f"T = {T:4}: explicit {1e3 * explicit:7.1f} ms, SDPA {1e3 * sdpa:7.1f} ms "
          f"({explicit / sdpa:.1f}x); the explicit (B, H, T, T) scores take "
          f"{scores_mib:.0f} MiB")

# %% [markdown]
# ## MFU against this CPU's measured peak
#
# `hardware.measure_cpu` times fp32 1024^3 matmuls (the peak) and a small GPT's steps.

# %% tags=["checkpoint"]
cpu = measure_cpu(steps=4)
peak = cpu["peak_fp32_tflops"] * 1e12 / cpu["threads"]  # one thread's peak
print(f"measured fp32 matmul peak: {peak / 1e9:.0f} GFLOP/s on one thread; MFU of "
      f"the planner's reference step (a 4-layer GPT): {cpu['mfu']:.0%}")
mfu = {d: r * flops_per_token / peak for d, r in rates.items()}
for dtype, rate in rates.items():
    print(f"{dtype:9}: {rate:7,.0f} tokens/s x {flops_per_token / 1e6:.2f} MFLOPs = "
          f"{rate * flops_per_token / 1e9:5.1f} GFLOP/s, MFU {mfu[dtype]:.0%} "
          "(one thread)")

# %% [markdown]
# The measurements above as one figure: the training step's throughput and MFU in
# each precision, and attention's time against the context length.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(6.4, 2.6),
                                  gridspec_kw={"width_ratios": [1, 1.6]})
names = list(rates)
bars = left.bar(names, [rates[d] for d in names], color=["#0969da", "#bc4c00"],
                width=0.6)
for bar, dtype in zip(bars, names):
    left.text(bar.get_x() + bar.get_width() / 2, bar.get_height(),
              f"MFU {mfu[dtype]:.0%}", ha="center", va="bottom", fontsize=8)
left.set_ylim(0, 1.15 * max(rates.values()))  # room for the labels
left.set_ylabel("tokens per CPU-second")
left.set_title("training step, one thread", fontsize=9)
lengths = [a["T"] for a in attention]
for key, label, color in (("explicit_ms", "written out", "#57606a"),
                          ("sdpa_ms", "SDPA (fused)", "#0969da")):
    right.plot(lengths, [a[key] for a in attention], marker="o", markersize=3,
               color=color, label=label)
right.set_xscale("log", base=2)
right.set_yscale("log")
right.set_xticks(lengths, [str(t) for t in lengths])
right.set_xlabel("context length T")
right.set_ylabel("ms, forward + backward")
right.set_title("causal attention, batch 8, 4 heads", fontsize=9)
right.legend(frameon=False, fontsize=8, loc="lower right")
for ax in (left, right):
    ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("efficiency_cpu.svg")

# %%
gpus = [{"gpu": hw.name, "bf16": hw.bf16_tflops, "fp32": hw.fp32_tflops,
         "tokens_per_s": hw.bf16_tflops * 1e12 * hw.mfu / flops_per_token,
         "mfu": hw.mfu}
        for key, hw in HARDWARE.items() if hw.device == "cuda"]
json.dump({"rates": rates, "flops_per_token": flops_per_token, "mfu": mfu,
           "cpu": cpu, "attention": attention, "gpus": gpus, "tokens": tokens,
           "threads": S["threads"]}, open("efficiency.json", "w"), indent=1)
