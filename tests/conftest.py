"""Shared test settings and fixtures.

One thread per process, so that two pytest workers share two cores. The data and
the trained run are session fixtures: under pytest-xdist each worker makes its own,
once, in its own temporary folder (`llm_reference.quickstart`, with that folder as
its cache). Tests read them; a test that writes into a run takes `run_copy`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from llm_reference.config import RunConfig  # noqa: E402
from llm_reference.metrics_plot import read_metrics  # noqa: E402
from llm_reference.model import GPT, ModelConfig  # noqa: E402
from llm_reference.quickstart import tiny_base, tiny_data  # noqa: E402

torch.set_num_threads(1)

# 2 layers, d_model 32, context 16: a training step takes milliseconds
TINY_MODEL = {"context_length": 16, "n_layer": 2, "n_head": 2, "d_model": 32}
TINY_TRAIN = {"batch_size": 4, "max_steps": 20, "lr": 3e-3, "min_lr": 3e-4,
              "warmup_steps": 5, "eval_interval": 10, "eval_steps": 2,
              "checkpoint_interval": 10, "keep_last": 5, "spike_warmup": 10}


@pytest.fixture(scope="session")
def quickstart_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quickstart")


@pytest.fixture(scope="session")
def data_dir(quickstart_cache) -> Path:
    """A prepared folder (read only): ~150 kB of stdlib source, vocabulary 384."""
    return tiny_data(max_bytes=150_000, vocab_size=384, val_fraction=0.2,
                     near_dup_threshold=None, cache_dir=quickstart_cache)


@pytest.fixture(scope="session")
def tiny_config(data_dir) -> Callable[..., RunConfig]:
    """`tiny_config(**train)`: a config of TINY_MODEL on `data_dir`, 20 steps."""

    def make(**train: object) -> RunConfig:
        return RunConfig.from_dict({
            "model": {"vocab_size": "auto", **TINY_MODEL},
            "train": {"data_dir": str(data_dir), **TINY_TRAIN, **train}})

    return make


# the same tiny model as a `train` command line (the tiny preset, made smaller)
TINY_SETS = ["model.n_layer=2", "model.n_head=2", "model.d_model=32",
             "model.context_length=16", "train.batch_size=4", "train.eval_interval=5",
             "train.eval_steps=2", "train.checkpoint_interval=5",
             "train.warmup_steps=2"]


@pytest.fixture(scope="session")
def tiny_args(data_dir) -> Callable[..., list[str]]:
    """`tiny_args(out, data=data_dir)`: the arguments of `python -m llm_reference`
    that train the tiny model into `out`."""

    def args(out: Path, data: Path = data_dir) -> list[str]:
        return ["train", "--preset", "tiny", "--data", str(data), "--out", str(out),
                *[a for s in TINY_SETS for a in ("--set", s)]]

    return args


@pytest.fixture(scope="session")
def tiny_run(data_dir, quickstart_cache) -> Path:
    """A trained run (read only): TINY_MODEL with context 64, batch 8, 20 steps,
    checkpoints at steps 10 and 20."""
    run = tiny_base(data_dir, 20, model={**TINY_MODEL, "context_length": 64},
                    cache_dir=quickstart_cache,
                    **{**TINY_TRAIN, "batch_size": 8, "seed": 1337})
    return run.folder


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A copy of `tiny_run` that the test may change."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


@pytest.fixture(scope="session")
def read_records() -> Callable[[Path], tuple[list[dict], list[dict]]]:
    """`read_records(run)`: (step records, event records) of its metrics.jsonl."""

    def read(run_dir: Path) -> tuple[list[dict], list[dict]]:
        records = read_metrics(Path(run_dir) / "metrics.jsonl")
        return ([r for r in records if "event" not in r],
                [r for r in records if "event" in r])

    return read


@pytest.fixture(scope="session")
def losses(read_records) -> Callable[[Path], dict[int, float]]:
    """`losses(run)`: {step: training loss} of its logged steps."""
    return lambda run_dir: {r["step"]: r["loss"] for r in read_records(run_dir)[0]}


@pytest.fixture(scope="session")
def random_model() -> Callable[[dict], GPT]:
    """`random_model(cfg)`: a GPT of ModelConfig(**cfg) in eval mode whose every
    tensor is random (norm weights and biases included), the same for the same cfg."""

    def make(cfg: dict) -> GPT:
        torch.manual_seed(0)
        model = GPT(ModelConfig(**cfg)).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.2 if p.dim() > 1 else 1.0)
        return model

    return make
