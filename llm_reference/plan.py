"""Plan a training run: from a compute budget to a model, its tokens, time and cost.

Every project starts with one question: *with this much compute, what should I
train?* The planner answers it in five steps of arithmetic:

1. **Budget -> FLOPs.** `1xH100:8h` is eight hours of one H100. Its peak (989 dense
   bf16 TFLOP/s) times the fraction a real training loop reaches, the model FLOPs
   utilization (MFU, ~40 %), times the seconds is the compute C we can spend.
2. **FLOPs -> N and D.** Training costs C ~ 6 N D FLOPs for N parameters and D
   tokens; Chinchilla found the best loss for a given C near D = 20 N.
3. **N -> a model.** The transformer shape (layers, width, heads) of the track's
   recipe whose parameter count is closest to N.
4. **Memory.** Weights, gradients, AdamW states and activations must fit on the
   device: we choose the micro-batch, gradient accumulation, sharding across GPUs
   and, as a last resort, activation checkpointing.
5. **Time, cost, loss.** Steps x FLOPs per step / achieved FLOP/s is the wall time;
   times the hourly price, the cost; a Chinchilla-style fit, the expected loss.

This module is also the one place that defines the book's tracks (who they are for,
their hardware, budgets and roadmap nodes) and the estimate card of each node. It
needs no torch, except `measure_cpu`, which times this machine. Sources are cited
next to each number; where a number is an approximation, the comment says so.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_json, write_text
from .errors import UserError

GiB = 2**30

# ------------------------------------------------------------------- calibration

CALIBRATION_PATH = Path(__file__).with_name("calibration.json")


def load_calibration(path: str | Path = CALIBRATION_PATH) -> dict[str, Any]:
    """Measured throughputs: CPU FLOP/s and MFU, tokenizer and data-prep bytes/s.

    Each number in the file names its source. `plan --measure --save-calibration`
    re-measures the CPU section; benchmarks may refresh theirs with
    `save_calibration`.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read the calibration file ({e}); "
                        "re-create it with `python -m llm_reference plan --measure "
                        "--save-calibration`") from None


def save_calibration(sections: dict[str, dict[str, Any]],
                     path: str | Path = CALIBRATION_PATH) -> None:
    """Replace whole sections of the calibration file, atomically."""
    calibration = load_calibration(path)
    calibration.update(sections)
    write_json(path, calibration)


CALIBRATION = load_calibration()

# ---------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class Hardware:
    """One device, and what the planner needs to know about it.

    Peaks are dense (no 2:4 sparsity) per device, from the vendor's datasheet.
    `memory_gib` is what a program can allocate (nvidia-smi's total), which is a
    little less than the datasheet's "GB" for some cards. Prices are on-demand USD
    per device-hour, (low, high) across providers: a spread, not a quote.
    """

    key: str  # the name in a budget string: "H100", "cpu"
    name: str
    bf16_tflops: float  # peak dense bf16 tensor TFLOP/s (fp16 on the T4)
    fp32_tflops: float  # peak fp32 TFLOP/s without tensor cores
    memory_gib: float
    bandwidth_gbs: float  # memory bandwidth, GB/s
    link_gbs: float  # device-to-device bandwidth, one direction, GB/s
    price_usd: tuple[float, float]  # per device-hour (low, high)
    dtype: str  # the training precision the planner uses on it
    device: str  # torch device: "cuda", "mps", "cpu"
    mfu: float  # assumed (or measured) model FLOPs utilization
    source: str

    @property
    def peak_tflops(self) -> float:
        """The peak in the training precision: tensor cores for 16 bits, else fp32."""
        return self.fp32_tflops if self.dtype == "float32" else self.bf16_tflops


# MFU: PaLM 540B reached 46 % and GPT-3 21 % (Chowdhery et al. 2022, table 3);
# well-tuned single-node bf16 runs of GPT-2-sized models (torch.compile, flash
# attention) commonly report 30-50 %. 40 % is our middle-of-the-road assumption
# for every GPU, not a measurement; pass --mfu to use your own.
GPU_MFU = 0.40
# Prices, on-demand USD per GPU-hour, as published in 2026 (a price is a snapshot:
# check before you spend):
#   mercatus-ai.com/blog/cloud-gpu-pricing (May 2026; long-tail to hyperscaler)
#   deploybase.ai/articles/runpod-gpu-pricing (Mar 2026; RunPod spot, on-demand)
#   computeprices.com/gpus/t4 (Apr 2026)
#   usagepricing.com/blueprint/vast-ai (Jun 2026; vast.ai on-demand)
GPUS = (
    Hardware("T4", "NVIDIA T4 16GB", 65.0, 8.1, 15.0, 320.0, 15.75, (0.35, 0.53),
             "float16", "cuda", GPU_MFU,
             "NVIDIA T4 datasheet: 65 TFLOPS fp16 mixed precision (Turing has no "
             "bf16), 8.1 fp32, 320 GB/s; PCIe 3.0 x16. Price: GCP $0.35, AWS "
             "g4dn $0.53 (computeprices.com, Apr 2026)"),
    Hardware("L4", "NVIDIA L4 24GB", 121.0, 30.3, 22.5, 300.0, 32.0, (0.44, 0.78),
             "bfloat16", "cuda", GPU_MFU,
             "NVIDIA L4 datasheet: 242 bf16 TFLOPS with sparsity = 121 dense, 30.3 "
             "fp32, 300 GB/s; PCIe 4.0 x16. Price: RunPod spot/on-demand (Mar 2026)"),
    Hardware("RTX4090", "NVIDIA GeForce RTX 4090 24GB", 165.2, 82.6, 24.0, 1008.0,
             32.0, (0.34, 0.88), "bfloat16", "cuda", GPU_MFU,
             "NVIDIA Ada Lovelace architecture whitepaper, appendix A: 165.2 bf16 "
             "tensor TFLOPS with fp32 accumulate (330.4 is with sparsity), 82.6 "
             "fp32, 1008 GB/s; PCIe 4.0, no NVLink. Price: RunPod $0.34 (Mar 2026, "
             "deploybase.ai) to vast.ai on-demand $0.88 (Jun 2026)"),
    Hardware("A100-40GB", "NVIDIA A100 SXM 40GB", 312.0, 19.5, 40.0, 1555.0, 300.0,
             (1.29, 3.67), "bfloat16", "cuda", GPU_MFU,
             "NVIDIA A100 datasheet: 312 bf16 TFLOPS dense, 19.5 fp32, 1555 GB/s, "
             "NVLink 600 GB/s (both directions). Price: Lambda $1.29 to GCP "
             "a2-highgpu-1g $3.67, list prices recalled from 2024-25, not "
             "re-checked; A100 prices have fallen since"),
    Hardware("A100-80GB", "NVIDIA A100 SXM 80GB", 312.0, 19.5, 80.0, 2039.0, 300.0,
             (0.80, 3.00), "bfloat16", "cuda", GPU_MFU,
             "NVIDIA A100 datasheet: 312 bf16 TFLOPS dense, 19.5 fp32, 2039 GB/s "
             "(SXM 80GB), NVLink 600 GB/s. Price: mercatus-ai.com (May 2026)"),
    Hardware("H100", "NVIDIA H100 SXM5 80GB", 989.4, 67.0, 79.6, 3350.0, 450.0,
             (1.99, 5.00), "bfloat16", "cuda", GPU_MFU,
             "NVIDIA H100 datasheet (SXM): 1979 bf16 TFLOPS with sparsity = 989.4 "
             "dense, 67 fp32, 3.35 TB/s, NVLink 900 GB/s (both directions); "
             "nvidia-smi shows 81559 MiB. Price: mercatus-ai.com (May 2026)"),
    Hardware("H200", "NVIDIA H200 SXM 141GB", 989.4, 67.0, 140.4, 4800.0, 450.0,
             (2.50, 7.00), "bfloat16", "cuda", GPU_MFU,
             "NVIDIA H200 datasheet (SXM): same compute as the H100 SXM, 141 GB "
             "HBM3e at 4.8 TB/s; nvidia-smi shows 143771 MiB. Price: "
             "mercatus-ai.com (May 2026)"),
)

