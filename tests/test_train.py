"""The pretraining loop: schedules, AdamW groups, accumulation, clipping, metrics,
reproducibility, resume (also after SIGKILL) and the train command line."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llm_reference.__main__ import main
from llm_reference.errors import UserError
from llm_reference.model import GPT, ModelConfig
from llm_reference.optim import make_optimizer, param_groups
from llm_reference.schedule import cosine_lr, lr_at, wsd_lr
from llm_reference.train import Trainer, train

REPO = Path(__file__).resolve().parents[1]

# --- schedules ---------------------------------------------------------------------


def test_cosine_schedule_warms_up_then_decays_to_min_lr():
    lrs = [cosine_lr(s, 1.0, 0.1, 10, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(1 / 11)  # never exactly 0
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # linear warmup
    assert lrs[10] == pytest.approx(1.0)  # peak right after warmup
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then monotone decay
    assert lrs[-1] == pytest.approx(0.1)  # min_lr at the last step
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)),
                                    rel=0.02)


def test_wsd_schedule_is_flat_then_decays_over_the_last_fraction():
    lrs = [wsd_lr(s, 1.0, 0.0, 10, 100, decay_frac=0.2) for s in range(100)]
    assert lrs[9] < 1.0 and lrs[10:80] == [1.0] * 70  # stable phase
    assert lrs[80] < 1.0 and lrs[-1] == pytest.approx(0.0)
    assert all(a > b for a, b in zip(lrs[80:], lrs[81:]))  # linear decay
    assert lrs[89] == pytest.approx(0.5)


def test_lr_at_dispatches_by_name():
    kw = dict(lr=1.0, min_lr=0.1, warmup_steps=2, max_steps=10)
    assert lr_at(5, schedule="cosine", **kw) == cosine_lr(5, 1.0, 0.1, 2, 10)
    assert lr_at(5, schedule="wsd", **kw) == wsd_lr(5, 1.0, 0.1, 2, 10, 0.2)
    with pytest.raises(ValueError):
        lr_at(5, schedule="linear", **kw)


# --- AdamW parameter groups -----------------------------------------------------


@pytest.mark.parametrize("tie", [True, False])
def test_param_groups_decay_matrices_only(tie):
    model = GPT(ModelConfig(vocab_size=64, context_length=8, n_layer=2, n_head=2,
                            d_model=16, tie_weights=tie))
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])  # biases, norm gains
    names = {id(p): n for n, p in model.named_parameters()}
    assert "tok_emb.weight" in {names[id(p)] for p in decay["params"]}
    assert "norm_f.weight" in {names[id(p)] for p in no_decay["params"]}
    counted = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert counted == model.num_parameters()  # a tied weight is counted once


def test_make_optimizer_uses_fused_adamw_on_cpu():
    model = GPT(ModelConfig(vocab_size=64, context_length=8, n_layer=1, n_head=2,
                            d_model=16))
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["fused"] is True and opt.defaults["betas"] == (0.9, 0.95)


# --- the training step ------------------------------------------------------------


class FixedBatches:
    """Micro-batch i is rows [i*B, (i+1)*B) of one fixed batch: lets two configs
    with different batch_size x grad_accum see exactly the same tokens."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int):
        self.x, self.y, self.b = x, y, batch_size

    def get(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = slice(i * self.b, (i + 1) * self.b)
        return self.x[rows], self.y[rows]


def test_grad_accumulation_equals_one_big_batch(tiny_config, tmp_path):
    x, y = torch.randint(0, 384, (8, 16)), torch.randint(0, 384, (8, 16))
    params = []
    for name, (batch, accum) in {"one": (8, 1), "accum": (4, 2)}.items():
        trainer = Trainer(tiny_config(batch_size=batch, grad_accum=accum),
                          tmp_path / name)
        trainer.train_batches = FixedBatches(x, y, batch)
        result = trainer.train_step()
        # after one step AdamW's first moment is (1 - beta1) * the (clipped) gradient
        moments = torch.cat([trainer.optimizer.state[p]["exp_avg"].flatten()
                             for p in trainer.model.parameters()])
        params.append((result, moments))
    (one, m_one), (accum, m_accum) = params
    assert accum.loss == pytest.approx(one.loss, rel=1e-5)
    assert accum.grad_norm == pytest.approx(one.grad_norm, rel=1e-4)
    torch.testing.assert_close(m_accum, m_one, rtol=1e-4, atol=1e-9)


def test_clipping_reports_the_norm_before_clipping(tiny_config, tmp_path):
    trainer = Trainer(tiny_config(grad_clip=1e-3), tmp_path)
    x, y = trainer.train_batches.get(0)
    _, loss = trainer.model(x, y)
    loss.backward()
    expected = torch.cat([p.grad.flatten() for p in trainer.model.parameters()]).norm()
    trainer.optimizer.zero_grad()
    result = trainer.train_step()
    assert result.grad_norm == pytest.approx(expected.item(), rel=1e-4)
    assert result.grad_norm > 1e-3
    # AdamW's first moment after one step is (1 - beta1) * clipped gradient.
    exp_avg = torch.cat([trainer.optimizer.state[p]["exp_avg"].flatten()
                         for p in trainer.model.parameters()])
    assert (exp_avg.norm() / (1 - 0.9)).item() == pytest.approx(1e-3, rel=1e-3)


# float16 with loss scaling: torch.amp.GradScaler works on the CPU too, so the path
# a T4 takes runs here (events "fp16_overflow" are the scaler's routine skips).


def anomalies(events: list[dict]) -> list[tuple[str, int]]:
    """(event, step) of a run's events other than the scaler's overflows."""
    return [(e["event"], e["step"]) for e in events if e["event"] != "fp16_overflow"]


def test_float16_skips_a_spike_and_trains_on(tiny_config, read_records, losses,
                                             tmp_path):
    # A skipped step left the scaler's unscale_() open: the next step raised
    # "unscale_() has already been called on this optimizer since the last update()"
    config = tiny_config(dtype="float16", max_steps=14, spike_warmup=5,
                         spike_z=3.0, inject_spike_at=10, inject_spike_scale=3.0)
    train(config, tmp_path)
    assert anomalies(read_records(tmp_path)[1]) == [("skip", 10)]
    assert max(losses(tmp_path)) == 14


def test_float16_rolls_back_after_a_spike(tiny_config, read_records, losses,
                                          tmp_path):
    config = tiny_config(dtype="float16", max_steps=16,
                         checkpoint_interval=8, anomaly_action="rollback",
                         spike_warmup=5, spike_z=3.0, inject_spike_at=12,
                         inject_spike_scale=3.0)
    train(config, tmp_path)
    assert anomalies(read_records(tmp_path)[1]) == [("rollback", 12)]
    rollback = next(e for e in read_records(tmp_path)[1] if e["event"] == "rollback")
    assert rollback["to_step"] == 8 and max(losses(tmp_path)) == 16


def test_float16_overflow_is_skipped_by_the_scaler(tiny_config, tmp_path):
    trainer = Trainer(tiny_config(dtype="float16", inject_nan_at=3), tmp_path)
    results = [trainer.train_step() for _ in range(5)]
    assert trainer.scaler.is_enabled()
    scale = trainer.scaler.get_scale()
    overflow = results[2]
    assert overflow.anomaly is not None and trainer.is_fp16_overflow(overflow.anomaly)
    assert all(math.isfinite(r.loss) for r in results)
    assert scale < 2.0**16  # lowered by the overflow(s)


def test_bfloat16_autocast_trains_on_cpu(tiny_config, tmp_path):
    trainer = Trainer(tiny_config(dtype="bfloat16"), tmp_path)
    results = [trainer.train_step() for _ in range(3)]
    assert all(math.isfinite(r.loss) and r.anomaly is None for r in results)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


# --- whole runs --------------------------------------------------------------------


def test_a_run_writes_metrics_plot_checkpoints_and_loss_falls(data_dir, tiny_config,
                                                              read_records, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_config(max_steps=60, eval_interval=20), run)
    steps, events = read_records(run)
    assert [r["step"] for r in steps] == list(range(1, 61)) and events == []
    # the first step's time includes the start-up (compilation on a GPU): no speed
    assert {"step", "loss", "lr", "grad_norm", "warmup_s"} == steps[0].keys()
    assert {"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= steps[1].keys()
    assert "mfu" not in steps[1]  # no peak FLOP/s known for a CPU
    assert [r["step"] for r in steps if "val_loss" in r] == [20, 40, 60]
    assert result["val_loss"] == steps[-1]["val_loss"]
    first = sum(r["loss"] for r in steps[:10]) / 10
    last = sum(r["loss"] for r in steps[-10:]) / 10
    assert last < first - 0.5  # from ~ln(384) = 5.95 clearly down
    assert (run / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert (run / "tokenizer.json").read_bytes() == (data_dir / "tokenizer.json"
                                                     ).read_bytes()
    assert "[model]" in (run / "config.toml").read_text()
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == [f"step_{s:07d}" for s in (20, 30, 40, 50, 60)]  # keep_last = 5


def test_cpu_runs_are_bit_reproducible(tiny_config, losses, tmp_path):
    for name in ("a", "b"):
        train(tiny_config(max_steps=12, seed=7), tmp_path / name)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_resume_continues_the_same_trajectory(tiny_config, losses, read_records,
                                              tmp_path):
    config = tiny_config(max_steps=20)
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(config, full)
    shutil.copytree(full, cut)  # as if killed after step 17: last checkpoint is 10
    shutil.rmtree(cut / "checkpoints" / "step_0000020")
    lines = (cut / "metrics.jsonl").read_text().splitlines(keepends=True)
    (cut / "metrics.jsonl").write_text("".join(lines[:17]) + '{"step": 18, "lo')
    train(config, cut, resume=True)
    assert losses(cut) == losses(full)
    assert len(read_records(cut)[0]) == 20  # killed steps 11..17 logged once


def test_existing_run_is_not_overwritten_without_force(tiny_config, read_records,
                                                       tmp_path):
    config = tiny_config(max_steps=10)
    train(config, tmp_path)
    with pytest.raises(UserError, match="already has checkpoints; pass --resume"):
        train(config, tmp_path)
    train(config, tmp_path, force=True)
    assert len(read_records(tmp_path)[0]) == 10  # the old metrics were removed


def test_a_run_killed_before_its_first_checkpoint_starts_clean(tiny_config,
                                                               read_records, tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')
    train(tiny_config(max_steps=3), tmp_path)
    assert len(read_records(tmp_path)[0]) == 3


def test_model_vocab_smaller_than_the_data_is_refused(tiny_config, tmp_path):
    config = tiny_config()
    config.model["vocab_size"] = 100
    with pytest.raises(UserError, match="model.vocab_size: must be >= the data's"):
        Trainer(config, tmp_path)


# --- command line ------------------------------------------------------------------


def test_cli_trains_resumes_and_extends(tiny_args, losses, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*tiny_args(out), "--max-steps", "5"]) == 0
    captured = capsys.readouterr()
    assert "final val loss" in captured.out and str(out) in captured.out
    assert "parameters" in captured.err and "tokens/step" in captured.err
    assert "MFLOPs/token" in captured.err
    assert main(["train", "--out", str(out), "--resume", "--max-steps", "10"]) == 0
    assert "resuming at step 5" in capsys.readouterr().err
    assert sorted(losses(out)) == list(range(1, 11))
    assert "max_steps = 10" in (out / "config.toml").read_text()


def test_cli_errors_are_one_line(tiny_args, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*tiny_args(out), "--set", "train.lr=-1"]) == 2
    assert capsys.readouterr().err == "error: config train.lr: must be > 0, got -1\n"
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    main([*tiny_args(out), "--max-steps", "5"])
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--set", "train.lr=1"]) == 2
    assert "--resume uses the run's own config.toml" in capsys.readouterr().err
    assert main([*tiny_args(out), "--max-steps", "5"]) == 2
    assert "--force" in capsys.readouterr().err


def test_cli_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for option in ("--preset", "--config", "--set", "--data", "--out", "--max-steps",
                   "--resume", "--force"):
        assert option in text
    assert "gpt2-124m" in text and "llama-style" in text


# --- slow: a real process killed with SIGKILL, and torch.compile ------------------


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_args, losses,
                                                          tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "llm_reference", *tiny_args(tmp_path)]
    args += ["--max-steps", "120", "--set", "train.checkpoint_interval=20",
             "--set", "train.eval_interval=20"]

    def command(out: Path) -> list[str]:
        return [a if a != str(tmp_path) else str(out) for a in args]

    subprocess.run(command(tmp_path / "full"), env=env, check=True,
                   capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / "step_0000020"
    deadline = time.monotonic() + 120
    while not first.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    steps_done = max(losses(killed))
    assert 20 <= steps_done < 120  # really killed mid-run
    subprocess.run([sys.executable, "-m", "llm_reference", "train", "--out",
                    str(killed), "--resume"], env=env, check=True, capture_output=True)
    assert losses(killed) == losses(tmp_path / "full")


@pytest.mark.slow
def test_compiled_model_trains(tiny_config, tmp_path):
    pytest.importorskip("torch._inductor")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile on CPU needs a C compiler")
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    results = {}
    for compiled in (False, True):  # under bf16 autocast, as on a GPU
        trainer = Trainer(tiny_config(compile=compiled, dtype="bfloat16"),
                          tmp_path / str(compiled))
        results[compiled] = [trainer.train_step().loss for _ in range(2)]
    assert results[True] == pytest.approx(results[False], rel=1e-2)
    assert not counters["unimplemented"]  # no graph break anywhere
    # the blocks share one graph; the loss (chunked cross-entropy) is the other
    assert counters["stats"]["unique_graphs"] == 2


@pytest.mark.slow
def test_tiny_preset_learns_on_real_data(data_dir, read_records, tmp_path):
    sets = ["train.batch_size=8", "train.eval_interval=30", "train.eval_steps=4"]
    args = ["train", "--preset", "tiny", "--data", str(data_dir), "--out",
            str(tmp_path), "--max-steps", "30"]
    args += [a for s in sets for a in ("--set", s)]
    assert main(args) == 0
    steps = read_records(tmp_path)[0]
    first = sum(r["loss"] for r in steps[:5]) / 5
    last = sum(r["loss"] for r in steps[-5:]) / 5
    assert first > 5.5 and last < first - 0.7  # ln(384) = 5.95 at the start
    assert steps[-1]["val_loss"] < first - 0.7
