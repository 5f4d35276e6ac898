"""Every bad input is one line on stderr, `error: ...`, exit 2, and no half-written
output: a command that fails leaves no new --out folder behind (issue 16).

One table, a row per (command, bad input, what the message must name). The inputs
are built once per test in `bad`: a run whose checkpoints are truncated, a data
folder with a garbage tokenizer.json, one whose meta.json disagrees with its
tokenizer, a source folder of empty files and a fine-tuning file that is not JSON.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llm_reference.__main__ import main

TRUNCATED = "model.safetensors is damaged"

# (command line with {placeholders}, a fragment the error line must hold)
CASES = {
    "serve-port-out-of-range": ("serve --run {run} --port 99999", "--port 99999"),
    "prepare-vocab-too-large": (
        "prepare --source {src} --out {out} --vocab-size 1000000000",
        "--vocab-size 1000000000"),
    "prepare-missing-source": ("prepare --source {missing} --out {out}",
                               "does not exist"),
    "prepare-no-text-after-reading": ("prepare --source {empty} --out {out}",
                                      "no text left"),
    "train-garbage-tokenizer": ("train --preset tiny --data {badtok} --out {out}",
                                "tokenizer.json is not valid JSON"),
    "train-meta-disagrees": ("train --preset tiny --data {badvocab} --out {out}",
                             "vocab_size 300 disagrees"),
    "train-missing-data": ("train --preset tiny --data {missing} --out {out}",
                           "meta.json not found"),
    "train-resume-truncated": ("train --out {trunc} --resume", TRUNCATED),
    "eval-truncated": ("eval --run {trunc}", TRUNCATED),
    "generate-truncated": ("generate --run {trunc} --prompt x", TRUNCATED),
    "generate-no-such-device": ("generate --run {run} --device tpu",
                                "'tpu': not a device"),
    "finetune-truncated": ("finetune --run {trunc} --out {out}", TRUNCATED),
    "finetune-data-not-json": ("finetune --run {run} --out {out} --data {badjsonl}",
                               "not valid JSON"),
    "finetune-missing-run": ("finetune --run {missing} --out {out}",
                             "no checkpoint"),
    "quantize-truncated": ("quantize --run {trunc} --out {out}", TRUNCATED),
    "export-gguf-truncated": ("export --run {trunc} --format gguf --out {out}",
                              TRUNCATED),
    "export-hf-with-dtype": ("export --run {run} --dtype q8_0 --out {out}",
                             "--dtype applies to --format gguf"),
    "rl-truncated": ("rl --run {trunc} --out {out} --task sorting", TRUNCATED),
    "rl-group-of-one": ("rl --run {run} --out {out} --group-size 1",
                        "--group-size 1: must be >= 2"),
    "rl-no-held-out-split": ("rl --run {run} --out {out} --task sorting "
                             "--val-fraction 0", "no held-out problems"),
    "rl-no-sample-batches": ("rl --run {run} --out {out} --filter-groups "
                             "--max-sample-batches 0",
                             "--max-sample-batches must be >= 1"),
    "rl-sorting-length": ("rl --run {run} --out {out} --task sorting --length 9",
                          "--length 9"),
    "rl-gsm8k-without-data": ("rl --run {run} --out {out} --task gsm8k",
                              "--task gsm8k needs --data"),
    "rl-gsm8k-not-json": ("rl --run {run} --out {out} --task gsm8k --data "
                          "{badjsonl}", "not valid JSON"),
    "rl-reward-returns-text": ("rl --run {run} --out {out} --task sorting --reward "
                               "{textreward}", "returned 'good'"),
}


@pytest.fixture
def bad(tmp_path, tiny_run, data_dir) -> dict[str, Path]:
    """The placeholders of CASES: good inputs, bad ones, and an --out to watch."""
    trunc = Path(shutil.copytree(tiny_run, tmp_path / "trunc"))
    for weights in trunc.glob("checkpoints/*/model.safetensors"):
        weights.write_bytes(weights.read_bytes()[:300])
    badtok = Path(shutil.copytree(data_dir, tmp_path / "badtok"))
    (badtok / "tokenizer.json").write_text("garbage{", encoding="utf-8")
    badvocab = Path(shutil.copytree(data_dir, tmp_path / "badvocab"))
    meta = json.loads((badvocab / "meta.json").read_text(encoding="utf-8"))
    (badvocab / "meta.json").write_text(json.dumps({**meta, "vocab_size": 300}),
                                        encoding="utf-8")
    src, empty = python_folder(tmp_path / "src"), tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("", encoding="utf-8")
    (tmp_path / "bad.jsonl").write_text("not json\n", encoding="utf-8")
    (tmp_path / "text_reward.py").write_text(
        "def reward(completion, problem, finished):\n    return 'good'\n",
        encoding="utf-8")
    return {"run": tiny_run, "trunc": trunc, "badtok": badtok, "badvocab": badvocab,
            "src": src, "empty": empty, "badjsonl": tmp_path / "bad.jsonl",
            "missing": tmp_path / "missing", "out": tmp_path / "new" / "out",
            "textreward": f"{tmp_path / 'text_reward.py'}:reward"}


@pytest.mark.parametrize("line, fragment", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_exit_2_and_leaves_no_out(line, fragment, bad, capsys):
    args = [a.format(**bad) for a in line.split()]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert fragment in err[0]
    assert "Traceback" not in err[0]
    assert not bad["out"].parent.exists()  # no --out, not even its parent folder


def python_folder(folder: Path) -> Path:
    """A source folder of five small Python files."""
    folder.mkdir()
    for i in range(5):
        (folder / f"ok{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n" * 100,
                                          encoding="utf-8")
    return folder


def test_prepare_reports_a_file_that_is_not_utf8(tmp_path, capsys):
    """The file is skipped, not decoded with U+FFFD (a binary file would put noise
    in the corpus), and said so: a warning line and the manifest's skipped_files."""
    src = python_folder(tmp_path / "src")
    (src / "bad.py").write_bytes(b"def bad():\n    return '\xff'\n")
    out = tmp_path / "out"
    assert main(["prepare", "--source", str(src), "--out", str(out),
                 "--vocab-size", "300", "--license", "MIT"]) == 0
    warnings = [w for w in capsys.readouterr().err.splitlines()
                if w.startswith("warning: ")]
    assert any("skipped 1 file(s) that are not UTF-8 text (bad.py)" in w
               for w in warnings), warnings
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["sources"][0]["skipped_files"] == ["bad.py"]


def test_prepare_warns_when_the_text_cannot_fill_the_vocabulary(tmp_path, capsys):
    src = python_folder(tmp_path / "src")
    out = tmp_path / "out"
    assert main(["prepare", "--source", str(src), "--out", str(out),
                 "--vocab-size", "100000", "--license", "MIT"]) == 0
    vocab = json.loads((out / "meta.json").read_text(encoding="utf-8"))["vocab_size"]
    assert vocab < 100_000
    assert (f"warning: --vocab-size 100000: the text holds only {vocab} distinct "
            f"tokens, so the vocabulary is {vocab}") in capsys.readouterr().err
