"""pretraining: the AdamW step, the learning-rate schedule, gradient clipping and
checkpoints.

Protocol: a module (or any object) with five functions

    adamw_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay)
        -> (param, m, v)
    lr_schedule(step, lr, min_lr, warmup_steps, max_steps) -> float
    clip_grad_norm(params, max_norm) -> float
    save_checkpoint(path, model, optimizer, step) -> None
    load_checkpoint(path, model, optimizer) -> int

`adamw_step`: one AdamW update of one tensor (all float32, the same shape); m and
v are the first and second moment estimates (zeros before the first step) and
`step` counts updates from 1. Weight decay is decoupled: param * (1 - lr * wd),
then the Adam update with bias-corrected moments, lr * m_hat / (sqrt(v_hat) + eps).
Return the new param, m and v (new tensors, or the inputs updated in place).

`lr_schedule`: the learning rate of optimizer step `step` = 0, 1, …: a linear
warmup lr * (step + 1) / (warmup_steps + 1) for step < warmup_steps, then half a
cosine from lr down to min_lr, reached at step max_steps - 1 and kept after it.

`clip_grad_norm`: params is a list of tensors with `.grad` (None is skipped).
Return the global L2 norm of all gradients together, before clipping; if it is
above max_norm, scale every gradient in place by max_norm / norm.

`save_checkpoint` writes everything needed to continue training exactly (weights,
the optimizer's state, the step) into the folder `path`, without pickle (use
safetensors and JSON); `load_checkpoint` restores it into an existing model and
optimizer (torch.optim.AdamW) and returns the step.

Reference: `torch.optim.AdamW` (built by `llm_reference.optim.make_optimizer`),
`llm_reference.schedule.cosine_lr`, `torch.nn.utils.clip_grad_norm_` (as in
`Trainer.train_step`), `llm_reference.checkpoint.save_checkpoint` and
`load_checkpoint`.
Command: python -m llm_reference check pretraining --impl my_train
Tolerance: float32, |Δ| <= 1e-6 + 1e-5 |expected|; the schedule to 1e-9 relative;
a resumed run's losses exactly.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch

from .. import checkpoint
from ..model import GPT, ModelConfig
from ..optim import make_optimizer
from ..schedule import cosine_lr
from .runner import (
    Node,
    Suspect,
    as_tensor,
    expect_close,
    expect_equal,
    fail,
    generator,
    randn,
)


def reference_adamw_step(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor,
                         v: torch.Tensor, step: int, lr: float, beta1: float,
                         beta2: float, eps: float, weight_decay: float
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of torch.optim.AdamW, started from the given moments and step."""
    p = torch.nn.Parameter(param.clone())
    optimizer = torch.optim.AdamW([p], lr=lr, betas=(beta1, beta2), eps=eps,
                                  weight_decay=weight_decay, foreach=False)
    optimizer.state[p] = {"step": torch.tensor(float(step - 1)),
                          "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
    p.grad = grad.clone()
    optimizer.step()
    state = optimizer.state[p]
    return p.detach(), state["exp_avg"], state["exp_avg_sq"]


def reference_save(path: str, model: torch.nn.Module,
                   optimizer: torch.optim.Optimizer, step: int) -> None:
    checkpoint.save_checkpoint(path, step, model, optimizer, state={}, keep_last=1)


def reference_load(path: str, model: torch.nn.Module,
                   optimizer: torch.optim.Optimizer) -> int:
    found = checkpoint.find_checkpoint(path)  # the latest step in the folder
    return checkpoint.load_checkpoint(found, model, optimizer)["step"]


node = Node(
    id="pretraining",
    title="Training loop: AdamW, schedule, clipping",
    protocol=__doc__,
    example="my_train",
    reference=lambda: SimpleNamespace(
        adamw_step=reference_adamw_step, lr_schedule=cosine_lr,
        clip_grad_norm=torch.nn.utils.clip_grad_norm_,
        save_checkpoint=reference_save, load_checkpoint=reference_load),
    parts=("adamw_step", "lr_schedule", "clip_grad_norm", "save_checkpoint",
           "load_checkpoint"),
)
TOL = dict(atol=1e-6, rtol=1e-5)
HYPER = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)

# ------------------------------------------------------------------- AdamW