# Apple publishes memory bandwidth but no TFLOPS: ours are the usual third-party
# estimate, GPU cores x 128 fp32 lanes x 2 FLOP x ~1.4 GHz, and the GPU runs 16-bit
# math at the fp32 rate (no matrix units before the M5), so we train in fp32 on
# "mps". Memory: a 64 GB machine, of which macOS lets the GPU use about 3/4. The
# MFU of 25 % is an assumption (PyTorch's MPS backend is less tuned than CUDA).
APPLE = (
    Hardware("M2Max", "Apple M2 Max (38-core GPU, 64 GB)", 13.6, 13.6, 48.0, 400.0,
             0.0, (0.0, 0.0), "float32", "mps", 0.25,
             "Apple M2 Max: 400 GB/s (Apple, Jan 2023); 13.6 TFLOPS fp32 is a "
             "third-party estimate; your own machine: no hourly price"),
    Hardware("M3Max", "Apple M3 Max (40-core GPU, 64 GB)", 14.3, 14.3, 48.0, 400.0,
             0.0, (0.0, 0.0), "float32", "mps", 0.25,
             "Apple M3 Max: 400 GB/s (Apple, Oct 2023); 14.3 TFLOPS fp32 is a "
             "third-party estimate; your own machine: no hourly price"),
)

# Without a measurement we assume a modest laptop: 2 cores sustaining ~50 GFLOP/s
# each in an fp32 matmul (AVX2 FMA) and a third of that in a training step.
DEFAULT_CPU = {"description": "assumed: 2 laptop cores, not measured",
               "peak_fp32_tflops": 0.1, "mfu": 0.3, "memory_gib": 8.0,
               "bandwidth_gbs": 20.0, "source": "conservative default, not measured"}


def cpu_hardware(section: dict[str, Any] | None = None) -> Hardware:
    """The CPU as a Hardware entry, from a calibration section (measured) or defaults.

    A CPU has no tensor cores: its peak is the fp32 matmul rate we measured, and its
    MFU is what a small GPT's training step reached relative to that peak.
    """
    c = {**DEFAULT_CPU, **(section or {})}
    peak = c["peak_fp32_tflops"]
    return Hardware("cpu", f"CPU ({c['description']})", peak, peak, c["memory_gib"],
                    c["bandwidth_gbs"], 5.0, (0.0, 0.0), "float32", "cpu", c["mfu"],
                    c["source"])


HARDWARE: dict[str, Hardware] = {
    hw.key: hw for hw in (cpu_hardware(CALIBRATION.get("cpu")), *APPLE, *GPUS)}
# other spellings people use; keys are compared without case, '-', '_' or spaces
ALIASES = {"A100": "A100-80GB", "A10080": "A100-80GB", "A10040": "A100-40GB",
           "4090": "RTX4090", "H100SXM": "H100", "H200SXM": "H200"}


def _squash(name: str) -> str:
    return re.sub(r"[-_\s]", "", name).upper()


def find_hardware(name: str, catalog: dict[str, Hardware] | None = None) -> Hardware:
    """The catalog entry for a name such as 'H100', 'a100', 'RTX-4090' or 'cpu'."""
    catalog = catalog or HARDWARE
    wanted = _squash(name)
    wanted = _squash(ALIASES.get(wanted, wanted))
    for hw in catalog.values():
        if _squash(hw.key) == wanted:
            return hw
    raise UserError(f"unknown hardware {name!r}; choose one of "
                    f"{', '.join(catalog)} (e.g. 1xH100:8h)")


# ------------------------------------------------------------------------ tracks

ROADMAP = ("mental-model", "data", "tokenizer", "dataset", "embeddings", "attention",
           "model", "objective", "pretraining", "stability", "efficiency", "scaling",
           "distributed", "evaluation", "generation", "finetuning", "preference",
           "quantization", "serving", "release")
TRACK_NAMES = ("beginner", "practitioner", "researcher")
# node -> depth in (beginner, practitioner, researcher); None: not in the track.
# Exactly the roadmap table of DESIGN.md.
CORE, OPT = "core", "optional"
_DEPTH: dict[str, tuple[str | None, str | None, str | None]] = {
    "mental-model": (CORE, CORE, CORE),
    "data": (CORE, CORE, CORE),
    "tokenizer": (CORE, CORE, CORE),
    "dataset": (CORE, CORE, CORE),
    "embeddings": (CORE, CORE, CORE),
    "attention": (CORE, CORE, CORE),
    "model": (CORE, CORE, CORE),
    "objective": (CORE, CORE, CORE),
    "pretraining": (CORE, CORE, CORE),
    "stability": (OPT, CORE, CORE),
    "efficiency": (None, CORE, CORE),
    "scaling": (OPT, CORE, CORE),
    "distributed": (None, OPT, CORE),
    "evaluation": (CORE, CORE, CORE),
    "generation": (CORE, CORE, CORE),
    "finetuning": (OPT, CORE, CORE),
    "preference": (None, OPT, CORE),
    "quantization": (None, OPT, CORE),
    "serving": (None, OPT, OPT),
    "release": (CORE, CORE, CORE),
}


@dataclass(frozen=True)
class Track:
    """A path through the book: for whom, on what hardware, with which budgets."""

    name: str
    who: str
    prerequisites: str
    default_hardware: str
    budgets: tuple[str, ...]  # presets; the first is the track's reference run
    nodes: dict[str, str]  # node id -> "core" | "optional", in roadmap order
    vocab_size: int
    context_length: int
    recipe: dict[str, Any]  # ModelConfig fields that make the architecture
    gqa: bool  # grouped-query attention (about 4 query heads per k/v head)


def _nodes(column: int) -> dict[str, str]:
    return {node: depth[column] for node, depth in _DEPTH.items()
            if depth[column] is not None}


GPT2_RECIPE = {"position": "learned", "norm": "layernorm", "mlp": "gelu",
               "bias": True, "tie_weights": True}
LLAMA_RECIPE = {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False}
TRACKS: dict[str, Track] = {
    "beginner": Track(
        "beginner", "knows Python, new to deep learning",
        "Python; high-school algebra; no GPU needed", "laptop CPU",
        ("cpu:30m", "cpu:4h"), _nodes(0), 8192, 256, GPT2_RECIPE, False),
    "practitioner": Track(
        "practitioner", "has trained models, wants a working LLM",
        "PyTorch basics; has trained a neural network; access to one GPU",
        "one GPU", ("1xRTX4090:8h", "1xA100:24h", "1xH100:8h"), _nodes(1),
        32768, 1024, {**LLAMA_RECIPE, "tie_weights": True}, True),
    "researcher": Track(
        "researcher", "wants to study architecture and scale",
        "comfortable with PyTorch and papers; access to a node of 8 GPUs",
        "a node of GPUs", ("8xH100:24h", "8xH100:72h"), _nodes(2),
        32768, 2048, {**LLAMA_RECIPE, "tie_weights": False}, True),
}


def get_track(name: str) -> Track:
    if name not in TRACKS:
        raise UserError(f"unknown track {name!r}; choose one of {', '.join(TRACKS)}")
    return TRACKS[name]


def nodes_for_track(track: str, depth: str | None = None) -> list[str]:
    """The roadmap nodes of a track in roadmap order; only `depth` ones if given."""
    return [node for node, d in get_track(track).nodes.items()
            if depth is None or d == depth]


def node_depth(node: str, track: str) -> str | None:
    """'core', 'optional' or None (the node is not in the track)."""
    if node not in _DEPTH:
        raise UserError(f"unknown roadmap node {node!r}; known: {', '.join(ROADMAP)}")
    return get_track(track).nodes.get(node)


# ------------------------------------------------------------ counting parameters


