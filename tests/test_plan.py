"""The planner against published figures, the design's tables and its own contracts."""

import json
import math
import tomllib

import pytest
import torch

from llm_reference import plan as P
from llm_reference.__main__ import main
from llm_reference.config import RunConfig
from llm_reference.errors import UserError
from llm_reference.model import GPT, ModelConfig

GPT2_SMALL = {"vocab_size": 50257, "context_length": 1024, "n_layer": 12,
              "n_head": 12, "d_model": 768}

# DESIGN.md's roadmap table, copied: id | beginner | practitioner | researcher
DESIGN_TABLE = """
mental-model core core core
data core core core
tokenizer core core core
dataset core core core
embeddings core core core
attention core core core
model core core core
objective core core core
pretraining core core core
stability optional core core
efficiency - core core
scaling optional core core
distributed - optional core
evaluation core core core
generation core core core
finetuning optional core core
preference - optional core
quantization - optional core
serving - optional optional
release core core core
"""


def meta_gpt(model: dict) -> GPT:
    """The real model, with parameters on the meta device (no memory, no time)."""
    with torch.device("meta"):
        return GPT(ModelConfig.from_dict(model))


# ------------------------------------------------------------ published figures


def test_gpt3_training_compute():
    # Brown et al. 2020, table D.1: GPT-3 175B on 300B tokens took 3.14e23 FLOPs
    assert P.training_flops(175e9, 300e9) == pytest.approx(3.14e23, rel=0.01)


def test_chinchilla_compute_and_optimal_size():
    # Hoffmann et al. 2022: Chinchilla, 70B parameters on 1.4T tokens
    flops = P.training_flops(70e9, 1.4e12)
    assert flops == pytest.approx(5.88e23, rel=0.01)
    n, d = P.compute_optimal(flops, tokens_per_param=20)
    assert n == pytest.approx(70e9, rel=0.01)
    assert d == pytest.approx(1.4e12, rel=0.01)


def test_loss_fits():
    # the replication's fit is consistent with ~20 tokens per parameter at
    # Chinchilla's budget; the original approach-3 numbers imply far more
    assert 15 < P.BESIROGLU_2024.optimal_tokens_per_param(5.88e23) < 25
    assert P.HOFFMANN_2022.optimal_tokens_per_param(5.88e23) > 50
    # L = E + A/N^a + B/D^b by hand, for Chinchilla's N and D
    expected = 1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28
    assert P.HOFFMANN_2022.loss(70e9, 1.4e12) == pytest.approx(expected)
    assert P.LOSS_FIT is P.BESIROGLU_2024
    assert P.LOSS_FIT.loss(1e9, 2e10) > P.LOSS_FIT.loss(1e10, 2e11) > P.LOSS_FIT.E


def test_mixed_precision_adamw_is_16_bytes_per_parameter():
    # Rajbhandari et al. 2020 (ZeRO), section 3.1: 2 + 2 + K with K = 12
    mixed = P.BYTES_PER_PARAM["mixed"]
    assert sum(mixed.values()) == 16
    assert mixed["16-bit weights"] + mixed["16-bit gradients"] == 4
    assert P.state_bytes_per_param("float32") == 16
    assert P.state_bytes_per_param("bfloat16") == 18  # autocast's cached bf16 copies


def test_gpt2_small_parameters_and_flops_per_token():
    # HF's GPT-2 small has 124,439,808 parameters; 85M of them non-embedding
    assert P.count_parameters(GPT2_SMALL) == 124_439_808
    non_embedding = P.count_parameters(GPT2_SMALL, non_embedding=True)
    assert non_embedding == 85_056_000
    # nanoGPT's estimate_mfu: 6N + 12LHQT with N = parameters minus positions
    nanogpt = 6 * (124_439_808 - 1024 * 768) + 12 * 12 * 12 * 64 * 1024
    assert P.flops_per_token(GPT2_SMALL) == nanogpt == 855_166_464
    # = 6 x (85M non-embedding + the 38.6M head) + the attention term
    attention = 12 * 12 * 768 * 1024
    assert nanogpt == 6 * (non_embedding + 50257 * 768) + attention
    assert attention / nanogpt == pytest.approx(0.13, abs=0.005)


