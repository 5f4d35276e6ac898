"""DPO: learn from preferences, "this answer is better than that one".

Direct Preference Optimization (Rafailov et al., 2023) trains on triples (prompt x,
chosen answer y_w, rejected answer y_l). It needs no reward model and no sampling:
the policy's own log-probabilities, measured against a frozen copy of the starting
model (the reference), act as an implicit reward

    r(x, y) = beta * (log pi_theta(y | x) - log pi_ref(y | x))

and the loss asks the chosen answer's reward to beat the rejected one's:

    L = -log sigmoid(r(x, y_w) - r(x, y_l))

At the start pi_theta = pi_ref, both rewards are 0 and L = log 2. The loss falls as
the policy raises y_w relative to y_l; comparing with the reference (and beta, which
scales how far it may drift) keeps the policy from simply making every answer
unlikely or forgetting what it knew. The log-probability of an answer is the sum over
its tokens only (the prompt is given, not generated), and a pair's two answers share
the prompt, so its tokens would cancel anyway.

Prompts and answers go through the chat template (`chat.py`): the answer is the
assistant's reply, and its tokens are the reply's content and the `<|im_end|>` that
ends it, exactly the tokens SFT trains.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .chat import check_messages, tokenize_chat
from .errors import UserError

Encoded = tuple[list[int], list[int]]  # (token ids, loss mask) of one conversation


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float = 0.1
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss from summed answer log-probs, each (B,); and both rewards (B,).

    L = -log sigmoid(beta * [(pi_w - ref_w) - (pi_l - ref_l)]), averaged over pairs.
    """
    chosen_reward = beta * (policy_chosen - ref_chosen)  # (B,)
    rejected_reward = beta * (policy_rejected - ref_rejected)  # (B,)
    loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
    return loss, chosen_reward.detach(), rejected_reward.detach()


def sequence_logprobs(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor
                      ) -> torch.Tensor:
    """Sum of log p(token | tokens before it) over the tokens where mask is 1: (B,).

    ids and mask are (B, L); position 0 is never scored (nothing predicts it).
    """
    logits, _ = model(ids[:, :-1])  # (B, L-1, V): predictions for tokens 1 .. L-1
    logprobs = logits.float().log_softmax(dim=-1)
    targets = ids[:, 1:]  # (B, L-1)
    token_logprobs = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logprobs * mask[:, 1:]).sum(dim=-1)  # (B,)


def reference_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of the policy's starting point: eval mode, no gradients."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def dpo_step(policy: nn.Module, reference: nn.Module, ids: torch.Tensor,
             mask: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss and metrics of one batch: rows 0..B-1 chosen, rows B..2B-1 rejected.

    `margin` is the mean reward difference r_w - r_l (0 at the start);
    `reward_accuracy` is the share of pairs where the chosen answer's reward is
    higher.
    """
    B = ids.size(0) // 2
    logps = sequence_logprobs(policy, ids, mask)  # (2B,)
    with torch.no_grad():
        ref_logps = sequence_logprobs(reference, ids, mask)  # (2B,)
    loss, chosen, rejected = dpo_loss(logps[:B], logps[B:], ref_logps[:B],
                                      ref_logps[B:], beta)
    margin = chosen - rejected  # (B,)
    return loss, {"margin": margin.mean().item(),
                  "reward_accuracy": (margin > 0).float().mean().item(),
                  "chosen_reward": chosen.mean().item(),
                  "rejected_reward": rejected.mean().item()}


# ------------------------------------------------------------------------- data


@dataclass
class PreferencePair:
    """A conversation so far (ending with the user's turn) and two replies to it."""

    prompt: list[dict]
    chosen: str
    rejected: str


def encode_pair(tokenizer: Any, pair: PreferencePair) -> tuple[Encoded, Encoded]:
    """The chosen and rejected conversations as (ids, mask): mask 1 = the reply."""
    return tuple(tokenize_chat(tokenizer, [*pair.prompt,
                                           {"role": "assistant", "content": reply}])
                 for reply in (pair.chosen, pair.rejected))


def collate_pairs(pairs: list[tuple[Encoded, Encoded]], pad_id: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack B encoded pairs into ids and mask (2B, L): chosen rows, then rejected.

    Rows are right-padded with `pad_id` (mask 0) to the longest; causal attention
    means padding after a sequence never changes its log-probabilities.
    """
    rows = [chosen for chosen, _ in pairs] + [rejected for _, rejected in pairs]
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (2B, L)
    mask = torch.zeros(len(rows), width)  # (2B, L)
    for i, (row_ids, row_mask) in enumerate(rows):
        ids[i, :len(row_ids)] = torch.tensor(row_ids)
        mask[i, :len(row_mask)] = torch.tensor(row_mask, dtype=torch.float)
    return ids, mask


def pairs_from_conversations(conversations: list[list[dict]], seed: int = 0
                             ) -> list[PreferencePair]:
    """Offline preference data from SFT conversations (prompt, reply).

    chosen = the conversation's real reply (for the default data: the function's
    own docstring); rejected = the reply of a different conversation, drawn by a
    seeded shuffle (another function's docstring): fluent, but wrong for this
    prompt, so preferring the chosen one requires reading the prompt.
    """
    if len(conversations) < 2:
        raise UserError("preference pairs from SFT data need at least 2 examples")
    replies = [c[-1]["content"] for c in conversations]
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    other = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    return [PreferencePair(c[:-1], c[-1]["content"], replies[other[n]])
            for n, c in enumerate(conversations)
            if replies[other[n]] != c[-1]["content"]]


def load_preferences(path: str | Path) -> list[PreferencePair]:
    """Read JSONL lines {"prompt", "chosen", "rejected"}.

    `prompt` is the user's message (a string) or a list of chat messages ending
    with the user's turn; `chosen` and `rejected` are the two assistant replies.
    """
    pairs = []
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        prompt = record.get("prompt")
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        check_messages(prompt, f"{where} prompt")
        for key in ("chosen", "rejected"):
            if not isinstance(record.get(key), str):
                raise UserError(f"{where}: {key!r} must be a string (the reply)")
        pairs.append(PreferencePair(prompt, record["chosen"], record["rejected"]))
    return pairs


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: expected a JSON object per line")
        records.append((number, record))
    if not records:
        raise UserError(f"{path} holds no examples")
    return records
