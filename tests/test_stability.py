"""The stability monitor: spike and NaN detection, and the skip / rollback actions
in a real training run with injected faults."""

from __future__ import annotations

import math
import random

import pytest
import torch

from llm_reference.errors import UserError
from llm_reference.stability import FaultInjector, StabilityMonitor
from llm_reference.train import Trainer, train


def noisy_losses(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [3.0 + rng.gauss(0, 0.05) for _ in range(n)]


# --- the monitor on its own --------------------------------------------------------


def test_spike_is_detected_after_warmup_only():
    monitor = StabilityMonitor(z_threshold=6.0, warmup=20)
    assert all(monitor.observe(x, 1.0) is None for x in noisy_losses(19))
    assert monitor.observe(30.0, 1.0) is None  # step 20: still warming up
    monitor = StabilityMonitor(z_threshold=6.0, warmup=20)
    for x in noisy_losses(100):
        assert monitor.observe(x, 1.0) is None  # ordinary noise is never a spike
    anomaly = monitor.observe(4.0, 1.0)
    assert anomaly.kind == "spike" and anomaly.z > 6.0 and anomaly.loss == 4.0


def test_a_falling_loss_is_never_a_spike():
    monitor = StabilityMonitor(z_threshold=3.0, warmup=5)
    assert all(monitor.observe(10.0 * 0.9**i, 1.0) is None for i in range(200))


def test_one_spike_does_not_hide_the_next():
    monitor = StabilityMonitor(z_threshold=6.0, warmup=20)
    for x in noisy_losses(100):
        monitor.observe(x, 1.0)
    assert monitor.observe(300.0, 1.0).kind == "spike"
    assert monitor.observe(4.0, 1.0).kind == "spike"  # the EMA saw a clipped 300


def test_nan_and_inf_are_anomalies_from_the_first_step():
    monitor = StabilityMonitor()
    assert monitor.observe(math.nan, 1.0).kind == "nan"
    assert monitor.observe(3.0, math.inf).kind == "nan"
    assert monitor.count == 0  # neither entered the statistics


def test_rollback_bookkeeping_and_state_round_trip():
    monitor = StabilityMonitor(max_rollbacks=2, rollback_lr_factor=0.5)
    for x in noisy_losses(30):
        monitor.observe(x, 1.0)
    monitor.record_rollback()
    assert monitor.can_roll_back() and monitor.lr_scale == 0.5
    monitor.record_rollback()
    assert not monitor.can_roll_back() and monitor.lr_scale == 0.25
    copy = StabilityMonitor(max_rollbacks=2)
    copy.load_state_dict(monitor.state_dict())
    assert copy.state_dict() == monitor.state_dict()
    assert copy.zscore(3.5) == monitor.zscore(3.5)


def test_fault_injector_fires_once_at_its_step():
    faults = FaultInjector(spike_at=3, spike_scale=10.0, nan_at=4)
    loss = torch.tensor(2.0)
    assert faults.scale_loss(2, loss) == 2.0
    assert faults.scale_loss(3, loss) == 20.0
    assert faults.scale_loss(3, loss) == 2.0  # replayed after a rollback: clean
    model = torch.nn.Linear(2, 2)
    model(torch.ones(1, 2)).sum().backward()
    faults.poison_gradients(4, model)
    assert torch.isnan(model.weight.grad).sum() == 1


# --- actions in a training run -----------------------------------------------------


def all_finite(trainer: Trainer) -> bool:
    return all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_skip_drops_the_spike_and_the_nan_step(tiny_config, read_records, tmp_path):
    config = tiny_config(max_steps=30, anomaly_action="skip",
                         inject_spike_at=20, inject_nan_at=25)
    trainer = Trainer(config, tmp_path)
    trainer.fit()
    steps, events = read_records(tmp_path)
    assert [(e["step"], e["event"], e["reason"]) for e in events] == [
        (20, "skip", "spike"), (25, "skip", "nan")]
    assert events[0]["z"] > config.train.spike_z and events[0]["loss"] > 100
    assert events[1]["grad_norm"] is None  # NaN is written as null
    assert sorted(r["step"] for r in steps) == sorted(set(range(1, 31)) - {20, 25})
    assert all_finite(trainer)
    adam_steps = trainer.optimizer.state[trainer.model.tok_emb.weight]["step"]
    assert adam_steps.item() == 28  # two updates were not applied


def test_rollback_restores_the_checkpoint_and_lowers_the_lr(tiny_config, losses,
                                                            read_records, tmp_path):
    config = tiny_config(max_steps=30, anomaly_action="rollback",
                         inject_spike_at=25, inject_nan_at=27, keep_last=1)
    trainer = Trainer(config, tmp_path)
    trainer.fit()
    steps, events = read_records(tmp_path)
    assert [(e["step"], e["event"], e["reason"], e["to_step"], e["lr_scale"])
            for e in events] == [(25, "rollback", "spike", 20, 0.5),
                                 (27, "rollback", "nan", 20, 0.25)]
    runs_of_21 = [r for r in steps if r["step"] == 21]
    assert len(runs_of_21) == 3  # first try, after each rollback
    # The loss of step 21 is computed before its update: same weights, same batch.
    assert len({r["loss"] for r in runs_of_21}) == 1
    assert [r["lr"] / runs_of_21[0]["lr"] for r in runs_of_21] == pytest.approx(
        [1.0, 0.5, 0.25])
    assert trainer.monitor.rollbacks == 2 and trainer.step == 30
    assert all_finite(trainer)
    assert set(losses(tmp_path)) == set(range(1, 31))


def test_rollback_without_a_checkpoint_skips(tiny_config, read_records, tmp_path):
    config = tiny_config(max_steps=8, anomaly_action="rollback",
                         inject_nan_at=5)
    train(config, tmp_path)
    events = read_records(tmp_path)[1]
    assert [(e["step"], e["event"]) for e in events] == [(5, "skip")]


def test_too_many_rollbacks_stop_the_run(tiny_config, tmp_path):
    config = tiny_config(max_steps=30, anomaly_action="rollback",
                         inject_nan_at=15, max_rollbacks=0)
    with pytest.raises(UserError, match="training diverged at step 15 .nan. after 0"):
        train(config, tmp_path)


def test_a_skipped_last_step_is_still_evaluated_and_saved(tiny_config, read_records,
                                                          tmp_path):
    config = tiny_config(max_steps=12, inject_spike_at=12)
    result = train(config, tmp_path)
    steps, events = read_records(tmp_path)
    assert [(e["step"], e["event"]) for e in events] == [(12, "skip")]
    assert events[0]["val_loss"] == result["val_loss"]
    assert result["checkpoint"].endswith("step_0000012")
    assert max(r["loss"] for r in steps) < 10  # the spike is only in the event
