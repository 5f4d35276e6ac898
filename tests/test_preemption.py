"""A run stopped by SIGINT or SIGTERM saves a checkpoint at the step boundary, says
how to resume and exits 130 / 143; checkpoints also come every checkpoint_minutes;
a data folder whose vocabulary is inconsistent is refused before anything is
written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llm_reference import checkpoint, preemption
from llm_reference.__main__ import main
from llm_reference.config import load_preset
from llm_reference.errors import UserError
from llm_reference.prefetch import Prefetcher
from llm_reference.train import Trainer, train

REPO = Path(__file__).resolve().parents[1]


class SignalledTrainer(Trainer):
    """A trainer that sends its own process `signum` during step `at` (what a
    scheduler's SIGTERM or a Ctrl-C looks like from inside, at a known moment; sent
    from the main thread, so it arrives before the step ends)."""

    def __init__(self, *args, at: int, signum: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.at, self.signum = at, signum

    def train_step(self):
        result = super().train_step()
        if self.step == self.at:
            os.kill(os.getpid(), self.signum)
        return result


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143),
                                          (signal.SIGINT, 130)])
def test_a_signal_saves_a_checkpoint_at_the_step_boundary(tiny_config, tmp_path,
                                                          signum, code):
    trainer = SignalledTrainer(tiny_config(max_steps=30,
                                           checkpoint_interval=100), tmp_path,
                               at=8, signum=signum)
    handlers = [signal.getsignal(s) for s in preemption.SIGNALS]
    with pytest.raises(preemption.Stopped) as stopped:
        trainer.fit()
    assert stopped.value.code == code
    assert trainer.step == 8  # stopped at the end of the step it came in
    saved = checkpoint.list_checkpoints(tmp_path)
    assert [checkpoint.checkpoint_step(p) for p in saved] == [trainer.step]
    assert checkpoint.read_state(saved[0])["data_position"] == trainer.data_position
    message = stopped.value.message
    assert f"stopped by {signal.Signals(signum).name} at step {trainer.step}" in message
    assert f"resume with: python -m llm_reference train --out {tmp_path} --resume" \
        in message
    assert [signal.getsignal(s) for s in preemption.SIGNALS] == handlers  # restored


def test_checkpoints_also_come_every_checkpoint_minutes(tiny_config, tmp_path):
    config = tiny_config(max_steps=5, checkpoint_interval=100,
                         checkpoint_minutes=1e-9)  # the clock is always past due
    train(config, tmp_path / "timed")
    assert [checkpoint.checkpoint_step(p)
            for p in checkpoint.list_checkpoints(tmp_path / "timed")] == [1, 2, 3, 4, 5]
    config = tiny_config(max_steps=5, checkpoint_interval=100,
                         checkpoint_minutes=0)  # steps only: the last one
    train(config, tmp_path / "steps")
    assert [checkpoint.checkpoint_step(p)
            for p in checkpoint.list_checkpoints(tmp_path / "steps")] == [5]


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_beginner_presets_checkpoint_at_least_every_ten_minutes(preset):
    assert 0 < load_preset(preset)["train"]["checkpoint_minutes"] <= 10


# --- a real process stopped by a real signal ---------------------------------------


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "llm_reference", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="session")
def run_args(tiny_args):
    """`run_args(out)`: a 400-step run that checkpoints only when stopped."""
    return lambda out: [*tiny_args(out), "--max-steps", "400",
            "--set", "train.checkpoint_interval=1000",
            "--set", "train.eval_interval=1000"]


@pytest.fixture(scope="module")
def uninterrupted(run_args, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    proc = start(run_args(out))
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130),
                                          (signal.SIGTERM, 143)])
def test_a_signalled_run_resumes_onto_the_same_trajectory(run_args, losses, tmp_path,
                                                          uninterrupted, signum,
                                                          code):
    out = tmp_path / "run"
    proc = start(run_args(out))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            (out / "metrics.jsonl").exists()
            and len((out / "metrics.jsonl").read_text().splitlines()) >= 3):
        time.sleep(0.01)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    stopped_at = max(losses(out))
    assert 3 <= stopped_at < 400  # really stopped mid-run
    assert f"stopped by {signal.Signals(signum).name} at step {stopped_at}" in err
    assert f"resume with: python -m llm_reference train --out {out} --resume" in err
    assert checkpoint.find_checkpoint(out).name == f"step_{stopped_at:07d}"
    resumed = start(["train", "--out", str(out), "--resume"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert losses(out) == losses(uninterrupted)


# --- inconsistent data: refused before the run folder is touched -------------------


def test_a_vocabulary_that_disagrees_with_the_tokenizer_writes_nothing(
        data_dir, tiny_args, tmp_path, capsys):
    broken = tmp_path / "data"
    shutil.copytree(data_dir, broken)
    meta = json.loads((broken / "meta.json").read_text())
    meta["vocab_size"] = 300  # the shards hold ids up to 383
    (broken / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "run"
    assert main(tiny_args(out, broken)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "meta.json: vocab_size 300 disagrees" in err
    assert not out.exists()


class Batch:
    def __init__(self, top: int):
        self.top = top

    def get(self, index: int):
        x = torch.zeros(2, 4, dtype=torch.long)
        x[1, 2] = self.top
        return x, x


def test_a_batch_with_an_id_outside_the_vocabulary_is_a_user_error():
    prefetch = Prefetcher(torch.device("cpu"), vocab_size=384, source="data/x")
    x, _ = prefetch.get(Batch(383), 0)
    assert int(x.max()) == 383
    with pytest.raises(UserError, match="data/x: a training batch holds token id "
                                        "384, but meta.json gives a vocabulary of "
                                        "384"):
        prefetch.get(Batch(384), 0)


def test_the_prefetcher_reads_ahead_and_follows_jumps():
    class Counting:
        def __init__(self):
            self.read = []

        def get(self, index):
            self.read.append(index)
            return torch.full((1, 2), index), torch.full((1, 2), index)

    batches = Counting()
    prefetch = Prefetcher(torch.device("cpu"), vocab_size=100, source="d")
    assert [int(prefetch.get(batches, i)[0][0, 0]) for i in (0, 1, 2, 0, 1)] == [
        0, 1, 2, 0, 1]  # a rollback to 0: what was read ahead (3) is dropped
    prefetch.pool.shutdown(wait=True)
    assert batches.read == [0, 1, 2, 3, 0, 1, 2]
