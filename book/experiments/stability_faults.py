# %% [markdown]
# # Loss spikes and NaN: detect, skip, roll back
#
# A tiny GPT trains on a slice of the default corpus while the trainer's
# `FaultInjector` multiplies one step's loss by 100 (a spike) and writes a NaN into
# one gradient at a later step. The same run is made twice: with
# `anomaly_action = "skip"` and with `"rollback"`. We read the events from
# `metrics.jsonl` and plot the loss with the events marked.

# %%
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from llm_reference.config import load_config
from llm_reference.metrics_plot import read_metrics
from llm_reference.quickstart import tiny_data
from llm_reference.stability import StabilityMonitor
from llm_reference.train import train

BOOK = {"timeout": 240, "seed": 1337,
        "settings": {"max_bytes": 1_000_000, "vocab_size": 512, "max_steps": 120,
                     "spike_at": 60, "nan_at": 90, "checkpoint_interval": 25,
                     "spike_warmup": 20, "threads": 2}}
S = BOOK["settings"]
torch.set_num_threads(S["threads"])
workdir = tempfile.TemporaryDirectory()
data_dir = tiny_data(max_bytes=S["max_bytes"], vocab_size=S["vocab_size"],
                     val_fraction=0.1)  # `prepare`, cached

# %% [markdown]
# ## The monitor on its own
#
# A noisy, slowly falling loss, then two higher values, a NaN loss and an infinite
# gradient norm.

# %% tags=["monitor"]
monitor = StabilityMonitor(z_threshold=6.0, warmup=20, ema_beta=0.99)
gen = torch.Generator().manual_seed(0)
noise = torch.randn(60, generator=gen).mul(0.03).tolist()
for i, eps in enumerate(noise):
    assert monitor.observe(4.0 - 0.005 * i + eps, grad_norm=0.8) is None
print(f"after 60 quiet steps: mean {monitor.mean:.3f}, std {monitor.std():.3f}")
for loss in (4.2, 4.6):
    print(f"loss {loss}: z = {monitor.zscore(loss):.1f} ->", monitor.observe(loss, 0.9))
print("loss nan:", monitor.observe(float("nan"), 0.9))
print("grad inf:", monitor.observe(3.7, float("inf")))

# %% [markdown]
# ## The same faults, two policies

# %% tags=["checkpoint"]
runs = {}
for action in ("skip", "rollback"):
    config = load_config("tiny", overrides=[
        f"train.data_dir={json.dumps(str(data_dir))}", 'train.device="cpu"',
        "model.n_layer=2", "model.d_model=64", "model.context_length=64",
        "train.batch_size=8", f"train.max_steps={S['max_steps']}",
        "train.warmup_steps=10", "train.eval_interval=1000",
        f"train.checkpoint_interval={S['checkpoint_interval']}",
        f"train.spike_warmup={S['spike_warmup']}",
        f'train.anomaly_action="{action}"',
        f"train.inject_spike_at={S['spike_at']}", f"train.inject_nan_at={S['nan_at']}"])
    run_dir = Path(workdir.name) / action
    result = train(config, run_dir)
    runs[action] = read_metrics(run_dir / "metrics.jsonl")
    print(f"{action}: final val loss {result['val_loss']:.3f}")
    for event in (r for r in runs[action] if "event" in r):
        z = f", z = {event['z']:.0f}" if event["z"] is not None else ""
        back = (f" -> back to step {event['to_step']}, lr x {event['lr_scale']}"
                if event["event"] == "rollback" else "")
        loss = "nan" if event["loss"] is None else f"{event['loss']:.2f}"
        print(f"  step {event['step']:3}: {event['event']} ({event['reason']}, "
              f"loss {loss}{z}){back}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(7, 2.6), sharey=True)
for ax, (action, records) in zip(axes, runs.items()):
    steps = [r for r in records if "event" not in r]
    ax.plot(range(len(steps)), [r["loss"] for r in steps], color="#0969da",
            linewidth=0.9)
    for n, r in enumerate(records):
        if "event" in r:
            before = sum("event" not in q for q in records[:n])
            color = "#cf222e" if r["reason"] == "nan" else "#bc4c00"
            ax.axvline(before, color=color, linestyle="--", linewidth=0.9)
            ax.text(before, 0.98, f" {r['event']}\n ({r['reason']})", color=color,
                    fontsize=7, va="top", transform=ax.get_xaxis_transform())
    ax.set_title(f'anomaly_action = "{action}"', fontsize=9)
    ax.set_xlabel("logged step (in order)")
    ax.spines[["top", "right"]].set_visible(False)
axes[0].set_ylabel("training loss")
fig.tight_layout()
fig.savefig("stability_events.svg")
summary = {a: {"events": [r for r in recs if "event" in r],
               "logged_steps": sum("event" not in r for r in recs),
               "final_loss": [r["loss"] for r in recs if "event" not in r][-1]}
           for a, recs in runs.items()}
json.dump({**S, "runs": summary}, open("stability.json", "w"), indent=1)
workdir.cleanup()
