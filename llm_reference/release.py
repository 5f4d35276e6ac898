"""Releasing a model: the weights, and what anyone needs to use, judge and rebuild it.

`python -m llm_reference release --run RUN --out DIR` writes

    model.safetensors      the weights only (no optimizer state); loading runs no code
    config.json            the ModelConfig: GPT(ModelConfig.from_dict(config.json))
    tokenizer.json         the tokenizer, in Hugging Face's format
    training_config.toml   the run's resolved [model] and [train] config
    eval.json              the evaluation of these weights (when there is one)
    README.md              the model card: architecture, size, training data and
                           their licenses, training, evaluation, intended use and
                           limits, and what PII scrubbing and a PII re-scan found
    manifest.json          for reproducibility: versions, seeds, the git commit, and
                           the sha256 of every file above and of the data shards

With `--format hf` the weights, config and tokenizer are written as a Hugging Face
model folder instead (`hf_folder.write_hf_files`: config.json with a `model_type`,
HF tensor names, tokenizer_config.json with the chat template,
generation_config.json), next to the same card, eval and manifest: a folder that
`transformers` loads and `huggingface-cli upload` publishes with its model card.

The folder is built under a temporary name next to `--out` and renamed when it is
complete, so a release that fails half-way leaves nothing that looks finished. An
`--out` that already holds files is refused unless `--force` replaces it. The card
is written by `model_card.py`, its personal-data section from `rescan.py`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model
from tqdm import tqdm

from . import __version__
from .atomic import staged_dir, write_json, write_text
from .checkpoint import load_model
from .config import resolve_device, to_toml
from .errors import UserError
from .model import GPT
from .model_card import model_card
from .rescan import SCAN_TOKENS, data_shards, pii_summary
from .sources import file_sha256

RELEASE_FORMAT = "llm-reference-release/1"


# --------------------------------------------------------------------- the data


def find_data_dir(state: dict[str, Any], data_dir: str | Path | None) -> Path | None:
    """The prepared data folder the run trained on (or `--data`); None if it is gone."""
    path = Path(data_dir or state["config"]["train"]["data_dir"])
    if (path / "meta.json").is_file():
        return path
    if data_dir is not None:
        raise UserError(f"--data {data_dir}: no meta.json there; pass the folder "
                        "written by `prepare`")
    return None


# --------------------------------------------------------------------- evaluation


def evaluation(run_dir: Path, model: GPT, tokenizer: Any, state: dict[str, Any],
               data_dir: Path | None, device: torch.device, quick: bool = True,
               cloze_items: int = 50) -> dict[str, Any] | None:
    """The run's eval.json if it evaluated this step, else (if `quick`) a quick
    evaluation on the validation split: `evaluate`'s metrics and a 50-item cloze.
    None when there is neither."""
    from .data import Batches
    from .evaluate import build_cloze, cloze_accuracy, language_model_metrics

    saved = run_dir / "eval.json"
    if saved.is_file():
        result = json.loads(saved.read_text(encoding="utf-8"))
        if result.get("step") == state["step"]:
            return result
    if not quick or data_dir is None:
        return None
    train = state["config"]["train"]
    T, seed = model.config.context_length, train["seed"]
    batches = Batches(data_dir, "val", train["batch_size"], T, seed=seed)
    result = {"step": state["step"], "batches": train["eval_steps"],
              **language_model_metrics(model, tokenizer, batches, train["eval_steps"],
                                       device)}
    windows = Batches(data_dir, "val", 2 * cloze_items, T, seed=seed + 1)
    texts = [tokenizer.decode(row) for row in windows.get(0)[0].tolist()]
    items = build_cloze(texts, cloze_items, seed=seed)
    result["cloze"] = cloze_accuracy(model, tokenizer, items, device) if items else None
    return result


# --------------------------------------------------------------------- the manifest


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "llm_reference": __version__}
    for package in ("torch", "numpy", "safetensors", "tokenizers", "regex"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> dict[str, Any] | None:
    """The commit of the code that makes the release, and whether it had changes."""
    source = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(source), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "."))  # the package's files
    except (OSError, subprocess.CalledProcessError):
        return None  # not a git checkout (an installed package), or no git
    return {"commit": commit, "dirty": dirty}


def code_sha256() -> str:
    """One hash over the package's Python sources: pins the code even without git."""
    source = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*.py")):
        digest.update(f"{path.relative_to(source).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def release_manifest(release_dir: Path, state: dict[str, Any],
                     data_dir: Path | None, data_manifest: dict | None
                     ) -> dict[str, Any]:
    """Everything needed to check and rebuild a release, and no timestamp.

    Hashes let anyone verify each released file and that the data shards are the
    ones `prepare` wrote (their hashes are in the data manifest too); the versions,
    seeds and git commit pin the code and randomness that produced the weights.
    """
    files = sorted(p.name for p in release_dir.iterdir() if p.name != "manifest.json")
    train = state["config"]["train"]
    data = None
    if data_dir is not None:
        shards = {name: file_sha256(data_dir / name) for name in
                  tqdm(data_shards(data_dir), desc="hash shards", file=sys.stderr,
                       disable=None, leave=False)}
        recorded = (data_manifest or {}).get("outputs_sha256", {})
        manifest = data_dir / "manifest.json"
        data = {
            "dir": data_dir.name,
            "manifest_sha256": file_sha256(manifest) if manifest.is_file() else None,
            "shards_sha256": shards,
            "shards_match_data_manifest": all(recorded.get(n) == h
                                              for n, h in shards.items()),
        }
    return {
        "format": RELEASE_FORMAT,
        "step": state["step"],
        "files_sha256": {name: file_sha256(release_dir / name) for name in files},
        "seeds": {"train": train["seed"],
                  "data_split": (data_manifest or {}).get("settings", {}).get("seed")},
        "data": data,
        "versions": package_versions(),
        "platform": platform.platform(),
        "git": git_commit(),
        "code_sha256": code_sha256(),
        "reproduce": [
            "python -m llm_reference prepare  # with the settings in the data "
            "manifest",
            "python -m llm_reference train --config training_config.toml --out RUN",
        ],
    }


