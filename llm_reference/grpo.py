"""GRPO: reinforcement learning from verifiable rewards.

SFT imitates answers someone wrote; DPO prefers one given answer over another. GRPO
(Group Relative Policy Optimization; Shao et al., 2024, used for DeepSeek-R1) lets
the model try, checks each try with a program, and makes the tries that scored
better than their siblings more likely. Each step:

1. **Sample a group.** For each of P problems, sample G completions from the
   current policy (temperature > 0, so they differ).
2. **Score them.** A verifiable reward: 1 if the stated answer equals the right one
   (`correctness_reward`), plus a small bonus for a well-formed reply
   (`format_reward`): a number, closed by `<|im_end|>`.
3. **Advantage = how much better than the group.** A_i = (r_i - mean) / (std + eps)
   over the G completions of the same problem. The group mean is the baseline that
   PPO would learn with a value model; here it is measured, so no value model is
   trained. A group where all tries score the same teaches nothing (every A_i = 0);
   `filter_groups` (DAPO's dynamic sampling) drops such groups and samples more
   problems in their place.
   Dr. GRPO (Liu et al., 2025) drops the division by std (`advantage="dr_grpo"`):
   the std up-weights problems that are nearly always solved or nearly never,
   a bias toward questions whose answers barely vary.
4. **Clipped policy gradient**, per completion token t (PPO's objective):

       ratio_t = pi(y_t | ...) / pi_old(y_t | ...)
       J_t = min(ratio_t * A, clip(ratio_t, 1 - eps, 1 + eps) * A) - beta * KL_t

   pi_old is the policy that sampled the batch; with one update per batch the
   ratio is 1 and J is the plain policy gradient A * log pi (its gradient), and the
   clip only matters when a batch is reused (`updates_per_batch` > 1).
5. **KL to a reference.** KL_t is the k3 estimator of KL(pi || pi_ref) against a
   frozen copy of the starting model: with d = log pi_ref - log pi,
   KL_t = exp(d) - d - 1, which is >= 0 for every sample and 0 exactly where the
   two agree. It keeps the policy near the SFT model (readable, not gamed).
   `kl_beta = 0` drops it (and the reference's forward pass), as DAPO and Dr. GRPO
   do for verifiable rewards, where the reward cannot be fooled by drifting text.

Only completion tokens count: the prompt was given, not chosen, so its tokens are
masked out of the loss. The loss is the mean of -J over all completion tokens of
the step (every token weighs the same, however long its completion), accumulated
over `grad_accum` micro-batches to the same gradient as one big batch.

`python -m llm_reference rl --run RUN --task addition --out OUT` runs it on a run
that was fine-tuned on the task first (SFT teaches the format; RL sharpens it).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import checkpoint
from .atomic import atomic_open, write_bytes, write_json, write_text
from .chat import ENDOFTEXT, IM_END, encode_chat
from .config import resolve_device, to_toml
from .errors import UserError
from .generate import generate
from .grpo_settings import GRPOSettings
from .metrics_plot import read_metrics
from .progress import Progress
from .rl_tasks import ANSWER_MARK, Problem, RLTask, normalise_answer
from .train import keep_metrics_until, seed_everything

# ---------------------------------------------------------------------- rewards

Reward = Callable[[str, Problem, bool], float]  # (completion, problem, finished)


def extract_answer(completion: str) -> str | None:
    """The number a completion states: after its last `####` if it has one (GSM8K
    style, reasoning first), else the whole completion; None if not a number."""
    return normalise_answer(completion.rsplit(ANSWER_MARK, 1)[-1])


def correctness_reward(completion: str, problem: Problem) -> float:
    """1.0 if the stated answer equals the problem's answer exactly, else 0.0."""
    return float(extract_answer(completion) == problem.answer)


def format_reward(completion: str, finished: bool) -> float:
    """1.0 if the reply states a number and ends (writes `<|im_end|>`), else 0.0."""
    return float(finished and extract_answer(completion) is not None)


def verifiable_reward(format_weight: float) -> Reward:
    """correct + format_weight * well_formed: right answers dominate, and the
    format bonus gives a signal while no try in a group is right yet."""
    def reward(completion: str, problem: Problem, finished: bool) -> float:
        return (correctness_reward(completion, problem)
                + format_weight * format_reward(completion, finished))
    return reward


