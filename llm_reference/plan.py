"""Plan a training run: from a compute budget to a model, its tokens, time and cost.

Every project starts with one question: *with this much compute, what should I
train?* The planner answers it in five steps of arithmetic:

1. **Budget -> FLOPs.** `1xH100:8h` is eight hours of one H100. Its peak (989 dense
   bf16 TFLOP/s) times the fraction a real training loop reaches, the model FLOPs
   utilization (MFU, ~40 %), times the seconds is the compute C we can spend.
2. **FLOPs -> N and D.** Training costs C ~ 6 N D FLOPs for N parameters and D
   tokens; Chinchilla found the best loss for a given C near D = 20 N.
3. **N -> a model.** The transformer shape (layers, width, heads) of the track's
   recipe whose parameter count is closest to N.
4. **Memory.** Weights, gradients, AdamW states and activations must fit on the
   device: we choose the micro-batch, gradient accumulation, sharding across GPUs
   and, as a last resort, activation checkpointing.
5. **Time, cost, loss.** Steps x FLOPs per step / achieved FLOP/s is the wall time;
   times the hourly price, the cost; a Chinchilla-style fit, the expected loss.

The formulas live in their own modules, each with its sources: budget.py (reading
a budget), hardware.py (peaks and prices), flops.py, memory.py and scaling.py. This
module defines the tracks' hardware, budgets and model recipes, and chains the
steps. It needs no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .budget import Budget, parse_budget
from .config import to_toml
from .data_plan import DataPlan, data_notes, fmt_epochs, plan_data
from .errors import UserError
from .flops import count_parameters, flops_per_token
from .hardware import HARDWARE, Hardware
from .memory import USABLE_MEMORY, training_memory
from .model_config import ModelConfig
from .scaling import (
    FITTED_PARAMS,
    HYPERPARAMETER_FLOPS,
    LOSS_FIT,
    batch_size_tokens,
    compute_optimal,
    learning_rate,
)
from .units import GiB, fmt_bytes, fmt_count, fmt_duration, significant

# ------------------------------------------------------------------------ tracks


@dataclass(frozen=True, kw_only=True)
class Track:
    """A kind of run: on what hardware, with which budgets, and which model recipe."""

    name: str
    default_hardware: str
    budgets: tuple[str, ...]  # presets; the first is the track's reference run
    vocab_size: int
    context_length: int
    recipe: dict[str, Any]  # ModelConfig fields that make the architecture
    gqa: bool  # grouped-query attention (about 4 query heads per k/v head)


GPT2_RECIPE = {"position": "learned", "norm": "layernorm", "mlp": "gelu",
               "bias": True, "tie_weights": True}
LLAMA_RECIPE = {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False}
TRACKS: dict[str, Track] = {
    "beginner": Track(
        name="beginner", default_hardware="laptop CPU",
        budgets=("cpu:30m", "cpu:4h"), vocab_size=8192, context_length=256,
        recipe=GPT2_RECIPE, gqa=False),
    "practitioner": Track(
        name="practitioner", default_hardware="one GPU",
        budgets=("1xRTX4090:8h", "1xA100:24h", "1xH100:8h"), vocab_size=32768,
        context_length=1024, recipe={**LLAMA_RECIPE, "tie_weights": True}, gqa=True),
    "researcher": Track(
        name="researcher", default_hardware="a node of GPUs",
        budgets=("8xH100:24h", "8xH100:72h"), vocab_size=32768, context_length=2048,
        recipe={**LLAMA_RECIPE, "tie_weights": False}, gqa=True),
}
TRACK_NAMES = tuple(TRACKS)


def get_track(name: str) -> Track:
    if name not in TRACKS:
        raise UserError(f"unknown track {name!r}; choose one of {', '.join(TRACKS)}")
    return TRACKS[name]


def track_for_budget(budget: Budget, catalog: dict[str, Hardware] | None = None
                     ) -> str:
    """The track a budget suggests: CPU or laptop -> beginner, one GPU ->
    practitioner, several GPUs -> researcher."""
    hw = (catalog or HARDWARE)[budget.hardware]
    if hw.device != "cuda":
        return "beginner"
    return "practitioner" if budget.count == 1 else "researcher"


# ------------------------------------------------------------------ model shapes

RESERVE = 0.05  # of the budget, for start-up, compilation, checkpoints and logging
MIN_STEPS = 20
SHAPE_PENALTY = 0.1  # how much a shape's aspect ratio matters next to its size


def head_dim_for(d_model: int) -> int:
    """Tiny models get heads of 32 so they still have several; GPT-2 and most
    models up to ~2B parameters use 64; Llama-7B and up use 128."""
    return 32 if d_model <= 256 else 64 if d_model <= 2048 else 128


def model_shape(track: Track, n_layer: int, d_model: int) -> ModelConfig:
    """The track's recipe at this depth and width.

    With GQA, 4 query heads share each key/value head, as in Llama 3 8B (32 / 8).
    """
    n_head = d_model // head_dim_for(d_model)
    return ModelConfig(vocab_size=track.vocab_size,
                       context_length=track.context_length, n_layer=n_layer,
                       n_head=n_head, n_kv_head=n_head // 4 if track.gqa else n_head,
                       d_model=d_model, **track.recipe)


def candidate_shapes(track: Track, n_params: float) -> list[ModelConfig]:
    """Model shapes ranked by how well they match `n_params`, best first.

    Kaplan et al. 2020 (figure 5) found the loss within a few percent over a wide
    range of aspect ratios d_model / n_layer: shape matters less than size. We try
    2-128 layers with d_model a multiple of 64 (128 above 2048, for heads of 128)
    and d_model / n_layer between 32 and 128 (with GQA, n_head a multiple of 4),
    and rank them by the log-distance of their parameter count from the target,
    plus a small penalty for straying from GPT-2 small's ratio of 64 (768 / 12).
    """
    ranked = []
    for n_layer in range(2, 129):
        for d_model in range(64 * math.ceil(n_layer / 2), 128 * n_layer + 1, 64):
            n_head = d_model // head_dim_for(d_model)
            if d_model % head_dim_for(d_model) or (track.gqa and n_head % 4):
                continue
            shape = model_shape(track, n_layer, d_model)
            size = abs(math.log(count_parameters(shape) / n_params))
            aspect = abs(math.log(d_model / n_layer / 64))
            ranked.append((size + SHAPE_PENALTY * aspect, n_layer, shape))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [shape for _, _, shape in ranked]


# ------------------------------------------------------------------------ memory


@dataclass(frozen=True)
class Layout:
    """How a model's training step is laid out on the devices so that it fits."""

    micro_batch: int  # sequences per device per forward pass
    grad_accum: int  # micro-batches per optimizer step
    checkpointing: bool  # activation checkpointing
    shards: int  # devices the model states are split across (FSDP); 1: replicated
    memory: dict[str, float]  # training_memory per device, bytes


