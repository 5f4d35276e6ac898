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

The folder is built under a temporary name next to `--out` and renamed when it is
complete, so a release that fails half-way leaves nothing that looks finished. An
`--out` that already holds files is refused unless `--force` replaces it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors.torch import save_model
from tqdm import tqdm

from . import __version__, compliance
from .atomic import write_json, write_text
from .checkpoint import load_model
from .config import resolve_device, to_toml
from .errors import UserError
from .metrics_plot import read_metrics
from .model import GPT
from .sources import file_sha256

RELEASE_FORMAT = "llm-reference-release/1"
SCAN_TOKENS = 1_000_000  # tokens of the shards that the PII re-scan reads (default)


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


def data_shards(data_dir: Path) -> list[str]:
    meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
    return [s["file"] for split in ("train", "val") for s in meta["shards"][split]]


def read_documents(data_dir: Path, tokenizer: Any, max_tokens: int
                   ) -> Iterator[tuple[str, str]]:
    """(location, text) of the documents in the first `max_tokens` tokens of the
    shards, split at <|endoftext|>: what the PII re-scan reads."""
    meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    left = max_tokens
    for name in data_shards(data_dir):
        if left <= 0:
            return
        tokens = np.memmap(data_dir / name, dtype=dtype, mode="r")[:left]
        left -= len(tokens)
        # documents lie between <|endoftext|> tokens
        eots = np.flatnonzero(tokens == meta["eot_id"]).tolist()
        bounds = [-1, *eots, len(tokens)]
        for n, (before, end) in enumerate(zip(bounds, bounds[1:])):
            if end > before + 1:
                text = tokenizer.decode(tokens[before + 1:end].tolist())
                yield f"{name}#doc{n}", text


def pii_summary(data_manifest: dict | None, data_dir: Path | None, tokenizer: Any,
                scan_tokens: int) -> dict[str, Any]:
    """What `prepare` redacted (from its manifest) and what a re-scan still finds."""
    summary: dict[str, Any] = {"redaction": None, "redacted": None, "rescan": None}
    if data_manifest is not None:
        summary["redaction"] = data_manifest["settings"].get("redact")
        summary["redacted"] = data_manifest["totals"]["redacted"]
    if data_dir is not None and scan_tokens > 0:
        report = compliance.scan(read_documents(data_dir, tokenizer, scan_tokens))
        summary["rescan"] = {"tokens": scan_tokens, **report.to_dict()}
    return summary


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


# --------------------------------------------------------------------- model card


def table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def architecture_section(model: GPT) -> str:
    c = model.config
    rows = [(name, value) for name, value in c.to_dict().items()]
    rows += [("parameters", f"{model.num_parameters():,}"),
             ("non-embedding parameters",
              f"{model.num_parameters(non_embedding=True):,}"),
             ("training FLOPs per token", f"{model.flops_per_token():.3g}")]
    return table(("field", "value"), rows)


def data_section(data_manifest: dict | None, data_dir: Path | None) -> str:
    if data_manifest is None:
        return ("The data folder's manifest.json was not found, so the training data "
                "and its licenses are **not documented**: pass `--data DIR`.")
    rows = [(s["id"], s["kind"], s["license"], s["kept"]["documents"],
             f"{s['kept']['bytes'] / 1e6:.2f}", s["content_sha256"][:16])
            for s in data_manifest["sources"]]
    parts = [f"From the prepared folder `{data_dir.name}` (its `manifest.json` has the "
             "details: cleaning, deduplication and the settings).", "",
             table(("source", "kind", "license", "documents kept", "MB kept",
                    "content sha256"), rows)]
    licenses = sorted({s["license"] for s in data_manifest["sources"]})
    parts += ["", f"Data licenses: {', '.join(licenses)}. Check that each allows "
              "training a model and releasing it under the model's license."]
    parts += [f"\n**Warning:** {w}" for w in data_manifest.get("warnings", [])]
    return "\n".join(parts)


def training_section(state: dict[str, Any], run_dir: Path) -> str:
    model, train = state["config"]["model"], state["config"]["train"]
    steps, lead = state["step"], ""
    if "finetune" in state:  # a fine-tuned run keeps its base run's [train] table
        tuned = state["finetune"]
        steps = tuned["base_step"]
        lead = (f"Fine-tuned ({tuned['method']}, {state['step']} steps; settings in "
                "the checkpoint's state.json) from step "
                f"{steps} of the run `{Path(tuned['base_run']).name}`, pretrained "
                "as follows.\n\n")
    tokens = steps * train["batch_size"] * train["grad_accum"] * model["context_length"]
    rows = [("steps", steps), ("tokens seen", f"{tokens:,}"),
            ("batch (sequences x accumulation)",
             f"{train['batch_size']} x {train['grad_accum']}"),
            ("learning rate", f"{train['lr']:g} -> {train['min_lr']:g} "
                              f"({train['schedule']}, {train['warmup_steps']} warmup)"),
            ("AdamW betas, weight decay",
             f"({train['beta1']}, {train['beta2']}), {train['weight_decay']}"),
            ("gradient clipping", train["grad_clip"]), ("dtype", train["dtype"]),
            ("seed", train["seed"])]
    metrics = run_dir / "metrics.jsonl"
    if not lead and metrics.is_file():
        logged = [r for r in read_metrics(metrics)
                  if "event" not in r and r["step"] <= steps]
        if logged:
            rows.append(("final training loss", f"{logged[-1]['loss']:.4f}"))
    return (lead + table(("setting", "value"), rows)
            + "\n\nThe full config is `training_config.toml`.")


