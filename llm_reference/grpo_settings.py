"""The settings of a GRPO run: everything that decides its result.

They are saved in the output's grpo.json and in each checkpoint, and `python -m
llm_reference rl --help` shows their defaults; this module loads no torch, so that
stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError

ADVANTAGES = ("grpo", "dr_grpo")
TASKS = ("sorting", "addition", "gsm8k")  # `rl_tasks.py`


@dataclass
class GRPOSettings:
    """Everything that decides a GRPO run's result (see `grpo.py` for the maths)."""

    max_steps: int = 100
    prompts_per_step: int = 8  # P: problems sampled each step
    group_size: int = 8  # G: completions per problem
    grad_accum: int = 1  # micro-batches per step (P must divide into them)
    lr: float = 1e-5
    warmup_steps: int = 5
    grad_clip: float = 1.0
    clip_eps: float = 0.2  # the PPO ratio clip: r in [1 - eps, 1 + eps]
    kl_beta: float = 0.04  # weight of the KL penalty to the reference; 0 drops it
    advantage: str = "grpo"  # "grpo": (r - mean) / (std + eps); "dr_grpo": r - mean
    updates_per_batch: int = 1  # optimizer steps on each sampled batch
    filter_groups: bool = False  # DAPO's dynamic sampling: train only on groups
    # whose rewards differ, sampling more problems to fill the step's P groups
    max_sample_batches: int = 4  # with filter_groups: at most this many batches
    # of P problems sampled per step
    temperature: float = 1.0
    max_new_tokens: int = 16
    format_weight: float = 0.1  # reward = correct + format_weight * well_formed
    eval_interval: int = 10
    eval_problems: int = 100
    save_interval: int = 50
    seed: int = 1337

    def check(self) -> None:
        """Reject bad values before any work starts."""
        for name in ("max_steps", "prompts_per_step", "grad_accum", "max_new_tokens",
                     "eval_interval", "eval_problems", "save_interval",
                     "updates_per_batch", "max_sample_batches"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1")
        if self.group_size < 2:
            raise UserError(f"--group-size {self.group_size}: must be >= 2; GRPO "
                            "scores a completion against the others of its group, "
                            "and a group of one has no others (its advantage is 0)")
        if self.prompts_per_step % self.grad_accum:
            raise UserError(f"--prompts-per-step {self.prompts_per_step} must be a "
                            f"multiple of --grad-accum {self.grad_accum}")
        if self.advantage not in ADVANTAGES:
            raise UserError(f"--advantage {self.advantage}: choose one of "
                            f"{', '.join(ADVANTAGES)}")
        if self.lr <= 0 or self.temperature <= 0:
            raise UserError("--lr and --temperature must be > 0 (RL samples: a "
                            "temperature of 0 gives every group identical answers)")
        if not 0 < self.clip_eps < 1:
            raise UserError(f"--clip-eps {self.clip_eps}: must be in (0, 1)")
        if self.kl_beta < 0 or self.warmup_steps < 0 or self.grad_clip < 0:
            raise UserError("--kl-beta, --warmup-steps and --grad-clip must be >= 0")
