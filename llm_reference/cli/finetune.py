"""`finetune`: instruction SFT, LoRA or DPO on top of a run (`finetune.py`)."""

from __future__ import annotations

import argparse
from typing import Any

from ..finetune_settings import DEFAULT_LR, METHODS, FinetuneSettings
from .common import add_device, add_force, add_out, add_run, resolve_device


def configure_parser(parser: argparse.ArgumentParser) -> None:
    d = FinetuneSettings()
    add = parser.add_argument
    add_run(parser, "the base run folder (from `train`, or an earlier fine-tune)")
    add("--step", type=int, metavar="N",
        help="the base run's checkpoint step (default: the latest)")
    add("--method", choices=METHODS, default="sft",
        help="sft: full fine-tune on chat data; lora: SFT with low-rank adapters on "
             "a frozen model; dpo: preference pairs vs a frozen reference "
             "(default: sft)")
    add_out(parser, "output folder: metrics.jsonl, loss.png, finetune.json, and a run "
                    "(checkpoints/, config.toml, tokenizer.json) for sft, dpo and "
                    "lora --merge; adapter.safetensors + adapter.json for lora")
    add("--data", metavar="FILE.jsonl",
        help='training data. sft/lora: lines {"messages": [{"role", "content"}, '
             '...]}; dpo: lines {"prompt", "chosen", "rejected"}. Default: built '
             "offline from the stdlib (signature -> docstring; for dpo the rejected "
             "reply is another function's docstring)")
    add("--max-steps", type=int, default=d.max_steps, metavar="N",
        help=f"optimizer steps (default: {d.max_steps})")
    add("--batch-size", type=int, default=d.batch_size, metavar="N",
        help=f"rows (sft/lora) or preference pairs (dpo) per step "
             f"(default: {d.batch_size})")
    add("--lr", type=float, default=None,
        help="peak learning rate (default: " + ", ".join(
            f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    add("--min-lr-ratio", type=float, default=d.min_lr_ratio, metavar="R",
        help=f"the cosine decay ends at lr * R (default: {d.min_lr_ratio})")
    add("--warmup-steps", type=int, default=d.warmup_steps, metavar="N",
        help=f"linear warmup steps (default: {d.warmup_steps})")
    add("--weight-decay", type=float, default=d.weight_decay, metavar="WD",
        help=f"AdamW weight decay on matrices (default: {d.weight_decay})")
    add("--grad-clip", type=float, default=d.grad_clip, metavar="NORM",
        help=f"max global gradient norm; 0 = no clipping (default: {d.grad_clip})")
    add("--eval-interval", type=int, default=d.eval_interval, metavar="N",
        help=f"steps between held-out evaluations (default: {d.eval_interval})")
    add("--eval-batches", type=int, default=d.eval_batches, metavar="N",
        help=f"held-out batches per evaluation (default: {d.eval_batches})")
    add("--val-fraction", type=float, default=d.val_fraction, metavar="F",
        help="share of examples held out, chosen by a hash of each example "
             f"(default: {d.val_fraction})")
    add("--max-examples", type=int, metavar="N",
        help="use only the first N training examples (default: all)")
    add("--no-pack", action="store_true",
        help="one example per row instead of packing several into each context "
             "window (sft/lora)")
    add("--seed", type=int, default=d.seed, metavar="N",
        help=f"seed for initialisation and batch order (default: {d.seed})")
    add("--lora-rank", type=int, default=d.lora_rank, metavar="R",
        help=f"rank r of the LoRA update B @ A (default: {d.lora_rank})")
    add("--lora-alpha", type=float, default=d.lora_alpha, metavar="A",
        help=f"LoRA scale: the update is multiplied by alpha / r "
             f"(default: {d.lora_alpha:g})")
    add("--lora-dropout", type=float, default=d.lora_dropout, metavar="P",
        help=f"dropout on the LoRA branch's input (default: {d.lora_dropout})")
    add("--lora-targets", default=",".join(d.lora_targets), metavar="PATTERNS",
        help="comma-separated name patterns of the Linear layers to adapt, e.g. "
             "attn.qkv,attn.proj,mlp.* (default: %(default)s)")
    add("--merge", action="store_true",
        help="lora: also fold the adapters into the weights and write a full run")
    add("--beta", type=float, default=d.beta, metavar="B",
        help=f"dpo: strength of the pull toward the reference model (default: "
             f"{d.beta})")
    add_device(parser)
    add_force(parser, "replace an earlier fine-tune in --out")


def run(args: argparse.Namespace) -> int:
    from ..finetune import finetune

    device = resolve_device(args.device)
    settings = FinetuneSettings(
        method=args.method, max_steps=args.max_steps, batch_size=args.batch_size,
        lr=args.lr, min_lr_ratio=args.min_lr_ratio, warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        eval_interval=args.eval_interval, eval_batches=args.eval_batches,
        val_fraction=args.val_fraction, max_examples=args.max_examples,
        pack=not args.no_pack, seed=args.seed, lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        lora_targets=tuple(filter(None, map(str.strip, args.lora_targets.split(",")))),
        beta=args.beta)
    result = finetune(args.run, args.out, settings, args.data, args.step, args.merge,
                      str(device), args.force)
    print(format_summary(result))
    return 0


def format_summary(result: dict[str, Any]) -> str:
    """What `finetune` prints at the end: data, parameters, held-out before/after."""
    stats = result["data_stats"]
    unit = "pairs" if result["method"] == "dpo" else "examples"
    lines = [
        f"{result['method']}: {result['settings']['max_steps']} steps on "
        f"{stats['train'][unit]} train {unit} ({stats['val'][unit]} held out, "
        f"{stats['train']['too_long'] + stats['val']['too_long']} too long, skipped)",
        f"trainable parameters: {result['trainable_parameters']:,} of "
        f"{result['total_parameters']:,} "
        f"({result['trainable_parameters'] / result['total_parameters']:.2%})",
    ]
    if "fill" in stats["train"]:
        lines.append(f"packing: {stats['train']['rows']} rows, "
                     f"{stats['train']['fill']:.0%} of tokens used")
    for key in result["after"]:
        lines.append(f"held-out {key.removeprefix('val_')}: "
                     f"{result['before'].get(key, float('nan')):.4f} -> "
                     f"{result['after'][key]:.4f}")
    if not result["after"]:
        lines.append("held-out: no examples (raise --val-fraction to evaluate)")
    sample = result["sample"]
    lines += [f"sample prompt: {sample['prompt'][-1]['content']!r}",
              f"  reference:     {sample['reference']!r}",
              f"  reply before:  {sample['before']!r}",
              f"  reply after:   {sample['after']!r}"]
    lines.append(f"wrote {result['out']}/: {', '.join(result['files'])}")
    return "\n".join(lines)