def evaluation_section(result: dict[str, Any] | None, skipped: bool) -> str:
    if result is None:
        why = ("the release skipped it (`--no-eval`)" if skipped else
               "the validation data was not found (pass `--data DIR`)")
        return f"Not evaluated: the run has no eval.json for this step, and {why}."
    rows = [("validation loss (nats/token)", f"{result['val_loss']:.4f}"),
            ("perplexity", f"{result['perplexity']:.2f}"),
            ("bits per byte", f"{result['bits_per_byte']:.4f}"),
            ("next-token accuracy", f"{result['accuracy']:.2%}")]
    cloze = result.get("cloze")
    if cloze:
        rows.append((f"cloze accuracy ({cloze['items']} items, {cloze['choices']} "
                     "choices)", f"{cloze['accuracy']:.2%} (chance "
                                 f"{cloze['chance']:.0%})"))
    return (table(("metric", "value"), rows) + "\n\nOn the held-out split of the "
            "training data, so it measures fit to that distribution, not general "
            "ability. Details: `eval.json`.")


def compliance_section(pii: dict[str, Any]) -> str:
    lines = []
    if pii["redaction"] is None:
        lines.append("- Redaction at `prepare`: unknown (no data manifest).")
    else:
        done = ", ".join(f"{k} {v}" for k, v in pii["redacted"].items()) or "nothing"
        state = "on" if pii["redaction"] else "**off**"
        lines.append(f"- Redaction at `prepare` was {state}; replaced: {done}.")
    rescan = pii["rescan"]
    if rescan is None:
        lines.append("- Re-scan of the training shards: not done (no data folder).")
    else:
        found = ", ".join(f"{k} {v}" for k, v in rescan["counts"].items()) or "nothing"
        lines.append(f"- Re-scan of the first {rescan['tokens']:,} tokens of the "
                     f"shards ({rescan['documents']} documents): {found}"
                     f"{'; review before publishing' if rescan['counts'] else ''}.")
    lines.append("- The detectors (emails, public IPs, phone numbers, keys) miss "
                 "names, addresses and anything unusual: a clean scan is not proof.")
    return "\n".join(lines)


def model_card(name: str, license: str | None, model: GPT, state: dict[str, Any],
               run_dir: Path, data_dir: Path | None, data_manifest: dict | None,
               result: dict[str, Any] | None, eval_skipped: bool,
               pii: dict[str, Any]) -> str:
    """The README.md of a release (Hugging Face model-card layout)."""
    params = model.num_parameters()
    front = ["---", f"license: {license.lower()}" if license else None,
             "library_name: llm-reference", "tags: [llm-from-scratch, causal-lm]",
             "---"]
    license_line = (f"License of the weights: **{license}**." if license else
                    "License of the weights: **not chosen** (release again with "
                    "`--license NAME`).")
    sections = [
        "\n".join(line for line in front if line is not None),
        f"# {name}",
        f"A {params / 1e6:.2f}M-parameter decoder-only transformer (GPT) trained from "
        f"scratch with `llm_reference` ({state['step']} steps). {license_line}",
        "## Architecture\n\n" + architecture_section(model),
        "## Training data\n\n" + data_section(data_manifest, data_dir),
        "## Training\n\n" + training_section(state, run_dir),
        "## Evaluation\n\n" + evaluation_section(result, eval_skipped),
        "## Intended use and limitations\n\n" + LIMITATIONS,
        "## Compliance: personal data\n\n" + compliance_section(pii),
        "## How to load\n\n" + HOW_TO_LOAD,
        "## Reproducibility\n\n`manifest.json` records the sha256 of every file "
        "here and of the training data shards, the seeds, the versions of Python, "
        "PyTorch and the libraries, and the git commit of the code.",
    ]
    return "\n\n".join(sections) + "\n"


LIMITATIONS = """\
- Made for learning and experiments: a small model trained on a small corpus. It
  continues text in the style of its training data and knows little else.
- It has had no safety training and no instruction tuning (unless fine-tuned
  later): it can produce wrong, insecure or offensive text with confidence.
- It can reproduce training text verbatim; outputs may carry the data's license
  obligations (see Training data).
- Not for decisions about people, or for any use where errors cause harm."""