# --------------------------------------------------------------------- release


def check_out_dir(out: Path, run_dir: Path, force: bool) -> None:
    if out.resolve() in (run_dir.resolve(), *run_dir.resolve().parents):
        raise UserError(f"--out {out} holds the run {run_dir}; releasing there would "
                        "replace it: choose another folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"--out {out} is not empty; choose another folder or pass "
                        "--force to replace it")


def release(run_dir: str | Path, out: str | Path, step: int | None = None,
            license: str | None = None, data_dir: str | Path | None = None,
            force: bool = False, evaluate: bool = True,
            scan_tokens: int = SCAN_TOKENS, device: str = "auto",
            format: str = "native") -> Path:
    """Write the release of a run's checkpoint to `out`; return `out`. `format`:
    "native" (our config.json and tensor names) or "hf" (a Hugging Face folder)."""
    run_dir, out = Path(run_dir), Path(out)
    if format not in ("native", "hf"):
        raise UserError(f"--format {format!r}: choose native or hf")
    check_out_dir(out, run_dir, force)
    dev = resolve_device(device)
    model, tokenizer, state = load_model(run_dir, step, device=str(dev))
    if format == "hf":
        from .hf_folder import check_exportable

        check_exportable(model, tokenizer)
    data = find_data_dir(state, data_dir)
    data_manifest = None
    if data is not None and (data / "manifest.json").is_file():
        data_manifest = json.loads((data / "manifest.json").read_text("utf-8"))
    result = evaluation(run_dir, model, tokenizer, state, data, dev, quick=evaluate)
    pii = pii_summary(data_manifest, data, tokenizer, scan_tokens)
    name = run_dir.resolve().name

    with staged_dir(out) as tmp:
        if format == "hf":
            from .hf_folder import write_hf_files

            write_hf_files(model, tokenizer, tmp)
        else:
            save_model(model.cpu(), str(tmp / "model.safetensors"),
                       metadata={"format": "pt", "step": str(state["step"])})
            write_json(tmp / "config.json", model.config.to_dict())
            shutil.copyfile(run_dir / "tokenizer.json", tmp / "tokenizer.json")
        write_text(tmp / "training_config.toml", to_toml(state["config"]))
        if result is not None:
            write_json(tmp / "eval.json", result)
        write_text(tmp / "README.md", model_card(
            name, license, model, state, run_dir, data, data_manifest, result,
            not evaluate, pii, hf=format == "hf"))
        write_json(tmp / "manifest.json",
                   release_manifest(tmp, state, data, data_manifest))
        for file in tmp.iterdir():  # on disk before the rename makes it visible
            with open(file, "rb") as f:
                os.fsync(f.fileno())
            file.chmod(0o644)  # temp files are private (0600); a release is not
        tmp.chmod(0o755)
    return out

