"""Hugging Face model folders: export ours as one, import one as a run.

A Hugging Face model folder is what `transformers.AutoModelForCausalLM` and
`AutoTokenizer.from_pretrained(DIR)` read, and what vLLM, llama.cpp's
`convert_hf_to_gguf.py` and the Hub take:

    config.json              the architecture: `model_type` names the family
    model.safetensors        the weights under the family's tensor names
    generation_config.json   the tokens that end a generation
    tokenizer.json           the tokenizer (our `Tokenizer.to_hf_dict`)
    tokenizer_config.json    its special tokens and the chat template (Jinja), which
                             writes exactly what `chat.format_chat` writes

`export_hf` writes one from our model; `import_hf` reads one (GPT-2, Llama,
Mistral, Qwen2, Qwen3, Mixtral, Qwen3-MoE) into a run folder laid out as `train`
writes it (config.toml, tokenizer.json, checkpoints/step_0000000/), which every
command accepts. `hf.py` does the tensor and config conversions; this module does the
files. Both write the whole folder under a temporary name and rename it at the
end, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .atomic import staged_dir, write_json, write_text
from .chat import ENDOFTEXT, IM_END, IM_START
from .errors import UserError
from .hf import (
    FAMILIES,
    config_from_hf,
    family,
    from_hf_state_dict,
    hf_names,
    to_hf,
)
from .model import GPT
from .tokenizer import Tokenizer

# The same text as chat.format_chat, in the Jinja that HF's apply_chat_template runs.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    f"{{{{ '{IM_START}' + message['role'] + '\\n' + message['content'] + "
    f"'{IM_END}' + '\\n' }}}}"
    "{% endfor %}"
    f"{{% if add_generation_prompt %}}{{{{ '{IM_START}assistant\\n' }}}}{{% endif %}}"
)
# Tensors some HF checkpoints carry that are not weights (causal masks, RoPE tables).
_BUFFERS = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")


@contextlib.contextmanager
def building(out: Path, force: bool) -> Iterator[Path]:
    """A temporary folder next to `out` that becomes `out` when the block ends well
    (and is deleted when it does not). A non-empty `out` needs `force`."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"--out {out} is not empty; choose another folder or pass "
                        "--force to replace it")
    with staged_dir(out) as tmp:
        yield tmp
        for path in [tmp, *tmp.rglob("*")]:  # temp files are private (0600)
            path.chmod(0o755 if path.is_dir() else 0o644)


# ------------------------------------------------------------------------- export


def export_hf(model: GPT, tokenizer: Tokenizer, out: str | Path,
              force: bool = False) -> Path:
    """Write `model` and `tokenizer` as an HF model folder `out`; return `out`."""
    out = Path(out)
    check_exportable(model, tokenizer)
    with building(out, force) as tmp:
        name = write_hf_files(model, tokenizer, tmp)
        write_text(tmp / "README.md", f"An HF `{name}` export of an "
                   "llm_reference model (`python -m llm_reference export`).\n")
    return out


def check_exportable(model: GPT, tokenizer: Tokenizer) -> None:
    """A UserError when `model` has no HF form or `tokenizer` does not fit it."""
    if any(type(m).__name__ == "QuantizedLinear" for m in model.modules()):
        raise UserError("this model is int8-quantized; export the run it was "
                        "quantized from (its quantization.json names base_run)")
    family(model.config)  # a UserError naming the field that rules HF out
    if tokenizer.vocab_size > model.config.vocab_size:
        raise UserError(f"the tokenizer has {tokenizer.vocab_size} ids but "
                        f"model.vocab_size = {model.config.vocab_size}")


def write_hf_files(model: GPT, tokenizer: Tokenizer, folder: Path) -> str:
    """config.json, model.safetensors, generation_config.json, tokenizer.json and
    tokenizer_config.json of `model` into `folder`; returns the HF family."""
    specials = tokenizer.special_tokens
    eot, im_end = specials.get(ENDOFTEXT), specials.get(IM_END)
    hf = to_hf(model.cpu().eval())
    for config in (hf.config, hf.generation_config):
        config.bos_token_id = eot
        config.eos_token_id = eot
        config.pad_token_id = eot
    # A chat model ends its turn with <|im_end|>; a base model its document.
    hf.generation_config.eos_token_id = [i for i in (eot, im_end) if i is not None]
    hf.save_pretrained(folder)
    write_json(folder / "tokenizer.json", tokenizer.to_hf_dict())
    write_json(folder / "tokenizer_config.json", tokenizer_config(
        tokenizer, model.config.context_length))
    return family(model.config)


def tokenizer_config(tokenizer: Tokenizer, context_length: int) -> dict[str, Any]:
    """tokenizer_config.json: the generic fast tokenizer, our special tokens and
    the chat template (when the tokenizer has ChatML's tokens)."""
    specials = tokenizer.special_tokens
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": context_length,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False, "add_eos_token": False,
    }
    if ENDOFTEXT in specials:
        config |= {"bos_token": ENDOFTEXT, "eos_token": ENDOFTEXT,
                   "pad_token": ENDOFTEXT}
    if IM_START in specials and IM_END in specials:
        config["chat_template"] = CHAT_TEMPLATE
    elif getattr(tokenizer, "chat_template", None):  # an imported model's own
        config["chat_template"] = tokenizer.chat_template
    return config


# ------------------------------------------------------------------------- import


