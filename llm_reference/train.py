"""Pretraining: the loop that turns tokens into a language model.

Each optimizer step:

1. sets the learning rate from the schedule (`schedule.py`);
2. runs `grad_accum` micro-batches forward and backward, each loss divided by
   `grad_accum` so the summed gradients are those of one big batch;
3. clips the global gradient norm to `grad_clip` (the norm *before* clipping is what
   we log: it is the early warning of instability);
4. asks the stability monitor whether the loss or gradients look wrong, and then takes
   the AdamW step, or skips it, or rolls back to the last checkpoint (`stability.py`).

Around the steps: a fixed set of validation batches is evaluated every
`eval_interval` steps; checkpoints are written every `checkpoint_interval` steps and
at least every `checkpoint_minutes` minutes (`checkpoint.py`); every step is a
record that `run_log.py` writes to metrics.jsonl, the progress display and any
trackers, and `loss.png` is redrawn at evaluations. A line of metrics.jsonl is either
a step, `{"step", "loss", "lr", "grad_norm", "tokens_per_s"}` (+ `"mfu"` on a known
GPU, + `"val_loss"` at evaluations; the first step after a start logs its time as
`"warmup_s"` instead of a speed, since it includes compilation), or an event,
`{"step", "event": "skip" | "rollback" | "fp16_overflow", "reason", …}`.

A mixture-of-experts model (moe.py) adds its routers' auxiliary losses to each
micro-batch's loss before the backward pass (the logged `loss` stays the
cross-entropy), logs `"moe_balance", "moe_z", "moe_load", "moe_max_load"` with each
step (see `RouterTally`), and after each step moves its loss-free balancing biases
when `moe_bias_rate` > 0.

A run killed at any moment resumes from its last checkpoint onto the same trajectory:
the data position is just the index of the next micro-batch, and the RNG states, the
optimizer state and the monitor's statistics are all in the checkpoint. A damaged
checkpoint is passed over, with a warning, for the one before it. SIGINT and SIGTERM
do not kill a run: it saves a checkpoint at the end of the step and exits with
128 + the signal's number (`preemption.py`).

Under `torchrun` every process runs this same loop on its own batches (see
`distributed.py`): gradients are averaged across processes, the logged loss is the
mean over all of them, and only rank 0 writes files. A step then sees
`batch_size * grad_accum * WORLD_SIZE` sequences.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint, distributed, precision, preemption, tracking
from .atomic import write_bytes, write_text
from .config import (
    RunConfig,
    TrainConfig,
    model_config,
    resolve_device,
    to_toml,
)
from .data import load_meta, load_tokenizer
from .errors import UserError
from .evaluate import mean_loss
from .metrics_plot import plot_metrics, read_metrics
from .mixture import make_batches
from .model import GPT
from .moe import RouterTally, moe_layers, router_loss
from .optim import make_optimizer
from .prefetch import Prefetcher
from .run_log import RunLog
from .schedule import lr_at
from .stability import Anomaly, FaultInjector, StabilityMonitor

__all__ = ["TrainConfig", "Trainer", "train"]


@dataclass
class StepResult:
    """What one call of `Trainer.train_step` did."""

    loss: float  # mean over the micro-batches
    grad_norm: float  # global L2 norm of the gradients, before clipping
    lr: float
    anomaly: Anomaly | None  # set when the update was not applied
    seconds: float
    warmup: bool = False  # the first step since the trainer started: compilation
    moe: dict[str, Any] | None = None  # router statistics (RouterTally.record)


class Trainer:
    """Owns the model, optimizer, data and monitor of one run folder.

    `ctx` says which process of a torchrun job this is (see `distributed.setup`);
    without it the trainer is the only process.
    """

    def __init__(self, config: RunConfig, run_dir: str | Path,
                 ctx: distributed.Context | None = None) -> None:
        t = config.train
        self.run_dir = Path(run_dir)
        self.ctx = ctx or distributed.Context(resolve_device(t.device))
        self.device = self.ctx.device
        precision.check_dtype(self.device, t.dtype)
        precision.enable_tf32(self.device)
        vocab_size = load_meta(t.data_dir)["vocab_size"]
        self.model_config = model_config(config.model, vocab_size)
        if self.model_config.vocab_size < vocab_size:
            raise UserError(
                f"config model.vocab_size: must be >= the data's vocabulary "
                f"({vocab_size} in {t.data_dir}), got {self.model_config.vocab_size}"
                '; set it to "auto"')
        self.config = RunConfig(self.model_config.to_dict(), t)
        self.model, self.wrapped = self.build_model()
        self.moe_layers = moe_layers(self.model)  # [] for a dense model
        self.optimizer = make_optimizer(  # after wrapping: FSDP2 shards parameters
            self.model, t.lr, t.weight_decay, (t.beta1, t.beta2))
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=t.dtype == "float16")
        self.monitor = StabilityMonitor(
            t.anomaly_action, t.spike_z, t.spike_warmup, t.spike_ema_beta,
            t.max_rollbacks, t.rollback_lr_factor)
        self.faults = FaultInjector(
            t.inject_spike_at, t.inject_spike_scale, t.inject_nan_at)
        T = self.model_config.context_length
        rank, world_size = self.ctx.rank, self.ctx.world_size
        self.train_batches = make_batches(t.data_dir, t.data_mix, "train",
                                          t.batch_size, T, seed=t.seed, rank=rank,
                                          world_size=world_size)
        # one fixed validation set for all processes; `evaluate` splits it
        self.val_batches = make_batches(t.data_dir, t.data_mix, "val", t.batch_size,
                                        T, seed=t.seed)
        self.prefetch = Prefetcher(self.device, vocab_size, t.data_dir)
        self.tokens_per_step = t.batch_size * t.grad_accum * T * world_size
        self.flops_per_step = self.model.flops_per_token() * self.tokens_per_step
        self.peak_flops = peak_flops(self.device, t.dtype)
        self.step = 0  # optimizer steps taken (applied or skipped)
        self.data_position = 0  # index of the next training micro-batch
        self.warm = False  # whether a step ran since the start (compilation)
        self.saved_at = time.monotonic()  # when the last checkpoint was written
        self.metrics_path = self.run_dir / "metrics.jsonl"

    def build_model(self) -> tuple[GPT, torch.nn.Module]:
        """The model, and the module that runs it: compiled if configured, and
        wrapped in DDP or sharded by FSDP2 under torchrun (see distributed.py)."""
        t = self.config.train
        seed_everything(t.seed)  # the same seed in every process: the same weights
        model = GPT(self.model_config).to(self.device)
        model.gradient_checkpointing = t.activation_checkpointing
        if t.compile:
            model.compile()  # each block and the loss, before DDP/FSDP wrap them
        wrapped = distributed.wrap_model(model, self.ctx, t.parallel, t.dtype)
        # from here on each process draws its own random numbers (dropout masks)
        seed_everything(rank_seed(t.seed, self.ctx.rank))
        return model, wrapped

    # ------------------------------------------------------------------ one step

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision: matmuls in bf16/fp16, reductions and weights in fp32."""
        return precision.autocast(self.device, self.config.train.dtype)

    def train_step(self) -> StepResult:
        """One optimizer step over `grad_accum` micro-batches (see the module doc)."""
        t = self.config.train
        start = time.perf_counter()
        step = self.step + 1  # 1-based, as logged
        lr = self.monitor.lr_scale * lr_at(
            self.step, schedule=t.schedule, lr=t.lr, min_lr=t.min_lr,
            warmup_steps=t.warmup_steps, max_steps=t.max_steps,
            decay_frac=t.decay_frac)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        tally = RouterTally(self.moe_layers) if self.moe_layers else None
        for micro in range(t.grad_accum):
            # (B, T) inputs and targets on the device; the next pair is read ahead
            x, y = self.prefetch.get(self.train_batches, self.data_position)
            self.data_position += 1
            # several processes: average the gradients on the last micro-batch only
            distributed.sync_gradients(self.wrapped, micro == t.grad_accum - 1)
            with self.autocast():
                _, loss = self.wrapped(x, y)
            loss = self.faults.scale_loss(step, loss)
            loss_sum += loss.detach()
            if tally is not None:  # the routers' balance and z losses join in
                tally.add()
                loss = loss + router_loss(self.moe_layers)
            # Dividing by grad_accum makes the summed gradients a mean over the step.
            self.scaler.scale(loss / t.grad_accum).backward()
        self.faults.poison_gradients(step, self.model)
        self.scaler.unscale_(self.optimizer)  # no-op unless float16
        max_norm = t.grad_clip if t.grad_clip > 0 else math.inf
        grad_norm = distributed.clip_grad_norm(self.model, max_norm)  # before clipping
        # The mean over all processes' batches: every process logs and judges the
        # same number, so all of them skip or roll back together.
        mean = (distributed.all_reduce_mean(loss_sum) / t.grad_accum).item()
        anomaly = self.monitor.observe(mean, grad_norm)
        if anomaly is None or self.is_fp16_overflow(anomaly):
            self.scaler.step(self.optimizer)  # skipped by the scaler on an overflow
        moe = None
        if tally is not None:  # every process sees the same loads and biases
            tally.load = distributed.all_reduce_mean(tally.load)
            if anomaly is None:
                tally.update_biases()
            moe = tally.record(t.grad_accum)
        # update() closes what unscale_() opened, step taken or not (a skipped
        # step that did not call it would make the next unscale_() fail); after an
        # overflow it lowers the scale
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        warmup, self.warm = not self.warm, True
        seconds = time.perf_counter() - start
        return StepResult(mean, grad_norm, lr, anomaly, seconds, warmup, moe)

    def is_fp16_overflow(self, anomaly: Anomaly) -> bool:
        """Inf gradients under float16 loss scaling are routine: the scaler skips the
        step and lowers the scale; only a non-finite *loss* is a real NaN."""
        return (self.scaler.is_enabled() and anomaly.kind == "nan"
                and math.isfinite(anomaly.loss))

    # ---------------------------------------------------- evaluation, checkpoints

    def evaluate(self) -> float:
        """Mean loss over the first `eval_steps` validation batches; always the same.

        N processes share the work: process r takes batches r, r + N, r + 2N, … of
        eval_steps rounded up to a multiple of N (so that all run as many forwards,
        as FSDP's collectives need), and their means are averaged.
        """
        n, rank = self.ctx.world_size, self.ctx.rank
        indices = range(rank, math.ceil(self.config.train.eval_steps / n) * n, n)
        loss = mean_loss(self.wrapped, self.val_batches, indices, self.device,
                         self.autocast)
        return distributed.all_reduce_mean(
            torch.tensor(loss, device=self.device)).item()

    def state(self) -> dict[str, Any]:
        """What a checkpoint needs besides weights, optimizer state and RNGs."""
        return {
            "data_position": self.data_position,
            "config": self.config.to_dict(),
            "tokenizer": "tokenizer.json",
            "stability": self.monitor.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
        }

    def save(self) -> Path:
        """Write a checkpoint: every process takes part, rank 0 alone writes.

        Under FSDP the full weights must first be gathered from every process's
        shards. Each process's random-number generators are gathered too: they
        differ (each draws its own dropout masks). Rank 0 writes (N processes
        writing the same files would collide), and the barrier holds the others
        until the checkpoint is complete: none may go on to roll back to it, or
        exit, before it is on disk.
        """
        weights, optimizer_state = distributed.state_dicts(self.model, self.optimizer)
        rng = distributed.gather(checkpoint.rng_state(self.device))
        if distributed.is_main():
            checkpoint.write_checkpoint(
                self.run_dir, self.step, weights, optimizer_state,
                {**self.state(), "rng": rng}, self.config.train.keep_last)
        distributed.barrier()
        self.saved_at = time.monotonic()
        return checkpoint.checkpoint_dir(self.run_dir, self.step)

    def restore(self, path: Path, monitor: bool = True) -> None:
        """Continue from checkpoint `path`, verified first (a UserError, with
        nothing changed, if it is damaged). A rollback keeps the monitor (its count
        of rollbacks and lowered LR); a resume restores it too. Every process reads
        the checkpoint (on several machines the run folder must be shared) and takes
        back its own RNG states; one the checkpoint has none for (a run resumed on
        more processes) seeds its own from the seed, its rank and the step."""
        shapes = checkpoint.shapes_of(self.model)
        weights, optimizer_state, state = checkpoint.read_checkpoint(path, shapes)
        distributed.load_state_dicts(self.model, self.optimizer, weights,
                                     optimizer_state)
        self.step = state["step"]
        self.data_position = state["data_position"]
        if monitor:
            self.monitor.load_state_dict(state["stability"])
        if state["grad_scaler"]:
            self.scaler.load_state_dict(state["grad_scaler"])
        states, rank = checkpoint.rng_states(state), self.ctx.rank
        if rank < len(states):
            checkpoint.set_rng_state(states[rank], self.device)
        else:
            seed_everything(rank_seed(self.config.train.seed, rank, self.step))

    def restore_latest(self, monitor: bool = True) -> list[str]:
        """Restore the newest checkpoint that verifies; return why each newer one
        was passed over. A UserError if none does."""
        problems = []
        for path in reversed(checkpoint.list_checkpoints(self.run_dir)):
            try:
                self.restore(path, monitor)
                return problems
            except UserError as e:
                problems.append(str(e))
        raise UserError(f"no usable checkpoint in {self.run_dir}: "
                        + (problems[0] if problems else "there is none"))

    def handle(self, anomaly: Anomaly) -> dict[str, Any]:
        """Skip or roll back after an anomaly; return the event to log."""
        details = {"reason": anomaly.kind, "loss": anomaly.loss,
                   "grad_norm": anomaly.grad_norm, "z": anomaly.z}
        if self.is_fp16_overflow(anomaly):
            return {"step": self.step, "event": "fp16_overflow", **details,
                    "scale": self.scaler.get_scale()}
        found = checkpoint.list_checkpoints(self.run_dir)
        if self.monitor.action == "skip" or not found:
            return {"step": self.step, "event": "skip", **details}
        if not self.monitor.can_roll_back():
            raise UserError(
                f"training diverged at step {self.step} ({anomaly.kind}) after "
                f"{self.monitor.rollbacks} rollbacks; lower train.lr or raise "
                "train.max_rollbacks")
        event = {"step": self.step, "event": "rollback", **details}
        self.monitor.record_rollback()
        self.restore_latest(monitor=False)
        return {**event, "to_step": self.step, "lr_scale": self.monitor.lr_scale}

    # ----------------------------------------------------------------- the loop

    def fit(self) -> float:
        """Train until `max_steps`; return the final validation loss.

        On SIGINT or SIGTERM the run saves a checkpoint at the end of the step and
        raises `preemption.Stopped`, which exits with 128 + the signal's number.
        """
        t = self.config.train
        val_loss = None
        main = distributed.is_main()  # the one process that reports
        with (RunLog(self.run_dir, self.config, self.step, main) as log,
              preemption.StopSignals(announce=main) as signals):
            while self.step < t.max_steps:
                result = self.train_step()
                if result.anomaly is None:
                    record = self.step_record(result)
                else:
                    record = self.handle(result.anomaly)  # an event
                    if record["event"] == "rollback":  # back at a saved step
                        log.write(record)
                        continue
                last = self.step == t.max_steps
                if self.step % t.eval_interval == 0 or last:
                    val_loss = record["val_loss"] = self.evaluate()
                log.write(record)
                save, signum = self.boundary(signals.received, last)
                if save:
                    self.save()
                if signum:
                    raise preemption.Stopped(signum, self.stop_message(signum))
        return self.evaluate() if val_loss is None else val_loss  # None: resumed at end

    def boundary(self, signum: int | None, last: bool) -> tuple[bool, int]:
        """At the end of a step: (save a checkpoint now?, the signal to stop for).

        A checkpoint is saved every `checkpoint_interval` steps, when
        `checkpoint_minutes` have passed since the last, at the last step and
        before stopping on a signal (0: none). Saving takes every process, but only
        some may have seen their clock run out or received the signal: they agree
        on the largest of each.
        """
        t = self.config.train
        minutes = (time.monotonic() - self.saved_at) / 60
        timed = int(0 < t.checkpoint_minutes <= minutes)
        timed, signum = distributed.agree([timed, signum or 0])
        save = last or self.step % t.checkpoint_interval == 0 or timed or signum
        return bool(save), signum

    def stop_message(self, signum: int) -> str:
        path = checkpoint.checkpoint_dir(self.run_dir, self.step)
        return (f"stopped by {preemption.signal_name(signum)} at step {self.step} of "
                f"{self.config.train.max_steps}; checkpoint {path}; resume with: "
                f"{resume_command(self.run_dir)}")

    def step_record(self, result: StepResult) -> dict[str, Any]:
        record = {"step": self.step, "loss": result.loss, "lr": result.lr,
                  "grad_norm": result.grad_norm, **(result.moe or {})}
        if result.warmup:  # compilation and first allocations: not a speed
            record["warmup_s"] = result.seconds
            return record
        record["tokens_per_s"] = self.tokens_per_step / result.seconds
        if self.peak_flops:  # per device: the step's FLOPs ran on world_size of them
            record["mfu"] = (self.flops_per_step / result.seconds
                             / (self.peak_flops * self.ctx.world_size))
        return record


