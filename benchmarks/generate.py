"""Generation speed: our KV-cache decoding vs no cache, and vs HF `generate`.

Greedy decoding, batch 1, from a 16-token prompt, on a GPT-2-small-like model scaled
for a CPU (6 layers, d_model 384, 6 heads, vocabulary 8192, context 1280) with random
weights. The HF peer is `GPT2LMHeadModel` (or `LlamaForCausalLM` with
`--recipe llama`) holding the same weights (llm_reference.hf.to_hf), decoding with
`generate(do_sample=False, use_cache=True)`; the greedy tokens are checked equal.

    python benchmarks/generate.py            # 256 and 1024 new tokens (minutes)
    python benchmarks/generate.py --quick    # 256 new tokens
    python benchmarks/generate.py --recipe llama --quick

Each timing is the best of --repeats runs (the uncached 1024-token run: one, as it
takes minutes), ours and the peers interleaved so that they share the machine's load.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from llm_reference.generate import generate
from llm_reference.hf import to_hf
from llm_reference.model import GPT, ModelConfig

RECIPES = {
    "gpt2": dict(),
    "llama": dict(position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2,
                  bias=False, tie_weights=False),
}


def timed(fn: Callable[[], list[int]], n: int) -> tuple[float, list[int]]:
    """(seconds, tokens) of one generation run of n tokens."""
    start = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - start
    assert len(out) == n, f"generated {len(out)} tokens, expected {n}"
    return elapsed, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="only 256 new tokens")
    parser.add_argument("--recipe", choices=RECIPES, default="gpt2",
                        help="model recipe, and so the HF peer class (default: gpt2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: 1)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per timing; the best counts (default: 3)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=8192, context_length=1280, n_layer=6, n_head=6,
                         d_model=384, **RECIPES[args.recipe])
    model = GPT(config).eval()
    hf = to_hf(model).eval()
    prompt = torch.randint(0, config.vocab_size, (16,)).tolist()

    def ours(n: int, use_cache: bool = True) -> list[int]:
        return list(generate(model, prompt, n, temperature=0, use_cache=use_cache))

    def peer(n: int) -> list[int]:
        with torch.inference_mode():
            out = hf.generate(torch.tensor([prompt]), max_new_tokens=n,
                              do_sample=False, use_cache=True, pad_token_id=0)
        return out[0, len(prompt):].tolist()

    print(f"greedy generation, batch 1, {args.recipe} recipe, {config.n_layer} layers "
          f"x d_model {config.d_model}, vocab {config.vocab_size}, "
          f"{args.threads} thread(s), {model.num_parameters() / 1e6:.1f} M params")
    ours(8), peer(8)  # warm up
    for n in (256,) if args.quick else (256, 1024):
        cached, uncached, hf_s, outputs = [], [], [], []
        for r in range(args.repeats):
            for times, fn in ((cached, lambda n=n: ours(n)),
                              (hf_s, lambda n=n: peer(n)),
                              (uncached, lambda n=n: ours(n, use_cache=False))):
                if times is not uncached or r == 0 or n < 1024:
                    elapsed, out = timed(fn, n)
                    times.append(elapsed)
                    outputs.append(out)
        same = all(out == outputs[0] for out in outputs)
        ours_tps = n / min(cached)
        for name, peer_s in (("no cache (ours)", uncached), ("HF generate", hf_s)):
            peer_tps = n / min(peer_s)
            print(f"{n:5d} new tokens  ours {ours_tps:8.1f} tok/s  "
                  f"peer {name:<15} {peer_tps:8.1f} tok/s  "
                  f"ratio {ours_tps / peer_tps:6.2f}x  same tokens: {same}")


if __name__ == "__main__":
    main()
