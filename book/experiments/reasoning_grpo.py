# %% [markdown]
# # GRPO on a tiny model: a reward a program checks, and what it changes
#
# We teach a small GPT one-digit addition ("3+5=" -> "8") in the chat template by
# SFT on the task's train split, stopped early so that it is right only part of
# the time, then run GRPO (`llm_reference.grpo`) with the verifiable reward: 1 for
# the exact answer, 0.1 for a well-formed reply. The held-out problems (a fifth,
# chosen by a hash of the prompt) are never rewarded; we measure them with greedy
# decoding before and after, over three seeds, and plot the reward per step.

# %%
import json
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from llm_reference import checkpoint
from llm_reference.chat import format_chat
from llm_reference.finetune import FinetuneSettings, finetune
from llm_reference.grpo import grpo
from llm_reference.grpo_settings import GRPOSettings
from llm_reference.model import GPT, ModelConfig
from llm_reference.rl_tasks import addition_task, sft_conversations
from llm_reference.tokenizer import Tokenizer

BOOK = {"timeout": 600, "seed": 0,
        "settings": {"digits": 1, "problems": 100, "val_fraction": 0.2,
                     "model": {"context_length": 32, "n_layer": 2, "n_head": 2,
                               "d_model": 64},
                     "sft_steps": 200, "sft_lr": 3e-3, "grpo_steps": 100,
                     "prompts_per_step": 8, "group_size": 8, "lr": 1e-3,
                     "kl_beta": 0.0, "seeds": [0, 1, 2]}}
S = BOOK["settings"]
torch.set_num_threads(1)
workdir = tempfile.TemporaryDirectory()
root = Path(workdir.name)
task = addition_task(S["problems"], S["digits"], seed=BOOK["seed"],
                     val_fraction=S["val_fraction"])
print(f"{len(task.train)} train problems, {len(task.held_out)} held out, e.g. "
      f"{task.held_out[0].prompt!r} -> {task.held_out[0].answer!r}")


# %% [markdown]
# ## SFT, then GRPO, per seed
#
# The tokenizer is trained on the task's chats; the model starts from random
# weights. SFT uses `finetune` on the train split as chat lines.

# %% tags=["runs"]
def sft_run(folder: Path, seed: int) -> Path:
    lines = sft_conversations(task.train)
    tokenizer = Tokenizer.train([format_chat(x["messages"]) for x in lines], 300)
    torch.manual_seed(seed)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, **S["model"]))
    (folder / "base").mkdir(parents=True)
    tokenizer.save(folder / "base" / "tokenizer.json")
    checkpoint.save_checkpoint(folder / "base", 0, model,
                               torch.optim.AdamW(model.parameters()),
                               {"config": {"model": model.config.to_dict(),
                                           "train": {}}}, keep_last=1)
    data = folder / "sft.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in lines))
    finetune(folder / "base", folder / "sft",
             FinetuneSettings(max_steps=S["sft_steps"], batch_size=16,
                              lr=S["sft_lr"], warmup_steps=5, eval_interval=1000,
                              seed=seed), data=data, device="cpu")
    return folder / "sft"


results = {}
start = time.perf_counter()
for seed in S["seeds"]:
    folder = root / f"seed{seed}"
    settings = GRPOSettings(max_steps=S["grpo_steps"],
                            prompts_per_step=S["prompts_per_step"],
                            group_size=S["group_size"], lr=S["lr"],
                            kl_beta=S["kl_beta"], max_new_tokens=6,
                            eval_interval=25, eval_problems=len(task.held_out),
                            save_interval=S["grpo_steps"], seed=seed)
    result = grpo(sft_run(folder, seed), folder / "grpo", task, settings,
                  device="cpu")
    curve = [json.loads(line) for line in (folder / "grpo/metrics.jsonl").open()]
    results[seed] = {"held_out": result["held_out_accuracy"], "curve": curve}
    acc = result["held_out_accuracy"]
    first = statistics.mean(r["reward_mean"] for r in curve[:20])
    last = statistics.mean(r["reward_mean"] for r in curve[-20:])
    print(f"seed {seed}: held-out accuracy {acc['before']:.0%} -> {acc['after']:.0%}"
          f"; reward, first 20 steps {first:.2f} -> last 20 {last:.2f}")
print(f"{len(S['seeds'])} seeds in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ## Before and after, with the spread over seeds

# %% tags=["summary"]
def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


summary = {}
for key in ("before", "after"):
    summary[f"held_out_{key}"] = [r["held_out"][key] for r in results.values()]
summary["reward_first20"] = [statistics.mean(c["reward_mean"] for c in
                                             r["curve"][:20]) for r in results.values()]
summary["reward_last20"] = [statistics.mean(c["reward_mean"] for c in
                                            r["curve"][-20:]) for r in results.values()]
for key, values in summary.items():
    print(f"{key:16} {spread(values)}  (per seed: "
          f"{', '.join(f'{v:.2f}' for v in values)})")

# %% [markdown]
# ## The reward curve

# %% tags=["plot"]
fig, ax = plt.subplots(figsize=(6, 3.2))
for seed, r in results.items():
    steps = [c["step"] for c in r["curve"]]
    rewards = [c["reward_mean"] for c in r["curve"]]
    smooth = [statistics.mean(rewards[max(0, i - 9):i + 1])
              for i in range(len(rewards))]
    ax.plot(steps, smooth, label=f"seed {seed}")
ax.set_xlabel("GRPO step")
ax.set_ylabel("mean reward (10-step average)")
ax.spines[["top", "right"]].set_visible(False)
ax.legend(frameon=False, fontsize=7)
fig.tight_layout()
fig.savefig("grpo_reward.svg")
json.dump({"settings": S, "summary": summary,
           "curves": {s: [{k: c[k] for k in ("step", "reward_mean", "reward_std",
                                             "kl", "completion_length")}
                          for c in r["curve"]] for s, r in results.items()}},
          open("grpo.json", "w"), indent=1)
workdir.cleanup()