# --------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A seed of its own for process `rank` (after `step`, when it joins a resumed
    run): NumPy's SeedSequence mixes the numbers so that no two processes share
    random streams, however close their seeds."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def peak_flops(device: torch.device, dtype: str) -> float | None:
    """A GPU's peak FLOP/s in `dtype`, from the hardware catalog; None when unknown.

    The GPU is found by its whole model name ("NVIDIA H100 80GB HBM3" -> H100 SXM,
    "NVIDIA L40S" is not an L4; hardware.hardware_for_device_name). CPUs get no
    MFU: the planner's CPU peak is a calibration of one machine, not a datasheet
    number. float32 on an Ampere or newer GPU runs on TF32 tensor cores
    (precision.py), so TF32 is then the honest peak.
    """
    if device.type != "cuda":
        return None
    from .hardware import hardware_for_device_name

    hw = hardware_for_device_name(torch.cuda.get_device_name(device))
    if hw is None:
        return None
    return hw.peak_tflops_for(dtype, tf32=precision.uses_tf32(device)) * 1e12


def resume_command(run_dir: Path) -> str:
    """The command that continues this run, on as many processes as now."""
    command = f"-m llm_reference train --out {shlex.quote(str(run_dir))} --resume"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if world == 1:
        return f"python {command}"
    if world == local:
        return f"torchrun --standalone --nproc-per-node {local} {command}"
    return (f"torchrun --nnodes {world // local} --nproc-per-node {local} "
            f"<your rendezvous options> {command}")