def resolve_model(model: dict[str, Any]) -> dict[str, Any]:
    """A `[model]` table with ModelConfig's defaults filled in (no torch needed).

    n_kv_head None means n_head; d_ff None means 4 d_model for GELU and ~8/3 d_model
    rounded up to a multiple of 64 for SwiGLU, as in model.py.
    """
    m = {"vocab_size": 8192, "context_length": 256, "n_layer": 4, "n_head": 4,
         "n_kv_head": None, "d_model": 256, "d_ff": None, "position": "learned",
         "norm": "layernorm", "mlp": "gelu", "bias": True, "tie_weights": True,
         **model}
    if m["n_kv_head"] is None:
        m["n_kv_head"] = m["n_head"]
    if m["d_ff"] is None:
        d = m["d_model"]
        m["d_ff"] = 64 * math.ceil(8 * d / 3 / 64) if m["mlp"] == "swiglu" else 4 * d
    return m


def count_parameters(model: dict[str, Any], non_embedding: bool = False) -> int:
    """Parameters of the GPT in model.py, counted from its config.

    Per layer: two norms, the fused q/k/v projection (n_head + 2 n_kv_head heads of
    head_dim), the output projection, and the MLP (two matrices for GELU, three
    for SwiGLU). Around the layers: the token embedding (which is also the output
    head when tied), learned positions, the final norm, an untied head.
    non_embedding=True leaves out the vocabulary and position tables (Kaplan et al.
    2020's convention).
    """
    m = resolve_model(model)
    V, T, L, d, f = (m["vocab_size"], m["context_length"], m["n_layer"],
                     m["d_model"], m["d_ff"])
    head_dim, heads = d // m["n_head"], m["n_head"] + 2 * m["n_kv_head"]
    bias = m["bias"]
    norm = d * (2 if m["norm"] == "layernorm" and bias else 1)  # weight (+ bias)
    attention = d * heads * head_dim + d * d + bias * (heads * head_dim + d)
    if m["mlp"] == "swiglu":
        mlp = 3 * d * f + bias * (2 * f + d)
    else:
        mlp = 2 * d * f + bias * (f + d)
    total = L * (2 * norm + attention + mlp) + norm
    if not non_embedding:
        total += V * d * (1 if m["tie_weights"] else 2)
        total += T * d if m["position"] == "learned" else 0
    return total


# ------------------------------------------------------------------------- FLOPs


def training_flops(n_params: float, tokens: float) -> float:
    """C = 6 N D: the classic estimate of training compute (Kaplan et al. 2020).

    Each weight does one multiply-add (2 FLOPs) per token forward, and twice that
    backward (the gradient with respect to the input, and with respect to the
    weight): 2 + 4 = 6 FLOPs per parameter per token.
    """
    return 6.0 * n_params * tokens


def flops_per_token(model: dict[str, Any]) -> float:
    """Training FLOPs per token, forward + backward: 6 N' + 12 L d T.

    PaLM (Chowdhery et al. 2022, appendix B) and nanoGPT count it so. N' is the
    weights a token is multiplied by: the non-embedding parameters plus the output
    head's d x V matrix (an embedding lookup costs nothing, the head is a matmul
    even when tied). The second term is attention itself, which has no weights:
    per layer, the scores q.k and the weighted sum of values are each 2 d T FLOPs
    per token forward (T keys, width d), so 4 L d T forward and 12 L d T with the
    backward. It counts the whole T x T square (no discount for the causal mask,
    as flash attention's work is usually counted) and grows with the context: at
    T = 1024 it is 13 % of GPT-2 small's total, 8 % for the beginner's tiny model at
    T = 256.
    Kaplan et al. 2020 (table 1) count only half of it (2 L T d forward).
    """
    m = resolve_model(model)
    weights = count_parameters(m, non_embedding=True) + m["d_model"] * m["vocab_size"]
    attention = 12.0 * m["n_layer"] * m["d_model"] * m["context_length"]
    return 6.0 * weights + attention


def forward_flops_per_token(model: dict[str, Any], context: float | None = None
                            ) -> float:
    """Forward-only FLOPs for one token that attends to `context` earlier tokens.

    2 N' + 4 L d t: the weights once forward, attention over t keys. With a KV
    cache, generating the token at position t costs exactly this, since the keys
    and values of earlier tokens are stored, not recomputed. context=None means a
    full window (evaluation), which is a third of `flops_per_token`.
    """
    m = resolve_model(model)
    t = m["context_length"] if context is None else context
    weights = count_parameters(m, non_embedding=True) + m["d_model"] * m["vocab_size"]
    return 2.0 * weights + 4.0 * m["n_layer"] * m["d_model"] * t


# ------------------------------------------------------------------------ memory

# Training state per parameter, in bytes, by precision scheme. "mixed" is the
# classic scheme of the ZeRO paper (Rajbhandari et al. 2020, section 3.1): fp16
# weights and gradients (2 + 2) plus K = 12 bytes of fp32 optimizer state (master
# weights 4, Adam's momentum 4 and variance 4) = 16. PyTorch autocast, which our
# trainer uses, keeps fp32 weights and gradients and casts weights to 16 bits on
# the fly, caching the copies for the step: 4 + 4 + 4 + 4 + 2 = 18. DDP adds a
# bucket copy of the gradients (+4, 22) unless gradient_as_bucket_view=True. So:
# 16-20 bytes per parameter whatever the precision, 16 in pure fp32.
BYTES_PER_PARAM: dict[str, dict[str, int]] = {
    "float32": {"weights": 4, "gradients": 4, "adam_m": 4, "adam_v": 4},
    "autocast": {"weights": 4, "gradients": 4, "adam_m": 4, "adam_v": 4,
                 "16-bit weight copies": 2},
    "mixed": {"16-bit weights": 2, "16-bit gradients": 2, "fp32 master weights": 4,
              "adam_m": 4, "adam_v": 4},
}
USABLE_MEMORY = 0.9  # of memory_gib: the CUDA context, allocator fragmentation


def state_bytes_per_param(dtype: str) -> int:
    """Bytes per parameter of weights, gradients and AdamW state in our trainer."""
    scheme = "float32" if dtype == "float32" else "autocast"
    return sum(BYTES_PER_PARAM[scheme].values())


def activation_bytes_per_layer(seq: int, batch: int, d_model: int, n_head: int,
                               bytes_per_value: int = 2, flash: bool = True) -> float:
    """Activations one transformer layer keeps for the backward pass, in bytes.

    Korthikanti et al. 2022 ("Reducing activation recomputation in large
    transformer models", eq. 1), for 16-bit activations and no parallelism:
    s b h (34 + 5 a s / h), with s the sequence length, b the micro-batch, h the
    width and a the heads. The 34 s b h are the inputs of the layer's matmuls,
    norms, GELU and dropout masks; the 5 a s^2 b are the attention scores, the
    softmax and its dropout mask. Flash attention (PyTorch's SDPA on GPU) never
    stores the s x s scores, so with flash=True that term is 0, which is the same
    count as their "selective recomputation". The formula assumes a GELU MLP of
    4 h; a SwiGLU of 8/3 h stores ~20 % more in the MLP, and fp32 activations
    (bytes_per_value=4) take twice the space: the result is an approximation.
    """
    per_token = 34 + (0 if flash else 5 * n_head * seq / d_model)
    return seq * batch * d_model * per_token * bytes_per_value / 2


def training_memory(model: dict[str, Any], micro_batch: int, dtype: str = "bfloat16",
                    checkpointing: bool = False, shards: int = 1) -> dict[str, float]:
    """Bytes one device needs to train `model` on micro-batches of `micro_batch`.

    - model states: parameters x state_bytes_per_param, divided by `shards` when
      FSDP/ZeRO-3 splits them across GPUs;
    - activations: n_layer x activation_bytes_per_layer; with activation
      checkpointing a layer keeps only its input (2 s b h bytes) and one layer at a
      time is recomputed in full during the backward pass;
    - logits: s b V in the compute precision plus the fp32 copy that the
      cross-entropy's softmax makes (Korthikanti et al. count 4 s b V for it).
    """
    m = resolve_model(model)
    s, L, d, V = m["context_length"], m["n_layer"], m["d_model"], m["vocab_size"]
    act_bytes = 4 if dtype == "float32" else 2
    states = count_parameters(m) * state_bytes_per_param(dtype) / shards
    layer = activation_bytes_per_layer(s, micro_batch, d, m["n_head"], act_bytes)
    if checkpointing:
        activations = L * s * micro_batch * d * act_bytes + layer
    else:
        activations = L * layer
    logits = s * micro_batch * V * (act_bytes + 4)
    return {"model_states": states, "activations": activations, "logits": logits,
            "total": states + activations + logits}


