"""GRPO: verifiable rewards, group advantages, the clipped objective, prompt
masking, the k3 KL, the tasks, the `rl` command, and a short run whose reward rises."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest
import torch

from llm_reference import checkpoint
from llm_reference.__main__ import main
from llm_reference.chat import format_chat
from llm_reference.errors import UserError
from llm_reference.finetune import finetune
from llm_reference.finetune_settings import FinetuneSettings
from llm_reference.grpo import (
    Rollout,
    clipped_objective,
    collate_rollouts,
    correctness_reward,
    extract_answer,
    format_reward,
    group_advantages,
    grpo,
    grpo_loss,
    grpo_step,
    informative,
    kl_k3,
    load_reward,
    sample_step,
    score,
    token_logprobs,
    verifiable_reward,
)
from llm_reference.grpo_settings import GRPOSettings
from llm_reference.model import GPT, ModelConfig
from llm_reference.rl_tasks import (
    Problem,
    RLTask,
    addition_problems,
    addition_task,
    load_gsm8k,
    sft_conversations,
    sorting_problems,
    sorting_task,
    split_problems,
)
from llm_reference.tokenizer import Tokenizer

# ------------------------------------------------------------------ rewards


def test_rewards_check_the_answer_and_the_format():
    p = Problem("12+34=", "46")
    assert correctness_reward("46", p) == 1.0
    assert correctness_reward(" 46 ", p) == 1.0
    assert correctness_reward("45", p) == 0.0
    assert correctness_reward("so 40 + 6\n#### 46", p) == 1.0  # GSM8K style
    assert extract_answer("1,234") == "1234"
    assert extract_answer("forty") is None
    assert format_reward("46", finished=True) == 1.0
    assert format_reward("46", finished=False) == 0.0  # never closed its turn
    assert format_reward("x", finished=True) == 0.0
    assert verifiable_reward(0.1)("46", p, True) == pytest.approx(1.1)


@pytest.mark.parametrize("bad", ["1", None, float("nan"), True])
def test_a_reward_that_returns_no_number_is_a_one_line_error(bad):
    with pytest.raises(UserError, match="finite int or float"):
        score(lambda c, p, f: bad, "46", Problem("1+1=", "2"), True)


# --------------------------------------------------------------- advantages


def test_group_advantages_normalise_within_each_group():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    adv = group_advantages(rewards, eps=0.0 + 1e-12)
    std = math.sqrt(1 / 3)  # unbiased std of 1, 0, 0, 1
    assert torch.allclose(adv[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / std)
    assert torch.equal(adv[1], torch.zeros(4))  # a unanimous group teaches nothing
    dr = group_advantages(rewards, scale=False)  # Dr. GRPO: no std
    assert torch.allclose(dr[0], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    assert torch.allclose(adv.mean(dim=1), torch.zeros(2), atol=1e-6)


# --------------------------------------------------------------------- loss


def test_clipped_objective_matches_a_hand_computed_example():
    # ratios e^0.5 = 1.6487 (clipped to 1.2 for A > 0), e^-0.5 = 0.6065
    logp = torch.tensor([[0.0, 0.0]])
    old = torch.tensor([[-0.5, 0.5]])
    up = clipped_objective(logp, old, torch.tensor([2.0]), clip_eps=0.2)
    # A = 2: min(1.6487 * 2, 1.2 * 2) = 2.4; min(0.6065 * 2, 0.8 * 2) = 1.2131
    assert torch.allclose(up, torch.tensor([[2.4, 2 * math.exp(-0.5)]]), atol=1e-4)
    down = clipped_objective(logp, old, torch.tensor([-1.0]), clip_eps=0.2)
    # A = -1: min(-1.6487, -1.2) = -1.6487; min(-0.6065, -0.8) = -0.8
    assert torch.allclose(down, torch.tensor([[-math.exp(0.5), -0.8]]), atol=1e-4)


def test_loss_gradient_is_the_policy_gradient_on_completion_tokens_only():
    logp = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    mask = torch.tensor([[0.0, 1.0, 1.0]])  # the first target is a prompt token
    loss, kl = grpo_loss(logp, logp.detach(), None, torch.tensor([1.5]), mask,
                         clip_eps=0.2, kl_beta=0.0, n_tokens=2)
    loss.backward()
    assert loss.item() == pytest.approx(-1.5)  # -(1.5 + 1.5) / 2
    assert torch.allclose(logp.grad, torch.tensor([[0.0, -0.75, -0.75]]))
    assert kl.item() == 0.0


def test_kl_k3_is_zero_when_policy_equals_reference_and_positive_otherwise():
    logp = torch.log(torch.tensor([0.2, 0.5, 0.9]))
    assert torch.equal(kl_k3(logp, logp), torch.zeros(3))
    assert (kl_k3(logp, logp - 0.3) > 0).all()
    assert kl_k3(logp, logp + 0.3).min() > 0


def test_collate_masks_the_prompt_and_the_padding():
    rollouts = [Rollout([1, 2, 3], [7, 8], "", True),
                Rollout([1, 2], [9], "", True)]
    ids, mask = collate_rollouts(rollouts, pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 7, 8], [1, 2, 9, 0, 0]]
    # targets are ids[:, 1:]: row 0 targets 2 3 7 8, row 1 targets 2 9 0 0
    assert mask.tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]


def test_token_logprobs_score_the_next_token():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=11, context_length=8, n_layer=1, n_head=1,
                            d_model=8))
    ids = torch.tensor([[1, 2, 3, 4]])
    logits, _ = model(ids[:, :-1])
    expected = logits.log_softmax(-1)[0, torch.arange(3), ids[0, 1:]]
    assert torch.allclose(token_logprobs(model, ids)[0], expected, atol=1e-6)


def test_gradient_accumulation_gives_the_gradient_of_one_batch():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=11, context_length=16, n_layer=1, n_head=1,
                         d_model=8)
    start = GPT(config)
    groups = [[Rollout([1, 2], [3, 4, 5], "", True, reward=1.0),
               Rollout([1, 2], [6], "", True, reward=0.0)],
              [Rollout([7, 8, 9], [3], "", True, reward=0.5),
               Rollout([7, 8, 9], [4, 4], "", False, reward=0.0)]]
    after = []  # the weights after two SGD updates
    for accum in (1, 2):
        model = GPT(config)
        model.load_state_dict(start.state_dict())
        settings = GRPOSettings(prompts_per_step=2, group_size=2, grad_accum=accum,
                                grad_clip=0.0, advantage="dr_grpo",
                                updates_per_batch=2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        grpo_step(model, start, optimizer, groups, settings, 0, torch.device("cpu"))
        after.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.allclose(after[0], after[1], atol=1e-6)
    assert not torch.allclose(after[0], torch.cat(
        [p.flatten() for p in start.parameters()]))


def test_a_step_without_groups_leaves_the_weights_alone():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=11, context_length=16, n_layer=1, n_head=1,
                            d_model=8))
    before = [p.clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    record = grpo_step(model, None, optimizer, [], GRPOSettings(), 0,
                       torch.device("cpu"))
    assert record["trained_groups"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_filter_groups_keeps_only_groups_whose_rewards_differ(addition_run):
    model, tokenizer, _ = checkpoint.load_model(addition_run)
    problems = [Problem(f"{a}+1=", str(a + 1)) for a in range(8)]
    task = RLTask("toy", problems, problems[:1])

    def reward(completion, problem, finished):
        # even sums: a reward that varies with the sample; odd sums: always 0
        return float(len(completion) % 2) if int(problem.answer) % 2 == 0 else 0.0

    settings = GRPOSettings(prompts_per_step=4, group_size=4, max_new_tokens=4,
                            filter_groups=True, max_sample_batches=3)
    kept, sampled = sample_step(model, tokenizer, task, settings, reward,
                                random.Random(0))
    assert 4 <= len(sampled) <= 12 and len(sampled) % 4 == 0
    assert len(kept) <= 4 and all(informative(g) for g in kept)
    assert len(kept) == min(4, sum(informative(g) for g in sampled))
    plain = dataclasses.replace(settings, filter_groups=False)
    kept, sampled = sample_step(model, tokenizer, task, plain, reward,
                                random.Random(0))
    assert kept == sampled and len(kept) == 4  # unanimous groups included


# -------------------------------------------------------------------- tasks


def test_addition_task_is_deterministic_with_a_stable_held_out_split():
    problems = addition_problems(50, digits=2, seed=3)
    assert problems == addition_problems(50, digits=2, seed=3)
    assert all(str(eval(p.prompt[:-1])) == p.answer for p in problems)
    task = addition_task(200, digits=2, seed=3, val_fraction=0.3)
    other = addition_task(300, digits=2, seed=4, val_fraction=0.3)
    shared = {p.prompt for p in task.train + task.held_out} & {
        p.prompt for p in other.train + other.held_out}
    held = {p.prompt for p in task.held_out} | {p.prompt for p in other.held_out}
    for prompt in shared:  # the split follows the prompt, not the draw
        assert (prompt in {p.prompt for p in task.held_out}) == (
            prompt in {p.prompt for p in other.held_out}) == (prompt in held)
    assert 0.15 < len(task.held_out) / 200 < 0.45


def test_sorting_task_covers_every_input_once_with_disjoint_splits():
    problems = sorting_problems(3)
    assert len(problems) == 1000 == len({p.prompt for p in problems})
    assert Problem("sort 7 2 9", "279") in problems
    assert Problem("sort 0 1 0", "001") in problems
    task = sorting_task(3, val_fraction=0.2)
    assert not {p.prompt for p in task.train} & {p.prompt for p in task.held_out}
    assert 150 < len(task.held_out) < 250
    assert task.held_out == sorting_task(3, val_fraction=0.2).held_out
    with pytest.raises(UserError, match="--length 1"):
        sorting_problems(1)


def test_a_reward_can_come_from_a_file(tmp_path):
    path = tmp_path / "my_reward.py"
    path.write_text("def reward(completion, problem, finished):\n"
                    "    return float(completion.strip() == problem.answer)\n")
    reward = load_reward(f"{path}:reward")
    assert reward("279", Problem("sort 7 2 9", "279"), True) == 1.0
    with pytest.raises(UserError, match="cannot import it"):
        load_reward(f"{tmp_path / 'missing.py'}:reward")


def test_a_task_without_held_out_problems_is_an_error():
    with pytest.raises(UserError, match="no held-out problems"):
        split_problems("addition", addition_problems(20, 1, 0), val_fraction=0.0)


def test_gsm8k_loader_reads_the_answer_after_the_mark(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    rows = [{"question": f"q{i}?", "answer": f"work\n#### {i},000"} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = load_gsm8k(path, val_fraction=0.3)
    assert {p.answer for p in task.train + task.held_out} == {
        f"{i}000" for i in range(40)}
    path.write_text(json.dumps({"question": "q", "answer": "no mark"}) + "\n")
    with pytest.raises(UserError, match=r"gsm8k.jsonl:1: the answer must end"):
        load_gsm8k(path)


def test_settings_reject_a_group_of_one():
    with pytest.raises(UserError, match="--group-size 1"):
        GRPOSettings(group_size=1).check()
    with pytest.raises(UserError, match="multiple of --grad-accum"):
        GRPOSettings(prompts_per_step=3, grad_accum=2).check()
    with pytest.raises(UserError, match="--max-sample-batches"):
        GRPOSettings(filter_groups=True, max_sample_batches=0).check()


# ------------------------------------------------------------ end to end


def make_addition_run(root: Path, sft_steps: int, seed: int = 0) -> Path:
    """A 2-layer GPT with a tokenizer trained on 1-digit addition chats, then SFT on
    the task's train split: the warm start GRPO needs. Returns the SFT run."""
    task = addition_task(100, digits=1, seed=0, val_fraction=0.2)
    lines = sft_conversations(task.train)
    tokenizer = Tokenizer.train([format_chat(x["messages"]) for x in lines], 300)
    torch.manual_seed(seed)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, context_length=32,
                            n_layer=2, n_head=2, d_model=64))
    base = root / "base"
    base.mkdir(parents=True)
    tokenizer.save(base / "tokenizer.json")
    checkpoint.save_checkpoint(base, 0, model, torch.optim.AdamW(model.parameters()),
                               {"config": {"model": model.config.to_dict(),
                                           "train": {}}}, keep_last=1)
    data = root / "sft.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in lines))
    settings = FinetuneSettings(max_steps=sft_steps, batch_size=16, lr=3e-3,
                                warmup_steps=5, eval_interval=1000, seed=seed)
    finetune(base, root / "sft", settings, data=data, device="cpu")
    return root / "sft"