def load_reward(spec: str) -> Reward:
    """A user's reward function from "module:function" (importable, e.g. a file
    my_rewards.py in the working directory) or "path/to/file.py:function"; it is
    called like `verifiable_reward`'s functions: (completion text, Problem,
    finished) -> a number."""
    module_name, _, name = spec.rpartition(":")
    if not module_name or not name:
        raise UserError(f"--reward {spec!r}: write it as module:function")
    if "" not in sys.path:
        sys.path.insert(0, "")  # the working directory, as `python -m` has it
    try:
        if module_name.endswith(".py"):
            loader = importlib.util.spec_from_file_location("user_reward", module_name)
            if loader is None or not Path(module_name).is_file():
                raise ImportError(f"no file {module_name}")
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        function = getattr(module, name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"--reward {spec}: cannot import it ({e})") from None
    if not callable(function):
        raise UserError(f"--reward {spec}: {name} is not a function")
    return function


def score(reward: Reward, completion: str, problem: Problem, finished: bool) -> float:
    """Call the reward and insist on a finite number (a reward bug, not a NaN loss)."""
    value = reward(completion, problem, finished)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            not math.isfinite(value)):
        raise UserError(f"the reward function returned {value!r} for the completion "
                        f"{completion!r}; it must return a finite int or float")
    return float(value)


# ------------------------------------------------------------------- advantages


def group_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4
                     ) -> torch.Tensor:
    """Advantages (P, G) from rewards (P, G): each reward minus its group's mean,
    divided by the group's std (+ eps) unless `scale` is False (Dr. GRPO)."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # (P, G)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)


# ------------------------------------------------------------------------- loss


def token_logprobs(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t+1] | ids[:, :t+1]) for every position: (B, L-1) from (B, L)."""
    logits, _ = model(ids[:, :-1])  # (B, L-1, V)
    logprobs = logits.float().log_softmax(dim=-1)
    return logprobs.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, L-1)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): exp(d) - d - 1 with
    d = log pi_ref - log pi (Schulman, 2020); >= 0, and 0 where they agree."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def clipped_objective(logp: torch.Tensor, old_logp: torch.Tensor,
                      advantages: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """PPO's per-token surrogate min(r A, clip(r, 1-eps, 1+eps) A): (B, T).

    logp, old_logp (B, T) are log-probs of the sampled tokens under the policy and
    under the policy that sampled them; advantages (B,) are per completion.
    """
    ratio = torch.exp(logp - old_logp)  # (B, T)
    a = advantages.unsqueeze(1)  # (B, 1): every token of a completion shares it
    return torch.min(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float,
              kl_beta: float, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, summed KL) of a micro-batch: -sum(J_t * mask) / n_tokens.

    mask (B, T) is 1 on completion tokens; n_tokens is the number of completion
    tokens in the whole step, so the micro-batches' losses add up to the mean.
    With ref_logp None (kl_beta = 0) there is no KL term.
    """
    objective = clipped_objective(logp, old_logp, advantages, clip_eps)  # (B, T)
    kl = torch.zeros_like(logp) if ref_logp is None else kl_k3(logp, ref_logp)
    per_token = objective - kl_beta * kl  # (B, T)
    loss = -(per_token * mask).sum() / n_tokens
    return loss, (kl * mask).sum().detach()


# ------------------------------------------------------------------ sampling


@dataclass
class Rollout:
    """One sampled completion: its tokens, text, whether it ended, its score."""

    prompt_ids: list[int]
    completion_ids: list[int]  # including the closing <|im_end|> if it ended
    text: str
    finished: bool
    reward: float = 0.0
    correct: bool = False


def sample_completion(model: nn.Module, tokenizer: Any, prompt_ids: list[int],
                      max_new_tokens: int, temperature: float, seed: int | None
                      ) -> Rollout:
    """One completion with the KV-cached generator, stopped at `<|im_end|>`."""
    stop = tokenizer.special_tokens[IM_END]
    new = list(generate(model, prompt_ids, max_new_tokens, temperature=temperature,
                        stop_ids=[stop], seed=seed))
    finished = len(new) < max_new_tokens  # the stop token ended it early
    ids = [*new, stop] if finished else new  # the stop was chosen too: train it
    return Rollout(prompt_ids, ids, tokenizer.decode(new), finished)


def sample_groups(model: nn.Module, tokenizer: Any, problems: list[Problem],
                  settings: GRPOSettings, reward: Reward, rng: random.Random
                  ) -> list[list[Rollout]]:
    """G scored completions for each of the problems: [P][G]."""
    groups = []
    for problem in problems:
        prompt = encode_chat(tokenizer, [{"role": "user", "content": problem.prompt}])
        group = []
        for _ in range(settings.group_size):
            rollout = sample_completion(model, tokenizer, prompt,
                                        settings.max_new_tokens,
                                        settings.temperature, rng.getrandbits(63))
            rollout.reward = score(reward, rollout.text, problem, rollout.finished)
            rollout.correct = correctness_reward(rollout.text, problem) == 1.0
            group.append(rollout)
        groups.append(group)
    return groups


def collate_rollouts(rollouts: list[Rollout], pad_id: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, L) of prompt + completion, right-padded, and the loss mask (B, L-1)
    over the targets: 1 where the target is a completion token, 0 on the prompt
    and the padding."""
    width = max(len(r.prompt_ids) + len(r.completion_ids) for r in rollouts)
    ids = torch.full((len(rollouts), width), pad_id, dtype=torch.long)  # (B, L)
    mask = torch.zeros(len(rollouts), width - 1)  # (B, L-1)
    for i, r in enumerate(rollouts):
        row = r.prompt_ids + r.completion_ids
        ids[i, :len(row)] = torch.tensor(row)
        # target t is token t+1: completion tokens are targets len(prompt)-1 ...
        mask[i, len(r.prompt_ids) - 1:len(row) - 1] = 1
    return ids, mask


