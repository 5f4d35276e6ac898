"""Fine-tuning the trained tiny model on a few conversations: full SFT and LoRA."""

import json
import math

import pytest

from {{ cookiecutter.package_name }}.finetune import finetune
from {{ cookiecutter.package_name }}.finetune_settings import FinetuneSettings

CHATS = [
    [{"role": "user", "content": f"What is {a} plus {b}?"},
     {"role": "assistant", "content": f"{a + b}"}]
    for a in range(6) for b in range(6)
]


@pytest.fixture(scope="module")
def chats(tmp_path_factory):
    path = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in CHATS))
    return path


@pytest.mark.parametrize("method", ["sft", "lora"])
def test_finetune_runs_and_reports(trained_run, chats, tmp_path, method):
    settings = FinetuneSettings(method=method, max_steps=3, batch_size=4,
                                warmup_steps=1, eval_interval=3, eval_batches=1,
                                val_fraction=0.2)
    result = finetune(trained_run, tmp_path / method, settings, data=chats,
                      device="cpu")
    assert math.isfinite(result["after"]["val_loss"])
    assert (tmp_path / method / "finetune.json").is_file()
    assert result["trainable_parameters"] <= result["total_parameters"]