@pytest.fixture(scope="module")
def addition_run(tmp_path_factory) -> Path:
    return make_addition_run(tmp_path_factory.mktemp("addition"), sft_steps=200)


def rewards_of(out: Path) -> list[float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["reward_mean"] for line in lines]


@pytest.mark.slow
def test_grpo_raises_the_reward_on_a_fixed_seed(addition_run, tmp_path):
    task = addition_task(100, digits=1, seed=0, val_fraction=0.2)
    settings = GRPOSettings(max_steps=100, prompts_per_step=8, group_size=8,
                            lr=1e-3, kl_beta=0.0, max_new_tokens=6,
                            eval_interval=50, eval_problems=20, save_interval=50,
                            seed=0)
    result = grpo(addition_run, tmp_path / "grpo", task, settings, device="cpu")
    rewards = rewards_of(tmp_path / "grpo")
    assert len(rewards) == 100
    # mean reward of the last quarter above the first (0.37 -> 0.42 on this seed)
    assert sum(rewards[-25:]) / 25 > sum(rewards[:25]) / 25 + 0.03
    assert 0 <= result["held_out_accuracy"]["after"] <= 1
    records = [json.loads(x) for x in (tmp_path / "grpo/metrics.jsonl").open()]
    assert {"reward_mean", "reward_std", "kl", "completion_length",
            "train_accuracy"} <= set(records[0])
    assert "val_accuracy" in records[49] and "val_accuracy" in records[99]
    assert (tmp_path / "grpo/reward.png").stat().st_size > 0
    model, _, state = checkpoint.load_model(tmp_path / "grpo")
    assert state["step"] == 100 and state["grpo"]["settings"]["group_size"] == 8