def test_kv_cache_of_a_llama2_7b_shape():
    # Llama 2 7B (32 layers, 32 heads of 128): 0.5 MiB per token in 16 bits
    llama = {"n_layer": 32, "n_head": 32, "d_model": 4096}
    assert P.kv_cache_bytes(llama, tokens=4096) == 2 * GiB_
    # GQA with 8 k/v heads keeps a quarter
    assert P.kv_cache_bytes({**llama, "n_kv_head": 8}, 4096) == GiB_ / 2


GiB_ = 2**30


def test_korthikanti_activation_formula():
    s, b, h, a = 2048, 1, 12288, 96  # GPT-3 175B's layer
    full = P.activation_bytes_per_layer(s, b, h, a, flash=False)
    assert full == s * b * h * (34 + 5 * a * s / h)
    assert P.activation_bytes_per_layer(s, b, h, a) == 34 * s * b * h
    assert P.activation_bytes_per_layer(s, b, h, a, bytes_per_value=4) == 68 * s * b * h


def test_checkpointing_and_sharding_save_memory():
    model = {**GPT2_SMALL, "vocab_size": 50304}
    plain = P.training_memory(model, micro_batch=16)
    ckpt = P.training_memory(model, micro_batch=16, checkpointing=True)
    sharded = P.training_memory(model, micro_batch=16, shards=8)
    assert ckpt["activations"] < plain["activations"] / 5
    assert sharded["model_states"] == pytest.approx(plain["model_states"] / 8)
    assert plain["model_states"] == P.count_parameters(model) * 18


# ------------------------------------------------------------ parity with model.py


@pytest.mark.parametrize("model", [
    GPT2_SMALL,
    {"vocab_size": 8192, "context_length": 256, "n_layer": 2, "n_head": 4,
     "d_model": 128},
    {"vocab_size": 1000, "context_length": 64, "n_layer": 3, "n_head": 8,
     "n_kv_head": 2, "d_model": 256, "position": "rope", "norm": "rmsnorm",
     "mlp": "swiglu", "bias": False, "tie_weights": False},
    {"vocab_size": 500, "context_length": 32, "n_layer": 1, "n_head": 2,
     "d_model": 64, "d_ff": 100, "norm": "layernorm", "bias": False},
])
def test_counts_match_the_model(model):
    gpt = meta_gpt(model)
    assert P.count_parameters(model) == gpt.num_parameters()
    assert P.count_parameters(model, True) == gpt.num_parameters(non_embedding=True)
    assert P.flops_per_token(model) == gpt.flops_per_token()
    assert P.forward_flops_per_token(model) == pytest.approx(
        gpt.flops_per_token() / 3)


# ------------------------------------------------------------------- budgets


@pytest.mark.parametrize("text, hardware, count, seconds", [
    ("cpu:30m", "cpu", 1, 1800),
    ("cpu:4h", "cpu", 1, 14400),
    ("1xH100:8h", "H100", 1, 8 * 3600),
    ("8xH100:24h", "H100", 8, 24 * 3600),
    ("1xA100:24h", "A100-80GB", 1, 24 * 3600),
    ("1xRTX4090:8h", "RTX4090", 1, 8 * 3600),
    ("2x a100-40gb:1d", "A100-40GB", 2, 86400),
    ("H200:90s", "H200", 1, 90),
    ("1xT4:1h30m", "T4", 1, 5400),
    ("M3Max:2.5h", "M3Max", 1, 9000),
])
def test_parse_budget(text, hardware, count, seconds):
    budget = P.parse_budget(text)
    assert (budget.hardware, budget.count, budget.seconds) == (hardware, count, seconds)
    assert budget.dollars is None


