"""GGUF export: one file that llama.cpp, Ollama and LM Studio run.

GGUF is llama.cpp's format: a header of typed key-value metadata (the architecture's
sizes, the tokenizer, the chat template) followed by named tensors, each f32, f16 or
a block-quantized type such as q8_0 (blocks of 32 weights, one f16 scale each: the
per-row scheme of quantize.py with rows cut into pieces of 32). We write it with the
`gguf` package, the writer llama.cpp's own `convert_hf_to_gguf.py` uses, and follow
that converter's conventions, so llama.cpp reads our file as one of its own:

- Llama recipe -> architecture `llama`: q, k and v as three tensors, and q and k
  permuted back from the "rotate half" RoPE layout (ours and HF's) to the
  interleaved pairs of Meta's original code, which llama.cpp's `llama` uses.
- GPT-2 recipe -> architecture `gpt2`: q, k and v fused (`attn_qkv`), biases,
  learned positions, the output head written out even when it is tied.
- Tokenizer: `tokenizer.ggml.model = "gpt2"` (byte-level BPE): every token's
  byte-level text, its type (normal, control for special tokens, unused for padding
  ids past the tokenizer), the merges in rank order, and `tokenizer.ggml.pre`, the
  name under which llama.cpp knows our pre-tokenizer regex.
- 1-D tensors (norms, biases) stay f32 whatever the file type, as in the converter.

The file is written under a temporary name and renamed at the end.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from .chat import ENDOFTEXT, IM_END, IM_START
from .errors import UserError
from .hf import family
from .hf_folder import CHAT_TEMPLATE
from .model import GPT, ModelConfig, llama3_inv_freq
from .tokenizer import Tokenizer, _bytes_to_text

DTYPES = ("f32", "f16", "q8_0")
# Our pre-tokenizer regex -> the llama.cpp pre-tokenizer that splits text the same.
PRE_TOKENIZERS = {"gpt2": "gpt-2", "gpt4": "dbrx", "llama3": "llama-bpe"}


def gguf_arch(config: ModelConfig) -> str:
    """"llama" or "gpt2", or a UserError naming the field that rules GGUF out."""
    name = family(config)  # a UserError when no HF family fits either
    if name == "gpt2":
        return "gpt2"
    if name != "llama" or config.bias:
        raise UserError(f"model: GGUF export writes the GPT-2 recipe and the Llama "
                        f"recipe without biases; this model is HF {name} with bias = "
                        f"{config.bias}: export --format hf and run llama.cpp's "
                        "convert_hf_to_gguf.py on it")
    return "llama"


def permute_for_llama_cpp(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """q or k (n_heads * d_head, in), rotate-half layout -> interleaved pairs.

    Rotate half pairs dimension i with i + d_head/2 in each head; llama.cpp's llama
    pairs 2i with 2i + 1. Moving row i + d_head/2 next to row i switches layouts.
    """
    rows = w.shape[0]
    return (w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_tensors(model: GPT) -> Iterator[tuple[str, torch.Tensor]]:
    """(GGUF name, float32 tensor) for every tensor llama.cpp needs."""
    config, sd = model.config, model.state_dict()
    arch = gguf_arch(config)
    head = sd["tok_emb.weight" if config.tie_weights else "lm_head.weight"]
    yield "token_embd.weight", sd["tok_emb.weight"]
    if arch == "gpt2":
        yield "position_embd.weight", sd["pos_emb.weight"]
        yield "output.weight", head  # llama.cpp's gpt2 wants the head written out
    elif not config.tie_weights:
        yield "output.weight", head  # a tied llama reads token_embd instead
    if config.rope_scaling is not None:  # llama.cpp divides each frequency by these
        d = config.head_dim
        inv_freq = 1.0 / config.rope_theta ** (torch.arange(0, d, 2).float() / d)
        yield "rope_freqs.weight", inv_freq / llama3_inv_freq(inv_freq,
                                                              config.rope_scaling)
    norms = [("norm1", "attn_norm"), ("norm2", "ffn_norm")]
    layers = [("attn.proj", "attn_output"), ("mlp.up", "ffn_up"),
              ("mlp.down", "ffn_down")]
    if arch == "gpt2":
        layers.append(("attn.qkv", "attn_qkv"))
    else:
        layers.append(("mlp.gate", "ffn_gate"))
    kinds = ["weight", "bias"] if arch == "gpt2" else ["weight"]
    for i in range(config.n_layer):
        ours, theirs = f"blocks.{i}.", f"blk.{i}."
        for kind in kinds:
            for a, b in norms + layers:
                yield f"{theirs}{b}.{kind}", sd[f"{ours}{a}.{kind}"]
        if arch == "llama":
            d = config.head_dim
            q, k, v = sd[ours + "attn.qkv.weight"].split(
                [config.n_head * d, config.kv_heads * d, config.kv_heads * d])
            yield theirs + "attn_q.weight", permute_for_llama_cpp(q, config.n_head)
            yield theirs + "attn_k.weight", permute_for_llama_cpp(k, config.kv_heads)
            yield theirs + "attn_v.weight", v
    for kind in kinds:
        yield f"output_norm.{kind}", sd[f"norm_f.{kind}"]


def export_gguf(model: GPT, tokenizer: Tokenizer, out: str | Path,
                dtype: str = "f16", force: bool = False) -> Path:
    """Write `model` and `tokenizer` as one GGUF file `out`; return `out`."""
    try:
        import gguf
    except ModuleNotFoundError:
        raise UserError("GGUF export needs the gguf package: pip install "
                        "'llm-from-scratch[gguf]' (or pip install gguf)") from None
    out = Path(out)
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if any(type(m).__name__ == "QuantizedLinear" for m in model.modules()):
        raise UserError("this model is int8-quantized; export the run it was "
                        "quantized from (its quantization.json names base_run)")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name a file such as model.gguf")
    if out.exists() and not force:
        raise UserError(f"--out {out} exists; choose another file or pass --force "
                        "to replace it")
    arch = gguf_arch(model.config)
    tensors = [(n, t.detach().float().cpu()) for n, t in gguf_tensors(model)]
    with _temporary_file(out) as tmp:
        writer = gguf.GGUFWriter(tmp, arch)
        _write_metadata(writer, model.config, arch, dtype)
        _write_tokenizer(writer, tokenizer, model.config.vocab_size)
        for name, tensor in tensors:
            data, qtype = _encode(tensor, dtype)
            writer.add_tensor(name, data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out


def _encode(tensor: torch.Tensor, dtype: str):
    """A tensor's bytes as GGUF stores them, and its GGML type."""
    import gguf
    import numpy as np

    types = gguf.GGMLQuantizationType
    data = tensor.numpy()
    if tensor.dim() == 1 or dtype == "f32":
        return data.astype(np.float32), types.F32
    if dtype == "q8_0" and tensor.shape[-1] % 32 == 0:  # whole blocks of 32 only
        return gguf.quants.quantize(data, types.Q8_0), types.Q8_0
    return data.astype(np.float16), types.F16


