"""`generate`: sample text from a trained run (`generate.py`)."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import UserError
from .common import add_device, add_run, resolve_device


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run(parser, "model folder: a run written by `train` (config.toml, "
                    "checkpoints/, tokenizer.json), or a quantize, release or "
                    "Hugging Face folder")
    parser.add_argument("--step", type=int, default=None,
                        help="checkpoint step to load (default: the latest)")
    parser.add_argument("--prompt", default="",
                        help="text to continue (default: start a new document)")
    parser.add_argument("--max-new-tokens", type=int, default=80,
                        help="most tokens to generate (default: 80)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature; 0 = greedy (default: 1.0)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="sample only among the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None,
                        help="sample among the fewest tokens with probability mass p "
                             "(nucleus sampling)")
    parser.add_argument("--seed", type=int, default=1337,
                        help="random seed: the same seed gives the same text "
                             "(default: 1337)")
    parser.add_argument("--stop", action="append", default=[],
                        help="stop before this string; repeat for several (generation "
                             "also stops at <|endoftext|>)")
    parser.add_argument("--stream", action="store_true",
                        help="print text as it is generated")
    parser.add_argument("--no-cache", action="store_true",
                        help="recompute the whole sequence every step (slow; for "
                             "comparison with the KV cache)")
    add_device(parser)


def run(args: argparse.Namespace) -> int:
    from ..artifacts import load_model
    from ..generate import generate_text

    device = resolve_device(args.device)
    model, tokenizer, _ = load_model(args.run, step=args.step, device=str(device))
    eot = tokenizer.special_tokens.get("<|endoftext|>")
    prompt_ids = tokenizer.encode(args.prompt)
    if not prompt_ids:
        if eot is None:
            raise UserError("--prompt is empty and the tokenizer has no "
                            "<|endoftext|> to start from; give a prompt")
        prompt_ids = [eot]
    pieces = generate_text(
        model, tokenizer, prompt_ids, args.max_new_tokens, stop=args.stop,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        stop_ids=() if eot is None else (eot,), seed=args.seed,
        use_cache=not args.no_cache)
    start = time.perf_counter()
    if args.stream:
        sys.stdout.write(args.prompt)
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
    else:
        sys.stdout.write(args.prompt + "".join(pieces))
    sys.stdout.write("\n")
    seconds = time.perf_counter() - start
    print(f"[{seconds:.2f} s, {'no cache' if args.no_cache else 'KV cache'}]",
          file=sys.stderr)
    return 0