def test_dollar_budget_buys_hours_at_the_low_price():
    budget = P.parse_budget("$200@1xA100")
    low, high = P.HARDWARE["A100-80GB"].price_usd
    assert budget.hardware == "A100-80GB" and budget.dollars == 200
    assert budget.seconds == pytest.approx(200 / low * 3600)
    plan = P.make_plan(budget)
    assert plan.cost_usd[0] <= 200 + 1e-6
    assert plan.cost_usd[1] == pytest.approx(plan.cost_usd[0] * high / low)
    assert P.parse_budget("$1,000@8xH100").seconds == pytest.approx(
        1000 / (8 * P.HARDWARE["H100"].price_usd[0]) * 3600)


@pytest.mark.parametrize("text, fragment", [
    ("", "expected"),
    ("H100", "expected"),
    ("1xH100", "expected"),
    ("1xH100:", "bad duration"),
    ("1xH100:8x", "bad duration"),
    ("1xH100:-1h", "bad duration"),
    ("1xH100:0h", "must be > 0"),
    ("0xH100:8h", "count must be"),
    ("2xcpu:1h", "takes no count"),
    ("1xB300:1h", "unknown hardware"),
    ("1x:1h", "unknown hardware '1x'"),
    ("8xH 100:1h", "cannot read the hardware"),
    ("$200", "names the hardware"),
    ("$abc@1xH100", "not an amount"),
    ("$0@1xH100", "must be > 0"),
    ("$200@cpu", "no hourly price"),
])
def test_bad_budgets_say_what_is_wrong(text, fragment):
    with pytest.raises(UserError) as info:
        P.parse_budget(text)
    message = str(info.value)
    assert fragment in message
    assert "e.g." in message or "write" in message or "choose" in message
    assert "\n" not in message


# ------------------------------------------------------------------- tracks


def test_roadmap_depth_matches_the_design_table():
    rows = [line.split() for line in DESIGN_TABLE.strip().splitlines()]
    assert tuple(row[0] for row in rows) == P.ROADMAP
    for column, track in enumerate(P.TRACK_NAMES, start=1):
        expected = {row[0]: row[column] for row in rows if row[column] != "-"}
        assert P.TRACKS[track].nodes == expected
        assert P.nodes_for_track(track) == list(expected)
        assert P.nodes_for_track(track, "optional") == [
            node for node, depth in expected.items() if depth == "optional"]
        for node in P.ROADMAP:
            assert P.node_depth(node, track) == expected.get(node)


def test_tracks_match_the_design():
    assert P.TRACKS["beginner"].budgets == ("cpu:30m", "cpu:4h")
    assert P.TRACKS["practitioner"].budgets == ("1xRTX4090:8h", "1xA100:24h",
                                                "1xH100:8h")
    assert P.TRACKS["researcher"].budgets == ("8xH100:24h", "8xH100:72h")
    assert P.TRACKS["beginner"].recipe["position"] == "learned"
    assert P.TRACKS["practitioner"].recipe["mlp"] == "swiglu"
    for name in ("who", "prerequisites", "default_hardware"):
        assert all(getattr(t, name) for t in P.TRACKS.values())
    with pytest.raises(UserError, match="unknown track"):
        P.nodes_for_track("expert")
    with pytest.raises(UserError, match="unknown roadmap node"):
        P.node_depth("rlhf", "beginner")


def test_hardware_catalog():
    for key in ("cpu", "M2Max", "M3Max", "T4", "L4", "RTX4090", "A100-40GB",
                "A100-80GB", "H100", "H200"):
        hw = P.HARDWARE[key]
        assert hw.bf16_tflops >= hw.fp32_tflops > 0
        assert 0 <= hw.price_usd[0] <= hw.price_usd[1]
        assert hw.memory_gib > 0 and hw.bandwidth_gbs > 0 and hw.source
        assert 0 < hw.mfu <= 1
    # vendor datasheets, dense (no sparsity)
    assert P.HARDWARE["H100"].bf16_tflops == 989.4
    assert P.HARDWARE["A100-80GB"].bf16_tflops == 312.0
    assert P.HARDWARE["RTX4090"].bf16_tflops == 165.2
    assert P.HARDWARE["T4"].dtype == "float16"  # Turing has no bf16
    assert P.find_hardware("rtx-4090").key == P.find_hardware("4090").key == "RTX4090"
    assert P.HARDWARE["cpu"].price_usd == (0.0, 0.0)


