"""Training: a few steps lower the loss, a resumed run continues exactly, and the
trained model generates."""

import json
import math
import shutil

from {{ cookiecutter.package_name }}.checkpoint import load_model
from {{ cookiecutter.package_name }}.generate import generate
from {{ cookiecutter.package_name }}.train import train

from conftest import tiny_config


def losses(run) -> dict[int, float]:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in records if "event" not in r}


def test_a_few_steps_lower_the_loss(trained_run):
    curve = losses(trained_run)
    assert sorted(curve) == list(range(1, 9))
    assert all(math.isfinite(loss) for loss in curve.values())
    assert min(curve[7], curve[8]) < curve[1]
    last = trained_run / "checkpoints" / "step_0000008"
    assert (last / "model.safetensors").is_file()


def test_resume_continues_the_same_trajectory(data_dir, trained_run, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(trained_run, cut)  # as if stopped after the checkpoint of step 4
    shutil.rmtree(cut / "checkpoints" / "step_0000008")
    train(tiny_config(data_dir), cut, resume=True)
    assert losses(cut) == losses(trained_run)


def test_trained_model_generates_the_same_with_and_without_cache(trained_run):
    model, tokenizer, state = load_model(trained_run)
    assert state["step"] == 8
    prompt = tokenizer.encode("def ")
    greedy = [list(generate(model, prompt, 12, temperature=0.0, use_cache=cache))
              for cache in (True, False)]
    assert greedy[0] == greedy[1] and len(greedy[0]) <= 12
    assert isinstance(tokenizer.decode(greedy[0]), str)
