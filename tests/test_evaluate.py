"""Evaluation: loss, perplexity, bits per byte, accuracy, the cloze eval and the
eval command."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llm_reference.__main__ import main
from llm_reference.checkpoint import load_model
from llm_reference.data import Batches
from llm_reference.evaluate import (
    build_cloze,
    cloze_accuracy,
    continuation_logprob,
    language_model_metrics,
    mean_loss,
)
from llm_reference.model import GPT, ModelConfig


def test_metrics_are_consistent(tiny_run):
    model, tokenizer, state = load_model(tiny_run)
    data_dir = state["config"]["train"]["data_dir"]
    batches = Batches(data_dir, "val", 4, 16, seed=state["config"]["train"]["seed"])
    m = language_model_metrics(model, tokenizer, batches, 3, torch.device("cpu"))
    assert m["tokens"] == 3 * 4 * 16
    assert m["perplexity"] == pytest.approx(math.exp(m["val_loss"]))
    assert m["bits_per_byte"] == pytest.approx(
        m["val_loss"] * m["tokens"] / (m["bytes"] * math.log(2)))
    assert 1 < m["bytes"] / m["tokens"] < 8  # a BPE token is a few bytes of code
    assert 0 < m["accuracy"] < 1
    assert m["val_loss"] == pytest.approx(
        mean_loss(model, batches, range(3), torch.device("cpu")), rel=1e-5)
    assert m["val_loss"] < math.log(tokenizer.vocab_size)  # it learned something


def test_cloze_items_blank_the_last_word_of_a_line():
    text = ("ignored partial line\n"
            "import json\n"
            "def main(argv):\n"
            "    return run(argv)\n"
            "partial last lin")
    items = build_cloze([text] * 5, n_items=5, n_choices=3, seed=1)
    assert len(items) == 5
    for item in items:
        answer = item.choices[item.answer]
        assert len(set(item.choices)) == 3 and answer in ("json", "argv")
        assert (item.context + answer + item.tail) in text + "\n"
        assert "ignored" not in item.context  # the cut first line is dropped
        assert item.tail in ("\n", "):\n", ")\n")
    assert build_cloze([text] * 5, 5, 3, seed=1) == items  # seeded


def test_continuation_logprob_matches_a_full_forward_pass(tiny_run):
    model, tokenizer, _ = load_model(tiny_run)
    context, continuation = "def main(", "argv):\n"
    [score] = continuation_logprob(model, tokenizer, context, [continuation],
                                   torch.device("cpu"))
    ctx, cont = tokenizer.encode(context), tokenizer.encode(continuation)
    ids = torch.tensor([ctx + cont])
    logprobs = model(ids)[0].log_softmax(-1)[0]  # (T, V)
    expected = sum(logprobs[len(ctx) + i - 1, t].item() for i, t in enumerate(cont))
    assert score == pytest.approx(expected, rel=1e-4)


def test_cloze_accuracy_counts_the_best_scoring_choice(tiny_run, monkeypatch):
    model, tokenizer, _ = load_model(tiny_run)
    items = build_cloze(["x\nimport json\ndef f(argv):\ny"] * 4, 4, 2, seed=0)

    right = {item.context + item.choices[item.answer] + item.tail for item in items}

    def prefer_answer(model, tokenizer, context, continuations, device):
        return [0.0 if context + c in right else -1.0 for c in continuations]

    monkeypatch.setattr("llm_reference.evaluate.continuation_logprob", prefer_answer)
    result = cloze_accuracy(model, tokenizer, items, torch.device("cpu"))
    assert result == {"items": 4, "choices": 2, "accuracy": 1.0, "chance": 0.5}


def test_eval_command_prints_a_table_and_writes_eval_json(run_copy, capsys):
    # a copy: eval writes RUN/eval.json
    assert main(["eval", "--run", str(run_copy), "--cloze", "20"]) == 0
    out = capsys.readouterr().out
    for row in ("val loss", "perplexity", "bits per byte", "next-token accuracy",
                "cloze accuracy (", "chance 25%"):
        assert row in out
    result = json.loads((run_copy / "eval.json").read_text())
    assert result["step"] == 20 and result["batches"] == 2  # the run's eval_steps
    # the same batches as the training run's own final val_loss
    last = json.loads((run_copy / "metrics.jsonl").read_text().splitlines()[-1])
    assert result["val_loss"] == pytest.approx(last["val_loss"], rel=1e-5)
    assert 0 < result["cloze"]["items"] <= 20 and result["cloze"]["choices"] == 4
    assert 0 <= result["cloze"]["accuracy"] <= 1


def test_eval_command_json_and_errors(run_copy, capsys):
    assert main(["eval", "--run", str(run_copy), "--batches", "1", "--cloze", "0",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["batches"] == 1 and result["cloze"] is None
    assert main(["eval", "--run", str(run_copy), "--batches", "0"]) == 2
    assert "--batches 0: must be >= 1" in capsys.readouterr().err
    assert main(["eval", "--run", str(run_copy), "--step", "3"]) == 2
    assert "no checkpoint for step 3" in capsys.readouterr().err


def test_an_untrained_model_scores_chance_on_the_cloze(tiny_run, data_dir):
    """Per-byte scores and distractors drawn as often as words occur: a model that
    ignores the context cannot beat 1 / choices (scored by sums, one did: 42%)."""
    _, tokenizer, _ = load_model(tiny_run)
    accuracies = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, context_length=64,
                                n_layer=2, n_head=2, d_model=32)).eval()
        windows = Batches(data_dir, "val", 400, 64, seed=seed)
        texts = [tokenizer.decode(row) for row in windows.get(0)[0].tolist()]
        items = build_cloze(texts, 200, 4, seed=seed)
        assert len(items) == 200
        accuracies.append(cloze_accuracy(model, tokenizer, items,
                                         torch.device("cpu"))["accuracy"])
    # 600 items: the standard error of the mean accuracy at chance is 0.018
    assert abs(sum(accuracies) / 3 - 0.25) < 0.06, accuracies
