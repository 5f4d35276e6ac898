"""`eval --tasks` through lm-evaluation-harness, on local YAML tasks the test
writes: the harness's numbers equal ours on the same items."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from llm_reference.__main__ import main
from llm_reference.artifacts import load_model
from llm_reference.data import Batches
from llm_reference.evaluate import build_cloze, cloze_accuracy
from llm_reference.generate import generate_text

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tasks read local files only
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
pytest.importorskip("lm_eval")
pytestmark = pytest.mark.slow  # lm-eval indexes its thousands of tasks on each run

TASKS = {
    "ours_cloze": """output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: answer
target_delimiter: ""
metric_list:
  - metric: acc
  - metric: acc_norm
""",
    "ours_gen": """output_type: generate_until
doc_to_text: prompt
doc_to_target: target
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
""",
    "ours_ppl": """output_type: loglikelihood_rolling
doc_to_text: text
doc_to_target: text
metric_list:
  - metric: bits_per_byte
""",
}


def write_task(folder, name: str, rows: list[dict]) -> None:
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\n" + TASKS[name])


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the trained tiny run: `eval` writes its results into the run."""
    return Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("harness") / "run"))


@pytest.fixture(scope="module")
def tasks(run, tmp_path_factory):
    """The three local tasks, built from the run's held-out text and model."""
    folder = tmp_path_factory.mktemp("tasks")
    model, tokenizer, info = load_model(run)
    train = info["config"]["train"]
    windows = Batches(train["data_dir"], "val", 60, 16, seed=1)
    texts = [tokenizer.decode(r) for r in windows.get(0)[0].tolist()]
    items = [i for i in build_cloze(texts, 30, 4, seed=0)
             if (i.context + "".join(i.choices) + i.tail).isascii()]
    write_task(folder, "ours_cloze", [
        {"context": i.context, "choices": [c + i.tail for c in i.choices],
         "answer": i.answer} for i in items])
    prompts = ["def ", "import ", "class A:\n    def "]
    targets = ["".join(generate_text(model, tokenizer, tokenizer.encode(p), 8,
                                     stop=["\n"], temperature=0.0,
                                     stop_ids=[tokenizer.special_tokens[
                                         "<|endoftext|>"]]))
               for p in prompts]
    assert any(targets)
    write_task(folder, "ours_gen", [{"prompt": p, "target": t}
                                    for p, t in zip(prompts, targets)])
    docs = [tokenizer.decode(tokenizer.encode(t)[:12]) for t in texts[:3]]
    write_task(folder, "ours_ppl", [{"text": d} for d in docs])
    return folder, model, tokenizer, items, docs


@pytest.fixture(scope="module")
def results(run, tasks) -> dict:
    """`eval --tasks` of the three tasks in one harness run, as JSON."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["eval", "--run", str(run), "--tasks", ",".join(TASKS),
                     "--include-path", str(tasks[0]), "--device", "cpu",
                     "--json"]) == 0
    return json.loads(out.getvalue())


def test_harness_multiple_choice_equals_our_cloze(tasks, results):
    _, model, tokenizer, items, _ = tasks
    ours = cloze_accuracy(model, tokenizer, items, torch.device("cpu"))
    assert results["ours_cloze"]["acc_norm,none"] == pytest.approx(ours["accuracy"])


def test_harness_generation_equals_our_greedy_text(results):
    assert results["ours_gen"]["exact_match,none"] == 1.0


def test_harness_rolling_loglikelihood_equals_ours(tasks, results):
    _, model, tokenizer, _, docs = tasks
    result = results["ours_ppl"]
    eot = tokenizer.special_tokens["<|endoftext|>"]
    nats, n_bytes = 0.0, 0
    with torch.no_grad():
        for doc in docs:
            ids = [eot, *tokenizer.encode(doc)]
            assert len(ids) <= model.config.context_length
            logits, _ = model(torch.tensor([ids[:-1]]))
            logprobs = logits[0].log_softmax(-1)
            nats -= logprobs.gather(1, torch.tensor(ids[1:])[:, None]).sum().item()
            n_bytes += len(doc.encode("utf-8"))
    assert result["bits_per_byte,none"] == pytest.approx(
        nats / n_bytes / math.log(2), rel=1e-4)


def test_harness_errors_are_one_line(run, tasks, capsys, monkeypatch):
    assert main(["eval", "--run", str(run), "--tasks", "no_such_task",
                 "--include-path", str(tasks[0])]) == 2
    assert "unknown task 'no_such_task'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if not installed
    assert main(["eval", "--run", str(run), "--tasks", "ours_gen"]) == 2
    err = capsys.readouterr().err
    assert "pip install lm-eval" in err and err.count("\n") == 1
