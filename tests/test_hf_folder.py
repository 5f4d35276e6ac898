"""Hugging Face folders: export ours for `transformers` (no custom code), import
tiny random HF models of every supported family, and load every folder we write."""

from __future__ import annotations

import json

import pytest
import torch

from llm_reference.__main__ import main
from llm_reference.artifacts import load_model
from llm_reference.chat import encode_chat, format_chat
from llm_reference.generate import generate
from llm_reference.hf_folder import export_hf
from llm_reference.tokenizer import PATTERNS, Tokenizer

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TEXT = ["def add(a, b):\n    return a + b\n", "Hello, world! It's 2024.\n",
        "class Point:\n    x: int = 0\n    y: int = 1\n"] * 20
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Add two numbers."},
            {"role": "assistant", "content": "def add(a, b): return a + b"}]
TINY = dict(context_length=32, n_layer=2, n_head=4, d_model=32)
RECIPES = {
    "gpt2": dict(TINY),
    "llama": dict(TINY, position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2,
                  bias=False, tie_weights=False),
}


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(TEXT, 300, special_tokens=SPECIALS)


def exported(random_model, tmp_path, tokenizer, recipe: str):
    ours = random_model(dict(RECIPES[recipe], vocab_size=tokenizer.vocab_size + 3))
    out = export_hf(ours, tokenizer, tmp_path / "hf")
    return ours, out


# ------------------------------------------------------------------------- export


@pytest.mark.parametrize("recipe", RECIPES)
def test_export_loads_in_transformers_with_the_same_logits(random_model, tmp_path,
                                                           tokenizer, recipe):
    ours, out = exported(random_model, tmp_path, tokenizer, recipe)
    assert {p.name for p in out.iterdir()} >= {
        "config.json", "model.safetensors", "generation_config.json",
        "tokenizer.json", "tokenizer_config.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temporary folder left
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert hf.config.model_type == recipe
    idx = torch.randint(0, tokenizer.vocab_size, (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx)[0], atol=1e-5, rtol=1e-5)
    prompt = tokenizer.encode("def add(")
    mine = generate(ours, prompt, 12, temperature=0.0)
    theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                         eos_token_id=None)
    assert theirs[0].tolist() == prompt + list(mine)


def test_exported_tokenizer_and_chat_template_match_ours(random_model, tmp_path,
                                                         tokenizer):
    _, out = exported(random_model, tmp_path, tokenizer, "llama")
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    for text in TEXT[:3] + ["héllo  wörld\n\n\tx"]:
        assert hf_tok.encode(text) == tokenizer.encode(text)
        assert hf_tok.decode(tokenizer.encode(text)) == text
    assert hf_tok.eos_token == "<|endoftext|>"
    for prompt in (False, True):
        text = hf_tok.apply_chat_template(MESSAGES, tokenize=False,
                                          add_generation_prompt=prompt)
        assert text == format_chat(MESSAGES, add_generation_prompt=prompt)
    ids = hf_tok.apply_chat_template(MESSAGES[:2], add_generation_prompt=True,
                                     return_dict=False)
    assert ids == encode_chat(tokenizer, MESSAGES[:2])
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [tokenizer.special_tokens[t] for t in
                                          ("<|endoftext|>", "<|im_end|>")]


def test_export_refuses_a_recipe_without_an_hf_family(random_model, tmp_path,
                                                      tokenizer):
    ours = random_model(dict(TINY, position="rope", vocab_size=tokenizer.vocab_size))
    with pytest.raises(Exception, match="position='rope', norm='layernorm'"):
        export_hf(ours, tokenizer, tmp_path / "hf")
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------- import


def hf_tokenizer(kind: str, path) -> int:
    """Train a tiny byte-level BPE with HF `tokenizers` as `kind` models ship it:
    GPT-2's ByteLevel regex; Llama 3's Split regex, ByteLevel and ignore_merges; or
    Qwen2's NFC normalizer, Split regex and ByteLevel. Returns its size."""
    from tokenizers import (
        Regex,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=kind == "llama3"))
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PATTERNS[kind]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(TEXT, trainer)
    tok.save(str(path / "tokenizer.json"))
    return tok.get_vocab_size()