def train(
    config: RunConfig, run_dir: str | Path, resume: bool = False, force: bool = False
) -> dict[str, Any]:
    """Train a run in `run_dir` (a new one, or `resume` its last checkpoint).

    Returns a summary: final step, final validation loss and the files written.
    Under torchrun every process calls this; they join one process group here.
    """
    ctx = distributed.setup(resolve_device(config.train.device))
    try:
        return train_process(ctx, config, Path(run_dir), resume, force)
    except preemption.Stopped as stopped:
        if distributed.is_main():
            print(stopped.message, file=sys.stderr)
        # dropping its traceback lets `cleanup` free the trainer (see there)
        raise stopped.with_traceback(None) from None
    finally:
        distributed.cleanup()


def train_process(ctx: distributed.Context, config: RunConfig, run_dir: Path,
                  resume: bool, force: bool) -> dict[str, Any]:
    """`train` in one process of the job; rank 0 alone changes the run folder."""
    main = distributed.is_main()
    check_inputs(config.train)  # before anything is written
    existing = checkpoint.list_checkpoints(run_dir)
    if existing and not (resume or force):
        raise UserError(f"{run_dir} already has checkpoints; pass --resume to "
                        "continue that run or --force to start it over")
    if resume and not existing:
        raise UserError(f"nothing to resume: no checkpoint in {run_dir}")
    trainer = Trainer(config, run_dir, ctx)
    passed_over = trainer.restore_latest() if resume else []
    distributed.barrier()  # all have read the folder before rank 0 changes it
    if main:
        for problem in passed_over:
            print(f"warning: {problem}; resuming from step {trainer.step}",
                  file=sys.stderr)
        prepare_run_dir(run_dir, trainer.step if resume else None)
        write_text(run_dir / "config.toml", to_toml(trainer.config.to_dict()))
        write_bytes(run_dir / "tokenizer.json",
                    (Path(config.train.data_dir) / "tokenizer.json").read_bytes())
        if resume:
            keep_metrics_until(trainer.metrics_path, trainer.step)
        print(summary(trainer), file=sys.stderr)
    distributed.barrier()  # and none starts before the folder is ready
    val_loss = trainer.fit()
    if main:
        plot_metrics(trainer.metrics_path, run_dir / "loss.png")
    return {"step": trainer.step, "val_loss": val_loss, "run_dir": str(run_dir),
            "checkpoint": str(checkpoint.list_checkpoints(run_dir)[-1])}