def adam_mistakes(param: torch.Tensor, grad: torch.Tensor, lr: float, beta1: float,
                  beta2: float, eps: float, weight_decay: float) -> list[Suspect]:
    """The first-step outputs of Adam without bias correction, and of Adam with L2
    regularisation (the decay added to the gradient) instead of decoupled decay."""
    m, v = (1 - beta1) * grad, (1 - beta2) * grad**2
    decayed = param * (1 - lr * weight_decay)
    no_correction = decayed - lr * m / (v.sqrt() + eps)
    l2_grad = grad + weight_decay * param
    l2 = reference_adamw_step(param, l2_grad, torch.zeros_like(m),
                              torch.zeros_like(v), 1, lr, beta1, beta2, eps, 0.0)
    return [Suspect(no_correction, "Adam without bias correction",
                    "divide m by 1 - beta1^step and v by 1 - beta2^step"),
            Suspect(l2[0], "Adam with weight decay added to the gradient (L2)",
                    "decouple the decay: param * (1 - lr * weight_decay), apart "
                    "from the Adam update")]


def call_adamw(adamw_step: Callable, param: torch.Tensor, grad: torch.Tensor,
               m: torch.Tensor, v: torch.Tensor, step: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out = adamw_step(param.clone(), grad.clone(), m.clone(), v.clone(), step,
                     *HYPER.values())
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        fail(f"adamw_step returned {type(out).__name__}, expected (param, m, v)")
    return tuple(as_tensor(t, name) for t, name in zip(out, ("param", "m", "v")))


@node.check("adamw_first_step", uses=["adamw_step"], section="AdamW",
            hint="m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, then bias-correct "
                 "both and update with decoupled weight decay")
def adamw_first_step(adamw_step: Callable) -> None:
    param, grad = randn(4, 3, seed=1), randn(4, 3, seed=2)
    zeros = torch.zeros_like(param)
    expected = reference_adamw_step(param, grad, zeros, zeros, 1, **HYPER)
    got = call_adamw(adamw_step, param, grad, zeros, zeros, 1)
    expect_close(got[0], expected[0], "param after step 1", **TOL,
                 suspects=adam_mistakes(param, grad, **HYPER))
    expect_close(got[1], expected[1], "m after step 1", **TOL)
    expect_close(got[2], expected[2], "v after step 1", **TOL)


@node.check("adamw_five_steps", uses=["adamw_step"], section="AdamW",
            hint="m and v carry over from step to step, and the bias corrections "
                 "use the step number: 1 - beta^step")
def adamw_five_steps(adamw_step: Callable) -> None:
    ours = theirs = (randn(5, seed=3), torch.zeros(5), torch.zeros(5))
    for step in range(1, 6):
        grad = randn(5, seed=10 + step)
        theirs = reference_adamw_step(theirs[0], grad, *theirs[1:], step, **HYPER)
        ours = call_adamw(adamw_step, ours[0], grad, ours[1], ours[2], step)
        for name, a, b in zip(("param", "m", "v"), ours, theirs):
            expect_close(a, b, f"{name} after step {step}", **TOL)


@node.check("adamw_decoupled_decay", uses=["adamw_step"], section="AdamW",
            hint="weight decay is decoupled: param * (1 - lr * weight_decay), not "
                 "added to the gradient")
def adamw_decoupled_decay(adamw_step: Callable) -> None:
    param, zeros = randn(6, seed=4), torch.zeros(6)
    got = call_adamw(adamw_step, param, zeros, zeros, zeros, 1)[0]
    expected = param * (1 - HYPER["lr"] * HYPER["weight_decay"])
    expect_close(got, expected, "param after a step with a zero gradient", **TOL)


# ---------------------------------------------------------------- schedule

SCHEDULE = dict(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=100)


def schedule_values(lr_schedule: Callable, steps: range, settings: dict
                    ) -> list[float]:
    """lr_schedule(step, lr, min_lr, warmup_steps, max_steps) for each step."""
    return [float(lr_schedule(s, *settings.values())) for s in steps]


@node.check("schedule_matches_reference", uses=["lr_schedule"],
            section="The learning-rate schedule",
            hint="warmup lr * (step + 1) / (warmup_steps + 1), then min_lr + "
                 "0.5 (1 + cos(pi p)) (lr - min_lr), p = (step - warmup) / "
                 "(max_steps - 1 - warmup)")
def schedule_matches_reference(lr_schedule: Callable) -> None:
    for settings in (SCHEDULE, dict(SCHEDULE, warmup_steps=0, max_steps=7)):
        steps = range(settings["max_steps"])
        ours = schedule_values(lr_schedule, steps, settings)
        for step, got in zip(steps, ours):
            expected = cosine_lr(step, **settings)
            if not math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12):
                fail(f"step {step} of {settings}: got {got:.6g}, expected "
                     f"{expected:.6g}")


