"""Standard benchmarks through lm-evaluation-harness: our GPT as an lm-eval `LM`.

The harness (EleutherAI's `lm-eval`) runs hundreds of published tasks (HellaSwag,
ARC, LAMBADA, …) and any task you describe in a YAML file. It asks a model only
three questions, which `HarnessLM` answers with our model and tokenizer:

- `loglikelihood(context, continuation)`: log p(continuation | context) summed
  over the continuation's tokens, and whether greedy decoding would have written
  it. Multiple-choice tasks score each choice this way (`acc`; `acc_norm` divides
  by the choice's length first, like our cloze eval).
- `loglikelihood_rolling(text)`: log p(text), the text cut into windows of the
  model's context (perplexity and bits-per-byte tasks).
- `generate_until(context, until)`: greedy text until a stop string (exact-match
  and other generation tasks).

Spaces at the end of a context go with the continuation (" Paris", as BPE splits
words), as the harness's own Hugging Face model does and as `evaluate.py` does, so
a cloze item scored here and there gets the same number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .chat import ENDOFTEXT
from .errors import UserError
from .generate import generate_text

INSTALL = "pip install 'llm-from-scratch[eval]' (or: pip install lm-eval)"


def _lm_eval():
    try:
        import lm_eval
    except ImportError:
        raise UserError(f"--tasks needs lm-evaluation-harness; {INSTALL}") from None
    return lm_eval


def harness_lm(model: Any, tokenizer: Any, device: torch.device) -> Any:
    """An lm-eval `LM` that answers with `model` (the class is built here so that
    this module imports without lm-eval)."""
    from lm_eval.api.model import LM
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    class HarnessLM(LM):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.tok, self.dev = model.eval(), tokenizer, device
            self.T = model.config.context_length
            self.prefix = tokenizer.special_tokens.get(ENDOFTEXT, 0)

        @torch.no_grad()
        def _score(self, context_ids: list[int], target_ids: list[int]
                   ) -> tuple[float, bool]:
            """(sum of log p(target | context), is target the greedy choice?)."""
            row = (context_ids + target_ids)[-self.T:]
            n = min(len(target_ids), len(row) - 1)
            idx = torch.tensor([row], device=self.dev)  # (1, W)
            logits, _ = self.model(idx)  # (1, W, V)
            logprobs = logits[0, -n - 1:-1].float().log_softmax(-1)  # (n, V)
            target = torch.tensor(row[-n:], device=self.dev)  # (n,)
            picked = logprobs.gather(1, target[:, None]).sum().item()
            return picked, bool((logprobs.argmax(-1) == target).all())

        def loglikelihood(self, requests: list) -> list[tuple[float, bool]]:
            out = []
            for request in tqdm(requests, desc="loglikelihood", disable=None):
                context, continuation = request.args
                stripped = context.rstrip(" \t")
                spaces = context[len(stripped):]
                context_ids = self.tok.encode(stripped) or [self.prefix]
                out.append(self._score(context_ids,
                                       self.tok.encode(spaces + continuation)))
            return out

        def loglikelihood_rolling(self, requests: list) -> list[float]:
            out = []
            for request in tqdm(requests, desc="rolling", disable=None):
                windows = get_rolling_token_windows(
                    self.tok.encode(request.args[0]), self.prefix, self.T, 1)
                out.append(sum(self._score(*make_disjoint_window(w))[0]
                               for w in windows))
            return out

        def generate_until(self, requests: list) -> list[str]:
            out = []
            eot = self.tok.special_tokens.get(ENDOFTEXT)
            for request in tqdm(requests, desc="generate", disable=None):
                context, kwargs = request.args
                until = kwargs.get("until") or []
                until = [until] if isinstance(until, str) else list(until)
                prompt = self.tok.encode(context) or [self.prefix]
                out.append("".join(generate_text(
                    self.model, self.tok, prompt, kwargs.get("max_gen_toks", 256),
                    stop=until, temperature=0.0,
                    stop_ids=() if eot is None else (eot,))))
            return out

    return HarnessLM()


def run_tasks(model: Any, tokenizer: Any, tasks: list[str], device: torch.device,
              include_path: str | Path | None = None, limit: int | None = None,
              log_samples: bool = False) -> dict[str, Any]:
    """lm-eval's results for `tasks` (names, or tasks in YAML files under
    `include_path`): {"results": {task: {metric: value}}, …}."""
    lm_eval = _lm_eval()
    from lm_eval.tasks import TaskManager

    if include_path is not None and not Path(include_path).is_dir():
        raise UserError(f"--include-path {include_path}: not a folder of task YAML "
                        "files")
    manager = TaskManager(include_path=None if include_path is None
                          else str(include_path))
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise UserError(f"--tasks: unknown task {unknown[0]!r}; list them with "
                        "`lm-eval ls tasks`, or pass --include-path with its YAML")
    results = lm_eval.simple_evaluate(
        model=harness_lm(model, tokenizer, device), tasks=tasks, task_manager=manager,
        limit=limit, log_samples=log_samples, bootstrap_iters=0)
    return results


def format_results(results: dict[str, Any]) -> str:
    """One row per task and metric: value (and its standard error when known)."""
    rows = []
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            metric, _, _ = key.partition(",")
            if metric == "alias" or metric.endswith("_stderr"):
                continue
            stderr = metrics.get(key.replace(metric, f"{metric}_stderr", 1))
            spread = f" ± {stderr:.4f}" if isinstance(stderr, float) else ""
            rows.append((task, metric, f"{value:.4f}{spread}"))
    width = [max(len(r[i]) for r in rows) for i in range(2)] if rows else [0, 0]
    return "\n".join(f"{t:<{width[0]}}  {m:<{width[1]}}  {v}" for t, m, v in rows)
