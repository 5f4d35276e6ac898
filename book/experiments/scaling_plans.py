# %% [markdown]
# # From a budget to a plan
#
# The planner is arithmetic: no training happens here. We ask it for the plan of
# every budget preset of every track, check its parameter and FLOP counts against
# the real model (built on PyTorch's `meta` device, which allocates nothing, so even
# the 2.6B-parameter plan costs no memory), and draw the scaling law it uses.

# %%
import json
import math

import matplotlib.pyplot as plt
import torch

from llm_reference import flops, hardware, memory, plan, scaling, units
from llm_reference.model import GPT, ModelConfig

BOOK = {"timeout": 300, "seed": 0,
        "settings": {"iso_flops": [1e18, 1e19, 1e20, 1e21, 1e22],
                     "tokens_per_param": [20.0, 100.0],
                     "compare_budget": "1xH100:8h",
                     "memory_budget": "1xRTX4090:8h"}}
S = BOOK["settings"]


def meta_model(model: dict) -> GPT:
    """The planned GPT with parameters on the meta device: shapes only, no memory."""
    with torch.device("meta"):
        return GPT(ModelConfig.from_dict(model))


rows = []
for track in plan.TRACKS.values():
    for budget in track.budgets:
        p = plan.make_plan(budget, track.name)
        gpt = meta_model(p.model)
        assert gpt.num_parameters() == p.params  # the planner counts like model.py
        assert gpt.flops_per_token() == p.flops_per_token
        m = p.model
        attention = 12 * m["n_layer"] * m["d_model"] * m["context_length"]
        rows.append({
            "budget": budget, "track": track.name,
            "params": p.params, "params_h": units.fmt_count(p.params),
            "shape": f"{m['n_layer']} x {m['d_model']}",
            "tokens": p.tokens, "tokens_h": units.fmt_count(p.tokens),
            "tokens_per_param": p.tokens_per_param,
            "flops": p.train_flops, "six_nd": flops.training_flops(p.params, p.tokens),
            "context": m["context_length"],
            "attention_share": attention / p.flops_per_token,
            "hours": p.seconds / 3600, "time": units.fmt_duration(p.seconds),
            "cost": "$0" if p.cost_usd[1] == 0
                    else f"${p.cost_usd[0]:,.0f}-{p.cost_usd[1]:,.0f}",
            "memory": units.fmt_bytes(p.memory["total"]),
            "memory_gib": p.memory["total"] / units.GiB,
            "device_gib": p.hardware.memory_gib,
            "layout": p.parallelism + (" + ckpt" if p.activation_checkpointing else ""),
            "micro_batch": p.train["batch_size"], "grad_accum": p.train["grad_accum"],
            "lr": p.train["lr"], "loss": p.expected_loss,
            "in_fit_range": (scaling.FITTED_PARAMS[0] <= p.params
                             <= scaling.FITTED_PARAMS[1]),
            "ln_vocab": math.log(m["vocab_size"])})

# %% tags=["checkpoint"]
print(f"{'budget':13} {'params':>7} {'L x d':>9} {'tokens':>7} {'D/N':>5} "
      f"{'time':>7} {'cost':>11} {'memory':>9} {'loss':>5}")
for r in rows:
    flag = "" if r["in_fit_range"] else "*"
    print(f"{r['budget']:13} {r['params_h']:>7} {r['shape']:>9} {r['tokens_h']:>7} "
          f"{r['tokens_per_param']:5.1f} {r['time']:>7} {r['cost']:>11} "
          f"{r['memory']:>9} {r['loss']:5.2f}{flag}")
print("* outside the fit's range of model sizes: an extrapolation")
print("parameter and FLOP counts equal GPT(config)'s for every plan")

# %% [markdown]
# What the 6ND rule leaves out: the attention term of `flops_per_token`, which
# grows with the context, as a share of the training FLOPs of each plan.

# %% tags=["attention"]
for r in rows:
    print(f"{r['budget']:13} context {r['context']:5d}  attention "
          f"{r['attention_share']:6.1%} of the FLOPs;  "
          f"6ND / counted = {r['six_nd'] / r['flops']:.3f}")

# %% [markdown]
# Memory of the practitioner's RTX 4090 plan, by micro-batch, without and with
# activation checkpointing; the device has 24 GiB, of which the planner uses 90 %.

# %% tags=["memory"]
p = plan.make_plan(S["memory_budget"])
usable = p.hardware.memory_gib * memory.USABLE_MEMORY
state_bytes = memory.state_bytes_per_param(p.hardware.dtype)
print(f"{units.fmt_count(p.params)} parameters x {state_bytes} bytes = "
      f"{units.fmt_bytes(p.params * state_bytes)} of model states; "
      f"usable memory {usable:.1f} GiB")
print(f"{'micro-batch':>11} {'checkpointing':>13} {'states':>9} {'activations':>11} "
      f"{'logits':>9} {'total':>9}  fits")
memory_rows = []
for micro in (8, 16, 32, 64):
    for checkpointing in (False, True):
        mem = memory.training_memory(p.config, micro, p.hardware.dtype, checkpointing)
        fits = mem["total"] <= usable * units.GiB
        memory_rows.append({"micro_batch": micro, "checkpointing": checkpointing,
                            **{k: v / units.GiB for k, v in mem.items()},
                            "fits": fits})
        print(f"{micro:11d} {'yes' if checkpointing else 'no':>13} "
              f"{units.fmt_bytes(mem['model_states']):>9} "
              f"{units.fmt_bytes(mem['activations']):>11} "
              f"{units.fmt_bytes(mem['logits']):>9} "
              f"{units.fmt_bytes(mem['total']):>9}  {'yes' if fits else 'no'}")