def kv_cache_bytes(model: dict[str, Any], tokens: int, batch: int = 1,
                   bytes_per_value: int = 2) -> float:
    """The KV cache: 2 (k and v) x L x n_kv_head x head_dim x bytes, per token.

    Grouped-query attention divides it by n_head / n_kv_head: that is its point.
    """
    m = resolve_model(model)
    head_dim = m["d_model"] // m["n_head"]
    per_token = 2 * m["n_layer"] * m["n_kv_head"] * head_dim * bytes_per_value
    return per_token * tokens * batch


# ----------------------------------------------------------------- scaling laws


def compute_optimal(flops: float, tokens_per_param: float = 20.0
                    ) -> tuple[float, float]:
    """N and D that spend `flops` with D = tokens_per_param x N, from C = 6 N D.

    6 N (r N) = C gives N = sqrt(C / 6r). Hoffmann et al. 2022 ("Chinchilla")
    found r ~ 20 tokens per parameter compute-optimal; Chinchilla itself is 70B
    parameters on 1.4T tokens. Training a smaller model on more tokens (r of 100 or
    more, as Llama does) costs more compute for a given loss but less at inference.
    """
    if flops <= 0 or tokens_per_param <= 0:
        raise UserError(f"compute_optimal needs positive flops and tokens_per_param, "
                        f"got {flops} and {tokens_per_param}")
    n = math.sqrt(flops / (6.0 * tokens_per_param))
    return n, tokens_per_param * n


@dataclass(frozen=True)
class LossFit:
    """L(N, D) = E + A / N^alpha + B / D^beta, in nats per token.

    E is the entropy of text that no model removes; the two power laws are what a
    finite model and finite data leave on top of it. Fitted on MassiveText with
    SentencePiece tokens, the numbers only indicate the trend for another corpus
    or tokenizer, and only inside the fitted range (70M-16B parameters, 5B-500B
    tokens): for our tiny CPU models the formula is far out of range.
    """

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n_params: float, tokens: float) -> float:
        return self.E + self.A / n_params**self.alpha + self.B / tokens**self.beta

    def optimal_tokens_per_param(self, flops: float) -> float:
        """D/N that minimizes loss(N, D) subject to 6 N D = flops.

        Setting the derivative to zero: N = G (C/6)^(beta/(alpha+beta)) with
        G = (alpha A / (beta B))^(1/(alpha+beta)), and D = C / (6 N).
        """
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha +
                                                                   self.beta))
        n = G * (flops / 6.0) ** (self.beta / (self.alpha + self.beta))
        return flops / (6.0 * n) / n


# Hoffmann et al. 2022, approach 3 (eq. 10).
HOFFMANN_2022 = LossFit("Hoffmann et al. 2022, approach 3", 1.69, 406.4, 410.7,
                        0.34, 0.28)
# Besiroglu et al. 2024, "Chinchilla scaling: a replication attempt", refit the
# data points they reconstructed from the original paper's plots: the original
# fit's parameters fit those points badly and its confidence intervals were too
# narrow; the refit agrees with the ~20 tokens per parameter of the paper's other
# two approaches (the original implies ~90 at Chinchilla's budget, see
# `optimal_tokens_per_param`). We use the refit.
BESIROGLU_2024 = LossFit("Besiroglu et al. 2024 (Chinchilla replication)", 1.82,
                         482.01, 2085.43, 0.3478, 0.3658)
LOSS_FIT = BESIROGLU_2024
FITTED_PARAMS = (7e7, 1.6e10)  # the range of model sizes behind the fits


def batch_size_tokens(flops: float) -> float:
    """Global batch in tokens for a compute budget: B = 0.292 C^0.3271.

    DeepSeek LLM (DeepSeek-AI 2024, section 3.1) fitted the best batch size and
    learning rate as power laws of compute. It gives ~0.5M tokens at 1e19 FLOPs
    (GPT-3 used 0.5M for its 125M model), ~2M at 1e21 and, extrapolated down, ~9K
    tokens for a half-hour CPU run.
    """
    return 0.2920 * flops**0.3271


def learning_rate(flops: float) -> float:
    """Peak learning rate for a compute budget: lr = 0.3118 C^-0.125 (DeepSeek LLM).

    Their grid searches started at 1e17 FLOPs; below that we hold the rate at its
    1e17 value (2.3e-3) instead of extrapolating to ever larger rates.
    """
    return 0.3118 * max(flops, 1e17) ** -0.1250


# ----------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budget:
    """`count` devices of catalog entry `hardware` for `seconds`."""

    text: str
    hardware: str
    count: int
    seconds: float
    dollars: float | None = None  # set when the budget was given in dollars


