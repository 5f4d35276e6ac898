"""Tests for llm_reference.generate: sampling filters, cache equivalence, stops,
UTF-8-safe streaming and the `generate` command."""

import pytest
import torch

from llm_reference.errors import UserError
from llm_reference.generate import (
    find_stop,
    generate,
    generate_text,
    sample_next,
    sample_rows,
    top_k_filter,
    top_p_filter,
)
from llm_reference.model import GPT, ModelConfig

TINY = dict(vocab_size=97, context_length=32, n_layer=2, n_head=4, d_model=32)
RECIPES = {
    "gpt2": dict(TINY),
    "llama-gqa": dict(TINY, position="rope", norm="rmsnorm", mlp="swiglu",
                      n_kv_head=2, bias=False, tie_weights=False),
}
PARROT_TEXT = "hello wörld, 3€ each; ünïcode → fine. "  # 45 bytes; multi-byte chars


class ByteTokenizer:
    """One token per byte: decoding a cut inside a character gives U+FFFD."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def random_model(recipe: str) -> GPT:
    torch.manual_seed(0)
    model = GPT(ModelConfig(**RECIPES[recipe])).eval()
    with torch.no_grad():  # larger weights: less repetitive greedy output
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model


@pytest.fixture(scope="module")
def parrot() -> GPT:
    """A byte-level model trained (2 s) to recite PARROT_TEXT over and over."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=256, context_length=32, n_layer=2, n_head=2,
                            d_model=64))
    data = torch.tensor(list(PARROT_TEXT.encode()) * 40)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        starts = torch.randint(0, len(data) - 33, (16,), generator=g).tolist()
        x = torch.stack([data[s:s + 32] for s in starts])
        y = torch.stack([data[s + 1:s + 33] for s in starts])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def naive_greedy(model: GPT, prompt: list[int], n: int) -> list[int]:
    """The textbook loop: run the (cropped) sequence, take the argmax, append."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            window = torch.tensor([ids[-model.config.context_length:]])
            ids.append(int(model(window)[0][0, -1].argmax()))
    return ids[len(prompt):]


# -------------------------------------------------------------------- filters


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([1.0, 5.0, 3.0, 4.0, 2.0])
    kept = top_k_filter(logits, 2)
    assert torch.isfinite(kept).tolist() == [False, True, False, True, False]
    assert torch.equal(kept[[1, 3]], logits[[1, 3]])
    assert torch.equal(top_k_filter(logits, 10), logits)  # k > V keeps all


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    assert torch.isfinite(top_p_filter(logits, 0.8)).tolist() == [True, True, False,
                                                                  False]
    assert torch.isfinite(top_p_filter(logits, 0.81)).tolist() == [True, True, True,
                                                                   False]
    assert torch.isfinite(top_p_filter(logits, 0.1)).tolist() == [True, False, False,
                                                                  False]


@pytest.mark.parametrize("k, p", [(1, 0.05), (7, 0.5), (50, 0.9), (100, 0.99)])
def test_filters_match_hf_warpers(k, p):
    lp = pytest.importorskip("transformers.generation.logits_process")
    torch.manual_seed(k)
    logits = torch.randn(3, 100) * 3
    hf_k = lp.TopKLogitsWarper(k)(None, logits.clone())
    hf_p = lp.TopPLogitsWarper(p)(None, logits.clone())
    assert torch.equal(top_k_filter(logits, k), hf_k)
    assert torch.equal(torch.isfinite(top_p_filter(logits, p)), torch.isfinite(hf_p))


def test_sampling_follows_softmax_of_logits_over_temperature():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    g = torch.Generator().manual_seed(0)
    for temperature in (0.5, 1.0, 2.0):
        draws = [sample_next(logits, temperature, generator=g) for _ in range(4000)]
        freq = torch.bincount(torch.tensor(draws), minlength=4).float() / 4000
        expected = torch.softmax(logits / temperature, dim=-1)
        assert (freq - expected).abs().max() < 0.03


def test_greedy_and_top_k_1_pick_the_argmax():
    logits = torch.randn(50)
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, 0.0) == int(logits.argmax())
    assert sample_next(logits, 1.5, top_k=1, generator=g) == int(logits.argmax())


# -------------------------------------------------------------- the main loop


@pytest.mark.parametrize("recipe", RECIPES)
def test_greedy_same_with_and_without_cache(recipe):
    model = random_model(recipe)
    prompt = [3, 14, 15, 92, 65]
    # 60 new tokens with a context of 32: also covers the cache's re-prefill
    cached = list(generate(model, prompt, 60, temperature=0, use_cache=True))
    uncached = list(generate(model, prompt, 60, temperature=0, use_cache=False))
    assert cached == uncached == naive_greedy(model, prompt, 60)
    assert len(set(cached)) > 5  # not a degenerate constant output


@pytest.mark.parametrize("recipe", RECIPES)
def test_seeded_sampling_is_reproducible(recipe):
    model = random_model(recipe)
    options = dict(temperature=1.0, top_k=20, top_p=0.9, seed=7)
    a = list(generate(model, [1, 2, 3], 40, **options))
    b = list(generate(model, [1, 2, 3], 40, **options))
    c = list(generate(model, [1, 2, 3], 40, **options, use_cache=False))
    d = list(generate(model, [1, 2, 3], 40, **dict(options, seed=8)))
    assert a == b == c and a != d


def test_prompt_longer_than_context_is_cropped():
    model = random_model("llama-gqa")
    prompt = list(range(40))  # context is 32
    out = list(generate(model, prompt, 5, temperature=0))
    assert out == list(generate(model, prompt[-32:], 5, temperature=0))
    assert out == naive_greedy(model, prompt, 5)


def test_matches_hf_generate():
    transformers = pytest.importorskip("transformers")
    from llm_reference.hf import to_hf

    model = random_model("llama-gqa")
    hf = to_hf(model).eval()
    prompt = [3, 14, 15, 92, 65]
    out = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False,
                      use_cache=True, pad_token_id=0)
    assert isinstance(hf, transformers.LlamaForCausalLM)
    assert out[0, len(prompt):].tolist() == list(generate(model, prompt, 20,
                                                          temperature=0))


def test_stop_ids_end_generation_and_are_not_yielded():
    model = random_model("gpt2")
    full = list(generate(model, [1, 2], 30, temperature=0))
    stop_at = full[10]
    first = full.index(stop_at)
    assert list(generate(model, [1, 2], 30, temperature=0,
                         stop_ids=[stop_at])) == full[:first]


def test_max_new_tokens_and_mode_restored():
    model = random_model("gpt2").train()
    assert len(list(generate(model, [5], 7, temperature=0))) == 7
    assert list(generate(model, [5], 0)) == []
    assert model.training


@pytest.mark.parametrize("options, message", [
    (dict(temperature=-1.0), "temperature"), (dict(top_k=0), "top_k"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
])
def test_bad_options_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        generate(random_model("gpt2"), [1], 5, **options)


def test_bad_prompts_are_user_errors():
    model = random_model("gpt2")
    with pytest.raises(UserError, match="empty"):
        generate(model, [], 5)
    with pytest.raises(UserError, match="outside the vocabulary"):
        generate(model, [97], 5)


# ------------------------------------------------------ stop strings and text


def test_find_stop_holds_back_possible_beginnings():
    assert find_stop("abc\n\nxyz", ["\n\n"]) == (3, 3)
    assert find_stop("abc\n", ["\n\n"]) == (None, 3)
    assert find_stop("abc<|en", ["<|end|>", "###"]) == (None, 3)
    assert find_stop("abc", ["<|end|>"]) == (None, 3)
    assert find_stop("a##b###", ["###", "b#"]) == (3, 3)  # the earliest match wins
    assert find_stop("3\ufffd", []) == (None, 1)  # an unfinished character
    assert find_stop("ab\ufffd", ["bc"]) == (None, 1)


def test_parrot_recites(parrot):
    prompt = list(PARROT_TEXT.encode()[:6])
    out = list(generate(parrot, prompt, 90, temperature=0))
    expected = (PARROT_TEXT * 3).encode()[6:96]
    assert bytes(out) == expected
    assert bytes(list(generate(parrot, prompt, 90, temperature=0,
                               use_cache=False))) == expected


def test_text_stream_is_utf8_safe(parrot):
    tok = ByteTokenizer()
    prompt = tok.encode("hello")
    pieces = list(generate_text(parrot, tok, prompt, 80, temperature=0))
    ids = list(generate(parrot, prompt, 80, temperature=0))
    assert "".join(pieces) == tok.decode(ids)
    assert all("\ufffd" not in piece for piece in pieces)
    assert "3€ each" in "".join(pieces)


@pytest.mark.parametrize("stop", [["€ each"], ["ünï", "→"], ["fine. h"]])
def test_text_stops_exactly_before_a_stop_string(parrot, stop):
    tok = ByteTokenizer()
    text = "".join(generate_text(parrot, tok, tok.encode("hello"), 80, stop=stop,
                                 temperature=0))
    full = tok.decode(generate(parrot, tok.encode("hello"), 80, temperature=0))
    first = min(full.find(s) for s in stop)
    assert text == full[:first]


def test_token_stream_stops_before_a_stop_string(parrot):
    tok = ByteTokenizer()
    prompt = tok.encode("hello")
    ids = list(generate(parrot, prompt, 80, temperature=0, stop=["€ each"],
                        tokenizer=tok))
    assert tok.decode(ids) == " wörld, 3"  # "€" is 3 byte tokens, all held back


def test_stop_string_that_never_comes_releases_everything(parrot):
    tok = ByteTokenizer()
    prompt = tok.encode("hello")
    plain = list(generate(parrot, prompt, 50, temperature=0))
    held = list(generate(parrot, prompt, 50, temperature=0, stop=["fine!"],
                         tokenizer=tok))
    assert held == plain


# ------------------------------------------------------------------ command


def test_cli_generates_from_a_run(tmp_path, capsys):
    checkpoint = pytest.importorskip("llm_reference.checkpoint")
    tokenizer = pytest.importorskip("llm_reference.tokenizer")
    from llm_reference.__main__ import main

    tok = tokenizer.Tokenizer.train(["def f(x):\n    return x\n"] * 20, vocab_size=300)
    run = tmp_path / "run"
    run.mkdir()
    tok.save(run / "tokenizer.json")
    cfg = ModelConfig(**dict(TINY, vocab_size=tok.vocab_size))
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters())
    checkpoint.save_checkpoint(run, 3, model, opt, {"config": {"model": cfg.to_dict()}},
                               keep_last=1)
    args = ["generate", "--run", str(run), "--prompt", "def ", "--max-new-tokens",
            "12", "--temperature", "0"]
    assert main(args) == 0
    cached = capsys.readouterr().out
    assert main(args + ["--no-cache", "--stream"]) == 0
    assert capsys.readouterr().out == cached
    assert cached.startswith("def ") and len(cached) > len("def \n")
    assert main(args + ["--top-p", "2"]) == 2
    assert "top_p = 2.0" in capsys.readouterr().err
    assert main(["generate", "--run", str(tmp_path / "nope")]) == 2


def test_cli_help_explains_every_option(capsys):
    from llm_reference.__main__ import main

    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    for option in ("--run", "--prompt", "--max-new-tokens", "--temperature", "--top-k",
                   "--top-p", "--seed", "--stop", "--stream", "--no-cache"):
        assert option in out


def test_sample_rows_draws_each_token_with_its_probability():
    # inverse transform sampling: over evenly spread u in [0, 1), each token wins
    # a share of draws equal to its probability, to within one draw
    logits = torch.tensor([2.0, 0.5, -1.0, 1.0])
    n = 10_000
    u = (torch.arange(n) + 0.5) / n
    rows = logits.expand(n, 4)
    ones = torch.ones(n)
    tokens = sample_rows(rows, ones, torch.full((n,), 4), ones, u)
    counts = torch.bincount(tokens, minlength=4).float()
    assert torch.allclose(counts / n, torch.softmax(logits, -1), atol=1 / n)


def test_sample_rows_applies_each_row_s_settings():
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    V, u = 50, torch.rand(4)
    # greedy, top-k 1, top-k 3, top-p 0.5: each row keeps only what its filter keeps
    temperature = torch.tensor([0.0, 1.0, 1.0, 1.0])
    top_k = torch.tensor([V, 1, 3, V])
    top_p = torch.tensor([1.0, 1.0, 1.0, 0.5])
    for _ in range(20):
        tokens = sample_rows(logits, temperature, top_k, top_p, torch.rand(4))
        assert tokens[0] == logits[0].argmax() and tokens[1] == logits[1].argmax()
        assert top_k_filter(logits[2], 3)[tokens[2]] > float("-inf")
        assert top_p_filter(logits[3], 0.5)[tokens[3]] > float("-inf")
    assert sample_rows(logits, temperature, top_k, top_p, u).shape == (4,)