FAMILIES = {  # model_type: (config class, tokenizer regex, config fields)
    "gpt2": ("GPT2Config", "gpt2", dict(n_positions=32, n_embd=32, n_layer=2,
                                        n_head=4)),
    "llama": ("LlamaConfig", "llama3", dict(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        tie_word_embeddings=False)),
    "mistral": ("MistralConfig", "llama3", dict(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
        sliding_window=32, head_dim=8)),
    "qwen2": ("Qwen2Config", "qwen2", dict(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", "qwen2", dict(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=32, tie_word_embeddings=True)),
}


def tiny_hf(kind: str, path, vocab_extra: int = 4):
    """A random HF model of family `kind` saved with its tokenizer in `path`."""
    cls_name, pattern, fields = FAMILIES[kind]
    path.mkdir(parents=True, exist_ok=True)
    n_vocab = hf_tokenizer(pattern, path)
    config = getattr(transformers, cls_name)(vocab_size=n_vocab + vocab_extra,
                                             **fields)
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.2 if p.dim() > 1 else 1.0)
    hf.save_pretrained(path)
    return hf


@pytest.mark.parametrize("kind", FAMILIES)
def test_import_gives_a_run_with_the_same_logits(tmp_path, kind):
    hf = tiny_hf(kind, tmp_path / "hf")
    assert main(["import", "--hf", str(tmp_path / "hf"), "--out",
                 str(tmp_path / "run")]) == 0
    model, tok, info = load_model(tmp_path / "run")
    assert info["kind"] == "run" and info["step"] == 0
    idx = torch.randint(0, hf.config.vocab_size, (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-5,
                                   rtol=1e-5)
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tmp_path / "hf" / "tokenizer.json"))
    for text in TEXT[:3] + ["cafe\u0301 add(a) Hello  x\n\n 12345"]:
        assert tok.encode(text) == hf_tok.encode(text), text
    # the HF folder itself loads as well
    direct, _, info = load_model(tmp_path / "hf")
    assert info["kind"] == "hf"
    with torch.no_grad():
        torch.testing.assert_close(direct(idx)[0], model(idx)[0])