@node.check("schedule_warmup", uses=["lr_schedule"],
            section="The learning-rate schedule",
            hint="step 0 must not have lr 0 (it would waste a step): warm up "
                 "with (step + 1) / (warmup_steps + 1), reaching lr at warmup_steps")
def schedule_warmup(lr_schedule: Callable) -> None:
    values = schedule_values(lr_schedule, range(11), SCHEDULE)
    if not values[0] > 0:
        fail(f"the learning rate at step 0 is {values[0]}")
    if any(b <= a for a, b in zip(values, values[1:])):
        fail(f"the learning rate does not rise through warmup: {values}")
    if not math.isclose(values[10], SCHEDULE["lr"], rel_tol=1e-9):
        fail(f"the learning rate at step warmup_steps = 10 is {values[10]:.6g}, "
             f"expected lr = {SCHEDULE['lr']}")


@node.check("schedule_ends_at_min_lr", uses=["lr_schedule"],
            section="The learning-rate schedule",
            hint="clamp the cosine's progress at 1: after max_steps the rate stays "
                 "min_lr instead of rising again")
def schedule_ends_at_min_lr(lr_schedule: Callable) -> None:
    steps = (99, 100, 150, 250)
    for step, got in zip(steps, schedule_values(lr_schedule, steps, SCHEDULE)):
        if not math.isclose(got, SCHEDULE["min_lr"], rel_tol=1e-9):
            fail(f"the learning rate at step {step} (max_steps = 100) is "
                 f"{got:.6g}, expected min_lr = {SCHEDULE['min_lr']}")


# ---------------------------------------------------------------- clipping


def gradients(*shapes: tuple[int, ...], scale: float = 1.0) -> list[torch.Tensor]:
    params = [torch.zeros(shape, requires_grad=True) for shape in shapes]
    for n, p in enumerate(params):
        p.grad = scale * torch.randn(p.shape, generator=generator(n))
    return params


def global_norm(params: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float((p.grad**2).sum()) for p in params
                         if p.grad is not None))


@node.check("clip_returns_total_norm", uses=["clip_grad_norm"],
            section="Gradient clipping",
            hint="return the norm of all gradients together, "
                 "sqrt(sum of every squared entry), measured before clipping")
def clip_returns_total_norm(clip_grad_norm: Callable) -> None:
    params = gradients((3, 4), (5,), (2, 2, 2), scale=3.0)
    norm = global_norm(params)
    got = float(clip_grad_norm(params, 1.0))
    if not math.isclose(got, norm, rel_tol=1e-5):
        fail(f"returned {got:.6g}, expected the total norm before clipping "
             f"{norm:.6g}")


@node.check("clip_scales_all_gradients", uses=["clip_grad_norm"],
            section="Gradient clipping",
            hint="scale every gradient by the same factor max_norm / total_norm, "
                 "not each tensor by its own norm")
def clip_scales_all_gradients(clip_grad_norm: Callable) -> None:
    params = gradients((3, 4), (5,), (2, 2, 2), scale=3.0)
    before = [p.grad.clone() for p in params]
    factor = 1.0 / global_norm(params)
    clip_grad_norm(params, 1.0)
    for n, (p, g) in enumerate(zip(params, before)):
        expect_close(p.grad, g * factor, f"gradient {n} after clipping to 1.0",
                     atol=1e-6, rtol=1e-4)


@node.check("clip_leaves_small_gradients", uses=["clip_grad_norm"],
            section="Gradient clipping",
            hint="clip only when the total norm is above max_norm")
def clip_leaves_small_gradients(clip_grad_norm: Callable) -> None:
    params = gradients((3, 4), (5,), scale=0.01)
    before = [p.grad.clone() for p in params]
    clip_grad_norm(params, 1.0)
    for n, (p, g) in enumerate(zip(params, before)):
        expect_close(p.grad, g, f"gradient {n} (total norm below max_norm)", **TOL)


