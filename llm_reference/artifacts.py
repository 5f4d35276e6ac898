"""Every model folder this project writes, loaded by one function.

`load_model(path)` recognises the folder by the files in it and returns the model
(eval mode), its tokenizer and a description:

| folder                 | written by            | recognised by                     |
| ---------------------- | --------------------- | --------------------------------- |
| run                    | train, finetune,      | checkpoints/ (the latest, or      |
|                        | import                | `step`)                           |
| quantized              | quantize              | quantization.json (int8 stays     |
|                        |                       | int8 in memory)                   |
| release                | release               | manifest.json + config.json       |
| Hugging Face           | export, or downloaded | config.json with a model_type     |

The description is {"kind", "path", "step", "config"}, shaped like a checkpoint's
state.json, so the commands read either: `step` is the checkpoint's step (None when
the folder does not record one) and `config["train"]` the `[train]` table the
weights were trained with (None when the folder does not carry it; `eval` then
needs `--data`). The command line (`cli/`) passes this loader to the commands;
the modules that teach them default to `checkpoint.load_model`, a run's.
"""

from __future__ import annotations

import importlib
import json
import tomllib
from pathlib import Path
from typing import Any

from .errors import UserError

KINDS = "a run folder (checkpoints/), a quantized, release or Hugging Face folder"


def load_model(path: str | Path, step: int | None = None, device: str = "cpu"
               ) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, description) of any model folder; a UserError naming what
    the folder is when it holds no model."""
    path = Path(path)
    kind = folder_kind(path)
    if step is not None and kind != "run":
        raise UserError(f"--step {step}: {path} is a {kind} folder with one set of "
                        "weights; --step picks a checkpoint of a run folder")
    if kind == "run":
        from . import checkpoint

        model, tokenizer, state = checkpoint.load_model(path, step, device)
        return model, tokenizer, _describe("run", path, state["step"],
                                           state["config"].get("train"))
    if kind == "hf":
        model, tokenizer, _ = optional("hf_folder", "read_hf")(path, device)
        return model, tokenizer, _describe("hf", path, None, None)
    tokenizer = read_tokenizer(path / "tokenizer.json")
    if kind == "quantized":
        model, info = optional("quantize", "load_quantized")(path, device)
        return model, tokenizer, _describe("quantized", path, info.get("base_step"),
                                           None)
    return _load_release(path, device), tokenizer, _describe(
        "release", path, *_release_meta(path))


def read_tokenizer(path: Path) -> Any:
    """tokenizer.json as our byte-level BPE `Tokenizer` or, when ours cannot read
    it (the SentencePiece-style tokenizer of an imported model), an `HFTokenizer`
    (hf_tokenizer.py); when neither can, our error."""
    from .tokenizer import Tokenizer

    try:
        return Tokenizer.load(path)
    except UserError as ours:
        if _json(path) is None:  # missing or not JSON: our error says which
            raise
        try:
            return optional("hf_tokenizer", "HFTokenizer").load(path)
        except UserError:
            raise UserError(f"{ours}; nor can the tokenizers library read it"
                            ) from None


def optional(module: str, name: str) -> Any:
    """`module.name`, imported by name when it is needed: a starter repo carries
    only the modules of its track (no quantize.py for the beginner), and still
    loads the runs it trains."""
    try:
        found = importlib.import_module(f".{module}", __package__)
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.{module}":
            raise
        raise UserError(f"this package has no {module}.py, which this needs; "
                        "use the full llm_reference (pip install llm-from-scratch)"
                        ) from None
    return getattr(found, name)


def folder_kind(path: Path) -> str:
    """"run", "quantized", "release" or "hf"; else a UserError saying what it is."""
    if not path.is_dir():
        raise UserError(f"{path} is not a folder; pass {KINDS}")
    if (path / "checkpoints").is_dir():
        return "run"
    if (path / "quantization.json").is_file():
        return "quantized"
    config = _json(path / "config.json")
    if config is not None and (path / "manifest.json").is_file():
        return "release"  # ours, or a Hugging Face folder (release --format hf)
    if config is not None and "model_type" in config:
        return "hf"
    raise UserError(f"{path} {_what_it_is(path)}; pass {KINDS}")


def _what_it_is(path: Path) -> str:
    """A phrase naming a folder that holds no model, and what to pass instead."""
    if (path / "state.json").is_file() and (path / "model.safetensors").is_file():
        return (f"is one checkpoint; pass its run folder ({path.parent.parent}) "
                "and --step")
    if (path / "adapter.json").is_file():
        return ("holds LoRA adapters only; fine-tune with --merge to get a run "
                "folder")
    if (path / "meta.json").is_file():
        return "is a prepared data folder (meta.json), not a model"
    if (path / "metrics.jsonl").is_file() or (path / "config.toml").is_file():
        return "is a run folder without checkpoints/ (train it first)"
    return "holds no model (no checkpoints/, quantization.json or config.json)"


def _load_release(path: Path, device: str) -> Any:
    """A release's GPT: config.json is its ModelConfig, model.safetensors its
    weights (the loading code its model card shows); or, when config.json has a
    model_type, a Hugging Face folder (`release --format hf`)."""
    from safetensors.torch import load_model as load_weights

    from .model import GPT, ModelConfig

    if "model_type" in _json(path / "config.json"):
        return optional("hf_folder", "read_hf")(path, device)[0]

    model = GPT(ModelConfig.from_dict(_json(path / "config.json"))).to(device)
    load_weights(model, str(path / "model.safetensors"), device=device)
    return model.eval()


def _release_meta(path: Path) -> tuple[int | None, dict[str, Any] | None]:
    """The step (manifest.json) and the [train] table (training_config.toml)."""
    step = (_json(path / "manifest.json") or {}).get("step")
    try:
        with open(path / "training_config.toml", "rb") as f:
            train = tomllib.load(f).get("train")
    except (OSError, tomllib.TOMLDecodeError):
        train = None
    return step, train


def _describe(kind: str, path: Path, step: int | None,
              train: dict[str, Any] | None) -> dict[str, Any]:
    return {"kind": kind, "path": str(path), "step": step,
            "config": {"train": train}}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
