"""Mixture of experts (moe.py): config, routing, losses, the two dispatch paths,
counts, training with resume, generation, decode_step and quantization."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import TINY_MODEL, TINY_TRAIN
from safetensors.torch import load_file

from llm_reference import flops, memory
from llm_reference.check import NODES, run_node
from llm_reference.check.runner import load_impl
from llm_reference.config import RunConfig
from llm_reference.errors import UserError
from llm_reference.generate import generate
from llm_reference.hf import from_hf, hf_config, to_hf
from llm_reference.hf_folder import export_hf, read_hf
from llm_reference.kv_pool import KVPool
from llm_reference.model import GPT, ModelConfig, make_mlp
from llm_reference.model_card import architecture_section
from llm_reference.moe import (
    MoE,
    balance_loss,
    dispatch_loop,
    dispatch_sorted,
    moe_layers,
    route,
    router_loss,
    z_loss,
)
from llm_reference.quantize import QuantizedLinear, quantize_model
from llm_reference.tokenizer import Tokenizer
from llm_reference.train import train

MOE = {"vocab_size": 97, "context_length": 24, "n_layer": 2, "n_head": 4,
       "n_kv_head": 2, "d_model": 32, "d_ff": 48, "position": "rope",
       "norm": "rmsnorm", "mlp": "swiglu", "bias": False, "tie_weights": False,
       "moe_experts": 4, "moe_top_k": 2}


# --- config ------------------------------------------------------------------------


def test_dense_config_dict_has_no_moe_fields():
    assert not any(k.startswith("moe_") for k in ModelConfig().to_dict())
    d = ModelConfig(**MOE).to_dict()
    assert d["moe_experts"] == 4 and d["moe_gate"] == "softmax"
    assert ModelConfig.from_dict(d) == ModelConfig(**MOE)


@pytest.mark.parametrize("fields, message", [
    ({"moe_top_k": 3}, "model.moe_top_k = 3: needs model.moe_experts > 0"),
    ({"moe_experts": 4, "moe_top_k": 5}, "must be in 1 .. moe_experts = 4"),
    ({"moe_experts": 4, "moe_top_k": 0}, "must be in 1 .. moe_experts = 4"),
    ({"moe_experts": -1}, "model.moe_experts = -1: must be an integer >= 0"),
    ({"moe_experts": 4, "moe_gate": "relu"}, "model.moe_gate = 'relu': must be"),
    ({"moe_experts": 4, "moe_aux_coef": -0.1}, "moe_aux_coef = -0.1: must be a"),
    ({"moe_experts": 4, "moe_renorm": "yes"}, "moe_renorm = 'yes': must be true"),
])
def test_bad_moe_fields_are_one_line_errors(fields, message):
    with pytest.raises(UserError, match=message) as e:
        ModelConfig(**fields)
    assert "\n" not in str(e.value)


# --- routing and losses -------------------------------------------------------------


def test_route_picks_the_top_k_and_renormalises():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 3.0, 1.0]])
    gates, experts, scores = route(logits, 2)
    assert experts.tolist() == [[0, 1], [2, 3]]
    assert torch.allclose(gates.sum(-1), torch.ones(2))
    assert torch.allclose(gates[0, 0] / gates[0, 1], torch.exp(torch.tensor(1.0)))
    raw, _, _ = route(logits, 2, renorm=False)
    assert torch.allclose(raw, scores.gather(-1, experts))
    # sigmoid scores; the bias changes the choice, never the gate values
    sig, _, _ = route(logits, 1, gate="sigmoid", renorm=False)
    assert torch.allclose(sig[:, 0], torch.sigmoid(torch.tensor([2.0, 3.0])))
    bias = torch.tensor([0.0, 0.0, 0.0, 10.0])
    g, e, s = route(logits, 1, gate="sigmoid", renorm=False, bias=bias)
    assert e[:, 0].tolist() == [3, 3]
    assert torch.allclose(g[:, 0], torch.sigmoid(torch.tensor([-1.0, 1.0])))


def test_balance_loss_is_one_when_uniform_and_grows_with_collapse():
    N, E, k = 8, 4, 2
    uniform = torch.full((N, E), 1 / E)
    spread = torch.arange(N * k).view(N, k) % E
    assert balance_loss(uniform, spread).item() == pytest.approx(1.0)
    collapsed = torch.zeros(N, E)
    collapsed[:, :2] = 0.5
    assert balance_loss(collapsed, torch.tensor([[0, 1]] * N)).item() == (
        pytest.approx(2.0))  # E * (1/2 * 1/2) * 2 experts


def test_z_loss_is_the_mean_squared_logsumexp():
    logits = torch.randn(5, 4)
    want = (logits.exp().sum(-1).log() ** 2).mean()
    assert z_loss(logits).item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_loop_and_sorted_dispatch_agree_with_gradients(mlp):
    torch.manual_seed(0)
    config = ModelConfig(d_model=16, n_head=2, d_ff=24, mlp=mlp, moe_experts=5,
                         moe_top_k=2)
    experts = nn.ModuleList(make_mlp(config) for _ in range(5))
    x = torch.randn(40, 16)
    logits = torch.randn(40, 5)
    logits[:, 4] = -1e4  # expert 4 gets no token: both paths must cope
    results = []
    for dispatch in (dispatch_loop, dispatch_sorted):
        xi, li = x.clone().requires_grad_(), logits.clone().requires_grad_()
        gates, chosen, _ = route(li, 2)
        y = dispatch(xi, gates, chosen, experts)
        (y * torch.linspace(-1, 1, 16)).sum().backward()
        assert all(p.grad is None for p in experts[4].parameters())
        grads = [xi.grad, li.grad] + [p.grad.clone() for p in experts[:4]
                                      .parameters()]
        experts.zero_grad()
        results.append((y.detach(), grads))
    (y1, g1), (y2, g2) = results
    torch.testing.assert_close(y1, y2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_moe_layer_equals_the_sum_of_its_experts_by_hand():
    torch.manual_seed(0)
    config = ModelConfig(d_model=16, n_head=2, d_ff=8, moe_experts=3, moe_top_k=2,
                         moe_shared=1)
    layer = MoE(config, lambda width: make_mlp(config, width)).eval()
    x = torch.randn(2, 5, 16)
    y = layer(x)
    for b in range(2):
        for t in range(5):
            p = torch.softmax(layer.router(x[b, t]), -1)
            top = p.topk(2)
            want = layer.shared(x[b, t])
            for w, e in zip(top.values / top.values.sum(), top.indices):
                want = want + w * layer.experts[int(e)](x[b, t])
            torch.testing.assert_close(y[b, t], want)


# --- counts -----------------------------------------------------------------------


@pytest.mark.parametrize("extra", [
    {}, {"moe_shared": 2}, {"moe_bias_rate": 0.01},
    {"mlp": "gelu", "bias": True, "position": "learned", "norm": "layernorm"}])
def test_parameter_counts_match_a_real_moe_gpt(extra):
    config = ModelConfig(**{**MOE, **extra})
    model = GPT(config)
    assert flops.count_parameters(config) == model.num_parameters()
    assert flops.count_parameters(config, True) == model.num_parameters(True)
    expert = sum(p.numel() for p in model.blocks[0].mlp.experts[0].parameters())
    idle = config.n_layer * (config.moe_experts - config.moe_top_k) * expert
    assert flops.count_parameters(config, active=True) == (
        model.num_parameters() - idle)
    # compute counts the active weights, memory all of them
    dense = ModelConfig(**{**MOE, **extra, "moe_experts": 0, "moe_top_k": 2,
                           "moe_shared": 0, "moe_bias_rate": 0.0})
    assert flops.flops_per_token(config) > flops.flops_per_token(dense)
    assert flops.matmul_weights(config) == (
        flops.count_parameters(config, True, active=True)
        + config.d_model * config.vocab_size)
    states = memory.training_memory(config, 1)["model_states"]
    assert states == model.num_parameters() * memory.state_bytes_per_param("bfloat16")


def test_model_card_gives_total_and_active_parameters():
    card = architecture_section(GPT(ModelConfig(**MOE)))
    active = flops.count_parameters(ModelConfig(**MOE), active=True)
    assert f"| active parameters per token | {active:,} |" in card
    assert "active" not in architecture_section(GPT(ModelConfig(vocab_size=50)))


# --- the model --------------------------------------------------------------------


def random_moe(**extra) -> GPT:
    torch.manual_seed(0)
    model = GPT(ModelConfig(**{**MOE, **extra})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2 if p.dim() > 1 else 1.0)
    return model


def test_dense_models_keep_their_weights_and_logits():
    # the dense init draws the same random numbers as before MoE existed: the
    # first block's MLP down projection is initialised after attention's proj
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50, context_length=8, n_layer=1, n_head=2,
                            d_model=16))
    assert not moe_layers(model)
    assert model.blocks[0].mlp.down.weight.std().item() == pytest.approx(
        0.02 / 2 ** 0.5, rel=0.5)


def test_kv_cache_generation_equals_no_cache():
    model = random_moe(moe_shared=1, moe_bias_rate=0.01)
    prompt = [1, 5, 7, 9]
    cached = list(generate(model, prompt, 12, temperature=0.0))
    plain = list(generate(model, prompt, 12, temperature=0.0, use_cache=False))
    assert cached == plain


def test_decode_step_matches_forward():
    model = random_moe(moe_gate="sigmoid")
    pool = KVPool(model, 2)
    idx = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 10]])
    logits, _ = model(idx)
    rows = torch.tensor([pool.take(), pool.take()])
    for t in range(4):
        step = model.decode_step(idx[:, t], torch.tensor([t, t]), pool.cache, rows)
        torch.testing.assert_close(step, logits[:, t], rtol=1e-4, atol=1e-4)


def test_quantize_replaces_expert_and_router_linears():
    model = random_moe()
    x = torch.tensor([[1, 2, 3, 4, 5]])
    before, _ = model(x)
    names = quantize_model(model)
    assert "blocks.0.mlp.experts.3.down" in names and "blocks.1.mlp.router" in names
    assert isinstance(model.blocks[0].mlp.experts[0].gate, QuantizedLinear)
    after, _ = model(x)
    assert (after - before).abs().max() < 0.1 * before.abs().max()


def test_training_forward_reports_router_stats():
    model = random_moe().train()
    x = torch.randint(0, 97, (2, 24))
    _, loss = model(x, x)
    for layer in moe_layers(model):
        assert layer.stats.load.sum().item() == 2 * 24 * 2
        assert 0.5 < layer.stats.balance.item() < 4
        assert layer.stats.z.requires_grad


def test_activation_checkpointing_keeps_loss_and_gradients():
    model = random_moe(moe_shared=1).train()
    x = torch.randint(0, 97, (2, 24))
    results = []
    for checkpointing in (False, True):
        model.gradient_checkpointing = checkpointing
        model.zero_grad()
        _, loss = model(x, x)
        (loss + router_loss(moe_layers(model))).backward()
        results.append([loss] + [p.grad.clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


# --- training ---------------------------------------------------------------------


def moe_run(data_dir, **model) -> RunConfig:
    return RunConfig.from_dict({
        "model": {"vocab_size": "auto", **TINY_MODEL, "moe_experts": 4,
                  "moe_top_k": 2, **model},
        "train": {"data_dir": str(data_dir), **TINY_TRAIN}})


def records(run) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "event" not in r]


def test_moe_trains_logs_router_stats_and_resumes_exactly(data_dir, tmp_path):
    config = moe_run(data_dir, moe_bias_rate=0.01, moe_shared=1)
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(config, full)
    steps = records(full)
    assert steps[-1]["loss"] < steps[0]["loss"]
    for r in steps:
        assert len(r["moe_load"]) == 4 and sum(r["moe_load"]) == pytest.approx(1, 1e-3)
        assert r["moe_max_load"] >= 1.0 and r["moe_balance"] > 0.5
        assert r["moe_z"] > 0
    shutil.copytree(full, cut)  # as if killed after step 17: resume from 10
    shutil.rmtree(cut / "checkpoints" / "step_0000020")
    lines = (cut / "metrics.jsonl").read_text().splitlines(keepends=True)
    (cut / "metrics.jsonl").write_text("".join(lines[:17]))
    train(config, cut, resume=True)
    assert [r["loss"] for r in records(cut)] == [r["loss"] for r in steps]
    step = full / "checkpoints" / "step_0000020"
    state = json.loads((step / "state.json").read_text())
    assert state["config"]["model"]["moe_experts"] == 4
    bias = load_file(step / "model.safetensors")["blocks.0.mlp.balance_bias"]
    assert bias.abs().sum() > 0  # the loss-free balancing moved it, and it is saved


# --- Hugging Face: Mixtral and Qwen3-MoE ------------------------------------------

HF_MOE = {
    "mixtral": dict(MOE),
    "qwen3_moe": dict(MOE, qk_norm=True, d_head=16, moe_top_k=3),
    "qwen3_moe-no-renorm": dict(MOE, qk_norm=True, moe_renorm=False),
}


def random_hf(name: str, vocab_size: int = 97):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    config = ModelConfig(**{**HF_MOE[name], "vocab_size": vocab_size})
    hf = transformers.AutoModelForCausalLM.from_config(hf_config(config)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.2 if p.dim() > 1 else 1.0)
    return hf


@pytest.mark.parametrize("name", HF_MOE)
def test_hf_moe_to_ours_and_back_same_logits(name):
    hf = random_hf(name)
    assert hf.config.model_type == name.split("-")[0]
    ours = from_hf(hf)
    assert ours.config.to_dict() == ModelConfig(**HF_MOE[name]).to_dict()
    idx = torch.randint(0, 97, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5,
                                   rtol=1e-5)
        back = to_hf(ours).eval()
        torch.testing.assert_close(back(idx).logits, hf(idx).logits, atol=1e-5,
                                   rtol=1e-5)


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe"])
def test_hf_moe_folder_export_and_import(name, tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizer = Tokenizer.train(["def f(x):\n    return x + 1\n"] * 20, 280)
    ours = from_hf(random_hf(name, vocab_size=300))
    out = export_hf(ours, tokenizer, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    back, _, info = read_hf(out)
    assert info["model_type"] == name
    idx = torch.randint(0, 300, (2, 24))
    with torch.no_grad():
        want = ours(idx)[0]
        torch.testing.assert_close(hf(idx).logits, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(back(idx)[0], want, atol=0, rtol=0)


@pytest.mark.parametrize("fields, message", [
    ({"moe_shared": 1}, "need moe_shared = 0"),
    ({"moe_gate": "sigmoid"}, "moe_gate = 'softmax'"),
    ({"moe_renorm": False}, "moe_renorm = false needs qk_norm = true"),
    ({"mlp": "gelu"}, "need position = 'rope'"),
])
def test_moe_without_an_hf_family_is_refused(fields, message):
    with pytest.raises(UserError, match=message):
        hf_config(ModelConfig(**{**MOE, **fields}))


# --- the reader check -------------------------------------------------------------


def check_results(spec: str) -> dict[str, str]:
    node = NODES["moe"]
    path = Path(__file__).parent / "fixtures" / "check" / spec
    return {r.check: r.line() for r in run_node(node, load_impl(str(path)))}


def test_reader_check_passes_an_implementation_from_the_protocol():
    results = check_results("moe_reader.py")
    assert all(line.startswith("PASS") for line in results.values()), results


def test_reader_check_names_the_classic_mistakes():
    results = check_results("moe_broken.py")
    failed = {k for k, line in results.items() if line.startswith("FAIL")}
    assert failed == {"moe.route_matches_reference", "moe.top_1_gate_is_one",
                      "moe.route_gradient", "moe.balance_matches_reference",
                      "moe.uniform_load_is_one", "moe.balance_gradient"}
    assert "without renormalisation" in results["moe.route_matches_reference"]
    assert "HF Mixtral's, k times ours" in results["moe.balance_matches_reference"]
    assert 'chapter "moe", section "Load balancing"' in results[
        "moe.balance_matches_reference"]