HOW_TO_LOAD = """\
```python
import json
from safetensors.torch import load_model
from llm_reference.model import GPT, ModelConfig
from llm_reference.tokenizer import Tokenizer

model = GPT(ModelConfig.from_dict(json.load(open("config.json")))).eval()
load_model(model, "model.safetensors")
tokenizer = Tokenizer.load("tokenizer.json")
```"""


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
            scan_tokens: int = SCAN_TOKENS, device: str = "auto") -> Path:
    """Write the release of a run's checkpoint to `out`; return `out`."""
    run_dir, out = Path(run_dir), Path(out)
    check_out_dir(out, run_dir, force)
    dev = resolve_device(device)
    model, tokenizer, state = load_model(run_dir, step, device=str(dev))
    data = find_data_dir(state, data_dir)
    data_manifest = None
    if data is not None and (data / "manifest.json").is_file():
        data_manifest = json.loads((data / "manifest.json").read_text("utf-8"))
    result = evaluation(run_dir, model, tokenizer, state, data, dev, quick=evaluate)
    pii = pii_summary(data_manifest, data, tokenizer, scan_tokens)
    name = run_dir.resolve().name

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise UserError(f"cannot write to {out.parent}: {e.strerror}; choose a "
                        "writable --out") from None
    try:
        save_model(model.cpu(), str(tmp / "model.safetensors"),
                   metadata={"format": "pt", "step": str(state["step"])})
        write_json(tmp / "config.json", model.config.to_dict())
        shutil.copyfile(run_dir / "tokenizer.json", tmp / "tokenizer.json")
        write_text(tmp / "training_config.toml", to_toml(state["config"]))
        if result is not None:
            write_json(tmp / "eval.json", result)
        write_text(tmp / "README.md", model_card(
            name, license, model, state, run_dir, data, data_manifest, result,
            not evaluate, pii))
        write_json(tmp / "manifest.json",
                   release_manifest(tmp, state, data, data_manifest))
        for file in tmp.iterdir():  # on disk before the rename makes it visible
            with open(file, "rb") as f:
                os.fsync(f.fileno())
            file.chmod(0o644)  # temp files are private (0600); a release is not
        tmp.chmod(0o755)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def replace_dir(src: Path, dst: Path) -> None:
    """Rename src to dst; an existing dst is moved aside first and then deleted."""
    if dst.is_dir() and any(dst.iterdir()):
        trash = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=dst.parent))
        os.replace(dst, trash / dst.name)
        os.replace(src, dst)
        shutil.rmtree(trash)
    else:
        os.replace(src, dst)  # a rename may replace an empty folder


# --------------------------------------------------------------------- command


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="DIR",
                        help="run folder written by `train` (or `finetune`)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="release folder to create; must be empty or absent "
                             "unless --force")
    parser.add_argument("--step", type=int, metavar="N",
                        help="release the checkpoint of step N (default: the latest)")
    parser.add_argument("--license", metavar="NAME",
                        help="license of the released weights, an SPDX id such as "
                             "MIT or Apache-2.0 (written into the model card); it "
                             "must be compatible with the data licenses")
    parser.add_argument("--data", metavar="DIR",
                        help="the prepared data folder the run trained on (default: "
                             "the run's train.data_dir)")
    parser.add_argument("--force", action="store_true",
                        help="replace a non-empty --out")
    parser.add_argument("--no-eval", action="store_true",
                        help="skip the quick evaluation when the run has no eval.json "
                             "for this step (the card then says 'not evaluated')")
    parser.add_argument("--scan-tokens", type=int, default=SCAN_TOKENS, metavar="N",
                        help="tokens of the training shards to re-scan for PII "
                             f"(default: {SCAN_TOKENS:,}; 0 skips the re-scan)")
    parser.add_argument("--device", default="auto",
                        help="device for the quick evaluation: auto, cpu, cuda[:N], "
                             "mps (default: auto)")


def run(args: argparse.Namespace) -> int:
    if args.scan_tokens < 0:
        raise UserError(f"--scan-tokens {args.scan_tokens}: must be >= 0")
    out = release(args.run, args.out, args.step, args.license, args.data, args.force,
                  evaluate=not args.no_eval, scan_tokens=args.scan_tokens,
                  device=args.device)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    if args.license is None:
        print("warning: no --license given; the model card says the license is not "
              "chosen", file=sys.stderr)
    if manifest["data"] is None:
        print("warning: the training data folder was not found; the card does not "
              "document the data (pass --data)", file=sys.stderr)
    files = ", ".join([*manifest["files_sha256"], "manifest.json"])
    print(f"released step {manifest['step']} to {out}/: {files}")
    return 0