@pytest.mark.slow
def test_resume_continues_on_the_same_trajectory(addition_run, tmp_path):
    task = addition_task(100, digits=1, seed=0, val_fraction=0.2)
    settings = GRPOSettings(max_steps=6, prompts_per_step=4, group_size=4,
                            grad_accum=2, lr=1e-3, kl_beta=0.04, max_new_tokens=4,
                            eval_interval=3, eval_problems=5, save_interval=3, seed=1)
    grpo(addition_run, tmp_path / "full", task, settings, device="cpu")
    first = dataclasses.replace(settings, max_steps=3)
    grpo(addition_run, tmp_path / "part", task, first, device="cpu")
    grpo(addition_run, tmp_path / "part", task, settings, device="cpu", resume=True)
    full, part = rewards_of(tmp_path / "full"), rewards_of(tmp_path / "part")
    assert part == full
    kls = [json.loads(x)["kl"] for x in (tmp_path / "full/metrics.jsonl").open()]
    assert kls[0] == pytest.approx(0.0, abs=1e-6)  # policy == reference at first
    assert kls[-1] > 0
    with pytest.raises(UserError, match="already holds a GRPO run"):
        grpo(addition_run, tmp_path / "full", task, settings, device="cpu")


def test_rl_command_errors_are_one_line(addition_run, tmp_path, capsys):
    base = ["rl", "--run", str(addition_run), "--out", str(tmp_path / "o"),
            "--device", "cpu"]
    cases = [(["--group-size", "1"], "--group-size 1: must be >= 2"),
             (["--task", "gsm8k"], "--task gsm8k needs --data"),
             (["--digits", "1", "--problems", "10", "--val-fraction", "0"],
              "no held-out problems"),
             (["--reward", "nosuchmodule:f"], "cannot import it")]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err
    rewards = tmp_path / "text_reward.py"
    rewards.write_text("def reward(completion, problem, finished):\n"
                       "    return 'good'\n")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(base + ["--reward", "text_reward:reward", "--digits", "1",
                            "--problems", "50", "--max-steps", "1"]) == 2
    finally:
        sys.path.remove(str(tmp_path))
    assert "returned 'good'" in capsys.readouterr().err
