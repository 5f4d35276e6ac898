"""Checkpoints: everything needed to continue a run exactly, and nothing executable.

A checkpoint is a folder `RUN/checkpoints/step_NNNNNNN/` holding

- `model.safetensors`: the weights;
- `optimizer.safetensors`: AdamW's per-parameter state, flattened to tensors named
  `"{param index}.{exp_avg | exp_avg_sq | step}"`;
- `state.json`: the step, the data position (index of the next micro-batch), the
  resolved config, the random-number generators' states (one set per process of a
  torchrun job), the optimizer's hyper-parameters, the sha256 of both safetensors
  files and whatever else the trainer adds (stability monitor, grad scaler).

safetensors and JSON hold only numbers and text, so loading a checkpoint cannot run
code, unlike a pickle. The folder is written under a temporary name and renamed when
complete: a run killed mid-save leaves the previous checkpoints intact and no folder
that looks finished but is not. Only the last `keep_last` checkpoints are kept.

A checkpoint is verified before it is used: state.json must parse, each safetensors
header must parse, each file must still have the sha256 it was written with (a disk
that filled up, a copy cut short, a file overwritten), and the weights must have the
shapes the model expects. Any failure is one line naming the file and what to do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from safetensors.torch import load_model as load_weights

from .atomic import replace_dir, write_json
from .errors import UserError
from .model import GPT, ModelConfig
from .precision import enable_tf32

CHECKPOINTS = "checkpoints"


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step_{step:07d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders start with .)."""
    return sorted((Path(run_dir) / CHECKPOINTS).glob("step_*"))


def checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix("step_"))


def find_checkpoint(run_dir: str | Path, step: int | None = None) -> Path:
    """The checkpoint of `step`, or the latest one; a UserError if there is none."""
    found = list_checkpoints(run_dir)
    if not found:
        raise UserError(f"no checkpoint in {Path(run_dir) / CHECKPOINTS}; "
                        "train first (python -m llm_reference train --out RUN)")
    if step is None:
        return found[-1]
    path = checkpoint_dir(run_dir, step)
    if path not in found:
        steps = ", ".join(str(checkpoint_step(p)) for p in found)
        raise UserError(f"no checkpoint for step {step} in {run_dir}; "
                        f"available steps: {steps}")
    return path


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write checkpoint `step` atomically, then delete all but the last `keep_last`.

    `state` is the trainer's JSON-able state (config, data position, …); the step,
    the optimizer's hyper-parameters and the RNG states are added here.
    """
    return write_checkpoint(run_dir, step, model.state_dict(),
                            optimizer.state_dict(), state, keep_last)


def write_checkpoint(
    run_dir: str | Path,
    step: int,
    weights: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
    keep_last: int,
) -> Path:
    """`save_checkpoint` from state dicts, laid out as `model.state_dict()` and
    `optimizer.state_dict()` give them (a sharded FSDP run gathers them first)."""
    final = checkpoint_dir(run_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        save_file(weights, tmp / "model.safetensors")
        save_file(optimizer_tensors(optimizer_state), tmp / "optimizer.safetensors")
        write_json(tmp / "state.json", {
            "rng": [rng_state()], **state, "step": step,
            "optimizer": optimizer_state["param_groups"],
            "sha256": {name: file_sha256(tmp / name) for name in FILES}})
        for file in tmp.iterdir():  # on disk before the rename makes it visible
            _fsync(file)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune_checkpoints(run_dir, keep_last)
    return final


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    """Load weights (and optimizer state) from a checkpoint folder; return its state.

    The RNG states are returned in `state["rng"]`, not applied: call
    `set_rng_state` when continuing a run.
    """
    path = Path(path)
    state = verify_checkpoint(path, shapes_of(model))
    device = next(model.parameters()).device
    load_weights(model, str(path / "model.safetensors"), device=str(device))
    if optimizer is not None:
        load_optimizer(optimizer, path / "optimizer.safetensors", state["optimizer"])
    return state


def read_checkpoint(path: str | Path, shapes: dict[str, tuple[int, ...]] | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(weights, optimizer state dict, state) of a checkpoint folder, on the CPU:
    what `write_checkpoint` was given, plus the step and RNG states in `state`.
    The checkpoint is verified first, its weights against `shapes` if given."""
    path = Path(path)
    state = verify_checkpoint(path, shapes)
    optimizer_state = read_optimizer_state(path / "optimizer.safetensors",
                                           state["optimizer"])
    return load_file(path / "model.safetensors"), optimizer_state, state


