# %% [markdown]
# # Releasing a run
#
# We release the book's model (`book_model.py`: a small GPT pretrained on the
# standard library) with `llm_reference.release`. Then we look at what a user of
# the release gets, check every hash, look inside the safetensors file, see
# why pickle is refused, and scan the folder for personal data.

# %%
import hashlib
import io
import json
import os
import pickle
import pickletools
import shutil
import struct
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from safetensors.torch import load_model as load_weights

from llm_reference import (
    artifacts,
    compliance,
    generate,
    gguf_export,
    hf_folder,
    quantize,
)
from llm_reference.checkpoint import load_model
from llm_reference.model import GPT, ModelConfig
from llm_reference.quickstart import book_model
from llm_reference.release import release

BOOK = {"timeout": 300, "seed": 0, "needs": ["book_model"],
        "settings": {"license": "MIT", "scan_tokens": 200_000}}
S = BOOK["settings"]
torch.set_num_threads(2)

# the book's model (run/, data/, summary): book_model.py wrote it; the builder
# says where in BOOK_MODEL_DIR
book = book_model()
run_dir, data_dir = book.run, book.data
# copied (its folder is the build's cache, shared): the copy's name is the one its
# model card shows; data_dir names the prepared data it read
shutil.copytree(run_dir, "book-stdlib")
out = release("book-stdlib", "release/book-stdlib", license=S["license"],
              data_dir=data_dir, scan_tokens=S["scan_tokens"], device="cpu")