BUDGET_HELP = ("COUNTxGPU:DURATION (1xH100:8h, 8xH100:24h), cpu:DURATION (cpu:30m) "
               "or $DOLLARS@COUNTxGPU ($200@1xA100); durations in s, m, h or d, "
               "e.g. 90m or 1h30m")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, budget: str = "") -> float:
    """'30m' -> 1800.0; parts add up: '1h30m' -> 5400.0."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text.lower())
    if not parts or "".join(n + u for n, u in parts) != text.lower():
        raise UserError(f"budget {budget or text!r}: bad duration {text!r}; write a "
                        "number and a unit s, m, h or d, e.g. 30m, 8h, 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise UserError(f"budget {budget or text!r}: the duration must be > 0, "
                        "e.g. 30m")
    return seconds


def _devices(text: str, budget: str, catalog: dict[str, Hardware]
             ) -> tuple[Hardware, int]:
    """'8xH100' -> (H100, 8); 'cpu' -> (cpu, 1)."""
    match = re.fullmatch(r"(?:(\d+)\s*[xX×]\s*)?([A-Za-z0-9][\w-]*)", text.strip())
    if not match:
        raise UserError(f"budget {budget!r}: cannot read the hardware {text!r}; "
                        f"write {BUDGET_HELP}")
    try:
        hw = find_hardware(match[2], catalog)
    except UserError as e:
        raise UserError(f"budget {budget!r}: {e}") from None
    count = int(match[1]) if match[1] else 1
    if count < 1:
        raise UserError(f"budget {budget!r}: the device count must be >= 1, "
                        "e.g. 1xH100:8h")
    if count > 1 and hw.device != "cuda":
        raise UserError(f"budget {budget!r}: {hw.key} takes no count (one machine); "
                        f"write e.g. {hw.key}:30m")
    return hw, count


def parse_budget(text: str, catalog: dict[str, Hardware] | None = None) -> Budget:
    """Read a budget string: `1xH100:8h`, `cpu:30m` or `$200@1xA100`.

    A dollar budget buys hours at the low end of the device's price range (the
    cheapest listed provider); the plan shows what the high end would cost.
    """
    catalog = catalog or HARDWARE
    text = text.strip()
    if text.startswith("$"):
        amount, at, devices = text[1:].partition("@")
        if not at:
            raise UserError(f"budget {text!r}: a dollar budget names the hardware "
                            "after '@', e.g. $200@1xA100")
        try:
            dollars = float(amount.replace(",", ""))
        except ValueError:
            raise UserError(f"budget {text!r}: {amount!r} is not an amount of "
                            "dollars; e.g. $200@1xA100") from None
        hw, count = _devices(devices, text, catalog)
        if dollars <= 0:
            raise UserError(f"budget {text!r}: the amount must be > 0, "
                            "e.g. $200@1xA100")
        if hw.price_usd[0] <= 0:
            raise UserError(f"budget {text!r}: {hw.key} is your own machine and has "
                            f"no hourly price; give a duration, e.g. {hw.key}:30m")
        hours = dollars / (count * hw.price_usd[0])
        return Budget(text, hw.key, count, hours * 3600, dollars)
    devices, colon, duration = text.rpartition(":")
    if not colon or not devices:
        raise UserError(f"budget {text!r}: expected {BUDGET_HELP}")
    hw, count = _devices(devices, text, catalog)
    return Budget(text, hw.key, count, parse_duration(duration.strip(), text))


def track_for_budget(budget: Budget, catalog: dict[str, Hardware] | None = None
                     ) -> str:
    """The track a budget suggests: CPU or laptop -> beginner, one GPU ->
    practitioner, several GPUs -> researcher."""
    hw = (catalog or HARDWARE)[budget.hardware]
    if hw.device != "cuda":
        return "beginner"
    return "practitioner" if budget.count == 1 else "researcher"


# ----------------------------------------------------------------------- planner

RESERVE = 0.05  # of the budget, for start-up, compilation, checkpoints and logging
MIN_STEPS = 20
SHAPE_PENALTY = 0.1  # how much a shape's aspect ratio matters next to its size


def head_dim_for(d_model: int) -> int:
    """Tiny models get heads of 32 so they still have several; GPT-2 and most
    models up to ~2B parameters use 64; Llama-7B and up use 128."""
    return 32 if d_model <= 256 else 64 if d_model <= 2048 else 128


def model_shape(track: Track, n_layer: int, d_model: int) -> dict[str, Any]:
    """A full `[model]` table for the track's recipe at this depth and width.

    With GQA, 4 query heads share each key/value head, as in Llama 3 8B (32 / 8).
    """
    n_head = d_model // head_dim_for(d_model)
    mlp = track.recipe["mlp"]
    d_ff = 64 * math.ceil(8 * d_model / 3 / 64) if mlp == "swiglu" else 4 * d_model
    return {"vocab_size": track.vocab_size, "context_length": track.context_length,
            "n_layer": n_layer, "n_head": n_head,
            "n_kv_head": n_head // 4 if track.gqa else n_head,
            "d_model": d_model, "d_ff": d_ff, "position": track.recipe["position"],
            "rope_theta": 10000.0, "norm": track.recipe["norm"], "norm_eps": 1e-5,
            "mlp": mlp, "bias": track.recipe["bias"],
            "tie_weights": track.recipe["tie_weights"], "dropout": 0.0,
            "attention": "sdpa"}


def candidate_shapes(track: Track, n_params: float) -> list[dict[str, Any]]:
    """Model shapes ranked by how well they match `n_params`, best first.

    Kaplan et al. 2020 (figure 5) found the loss within a few percent over a wide
    range of aspect ratios d_model / n_layer: shape matters less than size. We try
    2-128 layers with d_model a multiple of 64 (128 above 2048, for heads of 128)
    and d_model / n_layer between 32 and 128 (with GQA, n_head a multiple of 4),
    and rank them by the log-distance of their parameter count from the target,
    plus a small penalty for straying from GPT-2 small's ratio of 64 (768 / 12).
    """
    ranked = []
    for n_layer in range(2, 129):
        for d_model in range(64 * math.ceil(n_layer / 2), 128 * n_layer + 1, 64):
            n_head = d_model // head_dim_for(d_model)
            if d_model % head_dim_for(d_model) or (track.gqa and n_head % 4):
                continue
            shape = model_shape(track, n_layer, d_model)
            size = abs(math.log(count_parameters(shape) / n_params))
            aspect = abs(math.log(d_model / n_layer / 64))
            ranked.append((size + SHAPE_PENALTY * aspect, n_layer, shape))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [shape for _, _, shape in ranked]


def fit_memory(model: dict[str, Any], hw: Hardware, count: int,
               seqs_per_rank: int) -> dict[str, Any] | None:
    """Micro-batch, accumulation, sharding and checkpointing that fit, or None.

    We try the cheapest layout first: plain data parallelism (every GPU holds all
    model states), then sharding the states across GPUs (FSDP; costs
    communication, overlapped with compute), then activation checkpointing
    (recomputes the forward pass in the backward: ~1/3 more compute). In each we
    take the largest power-of-two micro-batch that fits; gradient accumulation
    makes up the rest of the global batch.
    """
    usable = hw.memory_gib * GiB * USABLE_MEMORY
    layouts = [(False, 1)] + ([(False, count)] if count > 1 else [])
    layouts += [(True, 1)] + ([(True, count)] if count > 1 else [])
    for checkpointing, shards in layouts:
        micro = seqs_per_rank
        while micro >= 1:
            memory = training_memory(model, micro, hw.dtype, checkpointing, shards)
            if memory["total"] <= usable:
                return {"micro_batch": micro, "grad_accum": seqs_per_rank // micro,
                        "checkpointing": checkpointing, "shards": shards,
                        "memory": memory}
            micro //= 2
    return None


@dataclass
class Plan:
    """A planned run: the config to train and the estimates behind it."""

    budget: Budget
    track: str
    hardware: Hardware
    model: dict[str, Any]  # the [model] table
    train: dict[str, Any]  # the [train] table
    params: int
    flops_per_token: float
    tokens: int
    tokens_per_step: int
    train_flops: float  # model FLOPs of training (6N'D + attention), no recompute
    seconds: float  # estimated wall time: training, evaluation and the reserve
    cost_usd: tuple[float, float]
    memory: dict[str, float]  # per device, bytes
    parallelism: str  # "single", "ddp" or "fsdp"
    activation_checkpointing: bool
    expected_loss: float
    mfu: float
    notes: list[str] = field(default_factory=list)

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    def to_toml(self) -> str:
        """The run's config.toml for `python -m llm_reference train --config`."""
        lines = [f"# planned by `python -m llm_reference plan --budget "
                 f"{self.budget.text} --track {self.track}`"]
        lines += [f"# {label}: {value}" for label, value in self.summary()]
        lines += [f"# note: {note}" for note in self.notes]
        for table in ("model", "train"):
            lines += ["", f"[{table}]"]
            lines += [f"{k} = {_toml(v)}" for k, v in getattr(self, table).items()]
        return "\n".join(lines) + "\n"

    def summary(self) -> list[tuple[str, str]]:
        """(what, value) rows for people: the CLI's table and the TOML's header."""
        m, t = self.model, self.train
        gpu_hours = self.seconds / 3600 * self.budget.count
        gpus = f"{self.budget.count}x " if self.budget.count > 1 else ""
        low, high = self.cost_usd
        layout = self.parallelism + (", activation checkpointing"
                                     if self.activation_checkpointing else "")
        return [
            ("budget", f"{self.budget.text} ({fmt_duration(self.budget.seconds)})"),
            ("hardware", f"{gpus}{self.hardware.name}, {self.hardware.dtype}, "
                         f"MFU {self.mfu:.0%}"),
            ("model", f"{fmt_count(self.params)} parameters: {m['n_layer']} layers, "
                      f"d_model {m['d_model']}, {m['n_head']} heads "
                      f"({m['n_kv_head']} k/v), {m['mlp']}, {m['position']}"),
            ("tokens", f"{fmt_count(self.tokens)} "
                       f"({self.tokens_per_param:.1f} per parameter)"),
            ("compute", f"{self.train_flops:.3g} FLOPs "
                        f"({self.flops_per_token:.3g} per token)"),
            ("steps", f"{t['max_steps']:,} x {fmt_count(self.tokens_per_step)} "
                      f"tokens = {t['batch_size']} seqs x {t['grad_accum']} accum x "
                      f"{self.budget.count} device(s) x {m['context_length']}"),
            ("memory", f"{fmt_bytes(self.memory['total'])} of "
                       f"{self.hardware.memory_gib:g} GiB per device ({layout})"),
            ("time", fmt_duration(self.seconds) + (
                f" ({gpu_hours:,.0f} GPU-hours)" if self.budget.count > 1 else "")),
            ("cost", "$0 (your own machine)" if high == 0
             else f"${low:,.2f} - ${high:,.2f}"),
            ("expected loss", f"{self.expected_loss:.2f} nats/token "
                              f"({LOSS_FIT.name}; indicative only)"),
        ]

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (for --json, the book and the scaffold)."""
        return {"budget": asdict(self.budget), "track": self.track,
                "hardware": {"key": self.hardware.key, "name": self.hardware.name,
                             "count": self.budget.count},
                "model": self.model, "train": self.train,
                "estimates": {
                    "params": self.params,
                    "non_embedding_params": count_parameters(self.model, True),
                    "flops_per_token": self.flops_per_token, "tokens": self.tokens,
                    "tokens_per_param": self.tokens_per_param,
                    "tokens_per_step": self.tokens_per_step,
                    "train_flops": self.train_flops, "seconds": self.seconds,
                    "cost_usd": {"low": self.cost_usd[0], "high": self.cost_usd[1]},
                    "memory_bytes": self.memory, "parallelism": self.parallelism,
                    "activation_checkpointing": self.activation_checkpointing,
                    "expected_loss": self.expected_loss, "loss_fit": LOSS_FIT.name,
                    "mfu": self.mfu},
                "notes": self.notes}


def make_plan(budget: Budget | str, track: str | None = None,
              tokens_per_param: float = 20.0, mfu: float | None = None,
              catalog: dict[str, Hardware] | None = None) -> Plan:
    """Turn a budget into a model, a [train] table and the estimates behind them."""
    catalog = catalog or HARDWARE
    if isinstance(budget, str):
        budget = parse_budget(budget, catalog)
    hw = catalog[budget.hardware]
    t = get_track(track or track_for_budget(budget, catalog))
    mfu = hw.mfu if mfu is None else mfu
    if not 0 < mfu <= 1:
        raise UserError(f"--mfu {mfu}: must be in (0, 1], e.g. 0.4")
    if tokens_per_param <= 0:
        raise UserError(f"--tokens-per-param {tokens_per_param}: must be > 0, e.g. 20")
    # 1. budget -> FLOPs
    device_flops = hw.peak_tflops * 1e12 * mfu  # achieved FLOP/s of one device
    available = budget.seconds * (1 - RESERVE)
    compute = budget.count * device_flops * available
    # 2. FLOPs -> N, and the global batch for this much compute
    n_target, _ = compute_optimal(compute, tokens_per_param)
    T = t.context_length
    seqs_per_rank = 2 ** max(0, round(math.log2(
        max(1.0, batch_size_tokens(compute) / T / budget.count))))
    # 3. + 4. the best-matching shape that fits in memory
    for model in candidate_shapes(t, n_target):
        layout = fit_memory(model, hw, budget.count, seqs_per_rank)
        if layout is not None:
            break
    else:
        raise UserError(f"budget {budget.text!r}: no model of the {t.name} recipe "
                        f"fits in {hw.memory_gib:g} GiB; use more or bigger devices")
    # 5. steps, evaluation, time
    fpt = flops_per_token(model)
    recompute = 4 / 3 if layout["checkpointing"] else 1.0  # forward done twice
    tokens_per_step = seqs_per_rank * budget.count * T
    step_seconds = tokens_per_step * fpt * recompute / (budget.count * device_flops)
    rough_steps = int(available / step_seconds)
    eval_interval = max(1, rough_steps // 20)  # about 20 evaluations
    # each evaluation gets ~2 % of the compute between two of them (a forward pass
    # is 1/3 of a training micro-batch), and 20 batches at most
    eval_steps = min(20, max(1, round(0.06 * eval_interval * layout["grad_accum"])))
    eval_seconds = eval_steps * layout["micro_batch"] * T * fpt / 3 / device_flops
    steps = int((available - eval_seconds) / (step_seconds + eval_seconds /
                                              eval_interval))
    if steps < MIN_STEPS:
        raise UserError(f"budget {budget.text!r} buys only {max(steps, 0)} training "
                        f"steps of even the smallest model; give at least "
                        f"{fmt_duration(budget.seconds * MIN_STEPS / max(steps, 1))}")
    tokens = steps * tokens_per_step
    seconds = (steps * step_seconds + (steps // eval_interval + 1) * eval_seconds
               + RESERVE * budget.seconds)
    params = count_parameters(model)
    lr = learning_rate(compute)
    step_rate = steps / seconds  # steps per wall-clock second
    checkpoint_every = max(eval_interval, round(1800 * step_rate / eval_interval)
                           * eval_interval)  # about every 30 minutes
    train = {
        "batch_size": layout["micro_batch"], "grad_accum": layout["grad_accum"],
        "max_steps": steps, "lr": _round(lr), "min_lr": _round(lr / 10),
        "warmup_steps": min(2000, max(10, round(0.05 * steps))),
        "schedule": "cosine", "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
        "grad_clip": 1.0, "eval_interval": eval_interval, "eval_steps": eval_steps,
        "checkpoint_interval": min(steps, checkpoint_every), "keep_last": 3,
        "dtype": hw.dtype, "compile": hw.device == "cuda", "seed": 1337,
        "device": hw.device}
    if layout["checkpointing"]:
        train["activation_checkpointing"] = True
    hours = seconds / 3600 * budget.count
    parallelism = ("single" if budget.count == 1 else
                   "fsdp" if layout["shards"] > 1 else "ddp")
    if parallelism == "fsdp":  # the trainer's default under torchrun is DDP
        if hw.dtype == "float16":
            raise UserError(f"budget {budget.text}: the model needs FSDP sharding, "
                            f"which our trainer runs in bfloat16 only, and "
                            f"{hw.name} has no bfloat16; pick a bfloat16 GPU (L4, "
                            "RTX4090, A100, H100) or a smaller budget")
        train["parallel"] = "fsdp"
    plan = Plan(budget, t.name, hw, model, train, params, fpt, tokens,
                tokens_per_step, fpt * tokens, seconds,
                (hours * hw.price_usd[0], hours * hw.price_usd[1]), layout["memory"],
                parallelism, layout["checkpointing"], LOSS_FIT.loss(params, tokens),
                mfu)
    plan.notes = _notes(plan)
    return plan


def _notes(plan: Plan) -> list[str]:
    """The assumptions and warnings a reader should see next to the numbers."""
    hw, m = plan.hardware, plan.model
    notes = [f"prepare the data with `--vocab-size {m['vocab_size']}`",
             f"assumes {plan.mfu:.0%} MFU of {hw.peak_tflops:g} TFLOP/s "
             f"({hw.dtype}) per device and keeps {RESERVE:.0%} of the budget for "
             "start-up, compilation and checkpoints"]
    if plan.budget.count > 1:
        notes.append(f"launch with `torchrun --nproc_per_node {plan.budget.count}`; "
                     f"batch_size and grad_accum are per GPU ({plan.parallelism})")
    if plan.activation_checkpointing:
        notes.append("needs activation checkpointing to fit (+1/3 compute, counted)")
    if not FITTED_PARAMS[0] <= plan.params <= FITTED_PARAMS[1]:
        uniform = math.log(m["vocab_size"])  # the loss of guessing uniformly
        notes.append(f"{fmt_count(plan.params)} parameters is outside the loss fit's "
                     f"range ({fmt_count(FITTED_PARAMS[0])}-"
                     f"{fmt_count(FITTED_PARAMS[1])}): the expected loss is an "
                     "extrapolation, not a prediction"
                     + (f", here even above ln(vocab_size) = {uniform:.2f}, the loss "
                        "of uniform guessing" if plan.expected_loss > uniform else ""))
    corpus = CALIBRATION.get("default_corpus", {})
    if corpus.get("tokens"):
        epochs = plan.tokens / corpus["tokens"]
        notes.append(f"{epochs:,.{1 if epochs < 10 else 0}f} epochs of the default "
                     f"stdlib corpus (~{fmt_count(corpus['tokens'])} tokens at "
                     "vocab 8192)"
                     + ("; beyond ~4 epochs repeated data helps less (Muennighoff "
                        "et al. 2023): add a bigger corpus, e.g. a FineWeb-Edu "
                        "sample with `prepare --source URL`" if epochs > 4 else ""))
    return notes


def _round(x: float, digits: int = 3) -> float:
    """x rounded to `digits` significant digits: 0.0023456 -> 0.00235."""
    return float(f"{x:.{digits}g}")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # always has a '.' or an exponent: stays a float
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # a TOML basic string uses JSON's escapes


def fmt_count(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def fmt_duration(seconds: float) -> str:
    """5400 -> '1.5 h'; 90 -> '1.5 min'."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


