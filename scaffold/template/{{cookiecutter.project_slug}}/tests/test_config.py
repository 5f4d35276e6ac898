"""config.toml, the planned run: valid for the trainer, its size as the planner
counts it, and trainable from the command line (shrunk to a toy)."""

import json

import torch

from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.flops import count_parameters
from {{ cookiecutter.package_name }}.model import GPT, ModelConfig

from conftest import ROOT, TINY_TRAIN, planned, shrink


def test_config_is_valid_for_the_trainer():
    config = load_config(config_file=ROOT / "config.toml")
    assert config.train.max_steps >= 1


def test_model_has_the_size_the_planner_counts():
    config = ModelConfig.from_dict(planned()["model"])
    with torch.device("meta"):  # shapes only: no memory, even for billions
        gpt = GPT(config)
    assert gpt.num_parameters() == count_parameters(config)


def test_command_line_trains_the_config_shrunk(data_dir, tmp_path):
    model = planned()["model"]
    changes = {f"model.{k}": v for k, v in shrink(model).items() if model.get(k) != v}
    changes.update({f"train.{k}": v for k, v in TINY_TRAIN.items()})
    args = ["train", "--config", str(ROOT / "config.toml"), "--data", str(data_dir),
            "--out", str(tmp_path / "run"), "--max-steps", "2"]
    for key, value in changes.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    assert main(args) == 0
    assert (tmp_path / "run" / "checkpoints" / "step_0000002").is_dir()
