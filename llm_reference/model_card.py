"""The model card: the README.md of a release, in Hugging Face's layout.

It says what the model is (architecture and size), what it was trained on (sources,
their licenses, what cleaning and redaction did), how it was trained and evaluated,
what it is for and not for, what a scan for personal data found, and how to load it.
Every number comes from the run, its data folder and the evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .flops import count_parameters
from .metrics_plot import read_metrics

if TYPE_CHECKING:
    from .model import GPT


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
    if c.is_moe:  # a token runs through moe_top_k of the moe_experts experts
        rows.insert(-1, ("active parameters per token",
                         f"{count_parameters(c, active=True):,}"))
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
               pii: dict[str, Any], hf: bool = False) -> str:
    """The README.md of a release (Hugging Face model-card layout); `hf`: the
    release is a Hugging Face folder, loaded with `transformers`."""
    params = model.num_parameters()
    library = "transformers" if hf else "llm-reference"
    front = ["---", f"license: {license.lower()}" if license else None,
             f"library_name: {library}", "tags: [llm-from-scratch, causal-lm]",
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
        "## How to load\n\n" + (HOW_TO_LOAD_HF if hf else HOW_TO_LOAD),
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

HOW_TO_LOAD_HF = """\
```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained(".")  # this folder, or its Hub id
tokenizer = AutoTokenizer.from_pretrained(".")
```"""