# ---------------------------------------------------------------- node estimates

ESTIMATE_KINDS: dict[str, dict[str, Any]] = {
    # kind: its keys and their defaults (None: taken from the track's plan)
    "reading": {},
    "tokenizer": {"bytes": None, "impl": "ours"},
    "data": {"bytes": None},
    "pretrain": {"budget": None, "tokens_per_param": 20.0},
    "train": {"tokens": 1_000_000, "budget": None},
    "finetune": {"tokens": None, "fraction": 0.01, "method": "full", "budget": None},
    "eval": {"tokens": 1_000_000, "budget": None},
    "inference": {"tokens": 1000, "batch": 1, "budget": None},
    "quantize": {"tokens": 100_000, "budget": None},
    "serve": {"requests": 100, "tokens": 128, "concurrency": 1, "budget": None},
    "distributed": {"gpus": None, "budget": None},
}


def node_estimate(spec: dict[str, Any], track: str) -> dict[str, Any]:
    """The numbers of a roadmap node's estimate card, for one track.

    `spec` is the node's `estimate = {kind = "...", ...}` in book/roadmap.toml.
    Every kind runs on the hardware of the track's first budget preset (or of
    `budget` if the spec gives one), with the model that preset's plan trains:

    - reading: no compute.
    - tokenizer: train the BPE tokenizer on `bytes` of text (default: the stdlib
      corpus) at the measured bytes/s of `impl` ("ours" or "hf"); always on a CPU.
    - data: the whole `prepare` pipeline (read, clean, dedup, redact, train the
      tokenizer, encode, write shards) at its measured bytes/s; on a CPU.
    - pretrain: the plan itself.
    - train: `tokens` more training tokens of the plan's model (an experiment).
    - finetune: `tokens` (default: `fraction` of the pretraining tokens) of full
      finetuning, or of LoRA (method="lora": no weight gradients for the frozen
      base, ~2/3 of the FLOPs, and no optimizer state for it).
    - eval: a forward pass over `tokens` tokens.
    - inference: generate `tokens` tokens for `batch` sequences with a KV cache.
      Each step reads all weights from memory, so at small batches decoding is
      bound by memory bandwidth, not FLOPs: we take the slower of the two.
    - quantize: read the weights, write them in int8, and measure perplexity
      before and after on `tokens` tokens.
    - serve: `requests` completions of `tokens` tokens, `concurrency` at a time.
    - distributed: the plan's run data-parallel on `gpus` devices (default: the
      preset's count, at least 2), with one ring all-reduce of the fp32 gradients
      per step, 2 (n-1)/n x 4 bytes x N over the link, not overlapped: an upper
      bound on the communication time.

    Returns hardware, count, flops, seconds, cost_usd {low, high}, memory_bytes
    (per device) and a one-line note. Deterministic: numbers come from
    calibration.json, never from timing this machine.
    """
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in ESTIMATE_KINDS:
        raise UserError(f"estimate kind {kind!r}: choose one of "
                        f"{', '.join(ESTIMATE_KINDS)}")
    unknown = set(spec) - set(ESTIMATE_KINDS[kind])
    if unknown:
        raise UserError(f"estimate kind {kind!r}: unknown key(s) "
                        f"{', '.join(sorted(unknown))}; it takes "
                        f"{', '.join(ESTIMATE_KINDS[kind]) or 'no keys'}")
    s = {**ESTIMATE_KINDS[kind], **spec}
    t = get_track(track)
    if kind in ("tokenizer", "data"):
        return _cpu_estimate(kind, s, track)
    if kind == "reading":
        hw = HARDWARE[parse_budget(t.budgets[0]).hardware]
        return _estimate(kind, track, hw, 1, 0.0, 0.0, 0.0,
                         "reading and small experiments only")
    plan = _cached_plan(s["budget"] or t.budgets[0], t.name,
                        s.get("tokens_per_param", 20.0))
    return _model_estimate(kind, s, plan)


