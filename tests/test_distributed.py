"""Distributed training and activation checkpointing.

The multi-process tests launch the real command under torchrun: 2 CPU processes
talking over Gloo, a tiny model, 6 steps. DDP must equal a single process that
averages the gradients of the same batches, the union of both ranks' batches; rank 0
alone writes the run folder; a DDP run resumes exactly; FSDP2 gives the same model
and the same checkpoint files, and loads a DDP checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel as DDP

from llm_reference import checkpoint, distributed
from llm_reference.config import load_config
from llm_reference.data import Batches
from llm_reference.errors import UserError
from llm_reference.model import GPT, ModelConfig
from llm_reference.plan import make_plan
from llm_reference.train import Trainer, train

REPO = Path(__file__).resolve().parents[1]
WORLD_SIZE, GRAD_ACCUM, STEPS = 2, 2, 6
# Every rank starts from the same weights and takes the same averaged step; a single
# process sums the same gradients in another order, so float32 rounding differs.
ATOL = 1e-5


# --- helpers -------------------------------------------------------------------------


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2 -m llm_reference ARGS` on CPUs.

    --standalone runs the rendezvous on localhost at a free port, so parallel test
    workers do not collide.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(WORLD_SIZE), "-m", "llm_reference", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def train_args(data_dir: Path, out: Path, *sets: str) -> list[str]:
    settings = ["model.n_layer=2", "model.n_head=2", "model.d_model=32",
                "model.context_length=16", "train.batch_size=4",
                f"train.grad_accum={GRAD_ACCUM}", f"train.max_steps={STEPS}",
                "train.eval_interval=3", "train.eval_steps=2",
                "train.checkpoint_interval=3", "train.warmup_steps=2",
                'train.device="cpu"', *sets]
    return ["train", "--preset", "tiny", "--data", str(data_dir), "--out", str(out),
            *[a for s in settings for a in ("--set", s)]]


class UnionOfRanks:
    """All ranks' training batches, in the order one process must see them to take
    the step DDP takes.

    DDP step s averages, over ranks r, the gradient of rank r's micro-batches
    s*A .. s*A + A - 1 (A = grad_accum). Every batch has the same number of tokens,
    so that is the mean over all A*W micro-batches: one process with grad_accum =
    A*W whose micro-batch s*A*W + r*A + i is rank r's batch s*A + i.
    """

    def __init__(self, batches: list[Batches], grad_accum: int):
        self.ranks, self.grad_accum = batches, grad_accum

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        step, k = divmod(index, self.grad_accum * len(self.ranks))
        rank, micro = divmod(k, self.grad_accum)
        return self.ranks[rank].get(step * self.grad_accum + micro)


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint.find_checkpoint(run) / "model.safetensors")


def assert_weights_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=ATOL, msg=name)


# --- the runs under torchrun (one launch each, shared by the tests below) ------------


@pytest.fixture(scope="module")
def ddp_run(data_dir, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("ddp") / "run"
    return out, torchrun(*train_args(data_dir, out))


@pytest.mark.slow
def test_ddp_equals_one_process_on_the_union_of_the_ranks_batches(ddp_run, read_records,
                                                                  data_dir, tmp_path):
    run, _ = ddp_run
    config = load_config(config_file=run / "config.toml",
                         overrides=[f"train.grad_accum={GRAD_ACCUM * WORLD_SIZE}"])
    single = Trainer(config, tmp_path / "single")
    T = single.model_config.context_length
    single.train_batches = UnionOfRanks(
        [Batches(data_dir, "train", 4, T, config.train.seed, rank=r,
                 world_size=WORLD_SIZE) for r in range(WORLD_SIZE)], GRAD_ACCUM)
    results = [single.train_step() for _ in range(STEPS)]
    steps, events = read_records(run)
    assert events == []
    # the logged loss is the mean over both ranks, as one process logs it
    assert [r["loss"] for r in steps] == pytest.approx(
        [r.loss for r in results], rel=1e-5)
    assert [r["grad_norm"] for r in steps] == pytest.approx(
        [r.grad_norm for r in results], rel=1e-4)
    assert steps[-1]["val_loss"] == pytest.approx(single.evaluate(), rel=1e-5)
    assert_weights_close(final_weights(run), single.model.state_dict())
    # and not trivially: one rank's batches alone give other weights
    alone = Trainer(config, tmp_path / "alone")
    alone.train_batches = UnionOfRanks([alone.train_batches], GRAD_ACCUM)
    for _ in range(STEPS):
        alone.train_step()
    assert not torch.allclose(alone.model.tok_emb.weight,
                              single.model.tok_emb.weight, atol=100 * ATOL)


@pytest.mark.slow
def test_rank_zero_alone_writes_logs_checkpoints_and_reports(read_records, ddp_run):
    run, done = ddp_run
    steps, _ = read_records(run)
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))  # each line once
    assert [r["step"] for r in steps if "val_loss" in r] == [3, 6]
    # tokens/s counts the global batch: 4 x 2 x 16 tokens on each of 2 processes
    assert "256 tokens/step (4 x 2 x 16 x 2 processes, ddp)" in done.stderr
    assert done.stderr.count("tokens/step") == 1
    assert done.stdout.count("final val loss") == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_0000003", "step_0000006"]  # and no temporary folders
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints", "config.toml", "loss.png", "metrics.jsonl", "tokenizer.json"]
    state = checkpoint.read_state(run / "checkpoints" / "step_0000006")
    assert state["data_position"] == STEPS * GRAD_ACCUM  # per rank
    # each rank's own random-number generators, seeded by rank: not rank 0's twice
    rngs = checkpoint.rng_states(state)
    assert len(rngs) == WORLD_SIZE and rngs[0]["torch"] != rngs[1]["torch"]
    model, _, _ = checkpoint.load_model(run)  # a plain checkpoint: eval, generate…
    assert model.num_parameters() > 0


@pytest.mark.slow
def test_ddp_resumes_on_the_same_trajectory(losses, read_records, ddp_run, tmp_path):
    full, _ = ddp_run
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)  # as if killed after step 5: last checkpoint is 3
    shutil.rmtree(cut / "checkpoints" / "step_0000006")
    lines = (cut / "metrics.jsonl").read_text().splitlines(keepends=True)
    (cut / "metrics.jsonl").write_text("".join(lines[:5]) + '{"step": 6, "lo')
    done = torchrun("train", "--out", str(cut), "--resume")
    assert "resuming at step 3" in done.stderr
    assert losses(cut) == losses(full)
    assert len(read_records(cut)[0]) == STEPS
    assert_weights_close(final_weights(cut), final_weights(full))


@pytest.mark.slow
def test_fsdp_trains_like_ddp_and_writes_the_same_checkpoint(ddp_run, losses, data_dir,
                                                             tmp_path):
    ddp, _ = ddp_run
    fsdp = tmp_path / "fsdp"
    done = torchrun(*train_args(data_dir, fsdp, 'train.parallel="fsdp"'))
    assert "x 2 processes, fsdp)" in done.stderr
    assert losses(fsdp) == pytest.approx(losses(ddp), rel=1e-5)
    assert_weights_close(final_weights(fsdp), final_weights(ddp))
    for name in ("model.safetensors", "optimizer.safetensors"):
        a = load_file(checkpoint.find_checkpoint(fsdp) / name)
        b = load_file(checkpoint.find_checkpoint(ddp) / name)
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}


@pytest.mark.slow
def test_fsdp_resumes_from_a_ddp_checkpoint(losses, ddp_run, tmp_path):
    full, _ = ddp_run
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "step_0000006")
    config = (cut / "config.toml").read_text()
    (cut / "config.toml").write_text(config.replace('parallel = "ddp"',
                                                    'parallel = "fsdp"'))
    torchrun("train", "--out", str(cut), "--resume")
    assert losses(cut) == pytest.approx(losses(full), rel=1e-5)
    assert_weights_close(final_weights(cut), final_weights(full))
    # the optimizer state went through the sharded load and the gathered save
    a = load_file(checkpoint.find_checkpoint(cut) / "optimizer.safetensors")
    b = load_file(checkpoint.find_checkpoint(full) / "optimizer.safetensors")
    for name in b:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.slow
def test_a_two_process_run_resumes_in_one_process_and_back(ddp_run, losses, tmp_path):
    """Resuming on another number of processes: each one that the checkpoint has
    RNG states for takes its own, and a new one seeds its own."""
    full, _ = ddp_run
    one = tmp_path / "one"
    shutil.copytree(full, one)
    shutil.rmtree(one / "checkpoints" / "step_0000006")
    config = load_config(config_file=one / "config.toml",
                         overrides=["train.max_steps=9"])
    train(config, one, resume=True)  # 2 processes -> 1: rank 0's states
    state = checkpoint.read_state(checkpoint.find_checkpoint(one))
    assert state["step"] == 9 and len(checkpoint.rng_states(state)) == 1
    config_text = (one / "config.toml").read_text()
    (one / "config.toml").write_text(config_text.replace("max_steps = 9",
                                                         "max_steps = 12"))
    torchrun("train", "--out", str(one), "--resume")  # 1 -> 2: rank 1 seeds its own
    rngs = checkpoint.rng_states(checkpoint.read_state(checkpoint.find_checkpoint(one)))
    assert len(rngs) == WORLD_SIZE and rngs[0]["torch"] != rngs[1]["torch"]
    assert sorted(losses(one)) == list(range(1, 13))


# --- rank-0 I/O and the helpers, in this process -------------------------------------


def test_only_rank_zero_writes(tiny_config, tmp_path, monkeypatch):
    """A process that is not rank 0 trains, evaluates and checkpoints but writes
    nothing (here a single process that is told it is rank 1 of 2)."""
    trainer = Trainer(tiny_config(max_steps=4, checkpoint_interval=2,
                                  eval_interval=2), tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert not distributed.is_main()
    trainer.fit()
    assert trainer.step == 4 and list(tmp_path.iterdir()) == []
    monkeypatch.setenv("RANK", "0")
    trainer.save()
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_0000004"]


@pytest.fixture
def group_of_one():
    """A Gloo process group of this process alone (an in-memory store: no port)."""
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(),
                                         rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()


def test_ddp_all_reduces_on_the_last_micro_batch_only(tiny_config, tmp_path,
                                                      group_of_one):
    # a context that claims 2 processes makes the trainer wrap the model in DDP
    ctx = distributed.Context(torch.device("cpu"), world_size=2)
    trainer = Trainer(tiny_config(grad_accum=3), tmp_path, ctx)
    assert isinstance(trainer.wrapped, DDP)
    reduced = []  # one entry per gradient bucket all-reduced

    def counting_hook(state, bucket):
        reduced.append(bucket.index())
        return allreduce_hook(state, bucket)

    trainer.wrapped.register_comm_hook(None, counting_hook)
    trainer.train_step()
    trainer.train_step()
    buckets = len(set(reduced))
    assert buckets >= 1 and len(reduced) == 2 * buckets  # not 3 x per step


def test_ddp_keeps_gradients_in_its_buckets_and_does_not_resend_buffers(
        tiny_config, tmp_path, group_of_one):
    ctx = distributed.Context(torch.device("cpu"), world_size=2)
    config = tiny_config()
    config.model["position"] = "rope"
    trainer = Trainer(config, tmp_path, ctx)
    ddp = trainer.wrapped
    assert ddp.gradient_as_bucket_view is True  # no second copy of the gradients
    # the RoPE tables are buffers that never change: not broadcast every forward
    assert getattr(ddp, distributed.BUFFER_SYNC) is False
    trainer.train_step()
    trainer.train_step()  # a view into the bucket survives zero_grad(set_to_none)
    assert all(p.grad is None for p in trainer.model.parameters())


def test_fsdp_gathers_bfloat16_weights_and_reduces_in_float32(group_of_one):
    """FSDP2's mixed-precision policy: a block runs on bf16 copies of its weights
    (half the all-gather), while the optimizer's shards stay float32."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, context_length=8, n_layer=2, n_head=2,
                            d_model=16))
    ctx = distributed.Context(torch.device("cpu"), world_size=2)
    distributed.wrap_model(model, ctx, "fsdp", "bfloat16")
    seen = []
    model.blocks[0].mlp.up.register_forward_pre_hook(
        lambda module, args: seen.append(module.weight.dtype))
    x = torch.randint(0, 64, (2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(x, x)
    loss.backward()
    assert seen == [torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    policy = distributed.fsdp_precision("bfloat16")
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16,
                                                        torch.float32)
    assert distributed.fsdp_precision("float32").param_dtype is None


@pytest.mark.slow
def test_fsdp_with_compile_runs_compiled_graphs_without_a_skipped_frame(
        tiny_config, tmp_path, group_of_one):
    """torch.compile of the sharded model as a whole made Dynamo skip its forward
    ("frame skipped: forward": FSDP2's hooks inside the loop over blocks), and the
    model ran eagerly. Compiling each block and the loss leaves the hooks outside."""
    pytest.importorskip("torch._inductor")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile on CPU needs a C compiler")
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    ctx = distributed.Context(torch.device("cpu"), world_size=2)
    config = tiny_config(parallel="fsdp", compile=True)
    config.model["n_layer"] = 3
    trainer = Trainer(config, tmp_path, ctx)
    assert distributed.is_sharded(trainer.model)
    results = [trainer.train_step() for _ in range(2)]
    assert all(math.isfinite(r.loss) for r in results)
    assert not counters["unimplemented"]  # no graph break, no skipped frame
    # one graph for the three blocks (they share their code) and one for the loss
    assert counters["stats"]["unique_graphs"] == 2


def test_single_process_setup_changes_nothing(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.setup(torch.device("cpu"))
    assert ctx == distributed.Context(torch.device("cpu"), 0, 0, 1)
    assert not torch.distributed.is_initialized() and distributed.is_main()
    x = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_mean(x) is x
    distributed.barrier()
    model = GPT(ModelConfig(vocab_size=64, context_length=8, n_layer=1, n_head=2,
                            d_model=16))
    assert distributed.wrap_model(model, ctx, "fsdp") is model
    distributed.cleanup()


def test_setup_refuses_devices_other_than_cuda_and_cpu(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(UserError, match='runs on "cuda" or "cpu", got "mps"'):
        distributed.setup(torch.device("mps"))
    assert not torch.distributed.is_initialized()


def test_parallel_is_validated(tiny_config):
    with pytest.raises(UserError, match=r"train.parallel: must be one of 'ddp', "
                                        r"'fsdp', got \"zero\""):
        tiny_config(parallel="zero")
    with pytest.raises(UserError, match="'fsdp' needs train.dtype 'bfloat16'"):
        tiny_config(parallel="fsdp", dtype="float16")
    with pytest.raises(UserError, match="activation_checkpointing: must be true/fal"):
        tiny_config(activation_checkpointing="yes")


# --- activation checkpointing --------------------------------------------------------

RECIPES = {
    "gpt2": dict(dropout=0.1),  # dropout: the recomputation must draw the same masks
    "llama": dict(position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=1,
                  bias=False, tie_weights=False),
}


@pytest.mark.parametrize("recipe", RECIPES)
def test_activation_checkpointing_gives_the_same_loss_and_gradients(recipe):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, context_length=16, n_layer=3, n_head=2,
                            d_model=32, **RECIPES[recipe]))
    x, y = torch.randint(0, 64, (4, 16)), torch.randint(0, 64, (4, 16))
    results = []
    for checkpointing in (False, True):
        model.gradient_checkpointing = checkpointing
        model.zero_grad()
        saved = []  # sizes of the tensors autograd keeps for the backward pass
        torch.manual_seed(1)
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t, saved=saved: saved.append(t.numel()) or t, lambda t: t):
            _, loss = model(x, y)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()],
                        sum(saved)))
    (loss, grads, kept), (loss_ckpt, grads_ckpt, kept_ckpt) = results
    torch.testing.assert_close(loss_ckpt, loss, rtol=0, atol=0)
    for a, b in zip(grads_ckpt, grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert kept_ckpt < kept / 2  # the blocks' activations were not kept


def test_activation_checkpointing_only_while_training(monkeypatch):
    calls = []
    real = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    model = GPT(ModelConfig(vocab_size=64, context_length=8, n_layer=2, n_head=2,
                            d_model=16))
    model.gradient_checkpointing = True
    x = torch.randint(0, 64, (1, 8))
    model(x, x)
    assert len(calls) == 2  # once per block
    model.eval()
    model(x, x)
    assert len(calls) == 2


def test_the_trainer_checkpoints_activations_when_configured(tiny_config, tmp_path):
    results = []
    for on in (False, True):
        trainer = Trainer(tiny_config(activation_checkpointing=on),
                          tmp_path / str(on))
        assert trainer.model.gradient_checkpointing is on
        results.append([trainer.train_step().loss for _ in range(3)])
    assert results[0] == pytest.approx(results[1], rel=1e-6)


def test_the_planners_config_with_activation_checkpointing_loads(tmp_path):
    plan = make_plan("1xRTX4090:30d")  # a plan that needs checkpointing to fit
    path = tmp_path / "config.toml"
    path.write_text(plan.to_toml())
    config = load_config(config_file=path)
    assert config.train.activation_checkpointing is True
    assert json.loads(json.dumps(config.to_dict()))["train"]["parallel"] == "ddp"
