"""Interoperability with Hugging Face: parity, an exported folder's cost, and evals.

1. Logits parity, both ways, for every family: our random model exported to HF
   (GPT-2, Llama, Qwen2, Qwen3 recipes) and random HF models imported to ours
   (GPT-2, Llama, Mistral, Qwen2, Qwen3); the max |difference| of the logits.
2. A briefly pretrained mid-size GPT (6 layers, d_model 384) exported with
   `export_hf`: the folder's size, and the time to load it with
   `transformers.AutoModelForCausalLM.from_pretrained` (the peer) and with our
   `artifacts.load_model` (ours), best of --repeats.
3. The same checkpoint evaluated three ways on the same cloze items: our `eval`
   (per-byte scores), lm-evaluation-harness with our model (`eval --tasks`), and
   lm-evaluation-harness's own HF backend on the exported folder (which needs
   `pip install accelerate`).

    python benchmarks/interop.py            # 150 training steps first (~5-8 min)
    python benchmarks/interop.py --quick    # 30 steps (~2-3 min)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from quantize import pretrain  # noqa: E402  (same model and data; run as a script)

from llm_reference.artifacts import load_model  # noqa: E402
from llm_reference.data import Batches  # noqa: E402
from llm_reference.evaluate import build_cloze, cloze_accuracy  # noqa: E402
from llm_reference.harness import run_tasks  # noqa: E402
from llm_reference.hf import from_hf, to_hf  # noqa: E402
from llm_reference.hf_folder import export_hf  # noqa: E402
from llm_reference.model import GPT, ModelConfig  # noqa: E402

SHAPE = dict(vocab_size=512, context_length=64, n_layer=2, n_head=4, d_model=128)
ROPE = dict(SHAPE, position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2,
            bias=False)
RECIPES = {"gpt2": SHAPE, "llama": dict(ROPE, tie_weights=False),
           "qwen2": dict(ROPE, qkv_bias=True), "qwen3": dict(ROPE, qk_norm=True,
                                                             d_head=64)}
HF_CONFIGS = {
    "gpt2": ("GPT2Config", dict(n_positions=64, n_embd=128, n_layer=2, n_head=4)),
    "llama": ("LlamaConfig", dict(num_key_value_heads=2, tie_word_embeddings=False)),
    "mistral": ("MistralConfig", dict(num_key_value_heads=1, sliding_window=64,
                                      head_dim=32)),
    "qwen2": ("Qwen2Config", dict(num_key_value_heads=2)),
    "qwen3": ("Qwen3Config", dict(num_key_value_heads=2, head_dim=64)),
}
LLAMA_SHAPE = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                   num_attention_heads=4, max_position_embeddings=64)


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2 if p.dim() > 1 else 1.0)
    return model.eval()


def parity() -> None:
    torch.manual_seed(0)
    idx = torch.randint(0, 512, (4, 64))
    print("logits max |ours - HF| (random weights, 4 x 64 tokens, float32)")
    with torch.no_grad():
        for name, cfg in RECIPES.items():
            ours = randomize(GPT(ModelConfig(**cfg)))
            hf = to_hf(ours).eval()
            diff = (hf(idx).logits - ours(idx)[0]).abs().max().item()
            print(f"  export {name:<8} ours -> HF {diff:.2e}")
        for name, (cls, fields) in HF_CONFIGS.items():
            shape = {} if name == "gpt2" else LLAMA_SHAPE
            config = getattr(transformers, cls)(vocab_size=512, **shape, **fields)
            hf = randomize(transformers.AutoModelForCausalLM.from_config(config))
            ours = from_hf(hf)
            diff = (ours(idx)[0] - hf(idx).logits).abs().max().item()
            print(f"  import {name:<8} HF -> ours {diff:.2e}")


def best_seconds(load, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        load()
        best = min(best, time.perf_counter() - start)
    return best


def exported_folder(run: Path, out: Path, repeats: int) -> None:
    model, tokenizer, info = load_model(run)
    start = time.perf_counter()
    export_hf(model, tokenizer, out)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.iterdir())
    files = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.2f} MB"
                      for p in sorted(out.iterdir()))
    peer = best_seconds(lambda: transformers.AutoModelForCausalLM.from_pretrained(
        out), repeats)
    ours = best_seconds(lambda: load_model(out), repeats)
    print(f"exported folder ({model.num_parameters() / 1e6:.1f} M params, step "
          f"{info['step']}): {size / 1e6:.2f} MB, written in {seconds:.2f} s")
    print(f"  {files}")
    print(f"  load: ours (artifacts.load_model) {ours:.3f} s, peer "
          f"(AutoModelForCausalLM.from_pretrained) {peer:.3f} s, ratio "
          f"{ours / peer:.2f}")


def evals(run: Path, hf_dir: Path, folder: Path, n_items: int) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    model, tokenizer, info = load_model(run)
    T = model.config.context_length
    data_dir = info["config"]["train"]["data_dir"]
    # half-context windows: every item fits the context, so no scorer crops it
    # (ours keeps the last T tokens, lm-eval's HF backend feeds T + 1 less one)
    windows = Batches(data_dir, "val", 2 * n_items, T // 2, seed=7)
    texts = [tokenizer.decode(r) for r in windows.get(0)[0].tolist()]
    items = [i for i in build_cloze(texts, n_items, 4, seed=0)
             if (i.context + "".join(i.choices) + i.tail).isascii()
             and i.context.strip()]  # lm-eval's HF backend needs a context
    rows = [{"context": i.context, "choices": [c + i.tail for c in i.choices],
             "answer": i.answer} for i in items]
    (folder / "cloze.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "cloze.yaml").write_text(
        "task: bench_cloze\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {folder / 'cloze.jsonl'}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: context\ndoc_to_choice: choices\n"
        "doc_to_target: answer\ntarget_delimiter: ''\nmetric_list:\n"
        "  - metric: acc\n  - metric: acc_norm\n")
    ours = cloze_accuracy(model, tokenizer, items, torch.device("cpu"))["accuracy"]
    via_lm = run_tasks(model, tokenizer, ["bench_cloze"], torch.device("cpu"),
                       folder)["results"]["bench_cloze"]
    print(f"cloze, {len(items)} items, 4 choices, same checkpoint (step "
          f"{info['step']}):")
    print(f"  ours (eval, per byte)               {ours:.4f}")
    print(f"  lm-eval, our model (eval --tasks)   acc_norm "
          f"{via_lm['acc_norm,none']:.4f}  acc {via_lm['acc,none']:.4f}", flush=True)
    via_hf = simple_evaluate(
        model="hf", model_args=f"pretrained={hf_dir},dtype=float32",
        tasks=["bench_cloze"], task_manager=TaskManager(include_path=str(folder)),
        device="cpu", batch_size=1, bootstrap_iters=0)["results"]["bench_cloze"]
    print(f"  lm-eval, HF backend on the export   acc_norm "
          f"{via_hf['acc_norm,none']:.4f}  acc {via_hf['acc,none']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 training steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items", type=int, default=200, help="cloze items")
    args = parser.parse_args()
    torch.set_num_threads(1)
    parity()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = pretrain(root, 30 if args.quick else 150,
                       400_000 if args.quick else 1_000_000)
        exported_folder(run, root / "hf", args.repeats)
        evals(run, root / "hf", root, args.items)


if __name__ == "__main__":
    main()