def check_inputs(t: TrainConfig) -> None:
    """What can be refused before the run folder is touched: a data folder whose
    meta.json and tokenizer disagree on the vocabulary, and a tracker whose
    package is missing."""
    meta = load_meta(t.data_dir)
    tokenizer = load_tokenizer(t.data_dir)
    if tokenizer.vocab_size != meta["vocab_size"]:
        raise UserError(
            f"{Path(t.data_dir) / 'meta.json'}: vocab_size {meta['vocab_size']} "
            f"disagrees with its tokenizer's {tokenizer.vocab_size} tokens; the "
            "folder changed after prepare: run prepare again")
    if t.tensorboard:
        tracking.require("tensorboard", "train.tensorboard")
    if t.wandb:
        tracking.require("wandb", "train.wandb")


def prepare_run_dir(run_dir: Path, resumed_step: int | None) -> None:
    """Make the run folder ready to train into.

    A fresh start (`resumed_step` None) removes what an earlier attempt left, so
    nothing of it mixes in. A resume sets aside the checkpoints after the one it
    resumed from (they failed verification) under a hidden name, so that no
    rollback goes forward to them; the next save deletes them.
    """
    if resumed_step is None:
        shutil.rmtree(run_dir / checkpoint.CHECKPOINTS, ignore_errors=True)
        for old in ("tensorboard", "wandb"):
            shutil.rmtree(run_dir / old, ignore_errors=True)
        for old in ("metrics.jsonl", "loss.png", "eval.json"):
            (run_dir / old).unlink(missing_ok=True)
        return
    for path in checkpoint.list_checkpoints(run_dir):
        if checkpoint.checkpoint_step(path) > resumed_step:
            path.rename(path.with_name(f".{path.name}.damaged"))