@functools.lru_cache(maxsize=64)
def _cached_plan(budget: str, track: str, tokens_per_param: float) -> Plan:
    """make_plan, remembered: the book asks for the same few plans many times."""
    return make_plan(budget, track, tokens_per_param)


def _estimate(kind: str, track: str, hw: Hardware, count: int, flops: float,
              seconds: float, memory: float, note: str) -> dict[str, Any]:
    hours = seconds / 3600 * count
    return {"kind": kind, "track": track,
            "hardware": f"{count}x {hw.name}" if count > 1 else hw.name,
            "hardware_key": hw.key, "count": count, "flops": flops,
            "seconds": seconds,
            "cost_usd": {"low": hours * hw.price_usd[0],
                         "high": hours * hw.price_usd[1]},
            "memory_bytes": memory, "note": note}


def _cpu_estimate(kind: str, s: dict[str, Any], track: str) -> dict[str, Any]:
    """Tokenizer training and data preparation: CPU work measured in bytes/s."""
    corpus = CALIBRATION["default_corpus"]
    size = s["bytes"] or corpus["bytes"]
    if kind == "tokenizer":
        if s["impl"] not in ("ours", "hf"):
            raise UserError(f"estimate tokenizer impl {s['impl']!r}: 'ours' or 'hf'")
        rate = CALIBRATION["tokenizer_train"][s["impl"]]
        note = (f"BPE training ({s['impl']}) on {size / 1e6:.3g} MB of text at "
                f"{rate['bytes_per_s'] / 1e6:.2g} MB/s, measured on the stdlib corpus")
    else:
        rate = CALIBRATION["data_prepare"]
        note = (f"`prepare` (clean, dedup, redact, tokenize, write) on "
                f"{size / 1e6:.3g} MB at {rate['bytes_per_s'] / 1e6:.2g} MB/s, "
                "measured on the stdlib corpus")
    seconds = size / rate["bytes_per_s"]
    memory = size * rate["memory_bytes_per_byte"]
    return _estimate(kind, track, HARDWARE["cpu"], 1, 0.0, seconds, memory, note)


