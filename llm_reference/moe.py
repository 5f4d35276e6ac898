"""Mixture of experts: an MLP layer of E experts of which each token uses k.

A dense MLP sends every token through all its weights. A mixture of experts (MoE)
holds E MLPs ("experts") and a router, a linear layer that scores the experts for
each token; the token goes through the k best and the layer returns their outputs
weighted by their gate scores. Parameters grow with E, compute with k only: Mixtral
8x7B holds 47B parameters and runs 13B per token.

    logits = x W_r                        (N, E)   N tokens, E experts
    scores = softmax(logits)              or sigmoid(logits) (DeepSeek-V3)
    chosen = top-k(scores)                (N, k)   which experts
    gates  = scores[chosen] (/ their sum) (N, k)   how much of each
    y      = sum_j gates_j * expert_{chosen_j}(x)

Left alone, a router learns to favour a few experts: they get better because they
get the tokens, and get the tokens because they are better, and the others die.
Three remedies live here. The load-balancing loss of Switch Transformer (Fedus et
al. 2021), E * sum_e f_e P_e with f_e the fraction of assignments that went to
expert e and P_e its mean router probability, is smallest (1) when both are
uniform. The router z-loss of ST-MoE (Zoph et al. 2022), the mean squared
log-sum-exp of the logits, keeps the logits small, which keeps bf16 routing stable.
DeepSeek-V3's auxiliary-loss-free balancing adds a per-expert bias to the scores
only to choose the experts (never to weight them), and after each step moves it by
a fixed rate toward the experts that got fewer tokens than the mean.

Routing is dropless: every token reaches its k experts however many others chose
the same one (no capacity factor, nothing dropped), as in MegaBlocks and dropless
MoE models. Two functions dispatch the tokens: `dispatch_loop`, the teaching path
(one expert at a time: find its tokens, run them, add them back), and
`dispatch_sorted`, the path the model runs (one sort groups all assignments by
expert, so one gather and one scatter serve every expert). A test checks that they
agree, outputs and gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model_config import ModelConfig


def route(logits: torch.Tensor, k: int, gate: str = "softmax", renorm: bool = True,
          bias: torch.Tensor | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k routing: (gates (N, k), experts (N, k) int64, scores (N, E) float32).

    logits (N, E) are the router's. `bias` (E,), the loss-free balancing bias, is
    added to the scores to choose the experts only: the gates are the scores
    themselves, so the bias steers tokens without changing what an expert's output
    is worth. With `renorm` the k gates of a token sum to 1.
    """
    logits32 = logits.float()  # the scores in float32, also under bf16 autocast
    scores = logits32.softmax(-1) if gate == "softmax" else logits32.sigmoid()
    choice = scores if bias is None else scores + bias
    experts = choice.topk(k, dim=-1).indices  # (N, k)
    gates = scores.gather(-1, experts)  # (N, k)
    if renorm:
        gates = gates / gates.sum(-1, keepdim=True)
    return gates.to(logits.dtype), experts, scores


def expert_load(experts: torch.Tensor, n_expert: int) -> torch.Tensor:
    """Assignments per expert (E,) float32 of experts (N, k): sums to N k."""
    return F.one_hot(experts, n_expert).sum((0, 1)).float()


