"""Reader checkpoints: `python -m llm_reference check NODE --impl module:attr`.

The reference passes every check; each deliberately broken implementation in
tests/fixtures/check/ fails exactly the checks it should, with the expected message;
implementations written from the protocols alone pass; the command line reports
bad input as one-line errors.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch.nn as nn

from llm_reference.__main__ import main
from llm_reference.check import NODES, command_for, run_node, starter_for
from llm_reference.check.model import ReferenceGPT
from llm_reference.check.runner import FAIL, PASS, SKIP, load_impl

FIXTURES = Path(__file__).parent / "fixtures" / "check"


def fixture(name: str) -> str:
    return str(FIXTURES / name)


def results_of(node_id: str, spec: str | None = None) -> dict[str, object]:
    node = NODES[node_id]
    impl = node.reference() if spec is None else load_impl(spec)
    return {r.check.split(".", 1)[1]: r for r in run_node(node, impl)}


@pytest.mark.parametrize("node_id", list(NODES))
def test_reference_passes_every_check(node_id):
    results = results_of(node_id)
    failed = {name: r.line() for name, r in results.items() if r.status != PASS}
    assert not failed


# node, --impl, {failing check: substrings of its line}, skipped checks
BROKEN = [
    ("tokenizer", "tokenizer_broken.py:Tokenizer",
     {"merges_stay_inside_pieces": ["glues a word to the space after it",
                                    'section "Pre-tokenization"'],
      "compresses_like_reference": ["allowed: 15% more"]}, set()),
    ("dataset", "dataset_broken.py:Batches",
     {"every_window_reachable": ["is [0, 1, 2], expected [0, 1, 2, 3]"],
      "exact_length": ["raised ValueError: high <= 0 (dataset_broken.py:"]}, set()),
    ("embeddings", "embeddings_broken.py",
     {check: ["it matches RoPE on interleaved pairs", "rotate half"]
      for check in ("rope_matches_reference", "rope_later_positions", "rope_theta")},
     set()),
    ("attention", "attention_no_mask.py:attention",
     {"causal": ["FAIL attention.causal: output at position 0 changed when token 7 "
                 "changed (max |Δ| = ", "hint: apply the causal mask before softmax"
                 ' — see the book, chapter "attention", section "The causal mask"'],
      **{check: ["it matches attention without the causal mask"] for check in (
          "mha_matches_reference", "gqa_matches_reference", "mqa_matches_reference",
          "queries_after_cached_keys")}}, set()),
    ("attention", "attention_tiled_heads.py:attention",
     {"gqa_matches_reference": ["tiled with .repeat", "use repeat_interleave"],
      "queries_after_cached_keys": ["tiled with .repeat"]}, set()),
    ("model", "model_broken.py",
     {"block_matches_reference": ["it matches a post-norm block"],
      "block_llama_matches_reference": ["it matches a post-norm block"],
      "initial_loss_near_log_vocab": ["expected ln V = 4.159 ± 0.1"]},
     {"llama_parameter_count", "llama_matches_reference"}),
    ("objective", "objective_broken.py:cross_entropy",
     {"large_logits": ["loss of logits around ±1000 is nan", "log-sum-exp"]}, set()),
    ("pretraining", "pretraining_broken.py",
     {"adamw_first_step": ["it matches Adam without bias correction"],
      "adamw_five_steps": ["param after step 1"],
      "schedule_ends_at_min_lr": ["at step 100 (max_steps = 100)"],
      "clip_scales_all_gradients": ["gradient 0 after clipping"],
      "checkpoint_resume_is_exact": ["after resuming, the loss of step 5"],
      "checkpoint_without_pickle": ["ckpt.pt is a zip archive"]}, set()),
    ("stability", "stability_broken.py:Monitor",
     {"nan_and_inf": ["a step with loss NaN was not flagged"]}, set()),
    ("generation", "generation_broken.py",
     {"top_p_matches_reference": ["is -inf, expected"],
      "top_p_boundary": ["kept by p = 0.75", "is [1], expected [1, 3]"],
      "seeded": ["seeded 7, the second time"],
      "kv_cache_appends": ["after 3 cached tokens"],
      "kv_cache_in_the_model": ["logits with your cache"]}, set()),
    ("finetuning", "finetuning_broken.py:merge_lora",
     {"merge_matches_reference": ["without the alpha / r scale"],
      "same_outputs_as_the_adapter": ["rank 1"]}, set()),
    ("quantization", "quantization_broken.py",
     {"quantize_matches_reference": ["scale at index (0,)"],
      "full_range_per_row": ["expected 127 everywhere"],
      "error_within_half_a_step": ["more than scale / 2"],
      "one_scale_per_row": ["small rows next to a large one lost precision"]},
     set()),
    ("mental-model", "mental_model_broken.py",
     {"targets_are_shifted": ["y is [[48, 87,", "x = ids[:, :-1], y = ids[:, 1:]"],
      "greedy_matches_reference": ["the last position's logits"]}, set()),
    ("data", "data_broken.py",
     {"exact_duplicates": ["the number of documents kept out of 6", "is 5, expected 3"],
      "redact_matches_reference": ["line 2 of the redacted text", "[EMAIL]",
                                   'section "Personal data and secrets"']}, set()),
    ("efficiency", "efficiency_broken.py",
     {"flops_match_reference": ["it matches 6 N' alone"],
      "unscale_reports_overflow": ["holding inf was not reported"]}, set()),
    ("scaling", "scaling_broken.py",
     {"six_n_d": ["it matches 2 N D, the forward pass only"],
      "compute_optimal_matches_reference": ["it matches (D, N), swapped"],
      "compute_optimal_refuses_no_budget": ["compute_optimal(0) returned"]}, set()),
    ("distributed", "distributed_broken.py",
     {"eval_indices_cover_once": ["rank 0 of 4 for 8 batches is [0, 1], expected "
                                  "[0, 4]"],
      "ddp_equals_one_process": ["it matches the sum of the ranks' gradients"]},
     set()),
    ("evaluation", "evaluation_broken.py",
     {"bits_per_byte_matches_reference": ["it matches nats per byte"],
      "continuation_logprob_matches_reference": ["log p(' a + b' | context)"],
      "pick_choice_per_byte": ["is 0, expected 1"]}, set()),
    ("preference", "preference_broken.py",
     {"dpo_matches_reference": ["it matches the loss without the reference model"],
      "equal_policy_gives_log_2": ["expected 0.693147"],
      "gradient_prefers_chosen": ["d loss / d policy_chosen"],
      "sequence_logprobs_matches_reference": ["summed log-probs of 3 answers"]},
     set()),
    ("serving", "serving_broken.py",
     {"stream_text_before_the_stop": ["is 'Hello world<|im_end|>more!', expected "
                                      "'Hello world'"],
      "stream_pieces_as_early_as_possible": ["add('ld<')", "expected 'ld'"]},
     set()),
    ("release", "release_broken.py",
     {"manifest_lists_every_file": ["the names listed"],
      "verify_finds_every_change": ["is ['config.json'], expected ['README.md', "
                                    "'config.json', 'extra.pkl']"]}, set()),
    ("reasoning-rl", "reasoning_broken.py",
     {"advantages_match_reference": ["normalised over the whole batch"],
      "dr_grpo_only_centres": ["advantages (scale=False)"],
      "uniform_group_teaches_nothing": ["expected zeros"],
      "loss_matches_reference": ["loss "],
      "gradient_is_the_policy_gradient": ["d loss / d logp at ratio 1"],
      "masked_tokens_do_not_count": ["changing only prompt/padding"]}, set()),
]


@pytest.mark.parametrize("node_id, spec, failures, skipped", BROKEN,
                         ids=[spec.split(".py")[0] for _, spec, _, _ in BROKEN])
def test_broken_implementation_fails_as_expected(node_id, spec, failures, skipped):
    results = results_of(node_id, fixture(spec))
    assert {n for n, r in results.items() if r.status == FAIL} == set(failures)
    assert {n for n, r in results.items() if r.status == SKIP} == skipped
    for name, texts in failures.items():
        line = results[name].line()
        assert line.startswith(f"FAIL {node_id}.{name}: ")
        assert "; hint: " in line and f'see the book, chapter "{node_id}"' in line
        for text in texts:
            assert text in line


@pytest.mark.parametrize("node_id, spec", [
    ("tokenizer", "tokenizer_reader.py:Tokenizer"),
    ("attention", "attention_reader.py:attention"),
    ("model", "model_reader.py"),
    ("pretraining", "pretraining_reader.py"),
    *[(node_id, f"{node_id.replace('-', '_')}_reader.py") for node_id in (
        "mental-model", "data", "efficiency", "scaling", "distributed", "evaluation",
        "preference", "serving", "release")],
])
def test_implementations_written_from_the_protocol_pass(node_id, spec):
    results = results_of(node_id, fixture(spec))
    optional = {c.name for c in NODES[node_id].checks if c.optional}
    assert {n: r.line() for n, r in results.items()
            if r.status == FAIL or (r.status == SKIP and n not in optional)} == {}


def test_an_implementation_that_raises_is_a_fail_not_a_crash():
    results = results_of("attention", fixture("attention_raises.py:attention"))
    assert len(results) == len(NODES["attention"].checks)
    for r in results.values():
        assert r.status == FAIL
        assert r.message == "raised ValueError: not written yet (attention_raises.py:5)"


class Wrapped(nn.Module):
    """A GPT whose weights sit one level deeper: names differ from the reference."""

    def __init__(self, config):
        super().__init__()
        self.inner = ReferenceGPT(config)

    def forward(self, idx):
        return self.inner(idx)


class GPT2Only(ReferenceGPT):
    def __init__(self, config):
        if config["position"] == "rope":
            raise NotImplementedError
        super().__init__(config)


class Declines:
    """A 'module' whose GPT declines everything: only optional checks may skip."""

    Block = None

    class GPT:
        def __init__(self, config):
            raise NotImplementedError("later")


def test_model_weights_named_differently():
    impl = type("Impl", (), {"Block": None, "GPT": Wrapped})
    results = {r.check: r for r in run_node(NODES["model"], impl, ["GPT"])}
    line = results["model.gpt2_matches_reference"].line()
    assert "named differently" in line and "'inner.tok_emb.weight'" in line
    assert results["model.causal"].status == PASS
    assert results["model.gpt2_parameter_count"].status == PASS


def test_not_implemented_skips_only_optional_checks():
    results = {r.check: r for r in run_node(NODES["model"], Declines, ["GPT"])}
    statuses = {name: r.status for name, r in results.items()}
    assert statuses["model.llama_matches_reference"] == SKIP
    assert statuses["model.gpt2_matches_reference"] == FAIL
    assert "raised NotImplementedError: later" in results[
        "model.gpt2_matches_reference"].message
    impl = type("Impl", (), {"Block": None, "GPT": GPT2Only})
    gpt = [r for r in run_node(NODES["model"], impl, ["GPT"])]
    assert {r.status for r in gpt} == {PASS, SKIP}


def test_missing_part_is_named():
    impl = type("Impl", (), {"lr_schedule": staticmethod(lambda *a: 1.0)})
    results = {r.check: r for r in run_node(NODES["pretraining"], impl)}
    assert results["pretraining.adamw_first_step"].message == (
        "your implementation has no `adamw_step`")


# ---------------------------------------------------------------- command line


def test_cli_checks_an_implementation(capsys):
    assert main(["check", "attention", "--impl",
                 fixture("attention_no_mask.py:attention")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FAIL attention.mha_matches_reference: ")
    assert "PASS attention.single_token" in lines
    assert lines[-1] == "attention: 3 passed, 5 failed"


def test_cli_reference_node_and_json(capsys):
    assert main(["check", "objective"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "objective: 7 passed"
    assert main(["check", "finetuning", "--json", "--impl",
                 fixture("finetuning_broken.py:merge_lora")]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    statuses = [r["status"] for r in report["nodes"]["finetuning"]]
    assert statuses == [FAIL, PASS, FAIL]


def test_cli_check_all_passes_on_the_reference(capsys):
    assert main(["check", "all", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and list(report["nodes"]) == list(NODES)


def test_cli_part_selects_checks(capsys):
    assert main(["check", "pretraining", "--part", "lr_schedule", "--impl",
                 fixture("pretraining_broken.py")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "PASS pretraining.schedule_matches_reference",
        "PASS pretraining.schedule_warmup",
        "FAIL pretraining.schedule_ends_at_min_lr"]


def test_cli_imports_module_from_the_current_folder(tmp_path, monkeypatch, capsys):
    source = (FIXTURES / "attention_reader.py").read_text(encoding="utf-8")
    (tmp_path / "my_cwd_attention.py").write_text(source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    assert main(["check", "attention", "--impl", "my_cwd_attention:attention"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "attention: 8 passed"


def test_cli_list_prints_protocols(capsys):
    assert main(["check", "--list"]) == 0
    out = capsys.readouterr().out
    for node in NODES.values():
        assert node.command() in out and node.title in out
    assert "attention(q, k, v) -> y" in out and "checks:" in out
    assert main(["check", "--list", "quantization"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("quantization — int8 weight-only")
    assert "tokenizer" not in out


@pytest.mark.parametrize("argv, message", [
    (["check"], "name a node to check"),
    (["check", "nope"], "unknown node 'nope'"),
    (["check", "all", "--impl", "x:y"], "check all runs every node on the reference"),
    (["check", "attention", "--impl", "no_such_module_xyz:attention"],
     "no module 'no_such_module_xyz'"),
    (["check", "attention", "--impl", "missing/dir/file.py:attention"],
     "no file missing/dir/file.py"),
    (["check", "attention", "--impl", fixture("attention_reader.py:atention")],
     "has no attribute 'atention'; it defines math, torch, attention"),
    (["check", "pretraining", "--impl", fixture("attention_reader.py:attention")],
     "has none of adamw_step, lr_schedule"),
    (["check", "attention", "--part", "rope"], "--part rope: the attention node's "
                                               "parts are none"),
])
def test_cli_user_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1


def test_cli_import_error_in_reader_module(tmp_path, capsys):
    broken = tmp_path / "syntax_error_impl.py"
    broken.write_text("def attention(q, k, v)\n    return q\n", encoding="utf-8")
    assert main(["check", "attention", "--impl", f"{broken}:attention"]) == 2
    err = capsys.readouterr().err
    assert "importing" in err and "SyntaxError" in err and err.count("\n") == 1


# ---------------------------------------------------------------- for the book


def test_command_for_and_protocols():
    assert command_for("attention") == (
        "python -m llm_reference check attention --impl my_attention:attention")
    assert command_for("pretraining") == (
        "python -m llm_reference check pretraining --impl my_train")
    with pytest.raises(KeyError):
        command_for("no-such-step")
    for node in NODES.values():
        assert f"Command: {node.command()}" in node.protocol
        assert node.sections() and all(node.sections())


BOOK = Path(__file__).parents[1] / "book"


def test_every_roadmap_step_has_a_check_whose_hints_cite_its_chapter():
    roadmap = tomllib.loads((BOOK / "roadmap.toml").read_text(encoding="utf-8"))
    for step in roadmap["node"]:
        assert step.get("check") == step["id"] in NODES, step["id"]
        if "chapter" not in step:
            continue
        text = (BOOK / step["chapter"]).read_text(encoding="utf-8")
        headings = {line.lstrip("=").strip() for line in text.splitlines()
                    if line.startswith("==")}
        missing = [s for s in NODES[step["id"]].sections() if s not in headings]
        assert not missing, f"{step['chapter']} has no section {missing}"


# ---------------------------------------------------------------- starter files


@pytest.mark.parametrize("node_id", list(NODES))
def test_starter_file_fails_or_skips_cleanly(node_id):
    node = NODES[node_id]
    path = starter_for(node_id)
    assert path.name == node.example.partition(":")[0] + ".py"
    attr = node.example.partition(":")[2]
    results = run_node(node, load_impl(f"{path}:{attr}" if attr else str(path)))
    optional = {c.name for c in node.checks if c.optional}
    for r in results:
        name = r.check.split(".", 1)[1]
        assert r.status == (SKIP if name in optional else FAIL), r.line()
        assert "NotImplementedError" in r.message, r.line()


def test_cli_starter_writes_the_file_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["check", "release", "--starter"]) == 0
    assert capsys.readouterr().out.startswith("wrote my_release.py")
    assert (tmp_path / "my_release.py").read_bytes() == (
        starter_for("release").read_bytes())
    assert main(["check", "release", "--starter"]) == 2
    assert "my_release.py exists" in capsys.readouterr().err
    assert main(["check", "all", "--starter"]) == 2
    assert "--starter writes one node's file" in capsys.readouterr().err


def test_scaling_protocol_states_the_reference_fit():
    from llm_reference.scaling import LOSS_FIT

    protocol = " ".join(NODES["scaling"].protocol.split())
    for name in ("E", "A", "B", "alpha", "beta"):
        assert f"{name} = {getattr(LOSS_FIT, name)}" in protocol
