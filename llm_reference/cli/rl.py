"""`rl`: GRPO, reinforcement learning from verifiable rewards (`grpo.py`).

A command of its own rather than `finetune --method grpo`: its input is a task (a
problem generator or file whose answers a program checks), not a dataset of
answers, and its settings (group size, sampling temperature, ratio clip, a KL
weight that may be 0) and its loop (sample, score, update) share little with SFT's.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..grpo_settings import ADVANTAGES, TASKS, GRPOSettings
from .common import add_device, add_force, add_out, add_run, resolve_device

DESCRIPTION = """\
Each step samples --group-size completions for each of --prompts-per-step
problems, scores them with a program (1 for the exact right answer, plus
--format-weight for a well-formed reply), and makes the completions that beat
their group's mean more likely (a clipped policy gradient), with a KL penalty
toward the starting model. Start from a run that was fine-tuned on the task
(`finetune --method sft`): RL sharpens a behaviour the model already shows
sometimes; it cannot find one it never samples.

example:
  python -m llm_reference rl --run runs/sft --task sorting --out runs/grpo
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = f"{parser.description}.\n\n{DESCRIPTION}"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    d = GRPOSettings()
    add = parser.add_argument
    add_run(parser, "the run to improve (best: an SFT fine-tune on the task)")
    add("--step", type=int, metavar="N",
        help="the run's checkpoint step (default: the latest)")
    add_out(parser, "output run folder: checkpoints/, config.toml, tokenizer.json, "
                    "metrics.jsonl, reward.png, grpo.json")
    add("--task", choices=TASKS, default="addition",
        help="sorting: sort a few digits, 'sort 7 2 9' -> 279 (offline); "
             "addition: generated a+b= problems (offline); gsm8k: a jsonl file of "
             '{"question", "answer": "... #### N"} given with --data '
             "(default: addition)")
    add("--data", metavar="FILE.jsonl", help="the problems of --task gsm8k")
    add("--length", type=int, default=3, metavar="N",
        help="sorting: digits in each list (default: 3)")
    add("--digits", type=int, default=2, metavar="N",
        help="addition: digits of each operand (default: 2)")
    add("--problems", type=int, default=2000, metavar="N",
        help="addition: distinct problems generated (default: 2000)")
    add("--val-fraction", type=float, default=0.2, metavar="F",
        help="share of problems held out by a hash of the prompt (default: 0.2)")
    add("--reward", metavar="MODULE:FUNCTION",
        help="your own reward (or FILE.py:FUNCTION): a function (completion, "
             "problem, finished) -> number (default: exact answer match + "
             "--format-weight * format)")
    add("--max-steps", type=int, default=d.max_steps, metavar="N",
        help=f"GRPO steps (default: {d.max_steps})")
    add("--prompts-per-step", type=int, default=d.prompts_per_step, metavar="P",
        help=f"problems per step (default: {d.prompts_per_step})")
    add("--group-size", type=int, default=d.group_size, metavar="G",
        help="completions sampled per problem; advantages compare them, so G >= 2 "
             f"(default: {d.group_size})")
    add("--grad-accum", type=int, default=d.grad_accum, metavar="N",
        help="split each step's groups into N micro-batches to save memory; the "
             f"gradient is the same (default: {d.grad_accum})")
    add("--lr", type=float, default=d.lr, help=f"learning rate (default: {d.lr:g})")
    add("--warmup-steps", type=int, default=d.warmup_steps, metavar="N",
        help=f"linear warmup steps (default: {d.warmup_steps})")
    add("--grad-clip", type=float, default=d.grad_clip, metavar="NORM",
        help=f"max global gradient norm; 0 = none (default: {d.grad_clip})")
    add("--clip-eps", type=float, default=d.clip_eps, metavar="EPS",
        help="PPO ratio clip: a token's probability ratio counts only within "
             f"[1 - EPS, 1 + EPS] (default: {d.clip_eps})")
    add("--kl-beta", type=float, default=d.kl_beta, metavar="B",
        help="weight of the KL penalty to the starting model; 0 drops it and the "
             f"reference model (default: {d.kl_beta})")
    add("--advantage", choices=ADVANTAGES, default=d.advantage,
        help="grpo: (r - mean) / std within a group; dr_grpo: r - mean, no "
             f"std, which does not favour near-unanimous groups (default: "
             f"{d.advantage})")
    add("--updates-per-batch", type=int, default=d.updates_per_batch, metavar="N",
        help="optimizer steps on each sampled batch; > 1 is where the ratio clip "
             f"acts (default: {d.updates_per_batch})")
    add("--filter-groups", action="store_true",
        help="DAPO's dynamic sampling: train only on groups whose rewards differ "
             "(a unanimous group has zero advantages), sampling more problems "
             "to fill each step")
    add("--max-sample-batches", type=int, default=d.max_sample_batches,
        metavar="N", help="with --filter-groups: at most N batches of "
        f"--prompts-per-step problems sampled per step (default: "
        f"{d.max_sample_batches})")
    add("--temperature", type=float, default=d.temperature, metavar="T",
        help=f"sampling temperature, > 0 (default: {d.temperature})")
    add("--max-new-tokens", type=int, default=d.max_new_tokens, metavar="N",
        help=f"longest completion (default: {d.max_new_tokens})")
    add("--format-weight", type=float, default=d.format_weight, metavar="W",
        help="reward for a well-formed reply (a number, then <|im_end|>) "
             f"(default: {d.format_weight})")
    add("--eval-interval", type=int, default=d.eval_interval, metavar="N",
        help=f"steps between held-out evaluations (default: {d.eval_interval})")
    add("--eval-problems", type=int, default=d.eval_problems, metavar="N",
        help=f"held-out problems per evaluation (default: {d.eval_problems})")
    add("--save-interval", type=int, default=d.save_interval, metavar="N",
        help=f"steps between checkpoints (default: {d.save_interval})")
    add("--seed", type=int, default=d.seed, metavar="N",
        help=f"seed for problem order and sampling (default: {d.seed})")
    add("--resume", action="store_true",
        help="continue from the last checkpoint in --out")
    add_device(parser)
    add_force(parser, "replace an earlier GRPO run in --out")


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..grpo import grpo, load_reward
    from ..rl_tasks import addition_task, load_gsm8k, sorting_task

    device = resolve_device(args.device)
    settings = GRPOSettings(
        max_steps=args.max_steps, prompts_per_step=args.prompts_per_step,
        group_size=args.group_size, grad_accum=args.grad_accum, lr=args.lr,
        warmup_steps=args.warmup_steps, grad_clip=args.grad_clip,
        clip_eps=args.clip_eps, kl_beta=args.kl_beta, advantage=args.advantage,
        updates_per_batch=args.updates_per_batch, filter_groups=args.filter_groups,
        max_sample_batches=args.max_sample_batches, temperature=args.temperature,
        max_new_tokens=args.max_new_tokens, format_weight=args.format_weight,
        eval_interval=args.eval_interval, eval_problems=args.eval_problems,
        save_interval=args.save_interval, seed=args.seed)
    settings.check()
    if not 0 <= args.val_fraction < 1:
        raise UserError(f"--val-fraction {args.val_fraction}: must be in [0, 1)")
    if args.task == "gsm8k":
        if args.data is None:
            raise UserError("--task gsm8k needs --data FILE.jsonl (GSM8K format)")
        task = load_gsm8k(args.data, args.val_fraction)
    elif args.task == "sorting":
        task = sorting_task(args.length, args.val_fraction)
    else:
        task = addition_task(args.problems, args.digits, args.seed, args.val_fraction)
    reward = load_reward(args.reward) if args.reward else None
    result = grpo(args.run, args.out, task, settings, reward, args.step, str(device),
                  args.resume, args.force)
    print(format_summary(result))
    return 0


def format_summary(result: dict[str, Any]) -> str:
    """What `rl` prints at the end: the task, accuracy before and after, files."""
    acc = result["held_out_accuracy"]
    return "\n".join([
        f"grpo on {result['task']}: {result['settings']['max_steps']} steps, "
        f"{result['problems']['train']} train problems, "
        f"{result['problems']['held_out']} held out, {result['seconds']:.0f} s",
        f"held-out accuracy (greedy): {acc['before']:.1%} -> {acc['after']:.1%}",
        f"wrote {result['out']}/: checkpoints/, metrics.jsonl, reward.png, grpo.json"])
