"""The hardware the planner knows: peaks, memory, bandwidth and prices, with sources.

Each device is one keyword row of `Hardware`, with the source of its numbers and
the date they were read (prices drift; datasheets do not). The CPU is different:
no datasheet gives a laptop's sustained matmul rate, so we measure it
(`measure_cpu`) and keep the result in `calibration.json`, next to the other
throughputs the book's estimates use (tokenizer training, data preparation).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import write_json
from .errors import UserError
from .flops import flops_per_token
from .model_config import ModelConfig
from .units import GiB, significant

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

# ---------------------------------------------------------------------- catalog

# MFU: PaLM 540B reached 46 % and GPT-3 21 % (Chowdhery et al. 2022, table 3);
# well-tuned single-node bf16 runs of GPT-2-sized models (torch.compile, flash
# attention) commonly report 30-50 %. 40 % is our middle-of-the-road assumption
# for every GPU, not a measurement; pass --mfu to use your own.
GPU_MFU = 0.40


@dataclass(frozen=True, kw_only=True)
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
    dtype: str = "bfloat16"  # the training precision the planner uses on it
    device: str = "cuda"  # torch device: "cuda", "mps", "cpu"
    mfu: float = GPU_MFU  # assumed (or measured) model FLOPs utilization
    source: str
    date: str  # when the numbers were read from the source, YYYY-MM(-DD)

    @property
    def peak_tflops(self) -> float:
        """The peak in the training precision: tensor cores for 16 bits, else fp32."""
        return self.fp32_tflops if self.dtype == "float32" else self.bf16_tflops


# Prices, on-demand USD per GPU-hour, as published in 2026 (a price is a snapshot:
# check before you spend):
#   mercatus-ai.com/blog/cloud-gpu-pricing (May 2026; long-tail to hyperscaler)
#   deploybase.ai/articles/runpod-gpu-pricing (Mar 2026; RunPod spot, on-demand)
#   computeprices.com/gpus/t4 (Apr 2026)
#   usagepricing.com/blueprint/vast-ai (Jun 2026; vast.ai on-demand)
GPUS = (
    Hardware(key="T4", name="NVIDIA T4 16GB", bf16_tflops=65.0, fp32_tflops=8.1,
             memory_gib=15.0, bandwidth_gbs=320.0, link_gbs=15.75,
             price_usd=(0.35, 0.53), dtype="float16", date="2026-04",
             source="NVIDIA T4 datasheet: 65 TFLOPS fp16 mixed precision (Turing "
                    "has no bf16), 8.1 fp32, 320 GB/s; PCIe 3.0 x16. Price: GCP "
                    "$0.35, AWS g4dn $0.53 (computeprices.com, Apr 2026)"),
    Hardware(key="L4", name="NVIDIA L4 24GB", bf16_tflops=121.0, fp32_tflops=30.3,
             memory_gib=22.5, bandwidth_gbs=300.0, link_gbs=32.0,
             price_usd=(0.44, 0.78), date="2026-03",
             source="NVIDIA L4 datasheet: 242 bf16 TFLOPS with sparsity = 121 "
                    "dense, 30.3 fp32, 300 GB/s; PCIe 4.0 x16. Price: RunPod "
                    "spot/on-demand (Mar 2026)"),
    Hardware(key="RTX4090", name="NVIDIA GeForce RTX 4090 24GB", bf16_tflops=165.2,
             fp32_tflops=82.6, memory_gib=24.0, bandwidth_gbs=1008.0, link_gbs=32.0,
             price_usd=(0.34, 0.88), date="2026-06",
             source="NVIDIA Ada Lovelace architecture whitepaper, appendix A: 165.2 "
                    "bf16 tensor TFLOPS with fp32 accumulate (330.4 is with "
                    "sparsity), 82.6 fp32, 1008 GB/s; PCIe 4.0, no NVLink. Price: "
                    "RunPod $0.34 (Mar 2026, deploybase.ai) to vast.ai on-demand "
                    "$0.88 (Jun 2026)"),
    Hardware(key="A100-40GB", name="NVIDIA A100 SXM 40GB", bf16_tflops=312.0,
             fp32_tflops=19.5, memory_gib=40.0, bandwidth_gbs=1555.0,
             link_gbs=300.0, price_usd=(1.29, 3.67), date="2025",
             source="NVIDIA A100 datasheet: 312 bf16 TFLOPS dense, 19.5 fp32, 1555 "
                    "GB/s, NVLink 600 GB/s (both directions). Price: Lambda $1.29 "
                    "to GCP a2-highgpu-1g $3.67, list prices recalled from "
                    "2024-25, not re-checked; A100 prices have fallen since"),
    Hardware(key="A100-80GB", name="NVIDIA A100 SXM 80GB", bf16_tflops=312.0,
             fp32_tflops=19.5, memory_gib=80.0, bandwidth_gbs=2039.0,
             link_gbs=300.0, price_usd=(0.80, 3.00), date="2026-05",
             source="NVIDIA A100 datasheet: 312 bf16 TFLOPS dense, 19.5 fp32, 2039 "
                    "GB/s (SXM 80GB), NVLink 600 GB/s. Price: mercatus-ai.com (May "
                    "2026)"),
    Hardware(key="H100", name="NVIDIA H100 SXM5 80GB", bf16_tflops=989.4,
             fp32_tflops=67.0, memory_gib=79.6, bandwidth_gbs=3350.0,
             link_gbs=450.0, price_usd=(1.99, 5.00), date="2026-05",
             source="NVIDIA H100 datasheet (SXM): 1979 bf16 TFLOPS with sparsity = "
                    "989.4 dense, 67 fp32, 3.35 TB/s, NVLink 900 GB/s (both "
                    "directions); nvidia-smi shows 81559 MiB. Price: mercatus-ai.com "
                    "(May 2026)"),
    Hardware(key="H200", name="NVIDIA H200 SXM 141GB", bf16_tflops=989.4,
             fp32_tflops=67.0, memory_gib=140.4, bandwidth_gbs=4800.0,
             link_gbs=450.0, price_usd=(2.50, 7.00), date="2026-05",
             source="NVIDIA H200 datasheet (SXM): same compute as the H100 SXM, 141 "
                    "GB HBM3e at 4.8 TB/s; nvidia-smi shows 143771 MiB. Price: "
                    "mercatus-ai.com (May 2026)"),
)

# Apple publishes memory bandwidth but no TFLOPS: ours are the usual third-party
# estimate, GPU cores x 128 fp32 lanes x 2 FLOP x ~1.4 GHz, and the GPU runs 16-bit
# math at the fp32 rate (no matrix units before the M5), so we train in fp32 on
# "mps". Memory: a 64 GB machine, of which macOS lets the GPU use about 3/4. The
# MFU of 25 % is an assumption (PyTorch's MPS backend is less tuned than CUDA).
APPLE = (
    Hardware(key="M2Max", name="Apple M2 Max (38-core GPU, 64 GB)", bf16_tflops=13.6,
             fp32_tflops=13.6, memory_gib=48.0, bandwidth_gbs=400.0, link_gbs=0.0,
             price_usd=(0.0, 0.0), dtype="float32", device="mps", mfu=0.25,
             date="2023-01",
             source="Apple M2 Max: 400 GB/s (Apple, Jan 2023); 13.6 TFLOPS fp32 is "
                    "a third-party estimate; your own machine: no hourly price"),
    Hardware(key="M3Max", name="Apple M3 Max (40-core GPU, 64 GB)", bf16_tflops=14.3,
             fp32_tflops=14.3, memory_gib=48.0, bandwidth_gbs=400.0, link_gbs=0.0,
             price_usd=(0.0, 0.0), dtype="float32", device="mps", mfu=0.25,
             date="2023-10",
             source="Apple M3 Max: 400 GB/s (Apple, Oct 2023); 14.3 TFLOPS fp32 is "
                    "a third-party estimate; your own machine: no hourly price"),
)

# Without a measurement we assume a modest laptop: 2 cores sustaining ~50 GFLOP/s
# each in an fp32 matmul (AVX2 FMA) and a third of that in a training step.
DEFAULT_CPU = {"description": "assumed: 2 laptop cores, not measured",
               "peak_fp32_tflops": 0.1, "mfu": 0.3, "memory_gib": 8.0,
               "bandwidth_gbs": 20.0, "source": "conservative default, not measured",
               "date": "never measured"}


def cpu_hardware(section: dict[str, Any] | None = None) -> Hardware:
    """The CPU as a Hardware entry, from a calibration section (measured) or defaults.

    A CPU has no tensor cores: its peak is the fp32 matmul rate we measured, and its
    MFU is what a small GPT's training step reached relative to that peak.
    """
    c = {**DEFAULT_CPU, **(section or {})}
    peak = c["peak_fp32_tflops"]
    return Hardware(key="cpu", name=f"CPU ({c['description']})", bf16_tflops=peak,
                    fp32_tflops=peak, memory_gib=c["memory_gib"],
                    bandwidth_gbs=c["bandwidth_gbs"], link_gbs=5.0,
                    price_usd=(0.0, 0.0), dtype="float32", device="cpu",
                    mfu=c["mfu"], source=c["source"], date=c["date"])


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


# ------------------------------------------------------------------- measurement

MEASURED_MODEL = ModelConfig(vocab_size=8192, context_length=256, n_layer=4,
                             n_head=4, d_model=128)  # a beginner-sized GPT


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

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        peak = 2 * 1024**3 / _best_matmul_seconds()  # FLOP/s of one thread
        tokens, step_seconds = _training_step_seconds(steps)
    finally:
        torch.set_num_threads(threads)
    achieved = tokens * flops_per_token(MEASURED_MODEL) / step_seconds
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    today = datetime.date.today()
    return {"description": f"{platform.machine()}, {threads} threads, measured",
            "peak_fp32_tflops": significant(peak * threads / 1e12),
            "mfu": significant(achieved / peak), "memory_gib": significant(memory),
            "bandwidth_gbs": significant(_copy_bandwidth() / 1e9),
            "threads": threads, "date": str(today),
            "source": f"plan --measure on {today}: one thread in CPU "
                      f"time x {threads} threads; best of 20 fp32 1024^3 matmuls; "
                      f"median of {steps} training steps of a 4-layer d_model-128 "
                      "GPT (batch 16 x 256); bandwidth: best of 5 copies of 256 MiB"}


def _best_matmul_seconds() -> float:
    """CPU seconds of the fastest of twenty 1024^3 fp32 matmuls."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = math.inf
    for _ in range(20):
        start = time.process_time()
        a @ b
        best = min(best, time.process_time() - start)
    return best


def _training_step_seconds(steps: int) -> tuple[int, float]:
    """Tokens per step and the median CPU seconds of `steps` training steps of
    MEASURED_MODEL (after two warm-up steps)."""
    import torch
    from tqdm import tqdm

    from .model import GPT

    gpt = GPT(MEASURED_MODEL)
    optimizer = torch.optim.AdamW(gpt.parameters(), lr=1e-3)
    x = torch.randint(0, MEASURED_MODEL.vocab_size, (16, 256))  # (B, T)
    times = []
    for _ in tqdm(range(steps + 2), desc="measuring", file=sys.stderr,
                  disable=not sys.stderr.isatty()):
        start = time.process_time()
        _, loss = gpt(x, x)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.process_time() - start)
    return x.numel(), statistics.median(times[2:])


def _copy_bandwidth() -> float:
    """Bytes per second of the best of five copies of 256 MiB (read + write)."""
    import torch

    src, dst = torch.ones(2**26), torch.empty(2**26)  # 256 MiB each
    copy = math.inf
    for _ in range(5):
        start = time.perf_counter()
        dst.copy_(src)
        copy = min(copy, time.perf_counter() - start)
    return 2 * src.nbytes / copy