def read_hf(hf_dir: str | Path, device: str = "cpu"
            ) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """Our model (eval mode), tokenizer and a description from an HF model folder."""
    hf_dir = Path(hf_dir)
    raw = _read_config(hf_dir)
    from transformers import AutoConfig

    try:
        hf_config = AutoConfig.from_pretrained(hf_dir, local_files_only=True)
        config = config_from_hf(hf_config)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{hf_dir / 'config.json'}: not a valid "
                        f"{raw['model_type']} config ({str(e).splitlines()[0]})"
                        ) from None
    tokenizer = _read_tokenizer(hf_dir)
    if tokenizer.vocab_size > config.vocab_size:
        raise UserError(f"{hf_dir}: the tokenizer has {tokenizer.vocab_size} ids but "
                        f"config.json's vocab_size is {config.vocab_size}; they are "
                        "not the same model's")
    model = GPT(config)
    sd = _hf_weights(hf_dir, raw["model_type"])
    model.load_state_dict(_convert(sd, model, hf_dir), strict=True)
    info = {"kind": "hf", "path": str(hf_dir), "model_type": raw["model_type"],
            "step": None}
    return model.to(device).eval(), tokenizer, info


def import_hf(hf_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """Turn an HF model folder into a run folder `out` (step 0); return `out`."""
    from .checkpoint import save_checkpoint
    from .config import TrainConfig, to_toml

    hf_dir, out = Path(hf_dir), Path(out)
    if out.resolve() == hf_dir.resolve():
        raise UserError(f"--out {out} is the HF folder itself; choose a new folder")
    model, tokenizer, info = read_hf(hf_dir)
    config = {"model": model.config.to_dict(), "train": TrainConfig().__dict__.copy()}
    with building(out, force) as tmp:
        write_text(tmp / "config.toml", to_toml(config))
        tokenizer.save(tmp / "tokenizer.json")
        state = {"data_position": 0, "config": config, "tokenizer": "tokenizer.json",
                 "imported": {"hf_dir": str(hf_dir.resolve()),
                              "model_type": info["model_type"]}}
        optimizer = torch.optim.AdamW(model.parameters())  # no state yet
        save_checkpoint(tmp, 0, model, optimizer, state, keep_last=1)
    return out


def _read_config(hf_dir: Path) -> dict[str, Any]:
    path = hf_dir / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise UserError(f"{path} not found; pass --hf a Hugging Face model folder "
                        "(config.json, model.safetensors, tokenizer.json)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None
    if raw.get("model_type") not in FAMILIES:
        raise UserError(f"{path}: model_type = {raw.get('model_type')!r} is not "
                        f"supported; supported: {', '.join(FAMILIES)}")
    return raw


def _read_tokenizer(hf_dir: Path) -> Any:
    """tokenizer.json (ours when byte-level BPE, else the `tokenizers` library's:
    SentencePiece-style ones), or GPT-2's vocab.json + merges.txt."""
    if (hf_dir / "tokenizer.json").is_file():
        from .artifacts import read_tokenizer

        return read_tokenizer(hf_dir / "tokenizer.json")
    if (hf_dir / "vocab.json").is_file() and (hf_dir / "merges.txt").is_file():
        return Tokenizer.from_gpt2_files(hf_dir / "vocab.json", hf_dir / "merges.txt")
    raise UserError(f"{hf_dir}: no tokenizer.json (or vocab.json + merges.txt); "
                    "download the model's tokenizer files too")


def _hf_weights(hf_dir: Path, model_type: str) -> dict[str, torch.Tensor]:
    """All tensors of model.safetensors (or its shards), named as HF models name
    them (a bare GPT-2 checkpoint's names get their `transformer.` prefix)."""
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text("utf-8"))["weight_map"]
                            .values()))
    elif (hf_dir / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise UserError(f"{hf_dir}: no model.safetensors; only safetensors weights "
                        "are read (a pytorch_model.bin is a pickle, which can run "
                        "code: convert it with transformers' save_pretrained)")
    sd: dict[str, torch.Tensor] = {}
    for shard in shards:
        try:
            sd |= load_file(hf_dir / shard)
        except (OSError, SafetensorError) as e:
            raise UserError(f"{hf_dir / shard}: unreadable ({e})") from None
    if model_type == "gpt2" and "wte.weight" in sd:
        sd = {f"transformer.{k}" if k != "lm_head.weight" else k: v
              for k, v in sd.items()}
    return sd


def _convert(sd: dict[str, torch.Tensor], model: GPT, hf_dir: Path
             ) -> dict[str, torch.Tensor]:
    """HF tensors -> ours, checked: every tensor present, used and of its shape."""
    config = model.config
    extra = sorted(set(sd) - hf_names(config))
    extra = [k for k in extra if not k.endswith(_BUFFERS) and k != "lm_head.weight"]
    if extra:
        raise UserError(f"{hf_dir}: tensor {extra[0]} is not part of the model "
                        "config.json describes; the weights do not match it")
    head, embedding = sd.get("lm_head.weight"), sd.get(
        "transformer.wte.weight", sd.get("model.embed_tokens.weight"))
    if config.tie_weights and head is not None and not (
            embedding is not None and torch.equal(head, embedding)):
        raise UserError(f"{hf_dir}: tensor lm_head.weight is not part of the model "
                        "config.json describes (tie_word_embeddings = true, and it "
                        "differs from the embedding)")
    try:
        ours = from_hf_state_dict(sd, config)
    except KeyError as e:
        raise UserError(f"{hf_dir}: tensor {e.args[0]} is missing from the weights; "
                        "the weights do not match config.json") from None
    for name, want in model.state_dict().items():
        if name in ours and ours[name].shape != want.shape:
            raise UserError(f"{hf_dir}: {name} has shape {tuple(ours[name].shape)}, "
                            f"config.json implies {tuple(want.shape)}")
    return ours