def _model_estimate(kind: str, s: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Kinds that run the track's planned model on the track's hardware."""
    hw, count, m = plan.hardware, plan.budget.count, plan.model
    flops_per_s = count * hw.peak_tflops * 1e12 * plan.mfu
    value_bytes = 4 if hw.dtype == "float32" else 2
    weights = plan.params * value_bytes
    size = f"{fmt_count(plan.params)}-parameter model"
    if kind == "pretrain":
        return _estimate(kind, plan.track, hw, count, plan.train_flops, plan.seconds,
                         plan.memory["total"], f"the plan for {plan.budget.text}: "
                         f"{size}, {fmt_count(plan.tokens)} tokens")
    if kind in ("train", "finetune"):
        if kind == "finetune" and s["method"] not in ("full", "lora"):
            raise UserError(f"estimate finetune method {s['method']!r}: "
                            "'full' or 'lora'")
        lora = kind == "finetune" and s["method"] == "lora"
        tokens = s["tokens"] if s["tokens"] is not None else s["fraction"] * plan.tokens
        flops = tokens * plan.flops_per_token * (2 / 3 if lora else 1)
        memory = plan.memory["total"]
        if lora:  # frozen weights, no gradients or AdamW state for them
            memory += weights - plan.memory["model_states"]
        return _estimate(kind, plan.track, hw, count, flops, flops / flops_per_s,
                         memory, f"{'LoRA' if lora else 'full'} training of the "
                         f"{size} on {fmt_count(tokens)} tokens")
    if kind in ("eval", "quantize"):
        passes = 2 if kind == "quantize" else 1  # before and after quantizing
        flops = passes * s["tokens"] * forward_flops_per_token(m)
        seconds = flops / flops_per_s
        memory = weights + training_memory(m, plan.train["batch_size"], hw.dtype
                                           )["logits"]
        note = f"forward passes of the {size} over {fmt_count(s['tokens'])} tokens"
        if kind == "quantize":
            seconds += (weights + plan.params) / (hw.bandwidth_gbs * 1e9)
            memory += plan.params  # the int8 copy, one byte per weight
            note = ("int8 weights, one byte each, plus perplexity before and after "
                    f"on {fmt_count(s['tokens'])} tokens ({size})")
        return _estimate(kind, plan.track, hw, count, flops, seconds, memory, note)
    if kind in ("inference", "serve"):
        batch = s["batch"] if kind == "inference" else s["concurrency"]
        rounds = 1 if kind == "inference" else math.ceil(s["requests"] / batch)
        tokens = min(s["tokens"], m["context_length"])
        cache = kv_cache_bytes(m, tokens, batch, value_bytes)
        # one decoding step: FLOPs for `batch` tokens at half the context on
        # average, and a read of all weights plus (on average) half the cache
        step_flops = batch * forward_flops_per_token(m, tokens / 2)
        compute = step_flops / (hw.peak_tflops * 1e12 * plan.mfu)
        memory_read = (weights + cache / 2) / (hw.bandwidth_gbs * 1e9)
        bound = "memory-bandwidth" if memory_read > compute else "compute"
        steps = rounds * tokens
        return _estimate(kind, plan.track, hw, 1, steps * step_flops,
                         steps * max(compute, memory_read), weights + cache,
                         f"{rounds * batch} x {tokens} tokens with a KV cache, batch "
                         f"{batch}, {size}: {bound}-bound")
    # distributed
    gpus = s["gpus"] or max(2, count)
    if gpus < 1:
        raise UserError(f"estimate distributed gpus {gpus!r}: must be >= 1")
    compute_seconds = plan.train_flops / (gpus * hw.peak_tflops * 1e12 * plan.mfu)
    if hw.device != "cuda":  # processes on one machine share its cores
        compute_seconds = plan.train_flops / flops_per_s
    allreduce = 2 * (gpus - 1) / gpus * 4 * plan.params / (hw.link_gbs * 1e9)
    comm_seconds = plan.train["max_steps"] * allreduce
    where = (f"{gpus} processes sharing the CPU (no speed-up)"
             if hw.device != "cuda" else f"{gpus} GPUs")
    return _estimate(kind, plan.track, hw, gpus, plan.train_flops,
                     compute_seconds + comm_seconds, plan.memory["total"],
                     f"the {plan.budget.text} plan data-parallel on {where}; "
                     f"all-reduce {fmt_duration(allreduce)} per step, "
                     f"{comm_seconds / (compute_seconds + comm_seconds):.0%} of the "
                     "time if not overlapped")


# ------------------------------------------------------------------- measurement


def measure_cpu(steps: int = 6) -> dict[str, Any]:
    """Time this CPU: its fp32 matmul peak and a small GPT's training steps.

    We measure one thread in CPU time (`time.process_time`), which other programs
    on a shared machine barely disturb, and multiply by torch's thread count: two
    to eight cores scale nearly linearly on these matmuls. The peak is the best of
    twenty 1024 x 1024 x 1024 fp32 matmuls (2 n^3 FLOPs each); the MFU is the
    median rate of a beginner-sized GPT's training step (forward, backward, AdamW),
    counted with `flops_per_token`, over that peak. Takes ~10 s.
    """
    import torch
    from tqdm import tqdm

    from .model import GPT, ModelConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        best = math.inf
        for _ in range(20):
            start = time.process_time()
            a @ b
            best = min(best, time.process_time() - start)
        model = {"vocab_size": 8192, "context_length": 256, "n_layer": 4,
                 "n_head": 4, "d_model": 128}
        gpt = GPT(ModelConfig(**model))
        optimizer = torch.optim.AdamW(gpt.parameters(), lr=1e-3)
        x = torch.randint(0, 8192, (16, 256))  # (B, T)
        times = []
        for _ in tqdm(range(steps + 2), desc="measuring", file=sys.stderr,
                      disable=not sys.stderr.isatty()):
            start = time.process_time()
            _, loss = gpt(x, x)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    src, dst = torch.ones(2**26), torch.empty(2**26)  # 256 MiB each
    copy = math.inf
    for _ in range(5):
        start = time.perf_counter()
        dst.copy_(src)
        copy = min(copy, time.perf_counter() - start)
    peak = 2 * 1024**3 / best  # FLOP/s of one thread
    achieved = x.numel() * flops_per_token(model) / statistics.median(times[2:])
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    return {"description": f"{platform.machine()}, {threads} threads, measured",
            "peak_fp32_tflops": _round(peak * threads / 1e12),
            "mfu": _round(achieved / peak), "memory_gib": _round(memory),
            "bandwidth_gbs": _round(2 * src.nbytes / copy / 1e9), "threads": threads,
            "source": f"plan --measure on {datetime.date.today()}: one thread in CPU "
                      f"time x {threads} threads; best of 20 fp32 1024^3 matmuls; "
                      f"median of {steps} training steps of a 4-layer d_model-128 "
                      "GPT (batch 16 x 256); bandwidth: best of 5 copies of 256 MiB"}


# --------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget", metavar="BUDGET",
        help=f"compute budget: {BUDGET_HELP} (default: the track's first preset)")
    parser.add_argument(
        "--track", choices=TRACK_NAMES,
        help="recipe and roadmap: beginner (GPT-2 style, CPU), practitioner and "
             "researcher (Llama style); default: from the budget's hardware")
    parser.add_argument(
        "--tokens-per-param", type=float, default=20.0, metavar="R",
        help="training tokens per parameter; 20 is compute-optimal (Chinchilla), "
             "more gives a smaller model that is cheaper to run (default: 20)")
    parser.add_argument(
        "--mfu", type=float, metavar="F",
        help="model FLOPs utilization to assume, in (0, 1] (default: 0.4 on GPUs, "
             "measured on the CPU)")
    parser.add_argument("--json", action="store_true",
                        help="print the plan as JSON instead of a table and TOML")
    parser.add_argument(
        "--out", type=Path, metavar="FILE",
        help="also write the config TOML to FILE (for `train --config FILE`)")
    parser.add_argument(
        "--measure", action="store_true",
        help="time this CPU (matmul peak and a small GPT's training steps, ~10 s) "
             "and plan with the result instead of calibration.json")
    parser.add_argument(
        "--save-calibration", action="store_true",
        help="with --measure: store the result in the package's calibration.json")


def run(args: argparse.Namespace) -> int:
    catalog = HARDWARE
    if args.save_calibration and not args.measure:
        raise UserError("--save-calibration stores what --measure measured; "
                        "add --measure")
    if args.measure:
        section = measure_cpu()
        print(f"measured: peak {section['peak_fp32_tflops'] * 1e3:.0f} GFLOP/s fp32, "
              f"MFU {section['mfu']:.0%} ({section['threads']} threads)",
              file=sys.stderr)
        catalog = {**HARDWARE, "cpu": cpu_hardware(section)}
        if args.save_calibration:
            save_calibration({"cpu": section}, CALIBRATION_PATH)
            print(f"saved to {CALIBRATION_PATH}", file=sys.stderr)
    budget = args.budget or TRACKS[args.track or "beginner"].budgets[0]
    plan = make_plan(budget, args.track, args.tokens_per_param, args.mfu, catalog)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print_plan(plan)
    if args.out:
        write_text(args.out, plan.to_toml())
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def print_plan(plan: Plan) -> None:
    """The plan as a table, its notes, then the TOML to train with."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"plan: {plan.budget.text} ({plan.track} track)",
                  show_header=False)
    for label, value in plan.summary():
        table.add_row(label, value)
    console = Console(highlight=False)
    console.print(table)
    for note in plan.notes:
        console.print(f"- {note}", markup=False)
    print()
    print(plan.to_toml(), end="")
