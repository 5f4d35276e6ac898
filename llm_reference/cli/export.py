"""`python -m llm_reference export --run RUN --format hf --out DIR`: a Hugging Face
model folder that `transformers`, vLLM and llama.cpp's converter load (hf_folder.py)."""

from __future__ import annotations

import argparse

from .common import add_force, add_out, add_run


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run(parser, "model folder to export: a run (from `train`, `finetune` or "
            "`import`) or a release folder")
    parser.add_argument("--step", type=int, metavar="N",
                        help="export the run's checkpoint of step N (default: the "
                             "latest)")
    parser.add_argument("--format", choices=["hf"], default="hf",
                        help="hf: config.json, model.safetensors, tokenizer.json, "
                             "tokenizer_config.json (chat template), "
                             "generation_config.json (default: hf)")
    add_out(parser, "the folder to write")
    add_force(parser)


def run(args: argparse.Namespace) -> int:
    from ..artifacts import load_model
    from ..hf import family
    from ..hf_folder import export_hf

    model, tokenizer, info = load_model(args.run, args.step, device="cpu")
    out = export_hf(model, tokenizer, args.out, force=args.force)
    print(f"wrote {out}/ (HF {family(model.config)}, from the {info['kind']} folder "
          f"{args.run}{'' if info['step'] is None else ', step ' + str(info['step'])})"
          f"; load it with transformers.AutoModelForCausalLM.from_pretrained")
    return 0