def fit_memory(config: ModelConfig, hw: Hardware, count: int,
               seqs_per_rank: int) -> Layout | None:
    """Micro-batch, accumulation, sharding and checkpointing that fit, or None.

    We try the cheapest layout first: plain data parallelism (every GPU holds all
    model states), then sharding the states across GPUs (FSDP; costs
    communication, overlapped with compute), then activation checkpointing
    (recomputes the forward pass in the backward: ~1/3 more compute). In each we
    take the largest power-of-two micro-batch that fits; gradient accumulation
    makes up the rest of the global batch.
    """
    usable = hw.memory_gib * GiB * USABLE_MEMORY
    layouts = [(False, 1)] + ([(False, count)] if count > 1 else [])
    layouts += [(True, 1)] + ([(True, count)] if count > 1 else [])
    for checkpointing, shards in layouts:
        micro = seqs_per_rank
        while micro >= 1:
            memory = training_memory(config, micro, hw.dtype, checkpointing, shards)
            if memory["total"] <= usable:
                return Layout(micro, seqs_per_rank // micro, checkpointing, shards,
                              memory)
            micro //= 2
    return None


# ------------------------------------------------------------------------- plans


@dataclass
class Plan:
    """A planned run: the config to train and the estimates behind it."""

    budget: Budget
    track: str
    hardware: Hardware
    model: dict[str, Any]  # the [model] table
    train: dict[str, Any]  # the [train] table
    params: int
    flops_per_token: float
    tokens: int
    tokens_per_step: int
    train_flops: float  # model FLOPs of training (6N'D + attention), no recompute
    seconds: float  # estimated wall time: training, evaluation and the reserve
    cost_usd: tuple[float, float]
    memory: dict[str, float]  # per device, bytes
    parallelism: str  # "single", "ddp" or "fsdp"
    activation_checkpointing: bool
    expected_loss: float
    mfu: float
    compute: float  # the FLOPs the budget buys (what the scaling laws are fed)
    data: DataPlan | None = None  # the corpus to prepare (set by plan_budget)
    notes: list[str] = field(default_factory=list)

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    @property
    def extrapolated(self) -> list[str]:
        """The numbers that come from a scaling law outside its fitted range."""
        out = []
        if not FITTED_PARAMS[0] <= self.params <= FITTED_PARAMS[1]:
            out.append("expected loss")
        if self.compute < HYPERPARAMETER_FLOPS[0]:
            out += ["batch size", "learning rate"]
        return out

    @property
    def config(self) -> ModelConfig:
        """The [model] table as a ModelConfig, for the formulas of flops.py and
        memory.py."""
        return ModelConfig.from_dict(self.model)

    def to_toml(self) -> str:
        """The run's config.toml for `python -m llm_reference train --config`."""
        lines = [f"# planned by `python -m llm_reference plan --budget "
                 f"{self.budget.text} --track {self.track}`"]
        lines += [f"# {label}: {value}" for label, value in self.summary()]
        lines += [f"# note: {note}" for note in self.notes]
        tables = to_toml({"model": self.model, "train": self.train})
        return "\n".join(lines) + "\n\n" + tables

    def summary(self) -> list[tuple[str, str]]:
        """(what, value) rows for people: the CLI's table and the TOML's header."""
        m, t = self.model, self.train
        gpu_hours = self.seconds / 3600 * self.budget.count
        gpus = f"{self.budget.count}x " if self.budget.count > 1 else ""
        low, high = self.cost_usd
        layout = self.parallelism + (", activation checkpointing"
                                     if self.activation_checkpointing else "")
        return [
            ("budget", f"{self.budget.text} ({fmt_duration(self.budget.seconds)})"),
            ("hardware", f"{gpus}{self.hardware.name}, {self.hardware.dtype}, "
                         f"MFU {self.mfu:.0%}"),
            ("model", f"{fmt_count(self.params)} parameters: {m['n_layer']} layers, "
                      f"d_model {m['d_model']}, {m['n_head']} heads "
                      f"({m['n_kv_head']} k/v), {m['mlp']}, {m['position']}"),
            ("tokens", f"{fmt_count(self.tokens)} "
                       f"({self.tokens_per_param:.1f} per parameter)"),
            ("compute", f"{self.train_flops:.3g} FLOPs "
                        f"({self.flops_per_token:.3g} per token)"),
            ("steps", f"{t['max_steps']:,} x {fmt_count(self.tokens_per_step)} "
                      f"tokens = {t['batch_size']} seqs x {t['grad_accum']} accum x "
                      f"{self.budget.count} device(s) x {m['context_length']}"),
            ("memory", f"{fmt_bytes(self.memory['total'])} of "
                       f"{self.hardware.memory_gib:g} GiB per device ({layout})"),
            ("time", fmt_duration(self.seconds) + (
                f" ({gpu_hours:,.0f} GPU-hours)" if self.budget.count > 1 else "")),
            ("cost", "$0 (your own machine)" if high == 0
             else f"${low:,.2f} - ${high:,.2f} (at ${self.hardware.price_usd[0]:g}"
                  f" - ${self.hardware.price_usd[1]:g} per device-hour)"),
            ("data", f"{self.data.recipe}: {fmt_count(self.data.tokens)} tokens to "
                     f"prepare ({fmt_epochs(self.data.epochs)}) into "
                     f"{self.data.out}"),
            ("expected loss", f"{self.expected_loss:.2f} nats/token on web text "
                              f"({LOSS_FIT.name}; "
                              + ("extrapolated, not a prediction)"
                                 if "expected loss" in self.extrapolated
                                 else "indicative only)")),
        ]

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (for --json, the book and the scaffold)."""
        return {"budget": asdict(self.budget), "track": self.track,
                "hardware": {"key": self.hardware.key, "name": self.hardware.name,
                             "count": self.budget.count},
                "model": self.model, "train": self.train,
                "estimates": {
                    "params": self.params,
                    "non_embedding_params": count_parameters(self.config, True),
                    "flops_per_token": self.flops_per_token, "tokens": self.tokens,
                    "tokens_per_param": self.tokens_per_param,
                    "tokens_per_step": self.tokens_per_step,
                    "train_flops": self.train_flops, "seconds": self.seconds,
                    "cost_usd": {"low": self.cost_usd[0], "high": self.cost_usd[1]},
                    "memory_bytes": self.memory, "parallelism": self.parallelism,
                    "activation_checkpointing": self.activation_checkpointing,
                    "expected_loss": self.expected_loss, "loss_fit": LOSS_FIT.name,
                    "mfu": self.mfu, "compute": self.compute,
                    "extrapolated": self.extrapolated},
                "data": asdict(self.data), "notes": self.notes}


def make_plan(budget: Budget | str, track: str | None = None,
              tokens_per_param: float = 20.0, mfu: float | None = None,
              catalog: dict[str, Hardware] | None = None) -> Plan:
    """Turn a budget into a model, a [train] table and the estimates behind them.

    A plan that would teach nothing is refused (`refusal`), with a budget that
    would work: the smallest of this one doubled up to twenty times.
    """
    catalog = catalog or HARDWARE
    if isinstance(budget, str):
        budget = parse_budget(budget, catalog)
    t = get_track(track or track_for_budget(budget, catalog))
    mfu = catalog[budget.hardware].mfu if mfu is None else mfu
    check_assumptions(mfu, tokens_per_param)
    plan = plan_budget(budget, t, tokens_per_param, mfu, catalog)
    reason = refusal(plan)
    if reason:
        raise UserError(f"budget {budget.text!r} ({t.name} track): {reason}; "
                        f"{working_budget(budget, t, tokens_per_param, mfu, catalog)}")
    return plan


def plan_budget(budget: Budget, t: Track, tokens_per_param: float, mfu: float,
                catalog: dict[str, Hardware]) -> Plan:
    """The five steps, without judging the result."""
    hw = catalog[budget.hardware]
    # 1. budget -> FLOPs
    device_flops = hw.peak_tflops * 1e12 * mfu  # achieved FLOP/s of one device
    available = budget.seconds * (1 - RESERVE)
    compute = budget.count * device_flops * available
    # 2. FLOPs -> N, and the global batch for this much compute
    n_target, _ = compute_optimal(compute, tokens_per_param)
    seqs_per_rank = sequences_per_rank(compute, t.context_length, budget.count)
    # 3. + 4. the best-matching shape that fits in memory
    config, layout = fitting_model(t, n_target, hw, budget, seqs_per_rank)
    # 5. steps, evaluation, time
    run = schedule(config, layout, budget, device_flops, available)
    parallelism = parallelism_for(budget, layout, hw)
    train = train_table(run, layout, hw, learning_rate(compute),
                        CHECKPOINT_SECONDS[t.name == "beginner"])
    if parallelism == "fsdp":  # the trainer's default under torchrun is DDP
        train["parallel"] = "fsdp"
    data = plan_data(run.tokens, config.vocab_size, hw.device)
    train["data_dir"] = data.out
    params = count_parameters(config)
    hours = run.seconds / 3600 * budget.count
    plan = Plan(
        budget=budget, track=t.name, hardware=hw, model=config.to_dict(),
        train=train, params=params, flops_per_token=run.fpt, tokens=run.tokens,
        tokens_per_step=run.tokens_per_step, train_flops=run.fpt * run.tokens,
        seconds=run.seconds,
        cost_usd=(hours * hw.price_usd[0], hours * hw.price_usd[1]),
        memory=layout.memory, parallelism=parallelism,
        activation_checkpointing=layout.checkpointing,
        expected_loss=LOSS_FIT.loss(params, run.tokens), mfu=mfu, compute=compute,
        data=data)
    plan.notes = _notes(plan)
    return plan


# A model trained on fewer tokens than it has parameters has not seen enough text
# to learn much beyond unigram statistics: at 20 tokens per parameter we are at
# the compute-optimal point, and below ~1 the budget is too small for the track's
# smallest model (its embeddings alone may outweigh the tokens).
MIN_TOKENS_PER_PARAM = 1.0


def refusal(plan: Plan) -> str | None:
    """Why the plan is not worth running, or None.

    Durations beyond budget.MAX_DAYS are refused when the budget is read. We do
    not refuse on the expected loss: outside its fitted range (70M-16B parameters)
    the loss fit is an extrapolation, not evidence (it predicts more than
    ln(vocab) for the 2M-parameter `cpu:30m` model, which trains well below it);
    inside its range, one token per parameter already gives less than 5.6 nats,
    far below ln(8192) = 9.0. So tokens per parameter is the test.
    """
    if plan.tokens_per_param < MIN_TOKENS_PER_PARAM:
        return (f"it trains {fmt_count(plan.params)} parameters on only "
                f"{fmt_count(plan.tokens)} tokens, "
                f"{plan.tokens_per_param:.2f} per parameter (< "
                f"{MIN_TOKENS_PER_PARAM:g}), too few to learn from")
    return None


def working_budget(budget: Budget, t: Track, tokens_per_param: float, mfu: float,
                   catalog: dict[str, Hardware]) -> str:
    """'try cpu:2h', the smallest doubling of `budget` whose plan is not refused."""
    hw = catalog[budget.hardware]
    for doubling in range(1, 21):
        devices = f"{budget.count}x{hw.key}" if hw.device == "cuda" else hw.key
        if budget.dollars is not None:
            text = f"${math.ceil(budget.dollars * 2**doubling):,}@{devices}"
        else:
            text = f"{devices}:{budget_duration(budget.seconds * 2**doubling)}"
        try:
            bigger = parse_budget(text, catalog)
            if refusal(plan_budget(bigger, t, tokens_per_param, mfu, catalog)) is None:
                return f"try {text}"
        except UserError:  # past the longest duration we plan
            break
    return "no budget of this hardware works for this track: pick another track"


def budget_duration(seconds: float) -> str:
    """A duration a budget string can hold, rounded up: 5000 -> '84m'."""
    if seconds <= 2 * 3600 and seconds % 3600:
        return f"{math.ceil(seconds / 60)}m"
    if seconds <= 2 * 86400:
        return f"{math.ceil(seconds / 3600)}h"
    return f"{math.ceil(seconds / 86400)}d"


def check_assumptions(mfu: float, tokens_per_param: float) -> None:
    """The two numbers a user may override must make sense (the errors name the
    command line's options)."""
    if not 0 < mfu <= 1:
        raise UserError(f"--mfu {mfu}: must be in (0, 1], e.g. 0.4")
    if tokens_per_param < MIN_TOKENS_PER_PARAM:
        raise UserError(f"--tokens-per-param {tokens_per_param}: must be >= "
                        f"{MIN_TOKENS_PER_PARAM:g}, e.g. 20")


def sequences_per_rank(compute: float, context_length: int, count: int) -> int:
    """The global batch that suits this much compute (`batch_size_tokens`), in
    sequences per device, rounded to a power of two."""
    seqs = batch_size_tokens(compute) / context_length / count
    return 2 ** max(0, round(math.log2(max(1.0, seqs))))


def fitting_model(track: Track, n_target: float, hw: Hardware, budget: Budget,
                  seqs_per_rank: int) -> tuple[ModelConfig, Layout]:
    """The shape closest to `n_target` parameters whose training fits in memory."""
    for config in candidate_shapes(track, n_target):
        layout = fit_memory(config, hw, budget.count, seqs_per_rank)
        if layout is not None:
            return config, layout
    raise UserError(f"budget {budget.text!r}: no model of the {track.name} recipe "
                    f"fits in {hw.memory_gib:g} GiB; use more or bigger devices")


@dataclass(frozen=True)
class Schedule:
    """The run in steps: how many, how big, how often to evaluate, how long."""

    fpt: float  # training FLOPs per token
    steps: int
    tokens_per_step: int
    eval_interval: int
    eval_steps: int
    seconds: float  # training, evaluation and the reserve

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step


def schedule(config: ModelConfig, layout: Layout, budget: Budget,
             device_flops: float, available: float) -> Schedule:
    """As many optimizer steps as fit in the `available` seconds, with about 20
    evaluations; each evaluation gets ~2 % of the compute between two of them (a
    forward pass is 1/3 of a training micro-batch), and 20 batches at most."""
    fpt = flops_per_token(config)
    T, count = config.context_length, budget.count
    recompute = 4 / 3 if layout.checkpointing else 1.0  # forward done twice
    tokens_per_step = layout.micro_batch * layout.grad_accum * count * T
    step_seconds = tokens_per_step * fpt * recompute / (count * device_flops)
    eval_interval = max(1, int(available / step_seconds) // 20)
    eval_steps = min(20, max(1, round(0.06 * eval_interval * layout.grad_accum)))
    eval_seconds = eval_steps * layout.micro_batch * T * fpt / 3 / device_flops
    steps = int((available - eval_seconds) / (step_seconds + eval_seconds /
                                              eval_interval))
    if steps < MIN_STEPS:
        raise UserError(f"budget {budget.text!r} buys only {max(steps, 0)} training "
                        f"steps of even the smallest model; give at least "
                        f"{fmt_duration(budget.seconds * MIN_STEPS / max(steps, 1))}")
    seconds = (steps * step_seconds + (steps // eval_interval + 1) * eval_seconds
               + RESERVE * budget.seconds)
    return Schedule(fpt, steps, tokens_per_step, eval_interval, eval_steps, seconds)


def parallelism_for(budget: Budget, layout: Layout, hw: Hardware) -> str:
    """'single' (one device), 'ddp' (replicas) or 'fsdp' (sharded model states)."""
    if budget.count == 1:
        return "single"
    if layout.shards == 1:
        return "ddp"
    if hw.dtype == "float16":
        raise UserError(f"budget {budget.text}: the model needs FSDP sharding, "
                        f"which our trainer runs in bfloat16 only, and "
                        f"{hw.name} has no bfloat16; pick a bfloat16 GPU (L4, "
                        "RTX4090, A100, H100) or a smaller budget")
    return "fsdp"


# Seconds of expected wall time between checkpoints: on a laptop (the beginner
# track) a run is stopped by a lid or a Ctrl-C and should lose at most ~5
# minutes, and stopping within the first ten (data preparation included)
# leaves a checkpoint; on rented GPUs a checkpoint of a big model takes long
# enough to write that every 30 minutes is the usual compromise. Indexed by
# `is beginner`.
CHECKPOINT_SECONDS = (1800, 300)


def train_table(run: Schedule, layout: Layout, hw: Hardware, lr: float,
                checkpoint_seconds: float) -> dict[str, Any]:
    """The [train] table: the schedule, AdamW's usual settings and the device's."""
    step_rate = run.steps / run.seconds  # steps per wall-clock second
    every = run.eval_interval
    # a checkpoint at least every checkpoint_seconds of expected wall time
    checkpoint_every = max(1, int(checkpoint_seconds * step_rate))
    train = {
        "batch_size": layout.micro_batch, "grad_accum": layout.grad_accum,
        "max_steps": run.steps, "lr": significant(lr),
        "min_lr": significant(lr / 10),
        "warmup_steps": min(2000, max(10, round(0.05 * run.steps))),
        "schedule": "cosine", "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
        "grad_clip": 1.0, "eval_interval": every, "eval_steps": run.eval_steps,
        "checkpoint_interval": min(run.steps, checkpoint_every), "keep_last": 3,
        # and by the clock, for a machine slower than the plan expects
        "checkpoint_minutes": checkpoint_seconds / 60,
        "dtype": hw.dtype, "compile": hw.device == "cuda", "seed": 1337,
        "device": hw.device}
    if layout.checkpointing:
        train["activation_checkpointing"] = True
    return train


def _notes(plan: Plan) -> list[str]:
    """The assumptions and warnings a reader should see next to the numbers."""
    hw, m = plan.hardware, plan.model
    notes = [*data_notes(plan.data, plan.tokens),
             f"assumes {plan.mfu:.0%} MFU of {hw.peak_tflops:g} TFLOP/s "
             f"({hw.dtype}) per device and keeps {RESERVE:.0%} of the budget for "
             "start-up, compilation and checkpoints"]
    if plan.budget.count > 1:
        notes.append(f"launch with `torchrun --nproc_per_node {plan.budget.count}`; "
                     f"batch_size and grad_accum are per GPU ({plan.parallelism})")
    if plan.activation_checkpointing:
        notes.append("needs activation checkpointing to fit (+1/3 compute, counted)")
    if plan.budget.dollars is not None:
        low, high = hw.price_usd
        notes.append(f"the duration is fitted to the high price, ${high:g} per "
                     f"device-hour, so the run costs at most "
                     f"${plan.budget.dollars:,.2f}; at ${low:g} it costs "
                     f"${plan.cost_usd[0]:,.2f}")
    if "expected loss" in plan.extrapolated:
        uniform = math.log(m["vocab_size"])  # the loss of guessing uniformly
        notes.append(f"{fmt_count(plan.params)} parameters is outside the loss fit's "
                     f"range ({fmt_count(FITTED_PARAMS[0])}-"
                     f"{fmt_count(FITTED_PARAMS[1])}): the expected loss is an "
                     "extrapolation, not a prediction"
                     + (f", here even above ln(vocab_size) = {uniform:.2f}, the loss "
                        "of uniform guessing; expect your run to go well below it"
                        if plan.expected_loss > uniform else ""))
    if "batch size" in plan.extrapolated:
        notes.append(f"{plan.compute:.2g} FLOPs is below the "
                     f"{HYPERPARAMETER_FLOPS[0]:.0e} FLOPs of the batch-size and "
                     "learning-rate fits: the batch size is extrapolated and the "
                     "learning rate held at its value there")
    return notes
