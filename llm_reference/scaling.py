"""Scaling laws: how to split a compute budget, and what loss to expect from it.

Fitted on large training runs, these power laws say which model size and token
count spend a budget best (`compute_optimal`), what loss that buys (`LossFit`), and
which batch size and learning rate suit it (`batch_size_tokens`, `learning_rate`).
They are empirical: each names its paper and the range it was fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import UserError


def compute_optimal(flops: float, tokens_per_param: float = 20.0
                    ) -> tuple[float, float]:
    """N and D that spend `flops` with D = tokens_per_param x N, from C = 6 N D.

    6 N (r N) = C gives N = sqrt(C / 6r). Hoffmann et al. 2022 ("Chinchilla")
    found r ~ 20 tokens per parameter compute-optimal; Chinchilla itself is 70B
    parameters on 1.4T tokens. Training a smaller model on more tokens (r of 100 or
    more, as Llama does) costs more compute for a given loss but less at inference.
    """
    if flops <= 0 or tokens_per_param <= 0:
        raise UserError(f"compute_optimal needs positive flops and tokens_per_param, "
                        f"got {flops} and {tokens_per_param}")
    n = math.sqrt(flops / (6.0 * tokens_per_param))
    return n, tokens_per_param * n


@dataclass(frozen=True)
class LossFit:
    """L(N, D) = E + A / N^alpha + B / D^beta, in nats per token.

    E is the entropy of text that no model removes; the two power laws are what a
    finite model and finite data leave on top of it. Fitted on MassiveText with
    SentencePiece tokens, the numbers only indicate the trend for another corpus
    or tokenizer, and only inside the fitted range (70M-16B parameters, 5B-500B
    tokens): for our tiny CPU models the formula is far out of range.
    """

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n_params: float, tokens: float) -> float:
        return self.E + self.A / n_params**self.alpha + self.B / tokens**self.beta

    def optimal_tokens_per_param(self, flops: float) -> float:
        """D/N that minimizes loss(N, D) subject to 6 N D = flops.

        Setting the derivative to zero: N = G (C/6)^(beta/(alpha+beta)) with
        G = (alpha A / (beta B))^(1/(alpha+beta)), and D = C / (6 N).
        """
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha +
                                                                   self.beta))
        n = G * (flops / 6.0) ** (self.beta / (self.alpha + self.beta))
        return flops / (6.0 * n) / n


# Hoffmann et al. 2022, approach 3 (eq. 10).
HOFFMANN_2022 = LossFit("Hoffmann et al. 2022, approach 3", 1.69, 406.4, 410.7,
                        0.34, 0.28)
# Besiroglu et al. 2024, "Chinchilla scaling: a replication attempt", refit the
# data points they reconstructed from the original paper's plots: the original
# fit's parameters fit those points badly and its confidence intervals were too
# narrow; the refit agrees with the ~20 tokens per parameter of the paper's other
# two approaches (the original implies ~90 at Chinchilla's budget, see
# `optimal_tokens_per_param`). We use the refit.
BESIROGLU_2024 = LossFit("Besiroglu et al. 2024 (Chinchilla replication)", 1.82,
                         482.01, 2085.43, 0.3478, 0.3658)
LOSS_FIT = BESIROGLU_2024
FITTED_PARAMS = (7e7, 1.6e10)  # the range of model sizes behind the fits


# The compute range of DeepSeek LLM's hyperparameter grid searches (section 3.1):
# batch size and learning rate are fitted on budgets from 1e17 to 2e19 FLOPs.
HYPERPARAMETER_FLOPS = (1e17, 2e19)


def batch_size_tokens(flops: float) -> float:
    """Global batch in tokens for a compute budget: B = 0.292 C^0.3271.

    DeepSeek LLM (DeepSeek-AI 2024, section 3.1) fitted the best batch size and
    learning rate as power laws of compute. It gives ~0.5M tokens at 1e19 FLOPs
    (GPT-3 used 0.5M for its 125M model), ~2M at 1e21 and, extrapolated down, ~9K
    tokens for a half-hour CPU run.
    """
    return 0.2920 * flops**0.3271


def learning_rate(flops: float) -> float:
    """Peak learning rate for a compute budget: lr = 0.3118 C^-0.125 (DeepSeek LLM).

    Their grid searches started at 1e17 FLOPs; below that we hold the rate at its
    1e17 value (2.3e-3) instead of extrapolating to ever larger rates.
    """
    return 0.3118 * max(flops, HYPERPARAMETER_FLOPS[0]) ** -0.1250
