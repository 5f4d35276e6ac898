"""`python -m llm_reference export --run RUN --format hf --out DIR`: a Hugging Face
model folder that `transformers`, vLLM and llama.cpp's converter load (hf_folder.py);
`--format gguf --out FILE.gguf`: one file that llama.cpp and Ollama run
(gguf_export.py)."""

from __future__ import annotations

import argparse

from .common import add_force, add_out, add_run


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run(parser, "model folder to export: a run (from `train`, `finetune` or "
            "`import`) or a release folder")
    parser.add_argument("--step", type=int, metavar="N",
                        help="export the run's checkpoint of step N (default: the "
                             "latest)")
    parser.add_argument("--format", choices=["hf", "gguf"], default="hf",
                        help="hf: a folder of config.json, model.safetensors, "
                             "tokenizer.json, tokenizer_config.json (chat template), "
                             "generation_config.json; gguf: one .gguf file for "
                             "llama.cpp / Ollama (default: hf)")
    parser.add_argument("--dtype", choices=["f32", "f16", "q8_0"], default="f16",
                        help="gguf only: the weights' type (q8_0: 8-bit blocks of 32; "
                             "norms and biases stay f32; default: f16)")
    add_out(parser, "the folder (hf) or file (gguf) to write")
    add_force(parser)


def run(args: argparse.Namespace) -> int:
    from ..artifacts import load_model
    from ..errors import UserError

    if args.format == "hf" and args.dtype != "f16":
        raise UserError("--dtype applies to --format gguf; an HF export keeps the "
                        "checkpoint's float32")
    model, tokenizer, info = load_model(args.run, args.step, device="cpu")
    source = (f"from the {info['kind']} folder {args.run}"
              f"{'' if info['step'] is None else ', step ' + str(info['step'])}")
    if args.format == "gguf":
        from ..gguf_export import export_gguf, gguf_arch

        out = export_gguf(model, tokenizer, args.out, args.dtype, force=args.force)
        print(f"wrote {out} (GGUF {gguf_arch(model.config)}, {args.dtype}, "
              f"{out.stat().st_size / 1e6:.1f} MB, {source}); run it with llama.cpp: "
              f"llama-cli -m {out}")
        return 0
    from ..hf import family
    from ..hf_folder import export_hf

    out = export_hf(model, tokenizer, args.out, force=args.force)
    print(f"wrote {out}/ (HF {family(model.config)}, {source}); load it with "
          "transformers.AutoModelForCausalLM.from_pretrained")
    return 0