def balance_loss(scores: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's load-balancing loss: E * sum_e f_e P_e, 1 when uniform.

    f_e is the fraction of the N k assignments that went to expert e (a count: no
    gradient), P_e the mean probability the router gave e (scores (N, E) normalised
    per token, so sigmoid scores count too). Its gradient lowers the probability of
    the experts that got more than their share. HF's Mixtral loss is k times this.
    """
    N, E = scores.shape
    f = expert_load(experts, E) / experts.numel()  # (E,)
    P = (scores / scores.sum(-1, keepdim=True)).mean(0)  # (E,)
    return E * (f * P).sum()


def z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE's router z-loss: the mean over tokens of logsumexp(logits)^2."""
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


# ------------------------------------------------------------------------ dispatch


def dispatch_loop(x: torch.Tensor, gates: torch.Tensor, experts: torch.Tensor,
                  modules: nn.ModuleList) -> torch.Tensor:
    """The teaching path: y (N, C) = sum over each token's k experts of gate x out.

    x is (N, C); gates and experts are (N, k). One expert at a time: the (token,
    slot) pairs that chose it, its output for those tokens, added back weighted.
    """
    y = torch.zeros_like(x)  # (N, C)
    for e, expert in enumerate(modules):
        token, slot = torch.where(experts == e)  # (n_e,) each: who chose e, as which
        if token.numel() == 0:
            continue  # nobody chose e this time
        out = expert(x.index_select(0, token))  # (n_e, C)
        y.index_add_(0, token, out * gates[token, slot, None])
    return y


def dispatch_sorted(x: torch.Tensor, gates: torch.Tensor, experts: torch.Tensor,
                    modules: nn.ModuleList) -> torch.Tensor:
    """The same sum as `dispatch_loop`, with one gather and one scatter in all.

    The N k assignments are sorted by expert, so each expert's tokens are one
    contiguous slice of a single gathered (N k, C) tensor; each expert runs its
    slice, and one index_add puts the weighted outputs back. (MegaBlocks goes
    further: one block-sparse matmul for all the slices.)
    """
    N, k = experts.shape
    flat = experts.flatten()  # (N k,): assignment i is token i // k's slot i % k
    order = flat.argsort(stable=True)  # assignments grouped by expert
    token = order // k  # (N k,) the token of each sorted assignment
    counts = torch.bincount(flat, minlength=len(modules)).tolist()  # one sync
    rows = x.index_select(0, token).split(counts)  # a (n_e, C) slice per expert
    out = torch.cat([expert(r) if len(r) else r for expert, r in zip(modules, rows)])
    out = out * gates.flatten()[order, None]  # (N k, C) weighted by their gates
    return torch.zeros_like(x).index_add_(0, token, out)


# --------------------------------------------------------------------------- layer


@dataclass
class RouterStats:
    """What a training forward of one MoE layer reports to the trainer."""

    balance: torch.Tensor  # () the load-balancing loss
    z: torch.Tensor  # () the router z-loss
    load: torch.Tensor  # (E,) assignments per expert, no gradient


class MoE(nn.Module):
    """A mixture-of-experts MLP: (B, T, C) -> (B, T, C), as a dense MLP is.

    `make_mlp(width)` builds one expert, an MLP of the model's recipe (GELU or
    SwiGLU) with `width` hidden units; the experts are plain modules in a
    ModuleList, so LoRA and int8 quantization treat their nn.Linear layers as
    any other. In training mode each forward leaves its `stats` for the trainer,
    which adds aux_coef x balance + z_coef x z to the loss (see `router_loss`).
    """

    def __init__(self, config: ModelConfig, make_mlp: Callable[[int], nn.Module]):
        super().__init__()
        self.k, self.gate = config.moe_top_k, config.moe_gate
        self.renorm = config.moe_renorm
        self.aux_coef, self.z_coef = config.moe_aux_coef, config.moe_z_coef
        self.bias_rate = config.moe_bias_rate
        self.router = nn.Linear(config.d_model, config.moe_experts, bias=False)
        self.experts = nn.ModuleList(make_mlp(config.ff_dim)
                                     for _ in range(config.moe_experts))
        self.shared = None  # DeepSeekMoE's always-on experts, as one wider MLP
        if config.moe_shared:
            self.shared = make_mlp(config.moe_shared * config.ff_dim)
        # the loss-free balancing bias (E,): a buffer, saved with the weights but
        # not trained; None (and not saved) when moe_bias_rate is 0
        self.register_buffer("balance_bias", torch.zeros(config.moe_experts)
                             if self.bias_rate > 0 else None)
        self.stats: RouterStats | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        flat = x.flatten(0, -2)  # (N, C)
        logits = self.router(flat)  # (N, E)
        gates, experts, scores = route(logits, self.k, self.gate, self.renorm,
                                       self.balance_bias)
        y = dispatch_sorted(flat, gates, experts, self.experts)  # (N, C)
        if self.shared is not None:
            y = y + self.shared(flat)
        if self.training:
            self.stats = RouterStats(balance_loss(scores, experts), z_loss(logits),
                                     expert_load(experts.detach(), len(self.experts)))
        return y.view_as(x)

    @torch.no_grad()
    def update_bias(self, load: torch.Tensor) -> None:
        """DeepSeek-V3's loss-free balancing step: b_e += rate * sign(mean - load_e).

        load (E,) is the assignments per expert over the last optimizer step.
        """
        self.balance_bias += self.bias_rate * torch.sign(load.mean() - load)


def moe_layers(model: nn.Module) -> list[MoE]:
    """The MoE layers of a model, in order; empty for a dense model."""
    return [m for m in model.modules() if isinstance(m, MoE)]


def router_loss(layers: list[MoE]) -> torch.Tensor:
    """The auxiliary loss of the last training forward: the sum over layers of
    aux_coef x balance + z_coef x z."""
    return sum(m.aux_coef * m.stats.balance + m.z_coef * m.stats.z for m in layers)


class RouterTally:
    """The routers' statistics over the micro-batches of one optimizer step: what
    the trainer logs (the mean balance and z losses over layers, each expert's
    share of the assignments averaged over layers, and the worst layer's max-load
    ratio, max_e load_e / mean load: 1 is perfect balance, E is one expert taking
    all) and what the loss-free balancing bias is moved by."""

    def __init__(self, layers: list[MoE]):
        self.layers = layers
        E, device = len(layers[0].experts), layers[0].router.weight.device
        self.balance = torch.zeros((), device=device)
        self.z = torch.zeros((), device=device)
        self.load = torch.zeros(len(layers), E, device=device)  # (L, E) assignments

    def add(self) -> None:
        """Count the layers' `stats` of the last forward."""
        L = len(self.layers)
        self.balance += sum(m.stats.balance.detach() for m in self.layers) / L
        self.z += sum(m.stats.z.detach() for m in self.layers) / L
        self.load += torch.stack([m.stats.load for m in self.layers])

    def update_biases(self) -> None:
        """One loss-free balancing step for each layer that has the bias."""
        for layer, load in zip(self.layers, self.load):
            if layer.balance_bias is not None:
                layer.update_bias(load)

    def record(self, micro_batches: int) -> dict[str, float | list[float]]:
        """moe_balance, moe_z, moe_load and moe_max_load for metrics.jsonl."""
        share = self.load / self.load.sum(-1, keepdim=True)  # (L, E)
        ratio = self.load.max(-1).values / self.load.mean(-1)  # (L,)
        return {"moe_balance": self.balance.item() / micro_batches,
                "moe_z": self.z.item() / micro_batches,
                "moe_load": [round(v, 4) for v in share.mean(0).tolist()],
                "moe_max_load": ratio.max().item()}
