"""Problems whose answers a program can check: the data of reinforcement learning
from verifiable rewards (`grpo.py`).

A verifiable task needs no human labels and no reward model: a problem comes with
its one correct answer, and a completion is right exactly when the answer it
states equals that one. Two sources:

- `addition_task`: multi-digit addition ("12+34=" -> "46"), generated offline and
  deterministically from a seed; endless, cheap, and right or wrong with no doubt.
- `sorting_task`: sort a few digits ("sort 7 2 9" -> "279"), every possible input
  once. A tiny model learns the format fast and the rule slowly, so after a short
  SFT it is often wrong with greedy decoding yet right in one of a few samples:
  the gap that RL closes (the book's experiment).
- `load_gsm8k`: grade-school word problems in the GSM8K jsonl format, lines
  {"question": ..., "answer": "... reasoning ...\\n#### 72"}; the number after
  `####` is the answer, for a user who has the data.

Each problem goes to the train or the held-out split by a hash of its prompt (as
`sft_data.is_held_out` does for conversations), so the split never depends on the
order, the seed or the other problems, and held-out accuracy measures problems the
policy was never rewarded on.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from .dpo import read_jsonl
from .errors import UserError
from .sft_data import is_held_out

ANSWER_MARK = "####"  # GSM8K's separator between the reasoning and the answer


@dataclass(frozen=True)
class Problem:
    """A user message and the one answer that counts as correct."""

    prompt: str
    answer: str


@dataclass
class RLTask:
    """A named task's problems, split into train and held-out."""

    name: str
    train: list[Problem]
    held_out: list[Problem]


def split_problems(name: str, problems: list[Problem], val_fraction: float) -> RLTask:
    """Split by a hash of each prompt; a task with no held-out problem is an error."""
    val = [p for p in problems if is_held_out(p.prompt, val_fraction)]
    train = [p for p in problems if not is_held_out(p.prompt, val_fraction)]
    if not val:
        raise UserError(f"task {name}: no held-out problems among {len(problems)} "
                        f"(val_fraction {val_fraction}); raise --val-fraction so "
                        "held-out accuracy can be measured")
    if not train:
        raise UserError(f"task {name}: every problem is held out; lower "
                        "--val-fraction")
    return RLTask(name, train, val)


def addition_problems(n: int, digits: int, seed: int) -> list[Problem]:
    """n distinct problems "a+b=" with a, b < 10**digits, answer str(a + b).

    Fewer than n if there are not that many distinct pairs.
    """
    if digits < 1:
        raise UserError(f"--digits {digits}: must be >= 1")
    top = 10 ** digits
    n = min(n, top * top)
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    while len(seen) < n:
        seen.add((rng.randrange(top), rng.randrange(top)))
    return [Problem(f"{a}+{b}=", str(a + b)) for a, b in sorted(seen)]


def addition_task(n: int = 2000, digits: int = 2, seed: int = 0,
                  val_fraction: float = 0.2) -> RLTask:
    """The offline addition task (see `addition_problems`)."""
    return split_problems("addition", addition_problems(n, digits, seed),
                          val_fraction)


def sorting_problems(length: int) -> list[Problem]:
    """Every list of `length` digits, "sort 7 2 9" -> "279" (10**length problems)."""
    if not 2 <= length <= 5:
        raise UserError(f"--length {length}: sort 2 to 5 digits")
    problems = []
    for number in range(10 ** length):
        digits = f"{number:0{length}d}"
        problems.append(Problem(f"sort {' '.join(digits)}", "".join(sorted(digits))))
    return problems


def sorting_task(length: int = 3, val_fraction: float = 0.2) -> RLTask:
    """The offline sorting task (see `sorting_problems`)."""
    return split_problems("sorting", sorting_problems(length), val_fraction)


def load_gsm8k(path: str | Path, val_fraction: float = 0.2) -> RLTask:
    """GSM8K-format jsonl: {"question", "answer"} with the answer after `####`."""
    problems = []
    for number, record in read_jsonl(path):
        question, answer = record.get("question"), record.get("answer")
        if not isinstance(question, str) or not isinstance(answer, str):
            raise UserError(f"{path}:{number}: needs string fields 'question' and "
                            "'answer'")
        final = normalise_answer(answer.rsplit(ANSWER_MARK, 1)[-1])
        if ANSWER_MARK not in answer or final is None:
            raise UserError(f"{path}:{number}: the answer must end with "
                            f"'{ANSWER_MARK} N' (a number)")
        problems.append(Problem(question, final))
    return split_problems(str(path), problems, val_fraction)


NUMBER = re.compile(r"-?\d+(\.\d+)?")


def normalise_answer(text: str) -> str | None:
    """The number a piece of text states ("1,234 " -> "1234"), or None if it
    is not a number."""
    text = text.strip().replace(",", "")
    return text if NUMBER.fullmatch(text) else None


def sft_conversations(problems: list[Problem]) -> list[dict]:
    """Problems as SFT lines {"messages": [user, assistant]} (the answer alone):
    the warm start that teaches the answer's format before RL."""
    return [{"messages": [{"role": "user", "content": p.prompt},
                          {"role": "assistant", "content": p.answer}]}
            for p in problems]
