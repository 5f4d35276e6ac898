"""The hardware the planner knows: peaks, memory, bandwidth and prices, with sources.

Each device is one keyword row of `Hardware`, with the source of its numbers and
the date they were read (prices drift; datasheets do not). The CPU is different:
no datasheet gives a laptop's sustained matmul rate, so we measure it. The
package ships one measurement in `calibration.json` (`measure_cpu`, taken on the
machine the book was built on), next to the other throughputs the book's
estimates use; `plan --calibrate` times the planned model on *your* machine
(`calibrate_cpu`) and keeps the result in your own file (`USER_CALIBRATION_PATH`),
which your plans then use instead.
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
                        "re-create it with `python -m llm_reference plan "
                        "--calibrate` (yours) or `--measure --save-calibration` "
                        "(the package's)") from None


def save_calibration(sections: dict[str, dict[str, Any]],
                     path: str | Path = CALIBRATION_PATH) -> None:
    """Replace whole sections of the calibration file, atomically."""
    calibration = load_calibration(path)
    calibration.update(sections)
    write_json(path, calibration)


CALIBRATION = load_calibration()

# Where `plan --calibrate` keeps this machine's measurement: the user's cache,
# never the package (which may be read-only, and is shared by every machine).
_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
USER_CALIBRATION_PATH = _CACHE / "llm-reference" / "calibration.json"
USER_CALIBRATION_FIELDS = {"peak_fp32_tflops", "mfu", "tokens_per_second", "shape",
                           "date"}


def load_user_calibration(path: str | Path = USER_CALIBRATION_PATH
                          ) -> dict[str, Any] | None:
    """The cpu section `plan --calibrate` measured here, or None if never run."""
    if not Path(path).exists():
        return None
    section = load_calibration(path).get("cpu")
    if not isinstance(section, dict) or not USER_CALIBRATION_FIELDS <= set(section):
        raise UserError(f"{path}: no measured cpu section; re-measure with "
                        f"`python -m llm_reference plan --calibrate` or delete it")
    return section


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
    tf32_tflops: float  # peak dense TF32 tensor TFLOP/s (= fp32 where there is none)
    memory_gib: float
    bandwidth_gbs: float  # memory bandwidth, GB/s
    link_gbs: float  # device-to-device bandwidth, one direction, GB/s
    price_usd: tuple[float, float]  # per device-hour (low, high)
    dtype: str = "bfloat16"  # the training precision the planner uses on it
    device: str = "cuda"  # torch device: "cuda", "mps", "cpu"
    mfu: float = GPU_MFU  # assumed (or measured) model FLOPs utilization
    device_name: str = ""  # regex for torch.cuda.get_device_name(), see below
    source: str
    date: str  # when the numbers were read from the source, YYYY-MM(-DD)

    @property
    def peak_tflops(self) -> float:
        """The peak in the training precision: tensor cores for 16 bits, else fp32."""
        return self.peak_tflops_for(self.dtype)

    def peak_tflops_for(self, dtype: str, tf32: bool = False) -> float:
        """The peak for matmuls in `dtype`. fp32 matmuls run on TF32 tensor cores
        when PyTorch is allowed to (`torch.set_float32_matmul_precision("high")`,
        which is what `tf32=True` means); then TF32 is the honest peak for MFU."""
        if dtype != "float32":
            return self.bf16_tflops
        return self.tf32_tflops if tf32 else self.fp32_tflops


# Prices, on-demand USD per GPU-hour, as published in 2026 (a price is a snapshot:
# check before you spend):
#   mercatus-ai.com/blog/cloud-gpu-pricing (May 2026; long-tail to hyperscaler)
#   deploybase.ai/articles/runpod-gpu-pricing (Mar 2026; RunPod spot, on-demand)
#   computeprices.com/gpus/t4 (Apr 2026)
#   usagepricing.com/blueprint/vast-ai (Jun 2026; vast.ai on-demand)
GPUS = (
    Hardware(key="T4", name="NVIDIA T4 16GB", bf16_tflops=65.0, fp32_tflops=8.1,
             tf32_tflops=8.1, memory_gib=15.0, bandwidth_gbs=320.0, link_gbs=15.75,
             price_usd=(0.35, 0.53), dtype="float16", device_name=r"\bT4\b",
             date="2026-04",
             source="NVIDIA T4 datasheet: 65 TFLOPS fp16 mixed precision (Turing "
                    "has no bf16 and no TF32), 8.1 fp32, 320 GB/s; PCIe 3.0 x16. "
                    "Price: GCP $0.35, AWS g4dn $0.53 (computeprices.com, Apr 2026)"),
    Hardware(key="L4", name="NVIDIA L4 24GB", bf16_tflops=121.0, fp32_tflops=30.3,
             tf32_tflops=60.0, memory_gib=22.5, bandwidth_gbs=300.0, link_gbs=32.0,
             price_usd=(0.44, 0.78), device_name=r"\bL4\b", date="2026-03",
             source="NVIDIA L4 datasheet: 242 bf16 TFLOPS with sparsity = 121 "
                    "dense, 120 TF32 with sparsity = 60 dense, 30.3 fp32, 300 GB/s; "
                    "PCIe 4.0 x16. Price: RunPod spot/on-demand (Mar 2026)"),
    Hardware(key="L40", name="NVIDIA L40 48GB", bf16_tflops=181.05,
             fp32_tflops=90.5, tf32_tflops=90.5, memory_gib=45.0,
             bandwidth_gbs=864.0, link_gbs=32.0, price_usd=(0.69, 1.40),
             device_name=r"\bL40\b", date="2026-12",
             source="NVIDIA L40 datasheet (2022): 362.1 bf16 TFLOPS with sparsity "
                    "= 181.05 dense, 181 TF32 with sparsity = 90.5 dense, 90.5 "
                    "fp32, 48 GB GDDR6 at 864 GB/s; PCIe 4.0 x16. Price: recalled "
                    "list prices of community clouds, not re-checked"),
    Hardware(key="L40S", name="NVIDIA L40S 48GB", bf16_tflops=362.05,
             fp32_tflops=91.6, tf32_tflops=183.0, memory_gib=45.0,
             bandwidth_gbs=864.0, link_gbs=32.0, price_usd=(0.79, 1.90),
             device_name=r"\bL40S\b", date="2026-12",
             source="NVIDIA L40S datasheet (2023): 733 bf16 TFLOPS with sparsity "
                    "= 362.05 dense (366 TF32 = 183 dense), 91.6 fp32, 48 GB GDDR6 "
                    "at 864 GB/s; PCIe 4.0 x16. Price: recalled list prices of "
                    "community clouds to hyperscalers, not re-checked"),
    Hardware(key="RTX4090", name="NVIDIA GeForce RTX 4090 24GB", bf16_tflops=165.2,
             fp32_tflops=82.6, tf32_tflops=82.6, memory_gib=24.0,
             bandwidth_gbs=1008.0, link_gbs=32.0, price_usd=(0.34, 0.88),
             device_name=r"\bRTX 4090\b", date="2026-06",
             source="NVIDIA Ada Lovelace architecture whitepaper, appendix A: 165.2 "
                    "bf16 tensor TFLOPS with fp32 accumulate (330.4 is with "
                    "sparsity), 82.6 TF32 and 82.6 fp32, 1008 GB/s; PCIe 4.0, no "
                    "NVLink. Price: RunPod $0.34 (Mar 2026, deploybase.ai) to "
                    "vast.ai on-demand $0.88 (Jun 2026)"),
    Hardware(key="A100-40GB", name="NVIDIA A100 SXM 40GB", bf16_tflops=312.0,
             fp32_tflops=19.5, tf32_tflops=156.0, memory_gib=40.0,
             bandwidth_gbs=1555.0, link_gbs=300.0, price_usd=(0.80, 3.00),
             device_name=r"\bA100\b.*\b40GB\b", date="2026-05",
             source="NVIDIA A100 datasheet: 312 bf16 TFLOPS dense, 156 TF32, 19.5 "
                    "fp32, 1555 GB/s, NVLink 600 GB/s (both directions). Price: "
                    "no separate 2026 listing found; the A100 80GB range of "
                    "mercatus-ai.com (May 2026) is an upper bound for the 40GB card"),
    Hardware(key="A100-80GB", name="NVIDIA A100 SXM 80GB", bf16_tflops=312.0,
             fp32_tflops=19.5, tf32_tflops=156.0, memory_gib=80.0,
             bandwidth_gbs=2039.0, link_gbs=300.0, price_usd=(0.80, 3.00),
             device_name=r"\bA100\b.*\b80GB\b", date="2026-05",
             source="NVIDIA A100 datasheet: 312 bf16 TFLOPS dense, 156 TF32, 19.5 "
                    "fp32, 2039 GB/s (SXM 80GB), NVLink 600 GB/s. Price: "
                    "mercatus-ai.com (May 2026)"),
    Hardware(key="H100-PCIe", name="NVIDIA H100 PCIe 80GB", bf16_tflops=756.5,
             fp32_tflops=51.0, tf32_tflops=378.0, memory_gib=79.6,
             bandwidth_gbs=2000.0, link_gbs=64.0, price_usd=(1.99, 4.00),
             device_name=r"\bH100 PCIE\b", date="2026-12",
             source="NVIDIA H100 datasheet (PCIe): 1513 bf16 TFLOPS with sparsity "
                    "= 756.5 dense, 756 TF32 with sparsity = 378 dense, 51 fp32, "
                    "80 GB HBM2e at 2 TB/s; PCIe 5.0 x16 (64 GB/s one way). Price: "
                    "recalled list prices, not re-checked"),
    Hardware(key="H100-NVL", name="NVIDIA H100 NVL 94GB", bf16_tflops=835.5,
             fp32_tflops=60.0, tf32_tflops=417.5, memory_gib=93.6,
             bandwidth_gbs=3900.0, link_gbs=300.0, price_usd=(2.49, 4.50),
             device_name=r"\bH100 NVL\b", date="2026-12",
             source="NVIDIA H100 datasheet (NVL): 1671 bf16 TFLOPS with sparsity "
                    "= 835.5 dense, 835 TF32 with sparsity = 417.5 dense, 60 fp32, "
                    "94 GB HBM3 at 3.9 TB/s; NVLink bridge 600 GB/s (both "
                    "directions). Price: recalled list prices, not re-checked"),
    Hardware(key="H100", name="NVIDIA H100 SXM5 80GB", bf16_tflops=989.4,
             fp32_tflops=67.0, tf32_tflops=494.7, memory_gib=79.6,
             bandwidth_gbs=3350.0, link_gbs=450.0, price_usd=(1.99, 5.00),
             device_name=r"\bH100 (SXM\d?|80GB HBM3)\b", date="2026-05",
             source="NVIDIA H100 datasheet (SXM): 1979 bf16 TFLOPS with sparsity = "
                    "989.4 dense, 989 TF32 with sparsity = 494.7 dense, 67 fp32, "
                    "3.35 TB/s, NVLink 900 GB/s (both directions); nvidia-smi "
                    "shows 81559 MiB. Price: mercatus-ai.com (May 2026)"),
    Hardware(key="H200", name="NVIDIA H200 SXM 141GB", bf16_tflops=989.4,
             fp32_tflops=67.0, tf32_tflops=494.7, memory_gib=140.4,
             bandwidth_gbs=4800.0, link_gbs=450.0, price_usd=(2.50, 7.00),
             device_name=r"\bH200\b(?! NVL)", date="2026-05",
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
             fp32_tflops=13.6, tf32_tflops=13.6, memory_gib=48.0, bandwidth_gbs=400.0,
             link_gbs=0.0,
             price_usd=(0.0, 0.0), dtype="float32", device="mps", mfu=0.25,
             date="2023-01",
             source="Apple M2 Max: 400 GB/s (Apple, Jan 2023); 13.6 TFLOPS fp32 is "
                    "a third-party estimate; your own machine: no hourly price"),
    Hardware(key="M3Max", name="Apple M3 Max (40-core GPU, 64 GB)", bf16_tflops=14.3,
             fp32_tflops=14.3, tf32_tflops=14.3, memory_gib=48.0, bandwidth_gbs=400.0,
             link_gbs=0.0,
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
                    fp32_tflops=peak, tf32_tflops=peak, memory_gib=c["memory_gib"],
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


def hardware_for_device_name(device_name: str,
                             catalog: dict[str, Hardware] | None = None
                             ) -> Hardware | None:
    """The catalog row of a GPU as torch names it, or None when we do not know it.

    `torch.cuda.get_device_name()` says "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100
    PCIe", "NVIDIA L40S" or "Tesla T4". Each row's `device_name` pattern matches
    whole words of that name (any case, '-' and '_' read as spaces), so "L4"
    does not match "L40S" and the PCIe H100 does not get the SXM's peak. An
    unknown or ambiguous card gets None: no MFU is better than a wrong one.
    """
    words = " ".join(re.sub(r"[-_]", " ", device_name).split())
    found = [hw for hw in (catalog or HARDWARE).values()
             if hw.device_name and re.search(hw.device_name, words, re.IGNORECASE)]
    return found[0] if len(found) == 1 else None


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


def calibrate_cpu(config: ModelConfig, micro_batch: int, steps: int = 3
                  ) -> dict[str, Any]:
    """Time real training steps of `config` on this machine, in wall-clock time.

    Unlike `measure_cpu` (CPU time of one thread, for a stable number to ship),
    this is what a run here will see: all threads, and whatever else the machine
    is doing. It times `steps` steps (forward, backward, AdamW) on micro-batches of
    random tokens after one warm-up step, and the best of five all-thread 1024^3
    matmuls for the peak. The returned cpu section plans with the model's
    achieved rate: peak x mfu = tokens/s x flops_per_token.
    """
    import torch

    from .model import GPT

    torch.manual_seed(0)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    matmul = math.inf
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        matmul = min(matmul, time.perf_counter() - start)
    peak = 2 * 1024**3 / matmul  # FLOP/s
    gpt = GPT(config)
    optimizer = torch.optim.AdamW(gpt.parameters(), lr=1e-4)
    x = torch.randint(0, config.vocab_size, (micro_batch, config.context_length))
    times = []  # x is (B, T): B x T tokens per step
    for _ in tqdm_range(steps + 1, "calibrating"):
        start = time.perf_counter()
        _, loss = gpt(x, x)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    tokens_per_s = x.numel() / statistics.median(times[1:])
    achieved = tokens_per_s * flops_per_token(config)
    threads = torch.get_num_threads()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    shape = (f"{config.n_layer} layers, d_model {config.d_model}, vocab "
             f"{config.vocab_size}, batch {micro_batch} x {config.context_length}")
    return {"description": f"{platform.machine()}, {threads} threads, measured "
                           f"here on {now}",
            "peak_fp32_tflops": significant(peak / 1e12),
            "mfu": significant(achieved / peak), "memory_gib": significant(memory),
            "bandwidth_gbs": significant(_copy_bandwidth() / 1e9),
            "threads": threads, "tokens_per_second": significant(tokens_per_s),
            "shape": shape, "date": now,
            "source": f"plan --calibrate on {now}: wall-clock median of {steps} "
                      f"training steps ({shape}) and best of 5 fp32 1024^3 "
                      f"matmuls, {threads} threads"}


def tqdm_range(n: int, desc: str) -> Any:
    """range(n) with a progress bar on a terminal (stderr), silent elsewhere."""
    from tqdm import tqdm

    return tqdm(range(n), desc=desc, file=sys.stderr, disable=not sys.stderr.isatty())


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

    from .model import GPT

    gpt = GPT(MEASURED_MODEL)
    optimizer = torch.optim.AdamW(gpt.parameters(), lr=1e-3)
    x = torch.randint(0, MEASURED_MODEL.vocab_size, (16, 256))  # (B, T)
    times = []
    for _ in tqdm_range(steps + 2, "measuring"):
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