# ------------------------------------------------------------------- plans

PRESETS = [(track, budget) for track in P.TRACK_NAMES
           for budget in P.TRACKS[track].budgets]


@pytest.mark.parametrize("track, budget", PRESETS)
def test_preset_plans_fit_memory_and_time(track, budget):
    plan = P.make_plan(budget, track)
    hw, b = plan.hardware, plan.budget
    assert plan.memory["total"] <= hw.memory_gib * 2**30 * P.USABLE_MEMORY
    assert plan.seconds <= b.seconds
    assert plan.seconds > 0.9 * b.seconds  # and uses most of it
    # the config is what the trainer reads
    config = tomllib.loads(plan.to_toml())
    run = RunConfig.from_dict(config)
    assert run.train.max_steps == plan.train["max_steps"]
    gpt = meta_gpt(config["model"])
    assert gpt.num_parameters() == plan.params
    # close to compute-optimal
    n_target, _ = P.compute_optimal(
        b.count * hw.peak_tflops * 1e12 * plan.mfu * b.seconds * (1 - P.RESERVE))
    assert 1 / 1.6 < plan.params / n_target < 1.6
    assert 10 < plan.tokens_per_param < 25
    t = plan.train
    assert plan.tokens == t["max_steps"] * t["batch_size"] * t["grad_accum"] * (
        b.count * plan.model["context_length"])
    assert plan.train_flops == pytest.approx(plan.tokens * plan.flops_per_token)
    assert t["warmup_steps"] < t["max_steps"] and t["min_lr"] < t["lr"]


def test_beginner_plan_is_a_small_cpu_model_that_trains():
    plan = P.make_plan("cpu:30m")
    assert plan.track == "beginner"
    assert 1e6 <= plan.params <= 5e6
    assert plan.model["context_length"] == 256
    assert plan.train["device"] == "cpu" and plan.train["dtype"] == "float32"
    assert plan.model["position"] == "learned" and plan.model["mlp"] == "gelu"
    # a few steps of the planned model at the planned learning rate
    torch.manual_seed(0)
    model = GPT(ModelConfig.from_dict(plan.model))
    opt = torch.optim.AdamW(model.parameters(), lr=plan.train["lr"])
    x = torch.randint(0, 64, (4, plan.model["context_length"]))  # (B, T)
    losses = []
    for _ in range(8):
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_researcher_plan_is_llama_style_and_data_parallel():
    plan = P.make_plan("8xH100:24h")
    m = plan.model
    assert plan.track == "researcher" and plan.parallelism in ("ddp", "fsdp")
    assert (m["position"], m["norm"], m["mlp"]) == ("rope", "rmsnorm", "swiglu")
    assert m["n_kv_head"] * 4 == m["n_head"]  # GQA
    assert m["d_model"] % 64 == 0 and m["d_model"] // m["n_head"] in (64, 128)
    assert any("torchrun --nproc_per_node 8" in note for note in plan.notes)
    assert plan.train["compile"] and plan.train["dtype"] == "bfloat16"
    assert 1e9 < plan.params < 2e9


def test_tokens_per_param_and_mfu_change_the_plan():
    base = P.make_plan("1xH100:8h")
    long = P.make_plan("1xH100:8h", tokens_per_param=100)
    assert long.params < base.params and long.tokens > base.tokens
    slow = P.make_plan("1xH100:8h", mfu=0.2)
    assert slow.train_flops == pytest.approx(base.train_flops / 2, rel=0.1)


def test_activation_checkpointing_when_states_barely_fit():
    plan = P.make_plan("1xRTX4090:30d")  # ~1B parameters on 24 GiB
    assert plan.activation_checkpointing
    assert plan.train["activation_checkpointing"] is True
    assert plan.memory["total"] <= 24 * 2**30 * P.USABLE_MEMORY
    huge = P.model_shape(P.TRACKS["practitioner"], 48, 4096)
    assert P.fit_memory(huge, P.HARDWARE["RTX4090"], 1, 8) is None


