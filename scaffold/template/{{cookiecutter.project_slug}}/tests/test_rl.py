"""GRPO on the trained tiny model: a few steps on the offline sorting task."""

import json

import pytest

from {{ cookiecutter.package_name }}.errors import UserError
from {{ cookiecutter.package_name }}.grpo import grpo
from {{ cookiecutter.package_name }}.grpo_settings import GRPOSettings
from {{ cookiecutter.package_name }}.rl_tasks import sorting_task


def test_grpo_runs_and_logs_rewards(trained_run, tmp_path):
    settings = GRPOSettings(max_steps=2, prompts_per_step=2, group_size=2,
                            max_new_tokens=4, eval_interval=2, eval_problems=4,
                            save_interval=2)
    result = grpo(trained_run, tmp_path / "grpo", sorting_task(2), settings,
                  device="cpu")
    records = [json.loads(line)
               for line in (tmp_path / "grpo" / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [1, 2]
    assert 0 <= result["held_out_accuracy"]["after"] <= 1
    assert (tmp_path / "grpo" / "grpo.json").is_file()


def test_a_group_of_one_is_refused():
    with pytest.raises(UserError, match="group-size 1"):
        GRPOSettings(group_size=1).check()
