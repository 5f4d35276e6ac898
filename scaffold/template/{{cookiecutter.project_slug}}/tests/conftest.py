"""Fixtures: a small slice of the default corpus and a tiny model, for a CPU.

Every test takes seconds: the corpus is 200 kB with a vocabulary of 512 tokens, and
the model is config.toml's recipe (positions, norm, MLP, attention heads, optimizer,
schedule) at a few thousand parameters.
{% if cookiecutter._scaffold.exercises %}

Exercises mode: a test that needs a function you have not written yet is skipped
and names the step (see the hook at the end).
{% endif %}
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch starts its threads

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from {{ cookiecutter.package_name }}.config import RunConfig, load_toml  # noqa: E402
from {{ cookiecutter.package_name }}.data import PrepareSettings, prepare  # noqa: E402
from {{ cookiecutter.package_name }}.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)

# a few steps of a toy model, on the CPU, in full precision
TINY_TRAIN = {"batch_size": 4, "grad_accum": 1, "max_steps": 8, "warmup_steps": 2,
              "eval_interval": 4, "eval_steps": 2, "checkpoint_interval": 4,
              "keep_last": 3, "device": "cpu", "dtype": "float32", "compile": False}


def planned() -> dict:
    """config.toml: the [model] and [train] tables the planner chose."""
    return load_toml(ROOT / "config.toml")


def shrink(model: dict) -> dict:
    """The planned [model] table at toy size, keeping its recipe (and GQA if any)."""
    grouped = model.get("n_kv_head") not in (None, model["n_head"])
    return {**model, "vocab_size": "auto", "context_length": 64, "n_layer": 2,
            "d_model": 32, "n_head": 2, "n_kv_head": 1 if grouped else 2, "d_ff": 64}


def tiny_config(data_dir: Path, **train_settings) -> RunConfig:
    config = planned()
    settings = {**config["train"], **TINY_TRAIN, "data_dir": str(data_dir),
                **train_settings}
    return RunConfig.from_dict({"model": shrink(config["model"]), "train": settings})


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """The default corpus (the stdlib), cut to 200 kB, vocabulary 512."""
    out = tmp_path_factory.mktemp("data") / "stdlib"
    prepare(PrepareSettings(max_bytes=200_000, vocab_size=512, val_fraction=0.2),
            out, workers=1)
    return out


@pytest.fixture(scope="session")
def trained_run(data_dir, tmp_path_factory) -> Path:
    """A run folder after 8 steps of the tiny model."""
    run = tmp_path_factory.mktemp("run")
    train(tiny_config(data_dir), run)
    return run
{% if cookiecutter._scaffold.exercises %}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that reaches an exercise you have not written yet is skipped, with
    the step to read; `make check` is what fails until it is written."""
    outcome = yield
    report = outcome.get_result()
    error = call.excinfo
    if (error is not None and error.errisinstance(NotImplementedError)
            and str(error.value).startswith("exercise:")):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0,
                           f"Skipped: {error.value}")
{% endif %}