@pytest.mark.parametrize("args, fragment", [
    (("cpu:1s",), "training steps"),
    (("1xH100:8h", None, 20.0, 0.0), "--mfu"),
    (("1xH100:8h", None, 0.0), "--tokens-per-param"),
    (("cpu:30m", "wizard"), "unknown track"),
])
def test_plan_errors(args, fragment):
    with pytest.raises(UserError, match=fragment):
        P.make_plan(*args)


def test_hyperparameter_fits():
    # DeepSeek LLM: ~0.5M tokens per step around 1e19 FLOPs
    assert P.batch_size_tokens(1e19) == pytest.approx(0.5e6, rel=0.25)
    assert P.learning_rate(1e13) == P.learning_rate(1e17)  # held below the fit
    assert P.learning_rate(1e21) < P.learning_rate(1e19)


# ------------------------------------------------------------ node estimates


@pytest.mark.parametrize("track", P.TRACK_NAMES)
@pytest.mark.parametrize("kind", list(P.ESTIMATE_KINDS))
def test_node_estimate_every_kind(kind, track):
    card = P.node_estimate({"kind": kind}, track)
    assert card == P.node_estimate({"kind": kind}, track)  # deterministic
    assert set(card) >= {"hardware", "flops", "seconds", "cost_usd", "memory_bytes",
                         "note"}
    assert card["flops"] >= 0 and card["seconds"] >= 0 and card["memory_bytes"] >= 0
    assert 0 <= card["cost_usd"]["low"] <= card["cost_usd"]["high"]
    assert card["note"] and "\n" not in card["note"]
    json.dumps(card)
    if kind == "reading":
        assert card["flops"] == card["seconds"] == 0
    else:
        assert card["seconds"] > 0


def test_node_estimate_values():
    plan = P.make_plan("1xRTX4090:8h", "practitioner")
    card = P.node_estimate({"kind": "pretrain"}, "practitioner")
    assert card["flops"] == plan.train_flops and card["seconds"] == plan.seconds
    assert card["hardware_key"] == "RTX4090"
    card = P.node_estimate({"kind": "tokenizer", "bytes": 38_000_000}, "beginner")
    rate = P.CALIBRATION["tokenizer_train"]["ours"]["bytes_per_s"]
    assert card["seconds"] == pytest.approx(38e6 / rate)
    hf = P.node_estimate({"kind": "tokenizer", "impl": "hf"}, "beginner")
    ours = P.node_estimate({"kind": "tokenizer"}, "beginner")
    assert hf["seconds"] < ours["seconds"]
    full = P.node_estimate({"kind": "finetune", "tokens": 1e6}, "researcher")
    lora = P.node_estimate({"kind": "finetune", "tokens": 1e6, "method": "lora"},
                           "researcher")
    assert lora["flops"] < full["flops"] and lora["memory_bytes"] < full["memory_bytes"]
    decode = P.node_estimate({"kind": "inference"}, "researcher")
    assert "memory-bandwidth-bound" in decode["note"]  # batch 1 decoding
    two = P.node_estimate({"kind": "distributed", "gpus": 2}, "practitioner")
    four = P.node_estimate({"kind": "distributed", "gpus": 4}, "practitioner")
    assert four["seconds"] < two["seconds"] and four["count"] == 4
    cpu = P.node_estimate({"kind": "pretrain", "budget": "cpu:4h"}, "beginner")
    assert cpu["cost_usd"] == {"low": 0.0, "high": 0.0}


@pytest.mark.parametrize("spec, fragment", [
    ({"kind": "magic"}, "choose one of"),
    ({}, "choose one of"),
    ({"kind": "eval", "bytes": 3}, "unknown key"),
    ({"kind": "finetune", "method": "qlora"}, "'full' or 'lora'"),
    ({"kind": "tokenizer", "impl": "rust"}, "'ours' or 'hf'"),
])
def test_node_estimate_errors(spec, fragment):
    with pytest.raises(UserError, match=fragment):
        P.node_estimate(spec, "beginner")


