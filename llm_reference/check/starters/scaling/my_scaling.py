"""Your compute planner, for the `scaling` checkpoint.

Fill in each function, then run from this folder:

    python -m llm_reference check scaling --impl my_scaling

(`python -m llm_reference check --list scaling` prints the full protocol and the
loss fit's constants.)
"""

from __future__ import annotations


def training_flops(n_params: float, tokens: float) -> float:
    """C = 6 N D."""
    raise NotImplementedError("training_flops")


def compute_optimal(flops: float, tokens_per_param: float = 20.0
                    ) -> tuple[float, float]:
    """(N, D) with D = tokens_per_param x N and 6 N D = flops; raise for
    flops <= 0."""
    raise NotImplementedError("compute_optimal")


def expected_loss(n_params: float, tokens: float) -> float:
    """L(N, D) = E + A / N^alpha + B / D^beta (Besiroglu et al. 2024's fit)."""
    raise NotImplementedError("expected_loss")


def training_seconds(flops: float, n_devices: int, peak_flops: float, mfu: float
                     ) -> float:
    """Wall time t = C / (devices x peak x MFU)."""
    raise NotImplementedError("training_seconds")