# ---------------------------------------------------------------------- a step


def informative(group: list[Rollout]) -> bool:
    """Whether a group teaches anything: its rewards are not all equal."""
    return len({r.reward for r in group}) > 1


def sample_step(model: nn.Module, tokenizer: Any, task: RLTask,
                settings: GRPOSettings, reward: Reward, rng: random.Random
                ) -> tuple[list[list[Rollout]], list[list[Rollout]]]:
    """(groups to train on, every group sampled) for one step.

    Plain GRPO trains on the groups of P random problems, unanimous ones included
    (their advantages are 0: they only dilute the step). With `filter_groups`
    (DAPO's dynamic sampling, Yu et al., 2025) it keeps only the groups whose
    rewards differ and samples further batches of P problems, up to
    `max_sample_batches`, until it has P of them: every group of the step then
    carries signal, at the price of more sampling when most groups are unanimous.
    """
    s = settings
    batches = s.max_sample_batches if s.filter_groups else 1
    kept: list[list[Rollout]] = []
    sampled: list[list[Rollout]] = []
    for _ in range(batches):
        problems = rng.sample(task.train, min(s.prompts_per_step, len(task.train)))
        groups = sample_groups(model, tokenizer, problems, s, reward, rng)
        sampled += groups
        kept += [g for g in groups if informative(g)] if s.filter_groups else groups
        if len(kept) >= s.prompts_per_step:
            break
    return kept[:s.prompts_per_step], sampled


def rollout_metrics(groups: list[list[Rollout]]) -> dict[str, float]:
    """Reward mean and spread within groups, accuracy and length of the samples."""
    rewards = torch.tensor([[r.reward for r in g] for g in groups])  # (P, G)
    rollouts = [r for g in groups for r in g]
    return {"reward_mean": rewards.mean().item(),
            "reward_std": rewards.std(dim=1).mean().item(),  # spread within groups
            "train_accuracy": sum(r.correct for r in rollouts) / len(rollouts),
            "completion_length": (sum(len(r.completion_ids) for r in rollouts)
                                  / len(rollouts)),
            "zero_std_groups": (rewards.std(dim=1) == 0).float().mean().item()}


def grpo_step(policy: nn.Module, reference: nn.Module | None,
              optimizer: torch.optim.Optimizer, groups: list[list[Rollout]],
              settings: GRPOSettings, pad_id: int, device: torch.device
              ) -> dict[str, float]:
    """Advantages, then `updates_per_batch` optimizer steps on the groups, each
    accumulated over `grad_accum` micro-batches of whole groups. No groups (all
    were filtered out): no update."""
    s = settings
    if not groups:
        return {"loss": 0.0, "grad_norm": 0.0, "kl": 0.0, "trained_groups": 0}
    rewards = torch.tensor([[r.reward for r in g] for g in groups])  # (P, G)
    advantages = group_advantages(rewards, scale=s.advantage == "grpo")  # (P, G)
    per_micro = math.ceil(len(groups) / s.grad_accum)  # fewer when filtered
    micro = []  # (ids, mask, advantages, old_logp, ref_logp) per micro-batch
    for start in range(0, len(groups), per_micro):
        rollouts = [r for g in groups[start:start + per_micro] for r in g]
        ids, mask = collate_rollouts(rollouts, pad_id)
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            old = token_logprobs(policy, ids) if s.updates_per_batch > 1 else None
            ref = token_logprobs(reference, ids) if reference is not None else None
        adv = advantages[start:start + per_micro].flatten().to(device)  # (B,)
        micro.append((ids, mask, adv, old, ref))
    n_tokens = int(sum(m[1].sum() for m in micro))
    params = [p for p in policy.parameters() if p.requires_grad]
    policy.train()
    for _ in range(s.updates_per_batch):
        loss_sum, kl_sum = 0.0, 0.0
        for ids, mask, adv, old, ref in micro:
            logp = token_logprobs(policy, ids)  # (B, L-1)
            old_logp = logp.detach() if old is None else old
            loss, kl = grpo_loss(logp, old_logp, ref, adv, mask, s.clip_eps,
                                 s.kl_beta, n_tokens)
            loss.backward()
            loss_sum, kl_sum = loss_sum + loss.item(), kl_sum + kl.item()
        max_norm = s.grad_clip if s.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {"loss": loss_sum, "grad_norm": grad_norm.item(), "kl": kl_sum / n_tokens,
            "trained_groups": len(groups)}