def read_state(path: str | Path) -> dict[str, Any]:
    try:
        state = json.loads((Path(path) / "state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"checkpoint {path} is unreadable ({e}); "
                        "delete it to fall back to an earlier one") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise UserError(f"checkpoint {path}: state.json has no step; "
                        "delete it to fall back to an earlier one")
    return state


# ------------------------------------------------------------------ verification

FILES = ("model.safetensors", "optimizer.safetensors")


def verify_checkpoint(path: str | Path,
                      shapes: dict[str, tuple[int, ...]] | None = None
                      ) -> dict[str, Any]:
    """Check a checkpoint before use and return its state; a UserError if it is
    damaged: state.json, each file's safetensors header and recorded sha256
    (checkpoints written before hashes were recorded skip that test), and, given
    `shapes` ({name: shape} of the model to load into), the weights' shapes."""
    path = Path(path)
    state = read_state(path)
    recorded = state.get("sha256", {})
    for name in FILES:
        header = read_header(path / name)
        if name in recorded and file_sha256(path / name) != recorded[name]:
            _damaged(path / name, "its sha256 differs from the one recorded when "
                     "it was written: the file changed or was cut short")
        if name == "model.safetensors" and shapes is not None:
            check_shapes(path / name, header, shapes)
    return state


def read_header(file: Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} from a safetensors file's header (no data is read)."""
    try:
        with safe_open(file, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (OSError, SafetensorError) as e:
        _damaged(file, str(e).splitlines()[0] if str(e) else type(e).__name__)


def check_shapes(file: Path, found: dict[str, tuple[int, ...]],
                 expected: dict[str, tuple[int, ...]]) -> None:
    """The weights in `file` must be exactly the model's, name for name."""
    missing, extra = expected.keys() - found.keys(), found.keys() - expected.keys()
    if missing or extra:
        what = (f"lacks {sorted(missing)[0]}" if missing
                else f"has {sorted(extra)[0]}, which the model has not")
        _damaged(file, f"it {what}; it is not a checkpoint of this model")
    for name, shape in expected.items():
        if found[name] != tuple(shape):
            _damaged(file, f"{name} has shape {list(found[name])}, the model's is "
                     f"{list(shape)}; it is not a checkpoint of this model")


def shapes_of(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """{name: shape} of what `model.state_dict()` saves (full shapes, also when
    FSDP has sharded the model)."""
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def file_sha256(file: Path) -> str:
    with open(file, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _damaged(file: Path, why: str) -> NoReturn:
    raise UserError(f"checkpoint file {file} is damaged ({why}); delete "
                    f"{file.parent} to fall back to an earlier checkpoint")


def load_model(
    run_dir: str | Path, step: int | None = None, device: str = "cpu"
) -> tuple[GPT, Any, dict[str, Any]]:
    """A trained run's model (in eval mode), tokenizer and checkpoint state.

    `step=None` takes the latest checkpoint. Used by eval, generate, serve, finetune,
    quantize and release.
    """
    path = find_checkpoint(run_dir, step)
    state = read_state(path)
    model = GPT(ModelConfig.from_dict(state["config"]["model"])).to(device)
    verify_checkpoint(path, shapes_of(model))
    enable_tf32(torch.device(device))
    load_weights(model, str(path / "model.safetensors"), device=device)
    tokenizer_path = Path(run_dir) / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise UserError(f"{tokenizer_path} is missing; copy the data folder's "
                        "tokenizer.json into the run folder")
    from .artifacts import read_tokenizer  # here: only commands that load need it

    return model.eval(), read_tokenizer(tokenizer_path), state


def optimizer_tensors(optimizer_state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """AdamW state as flat named tensors: {"3.exp_avg": …, "3.exp_avg_sq": …, …},
    from `optimizer.state_dict()`, whose "state" is {param index: {name: tensor}}."""
    return {f"{index}.{name}": value.contiguous()
            for index, per_param in optimizer_state["state"].items()
            for name, value in per_param.items()}


def load_optimizer(
    optimizer: torch.optim.Optimizer, path: Path, param_groups: list[dict]
) -> None:
    """Load the optimizer state saved by `optimizer_tensors` and its param groups."""
    optimizer.load_state_dict(read_optimizer_state(path, param_groups))


def read_optimizer_state(path: Path, param_groups: list[dict]) -> dict[str, Any]:
    """Rebuild an optimizer state dict from `optimizer_tensors` and param groups."""
    state: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in load_file(path).items():
        index, name = key.split(".", 1)
        state[int(index)][name] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g
              for g in param_groups]
    return {"state": dict(state), "param_groups": groups}


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints, and leftover temp folders."""
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old)
    for leftover in (Path(run_dir) / CHECKPOINTS).glob(".step_*"):
        shutil.rmtree(leftover, ignore_errors=True)


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The states of every random-number generator this process uses, as JSON:
    Python's, NumPy's, the CPU's and, given a CUDA `device`, that GPU's."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": _b64(torch.get_rng_state()),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = _b64(torch.cuda.get_rng_state(device))
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore the generators saved by `rng_state` (the GPU's onto `device`)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if isinstance(state.get("cuda"), str) and device is not None \
            and device.type == "cuda":
        torch.cuda.set_rng_state(_unb64(state["cuda"]), device)


def rng_states(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-process RNG states of a checkpoint's state, rank 0 first (older
    checkpoints saved rank 0's alone, as one dict)."""
    rng = state["rng"]
    return rng if isinstance(rng, list) else [rng]


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
