"""Progress wherever the output goes, and the optional trackers (TensorBoard, W&B)
fed from the same records as metrics.jsonl."""

from __future__ import annotations

import io
import json
import re

import pytest

from llm_reference import tracking
from llm_reference.errors import UserError
from llm_reference.progress import Progress, format_seconds
from llm_reference.train import train


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_plain_lines():
    out = io.StringIO()  # a log file, a pipe, CI: not a terminal
    with Progress(total=100, desc="train", every=0.0, file=out) as progress:
        for step in (1, 2, 50):
            progress.update(step, loss=3.5, lr=1e-3, tokens_per_s=6120.4)
    lines = out.getvalue().splitlines()
    assert lines[0] == ("train step 1/100 (1%) loss 3.500 lr 1.0e-03 6,120 tokens/s")
    assert re.fullmatch(r"train step 50/100 \(50%\) .* ETA \d+s", lines[2])
    assert len(lines) == 4  # and the final state when it closes


def test_lines_come_every_few_seconds_not_every_step():
    out = io.StringIO()
    with Progress(total=1000, every=3600.0, file=out) as progress:
        for step in range(1, 1001):
            progress.update(step, loss=1.0)
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["1/1000",
                                                                         "1000/1000"]


def test_on_a_terminal_it_is_a_bar():
    out = Terminal()
    with Progress(total=10, desc="train", every=0.0, file=out) as progress:
        progress.update(5, loss=2.0)
    assert "train step" not in out.getvalue() and "5/10" in out.getvalue()


def test_a_process_that_does_not_report_prints_nothing():
    out = io.StringIO()
    with Progress(total=10, every=0.0, enabled=False, file=out) as progress:
        progress.update(5, loss=2.0)
    assert out.getvalue() == ""


def test_bytes_are_counted_in_megabytes_with_a_rate():
    out = io.StringIO()  # `prepare` in a batch job's log
    with Progress(total=4_000_000, desc="prepare", every=0.0, file=out,
                  unit="B") as progress:
        progress.advance(1_000_000, tokens=250_000)
        progress.advance(1_000_000, tokens=500_000)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("prepare 1.0/4.0 MB (25%)")
    assert re.fullmatch(r"prepare 2\.0/4\.0 MB \(50%\) [\d.]+ MB/s tokens 500,000 "
                        r"ETA \d+s", lines[1])
    unknown = io.StringIO()
    with Progress(total=None, desc="prepare", every=0.0, file=unknown,
                  unit="B") as progress:
        progress.advance(3_000_000)
    assert unknown.getvalue().splitlines()[0] == "prepare 3.0 MB"


def test_format_seconds():
    assert [format_seconds(s) for s in (9, 624, 3725)] == ["9s", "10m24s", "1h02m"]


def test_training_off_a_terminal_logs_step_loss_speed_and_eta(tiny_config, tmp_path,
                                                              capsys):
    train(tiny_config(max_steps=6, log_seconds=1e-9), tmp_path)
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("train step")]
    assert lines[0].startswith("train step 1/6 (17%) loss ")
    assert "tokens/s" not in lines[0]  # step 1 includes the start-up: no speed
    assert "tokens/s" in lines[2] and "ETA" in lines[2]
    assert lines[-1].startswith("train step 6/6 (100%)")


# --- trackers ----------------------------------------------------------------------


def test_a_missing_tracker_package_is_a_one_line_error():
    with pytest.raises(UserError, match="train.wandb = true needs the no_such_pkg "
                                        "package: pip install no_such_pkg"):
        tracking.require("no_such_pkg", "train.wandb")


def test_tracked_scalars_are_the_records_numbers():
    assert tracking.scalars_of({"step": 3, "loss": 2.5, "lr": 1e-3, "mfu": None}) == {
        "loss": 2.5, "lr": 1e-3}
    event = {"step": 4, "event": "skip", "reason": "spike", "loss": float("nan"),
             "z": 7.0}
    assert tracking.scalars_of(event) == {"skip/z": 7.0}


def test_tensorboard_gets_every_record(tiny_config, read_records, tmp_path):
    pytest.importorskip("tensorboard", reason="optional tracker, not installed: "
                        "pip install 'llm-from-scratch[tracking]'")
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    train(tiny_config(max_steps=4, eval_interval=2, tensorboard=True),
          tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    steps, _ = read_records(tmp_path)
    logged = [(e.step, e.value) for e in events.Scalars("loss")]
    assert logged == [(r["step"], pytest.approx(r["loss"])) for r in steps]
    assert [e.step for e in events.Scalars("val_loss")] == [2, 4]
    assert [e.step for e in events.Scalars("tokens_per_s")] == [2, 3, 4]


@pytest.mark.slow
def test_wandb_logs_offline_without_an_account(tiny_config, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="optional tracker, not installed: "
                        "pip install 'llm-from-scratch[tracking]'")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(tiny_config(max_steps=4, eval_interval=2, wandb=True), tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (log,) = runs[0].glob("run-*.wandb")  # the run's records, for `wandb sync`
    data = log.read_bytes()
    for key in ("loss", "val_loss", "grad_norm", "tokens_per_s"):
        assert json.dumps(key).encode()[1:-1] in data
    assert b"d_model" in data  # the run's config went along
