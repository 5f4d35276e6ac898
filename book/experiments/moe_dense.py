# %% [markdown]
# # Mixture of experts: dense vs MoE at equal active parameters
#
# Three GPTs train with the reference trainer on the same tokens (same data, seed
# and schedule): a dense one with a GELU MLP of width 4 d_model; a mixture of 8
# experts of width 2 d_model, 2 per token, so that each token runs through as many
# MLP weights as in the dense model; and the same mixture trained without its
# balancing and z losses. We compare the loss curves, and read the experts' load,
# which the trainer logs at every step in metrics.jsonl.

# %%
import json
import tempfile
import time
import tomllib
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from llm_reference import flops
from llm_reference.config import load_config
from llm_reference.metrics_plot import read_metrics
from llm_reference.model import ModelConfig
from llm_reference.moe import balance_loss, dispatch_loop, dispatch_sorted, route
from llm_reference.quickstart import tiny_data
from llm_reference.train import train

BOOK = {"timeout": 900, "seed": 1337,
        "settings": {"max_bytes": 1_000_000, "vocab_size": 512, "max_steps": 150,
                     "d_model": 64, "n_layer": 2, "context_length": 64,
                     "batch_size": 16, "experts": 8, "top_k": 2, "threads": 1}}
S = BOOK["settings"]
torch.set_num_threads(S["threads"])
workdir = tempfile.TemporaryDirectory()
data_dir = tiny_data(max_bytes=S["max_bytes"], vocab_size=S["vocab_size"],
                     val_fraction=0.1)  # `prepare`, cached
d = S["d_model"]
VARIANTS = {  # name: [model] overrides
    "dense": [f"model.d_ff={4 * d}"],
    "moe": [f"model.d_ff={4 * d // S['top_k']}", f"model.moe_experts={S['experts']}",
            f"model.moe_top_k={S['top_k']}"],
}
VARIANTS["moe, no balancing loss"] = VARIANTS["moe"] + ["model.moe_aux_coef=0",
                                                        "model.moe_z_coef=0"]

# %% [markdown]
# ## Routing by hand, and the two dispatch paths
#
# Six tokens, four experts, two per token. The loop over experts and the sorted
# dispatch give the same output.

# %% tags=["routing"]
torch.manual_seed(0)
logits = torch.randn(6, 4)  # (N, E) router logits
gates, experts, scores = route(logits, k=2)
for n in range(6):
    print(f"token {n}: experts {experts[n].tolist()}, gates "
          f"{[round(g, 3) for g in gates[n].tolist()]}")
print(f"balance loss {balance_loss(scores, experts).item():.3f} (1 = uniform)")
mlps = torch.nn.ModuleList(torch.nn.Sequential(
    torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 16))
    for _ in range(4))
x = torch.randn(6, 16)
with torch.no_grad():
    diff = (dispatch_loop(x, gates, experts, mlps)
            - dispatch_sorted(x, gates, experts, mlps)).abs().max().item()
print(f"max |loop - sorted| = {diff:.1e}")

# %% [markdown]
# ## Three runs on the same tokens
#
# The parameters of each model are counted from its config by `flops.py`: all of
# them (what memory holds) and the active ones (what a token runs through).

# %% tags=["checkpoint"]
runs, params, seconds = {}, {}, {}
for i, (name, sets) in enumerate(VARIANTS.items()):
    config = load_config("tiny", overrides=[
        f"train.data_dir={json.dumps(str(data_dir))}", 'train.device="cpu"',
        f"model.n_layer={S['n_layer']}", f"model.d_model={d}",
        f"model.context_length={S['context_length']}", *sets,
        f"train.batch_size={S['batch_size']}", f"train.max_steps={S['max_steps']}",
        "train.warmup_steps=15", f"train.eval_interval={S['max_steps']}",
        f"train.checkpoint_interval={S['max_steps']}", "train.eval_steps=8"])
    start = time.perf_counter()
    result = train(config, Path(workdir.name) / f"run{i}")
    seconds[name] = time.perf_counter() - start
    run_dir = Path(result["run_dir"])
    m = ModelConfig.from_dict(tomllib.loads((run_dir / "config.toml").read_text())[
        "model"])
    params[name] = {"total": flops.count_parameters(m),
                    "active": flops.count_parameters(m, active=True),
                    "flops_per_token": flops.flops_per_token(m)}
    runs[name] = [r for r in read_metrics(run_dir / "metrics.jsonl")
                  if "event" not in r]
    last = runs[name][-1]
    print(f"{name}: {params[name]['total']:,} parameters, "
          f"{params[name]['active']:,} active; val loss {result['val_loss']:.3f}")
    if "moe_load" in last:
        print(f"  last step: max-load ratio {last['moe_max_load']:.2f}, expert "
              f"shares {[round(s, 2) for s in last['moe_load']]}")

# %%
colors = {"dense": "#57606a", "moe": "#0969da", "moe, no balancing loss": "#cf222e"}
fig, ax = plt.subplots(figsize=(6, 2.8))
for name, records in runs.items():
    loss = torch.tensor([r["loss"] for r in records])
    smooth = torch.nn.functional.avg_pool1d(loss[None, None], 9, 1, 4,
                                            count_include_pad=False)[0, 0]
    ax.plot([r["step"] for r in records], smooth, label=name, color=colors[name],
            linewidth=1.1)
ax.set_xlabel("step")
ax.set_ylabel("training loss (9-step mean)")
ax.legend(frameon=False, fontsize=8)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("moe_loss.svg")

fig, axes = plt.subplots(1, 2, figsize=(7, 2.6), sharey=True)
for ax, name in zip(axes, ["moe", "moe, no balancing loss"]):
    shares = torch.tensor([r["moe_load"] for r in runs[name]])  # (steps, E)
    steps = [r["step"] for r in runs[name]]
    ax.stackplot(steps, shares.T, colors=plt.cm.tab10.colors[:S["experts"]],
                 linewidth=0)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylim(0, 1)
    ax.spines[["top", "right"]].set_visible(False)
axes[0].set_ylabel("share of assignments")
fig.tight_layout()
fig.savefig("moe_load.svg")

summary = {name: {"final_loss": sum(r["loss"] for r in recs[-10:]) / 10,
                  "max_load": [r.get("moe_max_load") for r in recs],
                  "final_shares": recs[-1].get("moe_load"),
                  "seconds": seconds[name], **params[name]}
           for name, recs in runs.items()}
json.dump({**S, "runs": summary}, open("moe.json", "w"), indent=1)
workdir.cleanup()
