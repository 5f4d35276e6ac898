"""GGUF export: the file reads back with the `gguf` package's reader (tensor names,
shapes, types, the tokenizer and chat template), loads in `transformers`' GGUF
reader with our logits, and the command's bad inputs write nothing."""

from __future__ import annotations

import pytest
import torch

from llm_reference.__main__ import main
from llm_reference.errors import UserError
from llm_reference.tokenizer import Tokenizer

gguf = pytest.importorskip("gguf")
from llm_reference.gguf_export import export_gguf, permute_for_llama_cpp  # noqa: E402

TEXT = ["def add(a, b):\n    return a + b\n", "Hello, world! It's 2024.\n"] * 20
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY = dict(context_length=32, n_layer=2, n_head=4, d_model=64)
RECIPES = {
    "gpt2": dict(TINY),
    "llama": dict(TINY, position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2,
                  bias=False, tie_weights=False),
}


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(TEXT, 300, special_tokens=SPECIALS)


def field(reader, key: str):
    return reader.fields[key].contents()


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("recipe", RECIPES)
def test_gguf_reads_back_with_names_shapes_types_and_metadata(
        random_model, tokenizer, tmp_path, recipe, dtype):
    model = random_model(dict(RECIPES[recipe], vocab_size=tokenizer.vocab_size + 3))
    out = export_gguf(model, tokenizer, tmp_path / "m.gguf", dtype)
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]  # no temporary left
    reader = gguf.GGUFReader(out)
    assert field(reader, "general.architecture") == recipe
    assert field(reader, f"{recipe}.block_count") == 2
    assert field(reader, f"{recipe}.embedding_length") == 64
    assert field(reader, f"{recipe}.context_length") == 32
    tensors = {t.name: t for t in reader.tensors}
    block = ["attn_norm", "attn_output", "ffn_norm", "ffn_up", "ffn_down"]
    block += ["attn_qkv"] if recipe == "gpt2" else [
        "attn_q", "attn_k", "attn_v", "ffn_gate"]
    want = {"token_embd.weight", "output_norm.weight", "output.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(2) for n in block}
    if recipe == "gpt2":
        want |= {"position_embd.weight", "output_norm.bias"} | {
            f"blk.{i}.{n}.bias" for i in range(2) for n in block}
    assert set(tensors) == want
    vocab = model.config.vocab_size
    assert list(tensors["token_embd.weight"].shape) == [64, vocab]  # GGML: (in, rows)
    assert tensors["output_norm.weight"].tensor_type.name == "F32"  # 1-D stays f32
    assert tensors["blk.0.ffn_up.weight"].tensor_type.name == dtype.upper()
    if recipe == "llama":
        assert field(reader, "llama.attention.head_count_kv") == 2
        assert list(tensors["blk.0.attn_k.weight"].shape) == [64, 32]
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == vocab
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "dbrx"  # our default gpt4 regex
    types = field(reader, "tokenizer.ggml.token_type")
    eot = tokenizer.special_tokens["<|endoftext|>"]
    assert tokens[eot] == "<|endoftext|>" and types[eot] == gguf.TokenType.CONTROL
    assert tokens[-1] == f"[PAD{vocab - 1}]" and types[-1] == gguf.TokenType.UNUSED
    assert len(field(reader, "tokenizer.ggml.merges")) == len(tokenizer.merges)
    assert field(reader, "tokenizer.ggml.eos_token_id") == eot
    assert field(reader, "tokenizer.ggml.eot_token_id") == tokenizer.special_tokens[
        "<|im_end|>"]
    assert "<|im_start|>" in field(reader, "tokenizer.chat_template")
    if dtype == "f32":
        data = torch.from_numpy(tensors["blk.1.ffn_down.weight"].data.copy())
        assert torch.equal(data, model.state_dict()["blocks.1.mlp.down.weight"])


def test_llama_q_and_k_are_permuted_to_interleaved_pairs():
    w = torch.arange(8.0)[:, None]  # one head of 8 dims, rotate-half pairs (i, i+4)
    assert permute_for_llama_cpp(w, 1).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_transformers_reads_our_gguf_with_our_logits(random_model, tokenizer,
                                                     tmp_path, recipe):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # transformers' GGUF loader needs it
    model = random_model(dict(RECIPES[recipe], vocab_size=tokenizer.vocab_size + 3))
    export_gguf(model, tokenizer, tmp_path / "m.gguf", "f32")
    # transformers' GGUF reader maps gpt2.context_length to n_ctx, not n_positions
    sizes = {"n_positions": 32} if recipe == "gpt2" else {}
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file="m.gguf", **sizes).eval()
    idx = torch.randint(0, tokenizer.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx)[0], atol=1e-5, rtol=0)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="m.gguf")
    assert hf_tok.encode(TEXT[0]) == tokenizer.encode(TEXT[0])


def test_export_command_writes_gguf(tiny_run, tmp_path, capsys):
    out = tmp_path / "tiny.gguf"
    assert main(["export", "--run", str(tiny_run), "--format", "gguf", "--dtype",
                 "q8_0", "--out", str(out)]) == 0
    assert "GGUF gpt2, q8_0" in capsys.readouterr().out
    assert gguf.GGUFReader(out).fields["general.architecture"].contents() == "gpt2"
    before = out.read_bytes()
    assert main(["export", "--run", str(tiny_run), "--format", "gguf", "--out",
                 str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["export", "--run", str(tiny_run), "--format", "gguf", "--out",
                 str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["export", "--run", str(tiny_run), "--format", "gguf", "--out",
                 str(out), "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]


def test_a_model_gguf_cannot_hold_is_refused(random_model, tokenizer, tmp_path):
    qwen3 = random_model(dict(RECIPES["llama"], qk_norm=True,
                              vocab_size=tokenizer.vocab_size))
    with pytest.raises(UserError, match="convert_hf_to_gguf"):
        export_gguf(qwen3, tokenizer, tmp_path / "m.gguf")
    small = random_model(dict(RECIPES["llama"], vocab_size=10))
    with pytest.raises(UserError, match="the tokenizer has"):
        export_gguf(small, tokenizer, tmp_path / "m.gguf")
    assert not list(tmp_path.iterdir())


def test_llama3_rope_scaling_becomes_llama_cpps_rope_freqs(random_model, tokenizer,
                                                            tmp_path):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
    model = random_model(dict(RECIPES["llama"], vocab_size=tokenizer.vocab_size,
                              rope_scaling=scaling))
    reader = gguf.GGUFReader(export_gguf(model, tokenizer, tmp_path / "m.gguf"))
    freqs = {t.name: t for t in reader.tensors}["rope_freqs.weight"]
    factors = freqs.data.tolist()  # one per pair of a head: 1 = unchanged
    assert len(factors) == 8 and factors[0] == 1.0 and factors[-1] == 8.0
    assert freqs.tensor_type.name == "F32"
