"""The planner: the design's tracks, plans that fit and train, and its command line."""

import json
import re
import subprocess
import sys
import tomllib

import pytest
import torch

from llm_reference import data_plan, hardware
from llm_reference import plan as P
from llm_reference.__main__ import main
from llm_reference.budget import parse_budget
from llm_reference.config import RunConfig
from llm_reference.errors import UserError
from llm_reference.memory import USABLE_MEMORY
from llm_reference.model import GPT, ModelConfig
from llm_reference.recipes import RECIPES
from llm_reference.scaling import compute_optimal


def meta_gpt(model: dict) -> GPT:
    """The real model, with parameters on the meta device (no memory, no time)."""
    with torch.device("meta"):
        return GPT(ModelConfig.from_dict(model))


# ------------------------------------------------------------------- tracks


def test_tracks_match_the_design():
    assert P.TRACK_NAMES == ("beginner", "practitioner", "researcher")
    assert P.TRACKS["beginner"].budgets == ("cpu:30m", "cpu:4h")
    assert P.TRACKS["practitioner"].budgets == ("1xRTX4090:8h", "1xA100:24h",
                                                "1xH100:8h")
    assert P.TRACKS["researcher"].budgets == ("8xH100:24h", "8xH100:72h")
    assert P.TRACKS["beginner"].recipe["position"] == "learned"
    assert P.TRACKS["practitioner"].recipe["mlp"] == "swiglu"
    assert all(t.default_hardware for t in P.TRACKS.values())
    with pytest.raises(UserError, match="unknown track 'expert'; choose one of"):
        P.get_track("expert")


def test_the_budget_suggests_the_track():
    suggested = [P.track_for_budget(parse_budget(b))
                 for b in ("cpu:1h", "M3Max:2h", "1xH100:8h", "4xA100:1d")]
    assert suggested == ["beginner", "beginner", "practitioner", "researcher"]


def test_model_shape_follows_the_recipe():
    shape = P.model_shape(P.TRACKS["practitioner"], 16, 1024)
    assert (shape.n_head, shape.kv_heads, shape.head_dim) == (16, 4, 64)
    assert (shape.position, shape.mlp, shape.ff_dim) == ("rope", "swiglu", 2752)
    tiny = P.model_shape(P.TRACKS["beginner"], 2, 128)
    assert (tiny.n_head, tiny.kv_heads, tiny.ff_dim) == (4, 4, 512)


# ------------------------------------------------------------------- plans

PRESETS = [(track, budget) for track in P.TRACK_NAMES
           for budget in P.TRACKS[track].budgets]


@pytest.mark.parametrize("track, budget", PRESETS)
def test_preset_plans_fit_memory_and_time(track, budget):
    plan = P.make_plan(budget, track)
    hw, b = plan.hardware, plan.budget
    assert plan.memory["total"] <= hw.memory_gib * 2**30 * USABLE_MEMORY
    assert plan.seconds <= b.seconds
    assert plan.seconds > 0.9 * b.seconds  # and uses most of it
    # the config is what the trainer reads
    config = tomllib.loads(plan.to_toml())
    run = RunConfig.from_dict(config)
    assert run.train.max_steps == plan.train["max_steps"]
    gpt = meta_gpt(config["model"])
    assert gpt.num_parameters() == plan.params
    assert gpt.flops_per_token() == plan.flops_per_token
    # close to compute-optimal
    n_target, _ = compute_optimal(
        b.count * hw.peak_tflops * 1e12 * plan.mfu * b.seconds * (1 - P.RESERVE))
    assert 1 / 1.6 < plan.params / n_target < 1.6
    assert 10 < plan.tokens_per_param < 25
    t = plan.train
    assert plan.tokens == t["max_steps"] * t["batch_size"] * t["grad_accum"] * (
        b.count * plan.model["context_length"])
    assert plan.train_flops == pytest.approx(plan.tokens * plan.flops_per_token)
    assert t["warmup_steps"] < t["max_steps"] and t["min_lr"] < t["lr"]


@pytest.mark.parametrize("budget", ["$200@1xA100", "$500@1xA100", "$1,000@8xH100"])
def test_dollar_plan_never_costs_more_than_the_budget(budget):
    plan = P.make_plan(budget)
    low, high = plan.hardware.price_usd
    assert plan.cost_usd[1] <= plan.budget.dollars + 1e-6
    assert plan.cost_usd[0] == pytest.approx(plan.cost_usd[1] * low / high)
    assert any("fitted to the high price" in note for note in plan.notes)