# ----------------------------------------------------------- calibration, CLI


def test_calibration_names_its_sources(tmp_path):
    for name in ("cpu", "data_prepare", "default_corpus"):
        assert P.CALIBRATION[name]["source"]
    for impl in ("ours", "hf"):
        assert P.CALIBRATION["tokenizer_train"][impl]["source"]
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(P.CALIBRATION))
    P.save_calibration({"cpu": {"peak_fp32_tflops": 1.0, "mfu": 0.5}}, path)
    saved = P.load_calibration(path)
    assert saved["cpu"] == {"peak_fp32_tflops": 1.0, "mfu": 0.5}
    assert saved["data_prepare"] == P.CALIBRATION["data_prepare"]
    assert P.cpu_hardware(saved["cpu"]).peak_tflops == 1.0
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="bad.json"):
        P.load_calibration(tmp_path / "bad.json")


def test_cli_json_and_toml(tmp_path, capsys):
    out = tmp_path / "run.toml"
    assert main(["plan", "--budget", "cpu:30m", "--json", "--out", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["track"] == "beginner" and data["budget"]["seconds"] == 1800
    assert data["estimates"]["params"] == P.make_plan("cpu:30m").params
    config = tomllib.loads(out.read_text())
    assert config["model"] == data["model"] and config["train"] == data["train"]


def test_cli_table(capsys):
    assert main(["plan", "--track", "practitioner", "--tokens-per-param", "40"]) == 0
    out = capsys.readouterr().out
    assert "1xRTX4090:8h" in out and "expected loss" in out
    assert "[model]" in out and "[train]" in out


@pytest.mark.parametrize("argv, fragment", [
    (["plan", "--budget", "1xH100"], "expected"),
    (["plan", "--save-calibration"], "--measure"),
    (["plan", "--budget", "cpu:30m", "--mfu", "2"], "--mfu"),
])
def test_cli_errors(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and fragment in err and "Traceback" not in err


@pytest.mark.slow
def test_measure_cpu():
    section = P.measure_cpu(steps=2)
    assert section["peak_fp32_tflops"] > 0 and 0 < section["mfu"] < 2
    assert section["threads"] == torch.get_num_threads()
    assert math.isfinite(section["bandwidth_gbs"]) and section["source"]


def test_cli_measure_plans_with_the_measurement(tmp_path, monkeypatch, capsys):
    fast = {"description": "test", "peak_fp32_tflops": 1.0, "mfu": 0.5,
            "memory_gib": 16.0, "bandwidth_gbs": 20.0, "threads": 4, "source": "test"}
    monkeypatch.setattr(P, "measure_cpu", lambda: dict(fast))
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(P.CALIBRATION))
    monkeypatch.setattr(P, "CALIBRATION_PATH", path)
    assert main(["plan", "--budget", "cpu:30m", "--measure", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["estimates"]["mfu"] == 0.5
    assert measured["estimates"]["train_flops"] > P.make_plan("cpu:30m").train_flops
    assert P.load_calibration(path) == P.CALIBRATION  # nothing saved without asking
    assert main(["plan", "--measure", "--save-calibration"]) == 0
    assert P.load_calibration(path)["cpu"] == fast


def test_a_sharded_plan_tells_the_trainer_to_use_fsdp():
    layouts = set()
    for budget in ("8xH100:24h", "2xRTX4090:72h", "8xA100-40GB:60d"):
        plan = P.make_plan(budget, "researcher")
        layouts.add(plan.parallelism)
        assert (plan.train.get("parallel") == "fsdp") == (plan.parallelism == "fsdp")
        RunConfig.from_dict(tomllib.loads(plan.to_toml()))  # train accepts it
    assert layouts == {"ddp", "fsdp"}


def test_sharding_on_a_gpu_without_bfloat16_is_refused():
    with pytest.raises(UserError, match="8xT4:30d: the model needs FSDP"):
        P.make_plan("8xT4:30d", "researcher")