def keep_metrics_until(path: Path, step: int) -> None:
    """Before resuming, drop metrics logged after `step` (a killed run's lost steps)."""
    if path.exists():
        kept = [r for r in read_metrics(path) if r["step"] <= step]
        write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def summary(trainer: Trainer) -> str:
    """The run at a glance: model size, tokens per step, compute per token."""
    c, t, m = trainer.model_config, trainer.config.train, trainer.model
    total_tokens = trainer.tokens_per_step * t.max_steps
    batch = f"{t.batch_size} x {t.grad_accum} x {c.context_length}"
    if trainer.ctx.world_size > 1:
        batch += f" x {trainer.ctx.world_size} processes, {t.parallel}"
    return "\n".join([
        f"model: {m.num_parameters() / 1e6:.2f}M parameters "
        f"({m.num_parameters(non_embedding=True) / 1e6:.2f}M non-embedding), "
        f"{c.n_layer} layers, d_model {c.d_model}, {c.n_head} heads, "
        f"context {c.context_length}, vocab {c.vocab_size}",
        f"train: {trainer.tokens_per_step:,} tokens/step ({batch}), "
        f"{t.max_steps:,} steps = {total_tokens:,} tokens, "
        f"{m.flops_per_token() / 1e6:.1f} MFLOPs/token, "
        f"{trainer.device.type} {t.dtype}"
        + (f", resuming at step {trainer.step}" if trainer.step else ""),
    ])
