"""generation: sampling (temperature, top-k, top-p) and the KV cache.

Protocol: a module (or any object) with

    top_k_filter(logits, k) -> logits
    top_p_filter(logits, p) -> logits
    sample(logits, temperature, top_k, top_p, generator) -> int
    KVCache(n_layer=, batch_size=, n_kv_head=, head_dim=, max_len=)

The filters take logits (V,) or (B, V) and return the same shape with the tokens
left out set to -inf. top-k keeps the k largest (all of them if k >= V); top-p keeps
the fewest most likely tokens whose probabilities sum to at least p (a token stays
while the mass of the more likely ones is below p, so the most likely always
does).

`sample` picks a token id from logits (V,): temperature 0 is greedy (argmax);
otherwise it samples from softmax(filtered logits / temperature) drawing its
randomness from `generator` (a torch.Generator); top_k and top_p may be None.

`KVCache` is built with keyword arguments and has
    pos: int                                   tokens stored so far
    update(layer, k, v) -> (k_all, v_all)      k, v (B, K, T, D) are the new
        tokens' keys and values; store them at pos .. pos + T - 1 for that layer
        and return all of the layer's keys and values, (B, K, pos + T, D)
    advance(n)                                 pos += n, once every layer wrote
    reset()                                    pos = 0
the interface `llm_reference.model.GPT.forward(idx, kv_cache=…)` uses: the checks
run the reference GPT with your cache.

Reference: `llm_reference.generate` (`top_k_filter`, `top_p_filter`,
`sample_next`) and `llm_reference.model.KVCache`.
Command: python -m llm_reference check generation --impl my_generate
Sampling is checked by frequencies: 2000 seeded draws, each token's share within
0.04 of its probability.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..generate import sample_next, top_k_filter, top_p_filter
from ..model import GPT, KVCache, ModelConfig
from .runner import Node, as_tensor, expect_close, expect_equal, fail, generator, randn


def reference_kv_cache(*, n_layer: int, batch_size: int, n_kv_head: int,
                       head_dim: int, max_len: int) -> KVCache:
    """model.KVCache, whose config only needs these sizes."""
    config = ModelConfig(n_layer=n_layer, n_head=n_kv_head, n_kv_head=n_kv_head,
                         d_model=n_kv_head * head_dim, context_length=max_len)
    return KVCache(config, batch_size=batch_size)


node = Node(
    id="generation",
    title="Decoding strategies, KV cache",
    protocol=__doc__,
    example="my_generate",
    reference=lambda: SimpleNamespace(
        top_k_filter=top_k_filter, top_p_filter=top_p_filter, sample=sample_next,
        KVCache=reference_kv_cache),
    parts=("top_k_filter", "top_p_filter", "sample", "KVCache"),
)

# ----------------------------------------------------------------- filters


def kept(logits: torch.Tensor) -> list[int]:
    return [i for i, x in enumerate(logits.tolist()) if x != float("-inf")]


@node.check("top_k_matches_reference", uses=["top_k_filter"], section="Top-k",
            hint="find the k-th largest logit (torch.topk) and set every smaller "
                 "one to -inf")
def top_k_matches_reference(top_k: Callable) -> None:
    logits = randn(3, 20, seed=1)
    for k in (1, 5):
        expect_close(top_k(logits.clone(), k), top_k_filter(logits, k),
                     f"top_k_filter(logits (3, 20), {k})")
    expect_close(top_k(logits[0].clone(), 5), top_k_filter(logits[0], 5),
                 "top_k_filter(logits (20,), 5)")


@node.check("top_k_larger_than_vocab", uses=["top_k_filter"], section="Top-k",
            hint="k >= V keeps every token: clamp k to V")
def top_k_larger_than_vocab(top_k: Callable) -> None:
    logits = randn(10, seed=2)
    expect_close(top_k(logits.clone(), 50), logits, "top_k_filter(logits (10,), 50)")


@node.check("top_p_matches_reference", uses=["top_p_filter"], section="Top-p",
            hint="sort by probability, keep a token while the mass before it is "
                 "below p, and put the logits back in vocabulary order")
def top_p_matches_reference(top_p: Callable) -> None:
    logits = randn(3, 20, seed=3)
    for p in (0.5, 0.9):
        expect_close(top_p(logits.clone(), p), top_p_filter(logits, p),
                     f"top_p_filter(logits (3, 20), {p})")


@node.check("top_p_boundary", uses=["top_p_filter"], section="Top-p",
            hint="keep the token that crosses p: the kept mass must reach p")
def top_p_boundary(top_p: Callable) -> None:
    probs = [0.05, 0.5, 0.15, 0.3]  # sorted: 0.5, 0.3, 0.15, 0.05
    logits = torch.tensor(probs).log()
    for p, expected in ((0.75, [1, 3]), (0.85, [1, 2, 3]), (1e-6, [1]),
                        (1.0, [0, 1, 2, 3])):
        got = kept(as_tensor(top_p(logits.clone(), p), "logits"))
        expect_equal(got, expected, f"the tokens kept by p = {p} from "
                                    f"probabilities {probs}")


# ---------------------------------------------------------------- sampling

LOGITS = torch.tensor([2.0, 1.0, 0.5, -1.0])
DRAWS = 2000


def draw(sample: Callable, temperature: float, top_k: int | None = None,
         top_p: float | None = None, n: int = DRAWS, seed: int = 0) -> list[int]:
    rng = generator(seed)
    return [int(sample(LOGITS.clone(), temperature, top_k, top_p, rng))
            for _ in range(n)]


def expect_frequencies(tokens: list[int], probs: torch.Tensor, what: str) -> None:
    shares = torch.bincount(torch.tensor(tokens), minlength=len(probs)).float()
    shares = shares[:len(probs)] / len(tokens)
    for i, (got, p) in enumerate(zip(shares.tolist(), probs.tolist())):
        if abs(got - p) > 0.04:
            fail(f"{what}: token {i} drawn {got:.0%} of the time, expected "
                 f"{p:.0%}")


@node.check("greedy", uses=["sample"], section="Temperature",
            hint="temperature 0 means argmax, with no randomness (do not divide "
                 "by 0)")
def greedy(sample: Callable) -> None:
    for seed in range(5):
        logits = randn(30, seed=seed)
        got = int(sample(logits.clone(), 0.0, None, None, generator(seed)))
        expect_equal(got, int(logits.argmax()), f"sample(logits, temperature=0) "
                                                f"(seed {seed})")


@node.check("temperature", uses=["sample"], section="Temperature",
            hint="sample from softmax(logits / temperature) with "
                 "torch.multinomial(probs, 1, generator=generator)")
def temperature(sample: Callable) -> None:
    for t in (1.0, 0.5):
        expect_frequencies(draw(sample, t), F.softmax(LOGITS / t, dim=-1),
                           f"temperature {t}")


@node.check("sample_top_k", uses=["sample"], section="Top-k",
            hint="filter the logits with top-k before the softmax")
def sample_top_k(sample: Callable) -> None:
    probs = F.softmax(top_k_filter(LOGITS, 2), dim=-1)
    expect_frequencies(draw(sample, 1.0, top_k=2), probs, "top_k = 2")


@node.check("sample_top_p", uses=["sample"], section="Top-p",
            hint="filter the logits with top-p before the softmax")
def sample_top_p(sample: Callable) -> None:
    probs = F.softmax(top_p_filter(LOGITS, 0.8), dim=-1)
    expect_frequencies(draw(sample, 1.0, top_p=0.8), probs, "top_p = 0.8")


@node.check("seeded", uses=["sample"], section="Temperature",
            hint="draw every random number from the generator you are given")
def seeded(sample: Callable) -> None:
    first = draw(sample, 1.0, n=50, seed=7)
    expect_equal(draw(sample, 1.0, n=50, seed=7), first,
                 "50 draws with a generator seeded 7, the second time")
    if draw(sample, 1.0, n=50, seed=8) == first:
        fail("generators seeded 7 and 8 gave the same 50 draws")


# ---------------------------------------------------------------- KV cache

SIZES = dict(n_layer=2, batch_size=2, n_kv_head=2, head_dim=4, max_len=8)


def kv(T: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return randn(2, 2, T, 4, seed=seed), randn(2, 2, T, 4, seed=seed + 1)


def expect_update(cache: Any, layer: int, new: tuple, expected: tuple,
                  what: str) -> None:
    out = cache.update(layer, new[0].clone(), new[1].clone())
    for name, got, want in zip("kv", out, expected):
        expect_close(got, want, f"{name} returned by update({layer}, …) {what}")


@node.check("kv_cache_appends", uses=["KVCache"], section="The KV cache",
            hint="write the new keys and values at pos .. pos + T - 1 of that "
                 "layer and return positions 0 .. pos + T - 1")
def kv_cache_appends(kv_cache: Callable) -> None:
    cache = kv_cache(**SIZES)
    first = [kv(3, seed=10 * layer) for layer in range(2)]
    for layer in range(2):
        expect_update(cache, layer, first[layer], first[layer], "with 3 tokens")
    cache.advance(3)
    expect_equal(cache.pos, 3, "pos after advance(3)")
    for layer in range(2):
        new = kv(1, seed=10 * layer + 5)
        everything = tuple(torch.cat((a, b), dim=2) for a, b in zip(first[layer], new))
        expect_update(cache, layer, new, everything, "after 3 cached tokens")


@node.check("kv_cache_reset", uses=["KVCache"], section="The KV cache",
            hint="reset() sets pos back to 0, so the next update starts over")
def kv_cache_reset(kv_cache: Callable) -> None:
    cache = kv_cache(**SIZES)
    for layer in range(2):
        cache.update(layer, *kv(4, seed=layer))
    cache.advance(4)
    cache.reset()
    expect_equal(cache.pos, 0, "pos after reset()")
    new = kv(2, seed=20)
    expect_update(cache, 0, new, new, "after reset()")


MODEL = ModelConfig(vocab_size=32, context_length=12, n_layer=2, n_head=4,
                    n_kv_head=2, d_model=16, position="rope", norm="rmsnorm",
                    mlp="swiglu", bias=False)


@node.check("kv_cache_in_the_model", uses=["KVCache"], section="The KV cache",
            hint="GPT.forward reads cache.pos, calls update(layer, k, v) in every "
                 "layer, then advance(T): cached logits must equal a full pass")
def kv_cache_in_the_model(kv_cache: Callable) -> None:
    torch.manual_seed(0)
    model = GPT(MODEL).eval()
    idx = torch.randint(0, 32, (1, MODEL.context_length), generator=generator(1))
    cache = kv_cache(n_layer=MODEL.n_layer, batch_size=1, n_kv_head=MODEL.kv_heads,
                     head_dim=MODEL.head_dim, max_len=MODEL.context_length)
    with torch.no_grad():
        full, _ = model(idx)  # (1, T, V)
        prompt, _ = model(idx[:, :5], kv_cache=cache)  # prefill 5 tokens
        steps = [model(idx[:, t:t + 1], kv_cache=cache)[0]
                 for t in range(5, MODEL.context_length)]  # up to the maximum length
    cached = torch.cat([prompt, *steps], dim=1)
    expect_close(cached, full, "logits with your cache (prefill 5, then 1 token at "
                               "a time up to max_len)")
