# %% [markdown]
# # GRPO on a tiny model: from pass@k to pass@1
#
# The task: sort three digits ("sort 7 2 9" -> "279"), every one of the 1000 inputs
# once, a fifth held out by a hash of the prompt (`rl_tasks.sorting_task`). A
# 2-layer GPT learns the reply's format from a short SFT on the train split at a
# low learning rate, and the rule only partly: with greedy decoding it is wrong on
# many held-out inputs, yet one of G samples is often right (pass@G > pass@1).
# GRPO (`llm_reference.grpo`) samples at temperature 0.7 and rewards the right
# samples; we measure held-out pass@1 (greedy) and pass@G (sampling at the same
# temperature) before and after, over three seeds, and pass@G at temperature 1
# before RL, to show why the temperature is below 1.

# %%
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from llm_reference import checkpoint
from llm_reference.chat import encode_chat, format_chat
from llm_reference.finetune import FinetuneSettings, finetune
from llm_reference.grpo import correctness_reward, grpo, sample_completion
from llm_reference.grpo_settings import GRPOSettings
from llm_reference.model import GPT, ModelConfig
from llm_reference.rl_tasks import sft_conversations, sorting_task
from llm_reference.tokenizer import Tokenizer

BOOK = {"timeout": 900, "seed": 0,
        "settings": {"length": 3, "val_fraction": 0.2,
                     "model": {"context_length": 32, "n_layer": 2, "n_head": 2,
                               "d_model": 64},
                     "sft_steps": 300, "sft_lr": 1e-3, "grpo_steps": 120,
                     "prompts_per_step": 8, "group_size": 8, "lr": 2e-4,
                     "kl_beta": 0.0, "temperature": 0.7, "seeds": [0, 1, 2]}}
S = BOOK["settings"]
torch.set_num_threads(1)
workdir = tempfile.TemporaryDirectory()
root = Path(workdir.name)
task = sorting_task(S["length"], S["val_fraction"])
train_prompts = {p.prompt for p in task.train}
assert not any(p.prompt in train_prompts for p in task.held_out)
print(f"{len(task.train)} train problems, {len(task.held_out)} held out "
      f"(no overlap), e.g. {task.held_out[0].prompt!r} -> "
      f"{task.held_out[0].answer!r}")


# %% [markdown]
# ## SFT, then GRPO, per seed
#
# The tokenizer is trained on the task's chats; the model starts from random
# weights; SFT is `finetune` on the train split as chat lines, stopped early.

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


def pass_at_k(run: Path, k: int, seed: int, temperature: float) -> float:
    """Share of held-out problems with a right answer among k samples."""
    model, tokenizer, _ = checkpoint.load_model(run)
    model.eval()
    rng, right = random.Random(seed), 0
    for problem in task.held_out:
        prompt = encode_chat(tokenizer, [{"role": "user", "content": problem.prompt}])
        right += any(correctness_reward(sample_completion(
            model, tokenizer, prompt, 6, temperature, rng.getrandbits(63)).text,
            problem) for _ in range(k))
    return right / len(task.held_out)


results = {}
start = time.perf_counter()
for seed in S["seeds"]:
    folder = root / f"seed{seed}"
    settings = GRPOSettings(max_steps=S["grpo_steps"],
                            prompts_per_step=S["prompts_per_step"],
                            group_size=S["group_size"], lr=S["lr"],
                            kl_beta=S["kl_beta"], temperature=S["temperature"],
                            max_new_tokens=6, eval_interval=20,
                            eval_problems=len(task.held_out),
                            save_interval=S["grpo_steps"], seed=seed)
    sft = sft_run(folder, seed)
    result = grpo(sft, folder / "grpo", task, settings, device="cpu")
    k, t = S["group_size"], S["temperature"]
    curve = [json.loads(line) for line in (folder / "grpo/metrics.jsonl").open()]
    acc = result["held_out_accuracy"]
    results[seed] = {"pass1_before": acc["before"], "pass1_after": acc["after"],
                     "passk_before": pass_at_k(sft, k, seed, t),
                     "passk_after": pass_at_k(folder / "grpo", k, seed, t),
                     "passk_t1_before": pass_at_k(sft, k, seed, 1.0),
                     "curve": curve}
    r = results[seed]
    print(f"seed {seed}: held-out pass@1 {r['pass1_before']:.0%} -> "
          f"{r['pass1_after']:.0%}; pass@{k} (T {t}) {r['passk_before']:.0%} -> "
          f"{r['passk_after']:.0%}; pass@{k} at T 1 before "
          f"{r['passk_t1_before']:.0%}")
seconds = time.perf_counter() - start
print(f"{len(S['seeds'])} seeds (SFT + GRPO + evaluations) in {seconds:.0f} s")


# %% [markdown]
# ## Before and after, with the spread over seeds

# %% tags=["summary"]
def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


summary = {key: [r[key] for r in results.values()]
           for key in ("pass1_before", "pass1_after", "passk_before", "passk_after",
                       "passk_t1_before")}
summary["pass1_gain"] = [r["pass1_after"] - r["pass1_before"]
                         for r in results.values()]
summary["reward_first10"] = [statistics.mean(c["reward_mean"] for c in
                                             r["curve"][:10]) for r in results.values()]
summary["reward_last10"] = [statistics.mean(c["reward_mean"] for c in
                                            r["curve"][-10:]) for r in results.values()]
summary["kl_last10"] = [statistics.mean(c["kl"] for c in r["curve"][-10:])
                        for r in results.values()]
summary["length_last10"] = [statistics.mean(c["completion_length"]
                                            for c in r["curve"][-10:])
                            for r in results.values()]
for key, values in summary.items():
    print(f"{key:15} {spread(values)}  (seeds: "
          f"{', '.join(f'{v:.3f}' for v in values)})")

# %% [markdown]
# ## The reward curve and held-out accuracy

# %% tags=["plot"]
fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.2))
for seed, r in results.items():
    steps = [c["step"] for c in r["curve"]]
    rewards = [c["reward_mean"] for c in r["curve"]]
    smooth = [statistics.mean(rewards[max(0, i - 9):i + 1])
              for i in range(len(rewards))]
    line, = left.plot(steps, smooth, label=f"seed {seed}")
    evals = [(0, r["pass1_before"])] + [(c["step"], c["val_accuracy"])
                                        for c in r["curve"] if "val_accuracy" in c]
    right.plot(*zip(*evals), "o-", ms=3, color=line.get_color())
    right.axhline(r["passk_before"], ls=":", lw=1, color=line.get_color())
left.set_xlabel("GRPO step")
left.set_ylabel("mean train reward (10-step average)")
right.set_xlabel("GRPO step")
right.set_ylabel("held-out pass@1 (dotted: pass@G before)")
for ax in (left, right):
    ax.spines[["top", "right"]].set_visible(False)
left.legend(frameon=False, fontsize=7)
fig.tight_layout()
fig.savefig("grpo_reward.svg")
keep = ("step", "reward_mean", "reward_std", "train_accuracy", "kl",
        "completion_length", "zero_std_groups")
json.dump({"settings": S, "summary": summary, "seconds": seconds,
           "problems": {"train": len(task.train), "held_out": len(task.held_out)},
           "curves": {s: [{k: c[k] for k in keep} for c in r["curve"]]
                      for s, r in results.items()}},
          open("grpo.json", "w"), indent=1)
workdir.cleanup()
