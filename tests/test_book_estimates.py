"""The book's estimate cards (bookbuilder/estimates.py): every kind, every track."""

import json

import pytest

from bookbuilder import estimates as E
from bookbuilder.errors import BuildError
from llm_reference.hardware import CALIBRATION
from llm_reference.plan import TRACK_NAMES, make_plan


@pytest.mark.parametrize("track", TRACK_NAMES)
@pytest.mark.parametrize("kind", list(E.ESTIMATE_KINDS))
def test_node_estimate_every_kind(kind, track):
    card = E.node_estimate({"kind": kind}, track)
    assert card == E.node_estimate({"kind": kind}, track)  # deterministic
    assert set(card) >= {"hardware", "flops", "seconds", "cost_usd", "memory_bytes",
                         "note"}
    assert card["flops"] >= 0 and card["seconds"] >= 0 and card["memory_bytes"] >= 0
    assert 0 <= card["cost_usd"]["low"] <= card["cost_usd"]["high"]
    assert card["note"] and "\n" not in card["note"]
    json.dumps(card)
    if kind in ("reading", "shards"):  # no compute: shards are disk
        assert card["flops"] == card["seconds"] == 0
    else:
        assert card["seconds"] > 0


def test_rl_estimate_counts_sampling_the_reference_and_the_update():
    """GRPO: more samples cost more; dropping the KL drops a forward pass; sampling
    and the update both take time, and the reference doubles the weights."""
    spec = {"kind": "rl", "steps": 10, "prompts": 8, "group": 4}
    base = E.node_estimate(spec, "practitioner")
    wider = E.node_estimate({**spec, "group": 8}, "practitioner")
    no_kl = E.node_estimate({**spec, "kl": False}, "practitioner")
    assert wider["flops"] > base["flops"] and wider["seconds"] > base["seconds"]
    assert no_kl["flops"] < base["flops"]
    share = int(base["note"].split("sampling ")[1].split("%")[0])
    assert 0 < share < 100
    plan = make_plan("1xRTX4090:8h", "practitioner")
    assert base["memory_bytes"] > plan.memory["total"]


def test_node_estimate_values():
    plan = make_plan("1xRTX4090:8h", "practitioner")
    card = E.node_estimate({"kind": "pretrain"}, "practitioner")
    assert card["flops"] == plan.train_flops and card["seconds"] == plan.seconds
    assert card["hardware_key"] == "RTX4090"
    card = E.node_estimate({"kind": "tokenizer", "bytes": 38_000_000}, "beginner")
    rate = CALIBRATION["tokenizer_train"]["ours"]["bytes_per_s"]
    assert card["seconds"] == pytest.approx(38e6 / rate)
    hf = E.node_estimate({"kind": "tokenizer", "impl": "hf"}, "beginner")
    ours = E.node_estimate({"kind": "tokenizer"}, "beginner")
    assert hf["seconds"] < ours["seconds"]
    full = E.node_estimate({"kind": "finetune", "tokens": 1e6}, "researcher")
    lora = E.node_estimate({"kind": "finetune", "tokens": 1e6, "method": "lora"},
                           "researcher")
    assert lora["flops"] < full["flops"] and lora["memory_bytes"] < full["memory_bytes"]
    decode = E.node_estimate({"kind": "inference"}, "researcher")
    assert "memory-bandwidth-bound" in decode["note"]  # batch 1 decoding
    two = E.node_estimate({"kind": "distributed", "gpus": 2}, "practitioner")
    four = E.node_estimate({"kind": "distributed", "gpus": 4}, "practitioner")
    assert four["seconds"] < two["seconds"] and four["count"] == 4
    cpu = E.node_estimate({"kind": "pretrain", "budget": "cpu:4h"}, "beginner")
    assert cpu["cost_usd"] == {"low": 0.0, "high": 0.0}


def test_cards_follow_the_track_and_the_step():
    """Each track's data cards count its own corpus; no two kinds print one card."""
    data = {t: E.node_estimate({"kind": "data"}, t) for t in TRACK_NAMES}
    plans = {t: E._cached_plan(E.get_track(t).budgets[0], t, 20.0)
             for t in TRACK_NAMES}
    for t in TRACK_NAMES:
        assert data[t]["seconds"] == pytest.approx(
            E.corpus_bytes(plans[t]) / CALIBRATION["data_prepare"]["bytes_per_s"])
    assert data["researcher"]["seconds"] > 100 * data["beginner"]["seconds"]
    shards = E.node_estimate({"kind": "shards"}, "researcher")
    assert shards["memory_bytes"] == 2 * plans["researcher"].data.tokens
    tok = E.node_estimate({"kind": "tokenizer"}, "researcher")
    rate = CALIBRATION["tokenizer_train"]["ours"]["bytes_per_s"]
    assert tok["seconds"] == pytest.approx(E.TOKENIZER_SAMPLE_BYTES / rate)
    cards = [E.node_estimate({"kind": k}, "practitioner")
             for k in ("step", "loss", "eval", "pretrain", "sweep")]
    assert len({(c["flops"], c["memory_bytes"]) for c in cards}) == len(cards)
    plan = plans["practitioner"]
    sweep = E.node_estimate({"kind": "sweep", "runs": 4, "fraction": 0.02},
                            "practitioner")
    assert sweep["flops"] == pytest.approx(0.08 * plan.train_flops)


def test_dpo_card_counts_the_reference_model():
    full = E.node_estimate({"kind": "finetune", "tokens": 1e6}, "researcher")
    dpo = E.node_estimate({"kind": "finetune", "tokens": 1e6, "method": "dpo"},
                          "researcher")
    assert dpo["flops"] == pytest.approx(full["flops"] * 8 / 6)
    assert dpo["memory_bytes"] > full["memory_bytes"]
    assert "reference" in dpo["note"]


@pytest.mark.parametrize("spec, fragment", [
    ({"kind": "magic"}, "choose one of"),
    ({}, "choose one of"),
    ({"kind": "eval", "bytes": 3}, "unknown key"),
    ({"kind": "finetune", "method": "qlora"}, "'full', 'lora' or 'dpo'"),
    ({"kind": "sweep", "fraction": 0}, "0 < fraction"),
    ({"kind": "tokenizer", "impl": "rust"}, "'ours' or 'hf'"),
    ({"kind": "rl", "group": 1}, "group >= 2"),
])
def test_node_estimate_errors(spec, fragment):
    with pytest.raises(BuildError, match=fragment):
        E.node_estimate(spec, "beginner")