def test_beginner_plan_is_a_small_cpu_model_that_trains():
    plan = P.make_plan("cpu:30m")
    assert plan.track == "beginner"
    assert 1e6 <= plan.params <= 5e6
    assert plan.model["context_length"] == 256
    assert plan.train["device"] == "cpu" and plan.train["dtype"] == "float32"
    assert plan.model["position"] == "learned" and plan.model["mlp"] == "gelu"
    # a few steps of the planned model at the planned learning rate
    torch.manual_seed(0)
    model = GPT(plan.config)
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
    assert plan.memory["total"] <= 24 * 2**30 * USABLE_MEMORY
    huge = P.model_shape(P.TRACKS["practitioner"], 48, 4096)
    assert P.fit_memory(huge, hardware.HARDWARE["RTX4090"], 1, 8) is None


@pytest.fixture(autouse=True)
def no_user_calibration(tmp_path, monkeypatch):
    """The CLI reads the user's calibration file; tests plan with the package's."""
    monkeypatch.setattr(hardware, "USER_CALIBRATION_PATH", tmp_path / "mine.json")


@pytest.mark.parametrize("budget, track, fragment", [
    ("cpu:30m", "researcher", "0.66 per parameter (< 1), too few to learn from; "
                              "try cpu:1h"),
    ("cpu:5m", "practitioner", "per parameter (< 1)"),
])
def test_a_plan_that_cannot_learn_is_refused_with_a_budget_that_works(
        budget, track, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)) as info:
        P.make_plan(budget, track)
    suggestion = str(info.value).rsplit("try ", 1)[1]
    assert P.make_plan(suggestion, track).tokens_per_param >= P.MIN_TOKENS_PER_PARAM


def test_extrapolated_numbers_are_named():
    tiny, big = P.make_plan("cpu:30m"), P.make_plan("8xH100:24h")
    assert tiny.extrapolated == ["expected loss", "batch size", "learning rate"]
    assert big.extrapolated == []
    assert "extrapolated, not a prediction" in dict(tiny.summary())["expected loss"]
    assert any("even above ln(vocab_size)" in note for note in tiny.notes)


@pytest.mark.parametrize("budget", ["cpu:30m", "cpu:4h"])
def test_beginner_plans_checkpoint_at_least_every_five_minutes(budget):
    plan = P.make_plan(budget)
    step_seconds = plan.seconds / plan.train["max_steps"]
    assert plan.train["checkpoint_interval"] * step_seconds <= 300
    # and by the clock, however much slower this machine is than the plan
    assert plan.train["checkpoint_minutes"] == 5
    assert P.make_plan("1xH100:8h").train["checkpoint_minutes"] == 30


@pytest.mark.parametrize("args, fragment", [
    (("cpu:1s",), "training steps"),
    (("1xH100:8h", None, 20.0, 0.0), "--mfu"),
    (("1xH100:8h", None, 0.0), "--tokens-per-param"),
    (("1xH100:8h", None, 0.5), "must be >= 1"),
    (("cpu:30m", "wizard"), "unknown track"),
])
def test_plan_errors(args, fragment):
    with pytest.raises(UserError, match=fragment):
        P.make_plan(*args)


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