# ------------------------------------------------------------------ evaluation


@torch.no_grad()
def held_out_accuracy(model: nn.Module, tokenizer: Any, problems: list[Problem],
                      max_new_tokens: int) -> float:
    """Share of problems the model answers exactly right with greedy decoding."""
    right = 0
    for problem in problems:
        prompt = encode_chat(tokenizer, [{"role": "user", "content": problem.prompt}])
        rollout = sample_completion(model, tokenizer, prompt, max_new_tokens,
                                    temperature=0.0, seed=None)
        right += correctness_reward(rollout.text, problem) == 1.0
    return right / len(problems)


# ------------------------------------------------------------------------ loop


def grpo(run_dir: str | Path, out: str | Path, task: RLTask, settings: GRPOSettings,
         reward: Reward | None = None, step: int | None = None, device: str = "auto",
         resume: bool = False, force: bool = False) -> dict[str, Any]:
    """GRPO on the run in `run_dir` into the run folder `out`; return a summary.

    `out` gets the layout of `train` (checkpoints/, config.toml, tokenizer.json,
    metrics.jsonl, loss.png) plus grpo.json. `resume` continues from the last
    checkpoint in `out` on the same trajectory (model, optimizer, RNG states and
    the sampling stream); the reference stays the base run's model.
    """
    s = settings
    s.check()
    run_dir, out = Path(run_dir), Path(out)
    prepare_out(run_dir, out, resume, force)
    dev = resolve_device(device)
    reward = reward or verifiable_reward(s.format_weight)
    probe = task.train[0]  # a reward that returns no number fails here, not mid-run
    score(reward, probe.answer, probe, True)
    policy, tokenizer, base_state = checkpoint.load_model(run_dir, step, str(dev))
    make_out(out)  # only now: a bad run or reward leaves no folder behind
    reference = None
    if s.kl_beta > 0:
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=s.lr, weight_decay=0.0)
    seed_everything(s.seed)
    rng = random.Random(s.seed)  # problem order and sampling seeds
    held_out = task.held_out[:s.eval_problems]
    metrics_path = out / "metrics.jsonl"
    if resume:
        start, before = restore(out, policy, optimizer, rng)
    else:
        start = 0
        before = held_out_accuracy(policy, tokenizer, held_out, s.max_new_tokens)
        write_text(metrics_path, "")
    pad_id = tokenizer.special_tokens[ENDOFTEXT]
    started = time.perf_counter()
    after = before
    bar = Progress(s.max_steps, initial=start, desc="grpo")  # a bar, or log lines
    with open(metrics_path, "a", encoding="utf-8") as log:
        for step_index in range(start, s.max_steps):
            t0 = time.perf_counter()
            lr = s.lr * min(1.0, (step_index + 1) / (s.warmup_steps + 1))  # warmup
            optimizer.param_groups[0]["lr"] = lr  # one group: no weight decay
            groups, sampled = sample_step(policy, tokenizer, task, s, reward, rng)
            record = {"step": step_index + 1, "lr": lr, **rollout_metrics(sampled),
                      **grpo_step(policy, reference, optimizer, groups, s, pad_id, dev)}
            done = step_index + 1
            if done % s.eval_interval == 0 or done == s.max_steps:
                after = held_out_accuracy(policy, tokenizer, held_out,
                                          s.max_new_tokens)
                record["val_accuracy"] = after
            record["seconds"] = time.perf_counter() - t0
            log.write(json.dumps(record) + "\n")
            log.flush()
            if done % s.save_interval == 0 or done == s.max_steps:
                save_grpo_run(out, run_dir, policy, optimizer, base_state, s, done,
                              {"before": before, "sampler": rng.getstate()})
            bar.update(done, reward=record["reward_mean"])
    bar.close()
    plot_rewards(metrics_path, out / "reward.png")
    record = {"method": "grpo", "task": task.name, "base_run": str(run_dir),
              "base_step": base_state["step"], "settings": dataclasses.asdict(s),
              "problems": {"train": len(task.train), "held_out": len(held_out)},
              "held_out_accuracy": {"before": before, "after": after},
              "seconds": time.perf_counter() - started}
    write_json(out / "grpo.json", record)
    return {**record, "out": str(out)}