@node.check("clip_edge_cases", uses=["clip_grad_norm"], section="Gradient clipping",
            hint="skip parameters whose .grad is None, and do not divide by a "
                 "zero norm")
def clip_edge_cases(clip_grad_norm: Callable) -> None:
    params = gradients((3,), (2,))
    params.append(torch.zeros(4, requires_grad=True))  # no gradient
    norm = global_norm(params)
    if not math.isclose(float(clip_grad_norm(params, 10.0)), norm, rel_tol=1e-5):
        fail("the total norm changed when a parameter had no gradient")
    zero = gradients((3,), scale=0.0)
    clip_grad_norm(zero, 1.0)
    if not zero[0].grad.isfinite().all():
        fail(f"all-zero gradients became {zero[0].grad.tolist()}")


# -------------------------------------------------------------- checkpoints

CONFIG = ModelConfig(vocab_size=32, context_length=8, n_layer=1, n_head=2,
                     d_model=16)


def new_training(seed: int) -> tuple[GPT, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = GPT(CONFIG)
    return model, make_optimizer(model, lr=1e-2, weight_decay=0.1)


def train_steps(model: GPT, optimizer: torch.optim.Optimizer,
                steps: range) -> list[float]:
    losses = []
    for step in steps:
        idx = torch.randint(0, 32, (2, 9), generator=generator(step))
        _, loss = model(idx[:, :-1], idx[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@node.check("checkpoint_resume_is_exact", uses=["save_checkpoint", "load_checkpoint"],
            section="Checkpoints",
            hint="save the optimizer's state (AdamW's m, v and step per parameter) "
                 "with the weights, and restore both")
def checkpoint_resume_is_exact(save_checkpoint: Callable,
                               load_checkpoint: Callable) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "ckpt")
        model, optimizer = new_training(seed=0)
        train_steps(model, optimizer, range(3))
        save_checkpoint(path, model, optimizer, 3)
        expected = train_steps(model, optimizer, range(3, 6))
        model, optimizer = new_training(seed=1)  # other weights, empty state
        expect_equal(load_checkpoint(path, model, optimizer), 3, "the step loaded")
        got = train_steps(model, optimizer, range(3, 6))
    for step, (a, b) in enumerate(zip(got, expected), start=4):
        if a != b:
            fail(f"after resuming, the loss of step {step} is {a:.7g}, without "
                 f"stopping {b:.7g}")


def pickled(data: bytes) -> str | None:
    """What kind of pickle the file's bytes are, or None (safetensors, JSON, …)."""
    if len(data) >= 8:  # safetensors: an 8-byte header length, then JSON
        n = int.from_bytes(data[:8], "little")
        try:
            json.loads(data[8:8 + n])
            return None
        except ValueError:
            pass
    if data.startswith(b"PK\x03\x04"):
        return "a zip archive (what torch.save writes: pickles inside)"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle"
    return None


@node.check("checkpoint_without_pickle", uses=["save_checkpoint"],
            section="Checkpoints",
            hint="write weights and optimizer state with safetensors and the rest as "
                 "JSON: loading a pickle can run any code")
def checkpoint_without_pickle(save_checkpoint: Callable) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ckpt"
        model, optimizer = new_training(seed=0)
        train_steps(model, optimizer, range(1))
        save_checkpoint(str(path), model, optimizer, 1)
        files = [f for f in [path, *path.rglob("*")] if f.is_file()]
        if not files:
            fail(f"save_checkpoint wrote nothing into {path.name}")
        for file in files:
            kind = pickled(file.read_bytes())
            if kind:
                fail(f"{file.relative_to(folder)} is {kind}")


@node.check("checkpoint_overwrite", uses=["save_checkpoint", "load_checkpoint"],
            section="Checkpoints",
            hint="saving again into the same folder must replace what was there")
def checkpoint_overwrite(save_checkpoint: Callable,
                         load_checkpoint: Callable) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "ckpt")
        model, optimizer = new_training(seed=0)
        train_steps(model, optimizer, range(1))
        save_checkpoint(path, model, optimizer, 1)
        train_steps(model, optimizer, range(1, 2))
        save_checkpoint(path, model, optimizer, 2)
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        model, optimizer = new_training(seed=1)
        expect_equal(load_checkpoint(path, model, optimizer), 2, "the step loaded")
    for name, value in model.state_dict().items():
        if not torch.equal(value, weights[name]):
            fail(f"{name} differs from the weights of the second save")