# ----------------------------------------------------------------- the CLI


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
    (["plan", "--calibrate", "--measure"], "--calibrate"),
    (["plan", "--budget", "1xH100:8h", "--calibrate"], "plan a CPU budget"),
    (["plan", "--budget", "1xH100:10000d"], "longer than the 90 days"),
    (["plan", "--budget", "cpu:30m", "--mfu", "2"], "--mfu"),
])
def test_cli_errors(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and fragment in err and "Traceback" not in err


def test_cli_measure_plans_with_the_measurement(tmp_path, monkeypatch, capsys):
    fast = {"description": "test", "peak_fp32_tflops": 1.0, "mfu": 0.5,
            "memory_gib": 16.0, "bandwidth_gbs": 20.0, "threads": 4,
            "date": "today", "source": "test"}
    monkeypatch.setattr(hardware, "measure_cpu", lambda: dict(fast))
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(hardware.CALIBRATION))
    monkeypatch.setattr(hardware, "CALIBRATION_PATH", path)
    assert main(["plan", "--budget", "cpu:30m", "--measure", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["estimates"]["mfu"] == 0.5
    assert measured["estimates"]["train_flops"] > P.make_plan("cpu:30m").train_flops
    assert hardware.load_calibration(path) == hardware.CALIBRATION  # not saved
    assert main(["plan", "--measure", "--save-calibration"]) == 0
    assert hardware.load_calibration(path)["cpu"] == fast


@pytest.mark.slow
def test_cli_calibrate_saves_and_later_plans_use_it(tmp_path, capsys):
    path = tmp_path / "cache" / "calibration.json"
    argv = ["plan", "--budget", "cpu:30m", "--json", "--calibration", str(path)]
    assert main(argv + ["--calibrate"]) == 0
    calibrated = json.loads(capsys.readouterr().out)
    section = hardware.load_user_calibration(path)
    assert section["tokens_per_second"] > 0
    assert calibrated["estimates"]["mfu"] == section["mfu"]
    assert any("measured here on" in n for n in calibrated["notes"])
    assert main(argv) == 0  # a later plan reads the file
    assert json.loads(capsys.readouterr().out)["estimates"]["mfu"] == section["mfu"]
    assert main(["plan", "--budget", "cpu:30m", "--json"]) == 0  # no file: shipped
    shipped = json.loads(capsys.readouterr().out)
    assert any("measured on another machine" in n for n in shipped["notes"])


def test_cli_plans_with_the_users_calibration(tmp_path, capsys):
    # a file as `plan --calibrate` writes it (calibrate_cpu is tested on its own)
    section = {"description": "x86_64, 2 threads, measured here", "threads": 2,
               "peak_fp32_tflops": 0.1, "mfu": 0.25, "memory_gib": 8.0,
               "bandwidth_gbs": 10.0, "tokens_per_second": 2000.0,
               "shape": "2 layers, d_model 128", "date": "2026-12-06 03:00 UTC",
               "source": "plan --calibrate on 2026-12-06 03:00 UTC: wall-clock"}
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"cpu": section}))
    argv = ["plan", "--budget", "cpu:30m", "--json", "--calibration", str(path)]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["estimates"]["mfu"] == section["mfu"]
    assert any(f"measured here on {section['date']}" in n for n in data["notes"])


def test_the_planner_needs_no_torch():
    code = ("import sys, llm_reference.cli.plan; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "False"


# ------------------------------------------------------------------- the data


def test_the_beginner_plan_keeps_the_stdlib_and_warns_of_its_epochs():
    plan = P.make_plan("cpu:30m")
    assert plan.data.recipe == "stdlib" and plan.train["data_dir"] == "data/stdlib"
    assert plan.data.command == ("python -m llm_reference prepare --source stdlib "
                                 "--vocab-size 8192 --out data/stdlib")
    assert plan.data.epochs > data_plan.MAX_EPOCHS
    assert any("repeated data helps less" in note for note in plan.notes)
    assert any("does not describe the stdlib" in note for note in plan.notes)


def test_a_gpu_plan_prepares_fineweb_edu_for_its_tokens():
    plan = P.make_plan("1xH100:8h")
    train = int(plan.data.command.split("--tokens ")[1].split()[0].rstrip("M")) * 10**6
    assert plan.data.recipe == "fineweb-edu"
    assert plan.tokens <= train < 1.02 * plan.tokens  # rounded up, one epoch
    # + the validation share
    assert plan.data.tokens == round(train / (1 - data_plan.VAL_FRACTION))
    assert plan.data.command == (
        "python -m llm_reference prepare --source fineweb-edu --revision "
        f"{RECIPES['fineweb-edu'].revision} "
        f"--tokens {train // 10**6}M --encoder hf --vocab-size 32768 "
        "--out data/fineweb-edu-32k")
    assert not any("repeated data helps less" in note for note in plan.notes)


def test_a_plan_beyond_the_sample_repeats_it_within_four_epochs():
    plan = P.make_plan("8xH100:24h")
    assert "--tokens 10B" in plan.data.command
    assert 1 < plan.data.epochs <= data_plan.MAX_EPOCHS


def test_cli_json_names_the_data_and_the_toml_reads_it(tmp_path, capsys):
    out = tmp_path / "h100.toml"
    argv = ["plan", "--budget", "1xH100:8h", "--json", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)["data"]
    assert data["recipe"] == "fineweb-edu" and data["tokens"] > 5e9
    text = out.read_text()
    config = tomllib.loads(text)
    assert config["train"]["data_dir"] == data["command"].split("--out ")[1]
    assert f"# note: prepare the data: `{data['command']}`" in text
    assert RunConfig.from_dict(config).train.data_dir == "data/fineweb-edu-32k"