@pytest.mark.parametrize("kind", ["gpt2", "qwen3"])
def test_imported_run_generates_and_exports_back(tmp_path, capsys, kind):
    tiny_hf(kind, tmp_path / "hf")
    assert main(["import", "--hf", str(tmp_path / "hf"), "--out",
                 str(tmp_path / "run")]) == 0
    assert "a run folder that generate" in capsys.readouterr().out
    assert main(["generate", "--run", str(tmp_path / "run"), "--prompt", "def ",
                 "--max-new-tokens", "5", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("def ")
    assert main(["export", "--run", str(tmp_path / "run"), "--out",
                 str(tmp_path / "back")]) == 0
    a = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    b = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    assert b.config.model_type == kind
    idx = torch.randint(0, a.config.vocab_size, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(a(idx).logits, b(idx).logits)


def test_import_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    hf_dir = tmp_path / "hf"
    tiny_hf("llama", hf_dir)
    capsys.readouterr()

    def fails(message: str) -> None:
        assert main(["import", "--hf", str(hf_dir), "--out",
                     str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "run").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]

    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    fails("model_type = 'bert' is not supported; supported: gpt2, llama, mistral")
    (hf_dir / "config.json").write_text(json.dumps({**config, "vocab_size": 100}))
    fails("the tokenizer has")
    (hf_dir / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    fails("has shape")
    (hf_dir / "config.json").write_text(json.dumps({**config,
                                                    "tie_word_embeddings": True}))
    fails("tensor lm_head.weight is not part of the model")
    (hf_dir / "config.json").write_text(json.dumps(config))
    spec = json.loads((hf_dir / "tokenizer.json").read_text())
    (hf_dir / "tokenizer.json").write_text(json.dumps(
        {**spec, "model": {**spec["model"], "type": "Unigram"}}))
    fails("nor can the tokenizers library read it")
    (hf_dir / "tokenizer.json").write_text(json.dumps(spec))
    (hf_dir / "model.safetensors").unlink()
    fails("no model.safetensors")


# ------------------------------------------------------------ every folder loads


def test_every_folder_we_write_loads(random_model, tmp_path, tokenizer, capsys):
    from llm_reference.quantize import quantize_model, save_quantized
    from llm_reference.release import RELEASE_FORMAT

    ours = random_model(dict(RECIPES["gpt2"], vocab_size=tokenizer.vocab_size))
    idx = torch.randint(0, tokenizer.vocab_size, (1, 16))
    with torch.no_grad():
        expected = ours(idx)[0]
    export_hf(ours, tokenizer, tmp_path / "hf")
    int8 = random_model(dict(RECIPES["gpt2"], vocab_size=tokenizer.vocab_size))
    save_quantized(int8, quantize_model(int8), tmp_path / "int8")
    tokenizer.save(tmp_path / "int8")
    release = tmp_path / "release"
    release.mkdir()
    from safetensors.torch import save_model
    save_model(ours, str(release / "model.safetensors"))
    (release / "config.json").write_text(json.dumps(ours.config.to_dict()))
    (release / "manifest.json").write_text(json.dumps({"format": RELEASE_FORMAT,
                                                       "step": 7}))
    tokenizer.save(release)

    model, _, info = load_model(tmp_path / "hf")
    assert info == {"kind": "hf", "path": str(tmp_path / "hf"), "step": None,
                    "config": {"train": None}}
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], expected)
    model, _, info = load_model(release)
    assert (info["kind"], info["step"]) == ("release", 7)
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], expected)
    model, _, info = load_model(tmp_path / "int8")
    assert info["kind"] == "quantized"
    assert model.blocks[0].attn.qkv.weight_int8.dtype == torch.int8  # stays int8
    for folder in ("hf", "int8", "release"):
        assert main(["generate", "--run", str(tmp_path / folder), "--prompt", "def",
                     "--max-new-tokens", "3"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("files, message", [
    ({"meta.json": "{}"}, "is a prepared data folder (meta.json), not a model"),
    ({"adapter.json": "{}"}, "holds LoRA adapters only"),
    ({"state.json": "{}", "model.safetensors": ""}, "is one checkpoint; pass its run"),
    ({}, "holds no model"),
])
def test_a_folder_that_holds_no_model_says_what_it_is(tmp_path, capsys, files,
                                                       message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert main(["generate", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "pass a run folder (checkpoints/)" in err
    assert err.count("\n") == 1


# ---------------------------------------------- SentencePiece-style tokenizers


LLAMA2_TEMPLATE = (  # Llama 2's chat format, without its system-prompt branch
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
    "{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}"
    "{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}")


def sentencepiece_tokenizer(path) -> int:
    """A tiny Llama 2 style tokenizer.json built offline with `tokenizers`: BPE over
    "▁"-marked words (Metaspace), byte fallback for characters it never saw, and
    <unk>, <s>, </s> as special tokens. Returns its size."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁",
                                                 prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>",
                                                                  "</s>"],
                                  show_progress=False)
    tok.train_from_iterator(TEXT, trainer)
    spec = json.loads(tok.to_str())["model"]
    vocab, merges = spec["vocab"], spec["merges"]  # merges: ["a", "b"] pairs
    for b in range(256):  # the byte tokens <0x00> ... <0xFF> of byte fallback
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    sp = tokenizers.Tokenizer(models.BPE(
        vocab=vocab, merges=[tuple(m) for m in merges],
        unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    sp.add_special_tokens(["<unk>", "<s>", "</s>"])
    sp.pre_tokenizer = tok.pre_tokenizer
    sp.decoder = decoders.Sequence([decoders.Replace("▁", " "),
                                    decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    sp.save(str(path / "tokenizer.json"))
    return sp.get_vocab_size()


def test_import_keeps_a_sentencepiece_tokenizer_behind_our_interface(tmp_path,
                                                                      capsys):
    from llm_reference.hf_tokenizer import HFTokenizer

    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    n_vocab = sentencepiece_tokenizer(hf_dir)
    config = transformers.LlamaConfig(
        vocab_size=n_vocab, hidden_size=32, intermediate_size=48,
        num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=32)
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(config).eval()
    hf.save_pretrained(hf_dir)
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
        "eos_token": "</s>", "chat_template": LLAMA2_TEMPLATE}))
    assert main(["import", "--hf", str(hf_dir), "--out", str(tmp_path / "run")]) == 0
    model, tok, _ = load_model(tmp_path / "run")
    assert isinstance(tok, HFTokenizer)
    auto = transformers.AutoTokenizer.from_pretrained(hf_dir)
    chat = MESSAGES[1:] + [{"role": "user", "content": "And three?"}]
    text = auto.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<s>[INST] Add two numbers. [/INST]")
    assert encode_chat(tok, chat) == auto.encode(text, add_special_tokens=False)
    assert tok.special_tokens == {"<unk>": 0, "<s>": 1, "</s>": 2}
    assert tok.vocab_size == n_vocab
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(hf_dir / "tokenizer.json"))
    for text in TEXT[:2] + ["héllo wörld ✓ def add(a)"]:  # é, ö, ✓: byte fallback
        ids = tok.encode(text)
        assert ids == hf_tok.encode(text, add_special_tokens=False), text
        assert tok.decode(ids) == text
    assert "<0xC3>" in hf_tok.convert_ids_to_tokens(tok.encode("é"))
    # special-token text in a prompt stays text unless allowed
    assert 2 not in tok.encode("a</s>b") and 2 in tok.encode("a</s>b", "all")
    assert tok.encode("a</s>b", {"</s>"}).count(2) == 1
    idx = torch.tensor([tok.encode(TEXT[0])])
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-5,
                                   rtol=1e-5)
    capsys.readouterr()
    assert main(["generate", "--run", str(tmp_path / "run"), "--prompt", "def",
                 "--max-new-tokens", "4", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("def")
    assert main(["export", "--run", str(tmp_path / "run"), "--out",
                 str(tmp_path / "back")]) == 0  # the tokenizer goes back as it came
    back = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    assert back.encode(TEXT[0], add_special_tokens=False) == tok.encode(TEXT[0])