def _write_metadata(writer, config: ModelConfig, arch: str, dtype: str) -> None:
    import gguf

    file_types = {"f32": gguf.LlamaFileType.ALL_F32,
                  "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_name("llm_reference model")
    writer.add_file_type(file_types[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config.context_length)
    writer.add_embedding_length(config.d_model)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(config.ff_dim)
    writer.add_head_count(config.n_head)
    if arch == "gpt2":
        writer.add_layer_norm_eps(config.norm_eps)
        return
    writer.add_head_count_kv(config.kv_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_vocab_size(config.vocab_size)


def _write_tokenizer(writer, tokenizer: Tokenizer, vocab_size: int) -> None:
    """Byte-level BPE as llama.cpp's "gpt2" tokenizer model; ids past the
    tokenizer's (a vocabulary padded for speed) become unused `[PAD<id>]` tokens."""
    import gguf

    if not isinstance(tokenizer, Tokenizer):
        raise UserError("tokenizer: GGUF export writes byte-level BPE tokenizers; "
                        "this model's is SentencePiece-style: export --format hf "
                        "and run llama.cpp's convert_hf_to_gguf.py on it")
    if tokenizer.normalizer is not None or tokenizer.pattern not in PRE_TOKENIZERS:
        raise UserError(f"tokenizer: pattern {tokenizer.pattern!r} with normalizer "
                        f"{tokenizer.normalizer!r} has no llama.cpp pre-tokenizer; "
                        f"GGUF export supports {', '.join(PRE_TOKENIZERS)} without "
                        "normalizer")
    if tokenizer.vocab_size > vocab_size:
        raise UserError(f"the tokenizer has {tokenizer.vocab_size} ids but "
                        f"model.vocab_size = {vocab_size}")
    special = {i: s for s, i in tokenizer.special_tokens.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i in tokenizer.vocab:
            tokens.append(_bytes_to_text(tokenizer.vocab[i]))
            types.append(gguf.TokenType.NORMAL)
        elif i in special:
            tokens.append(special[i])
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZERS[tokenizer.pattern])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([f"{_bytes_to_text(tokenizer.vocab[a])} "
                             f"{_bytes_to_text(tokenizer.vocab[b])}"
                             for a, b in tokenizer.merges])
    specials = tokenizer.special_tokens
    writer.add_add_bos_token(False)
    if ENDOFTEXT in specials:
        for add in (writer.add_bos_token_id, writer.add_eos_token_id,
                    writer.add_pad_token_id):
            add(specials[ENDOFTEXT])
    if IM_START in specials and IM_END in specials:
        writer.add_eot_token_id(specials[IM_END])  # a chat turn ends generation
        writer.add_chat_template(CHAT_TEMPLATE)


@contextlib.contextmanager
def _temporary_file(out: Path) -> Iterator[Path]:
    """A path next to `out` that replaces `out` when the block ends well and is
    deleted when it does not."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp",
                                    dir=out.parent)
        os.close(fd)
    except OSError as e:
        raise UserError(f"cannot write to {out.parent}: {e.strerror}; choose a "
                        "writable --out") from None
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