manifest = json.loads((out / "manifest.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# %% tags=["checkpoint"]
print(f"{'file':22}{'bytes':>9}  sha256 (first 16 hex digits)")
for path in sorted(out.iterdir()):
    digest = manifest["files_sha256"].get(path.name, "(this file)")
    print(f"{path.name:22}{path.stat().st_size:9,d}  {digest[:16]}")
mismatches = [name for name, digest in manifest["files_sha256"].items()
              if sha256(out / name) != digest]
print(f"hashes checked: {len(manifest['files_sha256'])} files, "
      f"{len(mismatches)} mismatches")
assert not mismatches

# %% [markdown]
# The manifest, shortened: hashes are cut to 12 hex digits and only the first
# shard and versions are shown.

# %% tags=["manifest"]
excerpt = {
    "format": manifest["format"], "step": manifest["step"],
    "seeds": manifest["seeds"],
    "data": {"dir": manifest["data"]["dir"],
             "manifest_sha256": manifest["data"]["manifest_sha256"][:12] + "...",
             "shards_sha256": {name: digest[:12] + "..." for name, digest in
                               list(manifest["data"]["shards_sha256"].items())[:1]},
             "shards_match_data_manifest":
                 manifest["data"]["shards_match_data_manifest"]},
    "versions": {k: manifest["versions"][k] for k in ("python", "torch",
                                                      "safetensors")},
    "git": manifest["git"] and {**manifest["git"],
                                "commit": manifest["git"]["commit"][:12] + "..."},
    "code_sha256": manifest["code_sha256"][:12] + "...",
    "reproduce": manifest["reproduce"],
}
print(json.dumps(excerpt, indent=1))

# %% [markdown]
# The model card's head, its data section and its personal-data section.

# %% tags=["card"]
card = (out / "README.md").read_text()
head, *sections = card.split("\n## ")
print(head)
for section in sections:
    if section.startswith(("Training data", "Compliance")):
        print("\n## " + section.rstrip())

# %% [markdown]
# Inside `model.safetensors`: an 8-byte length, a JSON header, then raw tensor bytes.

# %% tags=["safetensors"]
raw = (out / "model.safetensors").read_bytes()
(length,) = struct.unpack("<Q", raw[:8])  # little-endian unsigned 64-bit
header = json.loads(raw[8:8 + length])
print(f"header: {length} bytes of JSON; data: {len(raw) - 8 - length:,} bytes")
print("__metadata__:", header.pop("__metadata__"))
for name, info in list(header.items())[:4]:
    print(f"{name:28} {info['dtype']} {str(info['shape']):12} bytes "
          f"{info['data_offsets'][0]:,}-{info['data_offsets'][1]:,}")
print(f"... {len(header)} tensors in all")

config = json.loads((out / "config.json").read_text())
released = GPT(ModelConfig.from_dict(config)).eval()
load_weights(released, str(out / "model.safetensors"))
trained, _, _ = load_model("book-stdlib")
x = torch.randint(0, config["vocab_size"], (2, 16),
                  generator=torch.Generator().manual_seed(0))  # (B, T)
with torch.no_grad():
    diff = (released(x)[0] - trained(x)[0]).abs().max().item()
print(f"released vs trained checkpoint: largest logit difference {diff}")
assert diff == 0.0

# %% [markdown]
# Why not pickle: unpickling runs a small program, and that program may call any
# function it names. This harmless payload only prints, but it could call anything.

# %% tags=["pickle"]
class Payload:
    def __reduce__(self):
        return (print, ("  -> this line was printed by the act of loading",))


blob = pickle.dumps(Payload())
print("the pickle's program (bookkeeping opcodes left out):")
for op, arg, _ in pickletools.genops(blob):
    if op.name not in ("PROTO", "FRAME", "MEMOIZE"):
        shown = "" if arg is None else repr(arg if len(str(arg)) < 24
                                            else str(arg)[:20] + "...")
        print(f"  {op.name:18} {shown}")
print("pickle.loads(blob):")
pickle.loads(blob)

buffer = io.BytesIO()
torch.save({"weight": torch.zeros(2), "extra": Payload()}, buffer)
buffer.seek(0)
try:
    torch.load(buffer, weights_only=True)
except pickle.UnpicklingError as e:
    refusal = next(line for line in str(e).splitlines() if "GLOBAL" in line)
    print("torch.load(weights_only=True) refuses:\n ",
          refusal.strip().split(". ")[0].removeprefix("WeightsUnpickler error: "))

# %% [markdown]
# Before publishing: no pickle files, and a scan of every text file for PII.

# %% tags=["scan"]
pickles = [p.name for p in out.iterdir()
           if p.suffix in (".pt", ".pth", ".bin", ".pkl", ".ckpt")]
print("pickle-format files:", pickles or "none")
texts = [(p.name, p.read_text(encoding="utf-8")) for p in sorted(out.iterdir())
         if p.suffix in (".md", ".json", ".toml")]
print(compliance.scan(texts).format())

# %%
json.dump({"files": {p.name: p.stat().st_size for p in sorted(out.iterdir())},
           "manifest": excerpt, "diff": diff, "license": S["license"],
           "parameters": released.num_parameters(), "tensors": len(header)},
          open("release.json", "w"), indent=1)

# %% [markdown]
# The same weights in the formats other tools read: this release's safetensors
# (fp32), a Hugging Face export (`export --format hf`), GGUF for llama.cpp and
# Ollama in three precisions (`export --format gguf --dtype ...`), and our int8
# weight-only quantization. The size of each weight file, per parameter.

# %% tags=["formats"]
model, tokenizer, _ = artifacts.load_model(out)
n_params = model.num_parameters()
hf_dir = hf_folder.export_hf(model, tokenizer, "formats/hf")
int8 = GPT(model.config)
int8.load_state_dict(model.state_dict())
quantize.save_quantized(int8, quantize.quantize_model(int8), "formats/int8")
files = {"release, safetensors f32": out / "model.safetensors",
         "HF export, safetensors f32": hf_dir / "model.safetensors",
         **{f"GGUF {dtype}": gguf_export.export_gguf(model, tokenizer,
                                                     f"formats/model-{dtype}.gguf",
                                                     dtype)
            for dtype in ("f32", "f16", "q8_0")},
         "int8 weight-only (ours)": Path("formats/int8/model.safetensors")}
formats = {name: path.stat().st_size for name, path in files.items()}
for name, size in formats.items():
    print(f"{name:27} {size:10,d} bytes  {size / n_params:5.2f} bytes/parameter")
fig, ax = plt.subplots(figsize=(6, 2.4))
names = list(formats)
ax.barh(names, [formats[k] / n_params for k in names], color="#0969da", height=0.6)
for i, name in enumerate(names):
    ax.text(formats[name] / n_params, i, f" {formats[name] / 2**10:,.0f} KiB",
            va="center", fontsize=8)
ax.invert_yaxis()
ax.tick_params(axis="y", labelsize=8)
ax.set_xlabel(f"bytes per parameter ({n_params:,} parameters)")
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("formats.svg")
json.dump({"formats": formats, "parameters": n_params,
           "gguf_arch": gguf_export.gguf_arch(model.config),
           "tied": model.config.tie_weights}, open("formats.json", "w"), indent=1)

# %% [markdown]
# ## Real open weights, when you have them
#
# The import code reads a local Hugging Face folder of the families it knows (GPT-2,
# Llama, Mistral, Qwen2/3 and their MoE variants). This cell runs only when the
# environment variable LLM_BOOK_HF_MODEL names such a folder: the book's build never
# downloads anything, and without the variable it prints how to enable the cell.

# %% tags=["open_weights"]
HF_MODEL = os.environ.get("LLM_BOOK_HF_MODEL")
PROMPT = "def fibonacci(n):"
if not HF_MODEL:
    print("skipped: LLM_BOOK_HF_MODEL is not set. To run this cell, download an open "
          "model once, e.g.\n"
          "  hf download Qwen/Qwen2.5-0.5B --local-dir models/qwen2.5-0.5b\n"
          "then run this file with the variable pointing at the folder:\n"
          "  LLM_BOOK_HF_MODEL=models/qwen2.5-0.5b python release_run.py")
else:
    from transformers import AutoModelForCausalLM  # only here: it takes seconds
    from transformers.utils.logging import disable_progress_bar

    disable_progress_bar()
    ours, hf_tokenizer, info = hf_folder.read_hf(HF_MODEL)
    print(f"{HF_MODEL}: {info['model_type']}, {ours.num_parameters():,} parameters, "
          f"{ours.config.n_layer} layers, d_model {ours.config.d_model}")
    theirs = AutoModelForCausalLM.from_pretrained(
        HF_MODEL, local_files_only=True, dtype=torch.float32).eval()
    ids = hf_tokenizer.encode(PROMPT)
    with torch.no_grad():
        diff = (ours(torch.tensor([ids]))[0] - theirs(torch.tensor([ids])).logits
                ).abs().max().item()
    print(f"largest logit difference, ours vs transformers: {diff:.1e}")
    new = list(generate.generate(ours, ids, 48, temperature=0))  # greedy
    print(f"greedy continuation by our GPT class:\n{PROMPT}"
          + hf_tokenizer.decode(new))
