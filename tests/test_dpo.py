"""DPO: the loss formula, answer log-probabilities over reply tokens only, a frozen
reference, preference data, and a policy whose preference margin rises."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from llm_reference.dpo import (
    PreferencePair,
    collate_pairs,
    dpo_loss,
    dpo_step,
    load_preferences,
    pairs_from_conversations,
    reference_copy,
    sequence_logprobs,
)
from llm_reference.errors import UserError
from llm_reference.model import GPT, ModelConfig

V = 32


def tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=V, context_length=16, n_layer=2, n_head=2,
                           d_model=32))


def test_dpo_loss_matches_the_formula():
    pw, pl = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    rw, rl = torch.tensor([-3.5, -4.0]), torch.tensor([-3.0, -3.0])
    beta = 0.5
    loss, chosen, rejected = dpo_loss(pw, pl, rw, rl, beta)
    logits = [beta * ((pw[i] - rw[i]) - (pl[i] - rl[i])).item() for i in range(2)]
    expected = sum(-math.log(1 / (1 + math.exp(-z))) for z in logits) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(chosen, beta * (pw - rw))
    torch.testing.assert_close(rejected, beta * (pl - rl))
    same = torch.tensor([-2.0, -7.0])
    assert dpo_loss(same, same, same, same)[0].item() == pytest.approx(math.log(2))


def test_sequence_logprobs_sum_reply_tokens_only_and_ignore_padding():
    model = tiny_model().eval()
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    mask = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]])  # tokens 5 and 6 are the reply
    logprobs = model(ids[:, :-1])[0].log_softmax(-1)  # (1, 4, V)
    expected = logprobs[0, 1, 5] + logprobs[0, 2, 6]
    assert sequence_logprobs(model, ids, mask).item() == pytest.approx(
        expected.item(), rel=1e-5)
    padded = torch.tensor([[3, 4, 5, 6, 7, 0, 0, 0]])
    padded_mask = F.pad(mask, (0, 3))
    assert sequence_logprobs(model, padded, padded_mask).item() == pytest.approx(
        expected.item(), rel=1e-5)


def test_collate_puts_chosen_rows_first_and_pads_with_mask_zero():
    pairs = [(([1, 2, 3], [0, 1, 1]), ([1, 2], [0, 1])),
             (([4, 5], [0, 1]), ([4, 6, 7, 8], [0, 1, 1, 1]))]
    ids, mask = collate_pairs(pairs, pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 0], [4, 5, 0, 0], [1, 2, 0, 0], [4, 6, 7, 8]]
    assert mask.tolist() == [[0, 1, 1, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 1, 1]]


def test_reference_is_frozen_and_gets_no_gradient():
    policy = tiny_model()
    reference = reference_copy(policy)
    assert not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    ids = torch.randint(0, V, (4, 10))
    mask = torch.ones(4, 10)
    loss, metrics = dpo_step(policy, reference, ids, mask, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)  # policy = reference
    assert metrics["margin"] == 0.0
    loss.backward()
    assert all(p.grad is None for p in reference.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in policy.parameters())


def synthetic_pairs(n: int, seed: int) -> list:
    """Prompt: 3 random tokens. Chosen reply: the prompt's first token counting up;
    rejected reply: counting down. Mask 1 on the reply."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        prompt = torch.randint(1, V, (3,), generator=g).tolist()
        a = prompt[0]
        up = [(a + k) % V for k in range(1, 5)]
        down = [(a - k) % V for k in range(1, 5)]
        mask = [0] * 3 + [1] * 4
        pairs.append(((prompt + up, mask), (prompt + down, mask)))
    return pairs


def evaluate(policy, reference, pairs, beta):
    ids, mask = collate_pairs(pairs, pad_id=0)
    with torch.no_grad():
        _, metrics = dpo_step(policy.eval(), reference, ids, mask, beta)
        logps = sequence_logprobs(policy, ids, mask)
    B = len(pairs)
    return metrics, (logps[:B] - logps[B:]).mean().item()


def test_training_raises_the_preference_margin_and_reward_accuracy():
    policy, beta = tiny_model(), 0.1
    reference = reference_copy(policy)
    train, held_out = synthetic_pairs(64, seed=0), synthetic_pairs(32, seed=1)
    before, gap_before = evaluate(policy, reference, held_out, beta)
    assert before["margin"] == 0.0 and before["reward_accuracy"] == 0.0
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    for step in range(40):
        batch = [train[(step * 16 + k) % len(train)] for k in range(16)]
        ids, mask = collate_pairs(batch, pad_id=0)
        policy.train()
        loss, _ = dpo_step(policy, reference, ids, mask, beta)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after, gap_after = evaluate(policy, reference, held_out, beta)
    assert after["margin"] > 0.5  # reward margin beta * (Δ policy - Δ reference)
    assert after["reward_accuracy"] >= 0.9
    assert gap_after > gap_before + 5.0  # log pi(chosen) - log pi(rejected), nats


def test_pairs_from_conversations_reject_another_examples_reply():
    conversations = [[{"role": "user", "content": f"q{i}"},
                      {"role": "assistant", "content": f"a{i}"}] for i in range(10)]
    pairs = pairs_from_conversations(conversations, seed=3)
    assert pairs == pairs_from_conversations(conversations, seed=3)
    assert len(pairs) == 10
    for n, pair in enumerate(pairs):
        assert pair.prompt == conversations[n][:1]
        assert pair.chosen == f"a{n}" and pair.rejected != pair.chosen
    assert sorted(p.rejected for p in pairs) == sorted(p.chosen for p in pairs)
    with pytest.raises(UserError, match="at least 2"):
        pairs_from_conversations(conversations[:1])


def test_load_preferences_accepts_strings_or_messages(tmp_path):
    path = tmp_path / "prefs.jsonl"
    lines = [{"prompt": "hi", "chosen": "hello", "rejected": "go away"},
             {"prompt": [{"role": "system", "content": "be kind"},
                         {"role": "user", "content": "hi"}],
              "chosen": "hello", "rejected": "no"}]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    pairs = load_preferences(path)
    assert pairs[0] == PreferencePair([{"role": "user", "content": "hi"}], "hello",
                                      "go away")
    assert pairs[1].prompt[0]["role"] == "system"
    path.write_text(json.dumps({"prompt": "hi", "chosen": "x"}) + "\n")
    with pytest.raises(UserError, match=r"prefs.jsonl:1: 'rejected'"):
        load_preferences(path)
