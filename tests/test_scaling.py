"""Scaling laws (scaling.py) against the papers' own numbers."""

import pytest

from llm_reference import scaling
from llm_reference.errors import UserError
from llm_reference.flops import training_flops


def test_chinchilla_compute_and_optimal_size():
    # Hoffmann et al. 2022: Chinchilla, 70B parameters on 1.4T tokens
    flops = training_flops(70e9, 1.4e12)
    assert flops == pytest.approx(5.88e23, rel=0.01)
    n, d = scaling.compute_optimal(flops, tokens_per_param=20)
    assert n == pytest.approx(70e9, rel=0.01)
    assert d == pytest.approx(1.4e12, rel=0.01)
    with pytest.raises(UserError, match="positive"):
        scaling.compute_optimal(0.0)


def test_loss_fits():
    # the replication's fit is consistent with ~20 tokens per parameter at
    # Chinchilla's budget; the original approach-3 numbers imply far more
    assert 15 < scaling.BESIROGLU_2024.optimal_tokens_per_param(5.88e23) < 25
    assert scaling.HOFFMANN_2022.optimal_tokens_per_param(5.88e23) > 50
    # L = E + A/N^a + B/D^b by hand, for Chinchilla's N and D
    expected = 1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28
    assert scaling.HOFFMANN_2022.loss(70e9, 1.4e12) == pytest.approx(expected)
    fit = scaling.LOSS_FIT
    assert fit is scaling.BESIROGLU_2024
    assert fit.loss(1e9, 2e10) > fit.loss(1e10, 2e11) > fit.E


def test_hyperparameter_fits():
    # DeepSeek LLM: ~0.5M tokens per step around 1e19 FLOPs
    assert scaling.batch_size_tokens(1e19) == pytest.approx(0.5e6, rel=0.25)
    assert scaling.learning_rate(1e13) == scaling.learning_rate(1e17)  # held
    assert scaling.learning_rate(1e21) < scaling.learning_rate(1e19)
