"""The release command: files, hashes, weights that give the run's logits, the model
card, refusal to overwrite, atomicity, and the PII summary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_model as load_weights

from llm_reference import release as release_module
from llm_reference.__main__ import main
from llm_reference.checkpoint import list_checkpoints, load_model
from llm_reference.data import PrepareSettings, load_tokenizer, prepare
from llm_reference.model import GPT, ModelConfig
from llm_reference.model_card import compliance_section
from llm_reference.release import release
from llm_reference.rescan import pii_summary
from llm_reference.tokenizer import Tokenizer

FILES = {"README.md", "config.json", "eval.json", "manifest.json", "model.safetensors",
         "tokenizer.json", "training_config.toml"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def released(tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "tiny-release"
    return release(tiny_run, out, license="MIT", device="cpu")


def point_at_data(run: Path, data_dir: str) -> None:
    """Make every checkpoint of `run` name another data folder."""
    for checkpoint in list_checkpoints(run):
        state = json.loads((checkpoint / "state.json").read_text())
        state["config"]["train"]["data_dir"] = data_dir
        (checkpoint / "state.json").write_text(json.dumps(state))


# --- files and hashes --------------------------------------------------------------


def test_release_writes_every_file_and_right_hashes(tiny_run, released):
    assert {p.name for p in released.iterdir()} == FILES
    manifest = json.loads((released / "manifest.json").read_text())
    assert set(manifest["files_sha256"]) == FILES - {"manifest.json"}
    for name, digest in manifest["files_sha256"].items():
        assert sha256(released / name) == digest, name
    data_dir = Path(json.loads((list_checkpoints(tiny_run)[-1] / "state.json")
                               .read_text())["config"]["train"]["data_dir"])
    data = manifest["data"]
    assert set(data["shards_sha256"]) == {"train_000.bin", "val_000.bin"}
    for name, digest in data["shards_sha256"].items():
        assert sha256(data_dir / name) == digest
    assert data["shards_match_data_manifest"] is True
    assert data["manifest_sha256"] == sha256(data_dir / "manifest.json")
    assert manifest["step"] == 20
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["seeds"] == {"train": 1337, "data_split": 1337}
    assert len(manifest["code_sha256"]) == 64
    assert manifest["git"] is None or len(manifest["git"]["commit"]) == 40


def test_released_weights_give_the_runs_logits(tiny_run, released):
    run_model, run_tokenizer, _ = load_model(tiny_run)
    config = ModelConfig.from_dict(json.loads((released / "config.json").read_text()))
    model = GPT(config).eval()
    load_weights(model, released / "model.safetensors")
    idx = torch.randint(0, config.vocab_size, (2, config.context_length))
    with torch.no_grad():
        assert torch.equal(model(idx)[0], run_model(idx)[0])
    with safe_open(released / "model.safetensors", "pt") as f:  # no optimizer state
        assert set(f.keys()) <= set(model.state_dict())
        assert f.metadata()["step"] == "20"
    tokenizer = Tokenizer.load(released / "tokenizer.json")
    text = "def release(out):\n    return out  # <|endoftext|>"
    assert tokenizer.encode(text, "all") == run_tokenizer.encode(text, "all")


def test_release_of_an_earlier_step(tiny_run, tmp_path):
    out = release(tiny_run, tmp_path / "r10", step=10, evaluate=False, scan_tokens=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["step"] == 10
    model, _, _ = load_model(tiny_run, step=10)
    released = GPT(model.config)
    load_weights(released, out / "model.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(released.state_dict().values(),
                                                 model.state_dict().values()))


# --- the model card ------------------------------------------------------------------


def test_model_card_documents_model_data_licenses_eval_and_pii(tiny_run, released):
    card = (released / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\n")
    assert "License of the weights: **MIT**" in card
    assert "| stdlib | stdlib | PSF-2.0 |" in card  # data source and its license
    assert "Data licenses: PSF-2.0" in card
    model, _, _ = load_model(tiny_run)
    assert f"| parameters | {model.num_parameters():,} |" in card
    for heading in ("## Architecture", "## Training data", "## Training",
                    "## Evaluation", "## Intended use and limitations",
                    "## Compliance: personal data", "## How to load"):
        assert heading in card
    assert "| n_layer | 2 |" in card and "| d_model | 32 |" in card
    evaluation = json.loads((released / "eval.json").read_text())
    assert f"| perplexity | {evaluation['perplexity']:.2f} |" in card
    assert "Redaction at `prepare` was on" in card
    assert "Re-scan of the first 1,000,000 tokens" in card


def test_card_without_license_or_data_says_so(run_copy, tmp_path):
    point_at_data(run_copy, str(tmp_path / "gone"))
    out = release(run_copy, tmp_path / "out", device="cpu")
    card = (out / "README.md").read_text()
    assert "license:" not in card.split("---")[1]
    assert "**not chosen**" in card
    assert "not documented" in card and "Not evaluated" in card
    assert json.loads((out / "manifest.json").read_text())["data"] is None
    assert "eval.json" not in {p.name for p in out.iterdir()}


def test_card_of_a_fine_tuned_run_names_its_base(run_copy, tmp_path):
    path = list_checkpoints(run_copy)[-1] / "state.json"
    state = json.loads(path.read_text())
    state["finetune"] = {"method": "sft", "base_run": "/runs/base", "base_step": 500,
                         "settings": {}}
    path.write_text(json.dumps(state))
    out = release(run_copy, tmp_path / "out", evaluate=False, scan_tokens=0)
    card = (out / "README.md").read_text()
    assert "Fine-tuned (sft, 20 steps;" in card and "of the run `base`" in card
    assert "| steps | 500 |" in card


def test_the_runs_eval_json_is_used_for_its_step(run_copy, tmp_path):
    saved = {"step": 20, "val_loss": 1.25, "perplexity": 3.49, "bits_per_byte": 0.5,
             "accuracy": 0.5, "cloze": None}
    (run_copy / "eval.json").write_text(json.dumps(saved))
    out = release(run_copy, tmp_path / "out", scan_tokens=0)
    assert json.loads((out / "eval.json").read_text()) == saved
    assert "| perplexity | 3.49 |" in (out / "README.md").read_text()
    # another step has no eval.json: it is evaluated again
    earlier = release(run_copy, tmp_path / "out10", step=10, scan_tokens=0)
    assert json.loads((earlier / "eval.json").read_text())["step"] == 10


# --- output folder -------------------------------------------------------------------


def test_non_empty_out_is_refused_unless_force(tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["release", "--run", str(tiny_run), "--out", str(out), "--no-eval",
            "--scan-tokens", "0", "--license", "Apache-2.0"]
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main([*args, "--force"]) == 0
    assert {p.name for p in out.iterdir()} == FILES - {"eval.json"}
    assert "released step 20" in capsys.readouterr().out
    assert "license: apache-2.0" in (out / "README.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folders


def test_an_empty_out_folder_is_fine(tiny_run, tmp_path):
    (tmp_path / "empty").mkdir()
    release(tiny_run, tmp_path / "empty", evaluate=False, scan_tokens=0)
    assert (tmp_path / "empty" / "model.safetensors").is_file()


def test_a_failed_release_leaves_nothing(tiny_run, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(release_module, "release_manifest", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        release(tiny_run, tmp_path / "out", evaluate=False, scan_tokens=0)
    assert list(tmp_path.iterdir()) == []


def test_cli_errors(tiny_run, tmp_path, capsys):
    base = ["release", "--run", str(tiny_run), "--out", str(tmp_path / "o")]
    assert main([*base, "--step", "7"]) == 2
    assert "available steps: 10, 20" in capsys.readouterr().err
    assert main([*base, "--data", str(tmp_path)]) == 2
    assert main([*base, "--scan-tokens", "-1"]) == 2
    for inside in (tiny_run, tiny_run.parent):  # --force must not delete the run
        assert main(["release", "--run", str(tiny_run), "--out", str(inside),
                     "--force"]) == 2
        assert "holds the run" in capsys.readouterr().err
    assert list_checkpoints(tiny_run)
    (tmp_path / "file").write_text("x")
    assert main(["release", "--run", str(tiny_run), "--out",
                 str(tmp_path / "file")]) == 2


# --- PII summary --------------------------------------------------------------------


def test_pii_rescan_finds_what_was_not_redacted(tmp_path):
    text = ("Write to alice.smith@gmail.com or call +44 20 7946 0958.\n"
            "The server is at 8.8.8.8 and the docs at docs@example.com.\n") * 20
    (tmp_path / "notes.txt").write_text(text)
    settings = PrepareSettings(sources=(str(tmp_path / "notes.txt"),),
                               licenses=("CC0-1.0",), vocab_size=300,
                               val_fraction=0.0, redact=False,
                               near_dup_threshold=None)
    data_dir = tmp_path / "data"
    prepare(settings, data_dir, workers=1)
    manifest = json.loads((data_dir / "manifest.json").read_text())
    summary = pii_summary(manifest, data_dir, load_tokenizer(data_dir), 10_000)
    assert summary["redaction"] is False
    counts = summary["rescan"]["counts"]
    assert counts["email"] == 20 and counts["ipv4"] == 20 and counts["phone"] == 20
    card = compliance_section(summary)
    assert "was **off**" in card and "review before publishing" in card


# --- a Hugging Face release ----------------------------------------------------------


def test_release_format_hf_is_a_hub_folder_with_the_card(tiny_run, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    from llm_reference.artifacts import load_model as load_any

    out = tmp_path / "hf-release"
    assert main(["release", "--run", str(tiny_run), "--out", str(out), "--format",
                 "hf", "--license", "MIT", "--no-eval", "--scan-tokens", "0"]) == 0
    capsys.readouterr()
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json",
            "tokenizer.json", "tokenizer_config.json", "README.md",
            "training_config.toml", "manifest.json"} <= names
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files_sha256"]) == names - {"manifest.json"}
    for name, digest in manifest["files_sha256"].items():
        assert sha256(out / name) == digest, name
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and "AutoModelForCausalLM" in card
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ours, _, _ = load_model(tiny_run)
    loaded, _, info = load_any(out)  # generate, eval and serve load it too
    assert info["kind"] == "release" and info["step"] == manifest["step"]
    idx = torch.randint(0, ours.config.vocab_size, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx)[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(loaded(idx)[0], ours(idx)[0], atol=1e-5, rtol=0)


def test_release_format_hf_checks_the_model_before_writing(random_model):
    """release calls check_exportable before it builds anything."""
    from llm_reference.errors import UserError
    from llm_reference.hf_folder import check_exportable

    ours = random_model(dict(vocab_size=400, context_length=32, n_layer=1, n_head=2,
                             d_model=32, norm="rmsnorm"))  # learned + rmsnorm: no HF
    with pytest.raises(UserError, match="matches no HF family"):
        check_exportable(ours, Tokenizer.train(["ab cd"] * 5, 260))
