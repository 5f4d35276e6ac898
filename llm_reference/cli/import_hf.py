"""`python -m llm_reference import --hf DIR --out RUN`: a local Hugging Face model
folder (GPT-2, Llama, Mistral, Qwen2, Qwen3, Mixtral, Qwen3-MoE) as a run folder
(hf_folder.py)."""

from __future__ import annotations

import argparse

from .common import add_force, add_out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hf", required=True, metavar="DIR",
                        help="a local HF model folder (config.json, "
                             "model.safetensors, tokenizer.json), e.g. from "
                             "`huggingface-cli download gpt2 --local-dir DIR`")
    add_out(parser, "the run folder to write (config.toml, tokenizer.json, "
            "checkpoints/step_0000000/)")
    add_force(parser)


def run(args: argparse.Namespace) -> int:
    from ..hf_folder import import_hf

    out = import_hf(args.hf, args.out, force=args.force)
    print(f"wrote {out}/: a run folder that generate, eval, finetune, quantize, "
          "serve, release and export accept")
    return 0