def restore(out: Path, policy: nn.Module, optimizer: torch.optim.Optimizer,
            rng: random.Random) -> tuple[int, float]:
    """Continue from the last checkpoint in `out`: weights, optimizer, RNG states
    and the sampling stream; metrics.jsonl cut back to that step. Returns the step
    and the held-out accuracy measured before training."""
    state = checkpoint.load_checkpoint(checkpoint.find_checkpoint(out), policy,
                                       optimizer)
    checkpoint.set_rng_state(checkpoint.rng_states(state)[0])
    rng.setstate(_python_rng(state["grpo"]["sampler"]))
    keep_metrics_until(out / "metrics.jsonl", state["step"])
    return state["step"], state["grpo"]["before"]


def plot_rewards(metrics_path: str | Path, out_path: str | Path) -> None:
    """Reward mean (with the spread within groups) and held-out accuracy against
    step; the format follows out_path's suffix (png, svg)."""
    from matplotlib.figure import Figure  # here: only a finished run draws

    records = read_metrics(metrics_path)
    steps = [r["step"] for r in records]
    mean = [r["reward_mean"] for r in records]
    std = [r["reward_std"] for r in records]
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    ax.plot(steps, mean, lw=1, label="reward (mean over the step's samples)")
    ax.fill_between(steps, [m - d for m, d in zip(mean, std)],
                    [m + d for m, d in zip(mean, std)], alpha=0.2,
                    label="± std within groups")
    evals = [(r["step"], r["val_accuracy"]) for r in records if "val_accuracy" in r]
    if evals:
        ax.plot(*zip(*evals), "o-", ms=3, label="held-out accuracy (greedy)")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(out_path, "wb") as f:
        fig.savefig(f, format=Path(out_path).suffix.lstrip(".") or "png")


def prepare_out(run_dir: Path, out: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite the base run or an earlier result (unless --force)."""
    if out.resolve() == run_dir.resolve():
        raise UserError(f"--out {out} is the base run; choose a new folder")
    existing = checkpoint.list_checkpoints(out)
    if resume:
        if not existing:
            raise UserError(f"--resume: {out} has no checkpoint to continue from")
        return
    if existing or (out / "grpo.json").exists():
        if not force:
            raise UserError(f"{out} already holds a GRPO run; pass --resume to "
                            "continue it, --force to replace it, or another --out")
        shutil.rmtree(out / checkpoint.CHECKPOINTS, ignore_errors=True)
        (out / "grpo.json").unlink(missing_ok=True)


def make_out(out: Path) -> None:
    """Create the output folder (and its parents), or say why not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out {out}: {e.strerror}") from None


def save_grpo_run(out: Path, run_dir: Path, model: nn.Module,
                  optimizer: torch.optim.Optimizer, base_state: dict[str, Any],
                  settings: GRPOSettings, step: int, progress: dict[str, Any]
                  ) -> Path:
    """A checkpoint in the layout of `train`, so eval, generate and serve work on
    `out`; its state also holds what a resume needs (the sampler, the first eval)."""
    config = {"model": model.config.to_dict(), "train": base_state["config"]["train"]}
    write_text(out / "config.toml", to_toml(config))
    write_bytes(out / "tokenizer.json", (run_dir / "tokenizer.json").read_bytes())
    state = {"data_position": step, "config": config, "tokenizer": "tokenizer.json",
             "grpo": {"base_run": str(run_dir), "base_step": base_state["step"],
                      "settings": dataclasses.asdict(settings), **progress}}
    return checkpoint.save_checkpoint(out, step, model, optimizer, state, keep_last=1)


def _python_rng(state: list) -> tuple:
    """random.Random's state back from JSON (lists) to the tuple it expects."""
    version, internal, gauss = state
    return version, tuple(internal), gauss