print(f"planned: micro-batch {p.train['batch_size']} x {p.train['grad_accum']} "
      f"accumulation steps, checkpointing {p.activation_checkpointing}")

# %% [markdown]
# Spending the same compute on a smaller model and more tokens (D/N = 100 instead of
# 20): the loss goes up a little, and each generated token gets cheaper.

# %% tags=["overtrain"]
overtrain = []
for r in S["tokens_per_param"]:
    q = plan.make_plan(S["compare_budget"], tokens_per_param=r)
    overtrain.append({"ratio": r, "params": q.params, "tokens": q.tokens,
                      "loss": q.expected_loss,
                      "inference": flops.forward_flops_per_token(q.config)})
    print(f"D/N {r:3.0f}: {units.fmt_count(q.params):>5} parameters, "
          f"{units.fmt_count(q.tokens):>5} tokens, loss {q.expected_loss:.3f}, "
          f"{flops.forward_flops_per_token(q.config) / 1e9:.2f} GFLOPs/generated token")

# %% [markdown]
# The two Chinchilla fits: the compute-optimal tokens per parameter each implies,
# and their predictions at Chinchilla's own size (70B parameters, 1.4T tokens).

# %% tags=["fits"]
fits = [scaling.HOFFMANN_2022, scaling.BESIROGLU_2024]
for fit in fits:
    ratios = ", ".join(f"{fit.optimal_tokens_per_param(c):.0f}" for c in
                       S["iso_flops"])
    print(f"{fit.name}:\n  L(70B, 1.4T) = {fit.loss(70e9, 1.4e12):.3f}; "
          f"optimal D/N at C = 1e18 ... 1e22: {ratios}")
chinchilla_c = flops.training_flops(70e9, 1.4e12)
print(f"Chinchilla's budget C = 6 x 70B x 1.4T = {chinchilla_c:.2e} FLOPs: optimal "
      + ", ".join(f"D/N {f.optimal_tokens_per_param(chinchilla_c):.0f}" for f in fits))

# %%
fit = scaling.LOSS_FIT
curves = []
for c in S["iso_flops"]:
    n_opt, _ = scaling.compute_optimal(c, fit.optimal_tokens_per_param(c))
    ns = [n_opt * 10 ** (k / 20) for k in range(-30, 31)]
    curves.append({"flops": c, "n": ns,
                   "loss": [fit.loss(n, c / (6 * n)) for n in ns],
                   "n_opt": n_opt, "n_20": scaling.compute_optimal(c)[0]})
json.dump({"plans": rows, "memory": memory_rows, "overtrain": overtrain,
           "fits": [{"name": f.name, "E": f.E, "A": f.A, "B": f.B, "alpha": f.alpha,
                     "beta": f.beta, "ratios": {str(c): f.optimal_tokens_per_param(c)
                                                for c in S["iso_flops"]}}
                    for f in fits],
           "chinchilla": {"flops": chinchilla_c,
                          "exponent": math.floor(math.log10(chinchilla_c)),
                          "mantissa": chinchilla_c / 10 ** math.floor(
                              math.log10(chinchilla_c)),
                          "ratios": [f.optimal_tokens_per_param(chinchilla_c)
                                     for f in fits]},
           "cpu": {"peak_tflops": hardware.HARDWARE["cpu"].peak_tflops,
                   "mfu": hardware.HARDWARE["cpu"].mfu}, "gpu_mfu": hardware.GPU_MFU,
           "curves": [{k: v for k, v in c.items() if k not in ("n", "loss")}
                      for c in curves]},
          open("scaling.json", "w"), indent=1)

fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 2.9))
colors = plt.cm.viridis([0.1, 0.3, 0.5, 0.7, 0.9])
for curve, color in zip(curves, colors):
    left.plot(curve["n"], curve["loss"], color=color, linewidth=1.2,
              label=f"C = 1e{round(math.log10(curve['flops']))}")
    best = fit.loss(curve["n_opt"], curve["flops"] / (6 * curve["n_opt"]))
    left.plot([curve["n_opt"]], [best], "o", color=color, markersize=4)
    left.plot([curve["n_20"]], [fit.loss(curve["n_20"], curve["flops"] /
                                         (6 * curve["n_20"]))],
              "x", color="#cf222e", markersize=5)
left.set_xscale("log")
left.set_xlabel("parameters N")
left.set_ylabel("loss (nats/token)")
left.set_title("IsoFLOP curves (dot: minimum, x: D = 20N)", fontsize=8)
left.legend(frameon=False, fontsize=6.5)
cs = [10 ** (k / 4) for k in range(56, 101)]
for f, style in zip(fits, ("--", "-")):
    right.plot(cs, [f.optimal_tokens_per_param(c) for c in cs], style,
               color="#0969da", linewidth=1.2, label=f.name.split(",")[0]
               .replace(" (Chinchilla replication)", " refit"))
right.axhline(20, color="#57606a", linewidth=0.8, linestyle=":")
right.text(3e21, 16.5, "D = 20 N", fontsize=7, color="#57606a")
for r in rows:
    right.axvline(r["flops"], color="#d0d7de", linewidth=0.6, zorder=0)
right.set_xscale("log")
right.set_yscale("log")
right.set_yticks([10, 20, 50, 100], ["10", "20", "50", "100"])
right.set_yticks([], minor=True)
right.set_ylim(8, 150)
right.set_xlabel("training compute C (FLOPs)")
right.set_ylabel("optimal D / N")
right.legend(frameon=False, fontsize=7)
for ax in (left, right):
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=7)
fig.tight_layout()
fig.savefig("scaling.svg")
