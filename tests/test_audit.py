"""`python -m llm_reference audit`: each check passes on a clean fixture and fails on
one made to violate it; the table, JSON and SARIF reports; the exit codes.

The fixtures are real: a few KB of text prepared with `prepare` (vocabulary 300),
a run trained by `train` for two steps, and its `release`.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from llm_reference.__main__ import main
from llm_reference.audit import CHECKS, FAIL, PASS, SKIPPED, Targets, run_audit
from llm_reference.audit.decontamination import NgramIndex, scan_shard
from llm_reference.audit.model import unsafe_torch_loads
from llm_reference.audit.registry import TARGETS
from llm_reference.config import RunConfig
from llm_reference.data import PrepareSettings, load_tokenizer, prepare
from llm_reference.release import release
from llm_reference.tokenizer import Tokenizer
from llm_reference.train import train

REPO = Path(__file__).resolve().parents[1]
WORDS = ("river stone lantern orbit maple quiet copper signal harbor meadow pencil "
         "violet thunder garden mirror candle rocket basket").split()


def write_sources(folder: Path) -> Path:
    """Twelve documents of random words (about 7 KB), reproducible."""
    rng = random.Random(0)
    folder.mkdir(parents=True)
    for i in range(12):
        words = [rng.choice(WORDS) for _ in range(100)]
        (folder / f"doc{i:02d}.txt").write_text(" ".join(words) + "\n")
    return folder


def prepare_data(src: Path, out: Path, licence: str | None = "CC0-1.0",
                 seed: int = 1337) -> Path:
    settings = PrepareSettings(sources=(str(src),),
                               licenses=(licence,) if licence else (),
                               vocab_size=300, val_fraction=0.2, shard_tokens=1000,
                               seed=seed)
    prepare(settings, out, workers=1)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audit")
    src = write_sources(root / "src")
    data = prepare_data(src, root / "data")
    model = {"vocab_size": "auto", "context_length": 16, "n_layer": 1, "n_head": 2,
             "d_model": 16}
    steps = {"data_dir": str(data), "batch_size": 2, "max_steps": 2,
             "warmup_steps": 1, "eval_interval": 2, "eval_steps": 1,
             "checkpoint_interval": 2, "device": "cpu"}
    train(RunConfig.from_dict({"model": model, "train": steps}), root / "run")
    rel = release(root / "run", root / "release", license="MIT", device="cpu")
    manifest = json.loads((rel / "manifest.json").read_text())
    manifest["git"] = {"commit": "0" * 40, "dirty": False}  # as from a clean checkout
    (rel / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return {"root": root, "src": src, "data": data, "run": root / "run",
            "release": rel}


def copy(world: dict[str, Path], name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(world[name], tmp_path / name))


def audit(only: str, **targets) -> list:
    results = run_audit(Targets(**targets), [only])
    assert all(r.status != SKIPPED for r in results), results
    return results


def status(only: str, **targets) -> str:
    results = audit(only, **targets)
    return FAIL if any(r.status == FAIL for r in results) else PASS


def messages(only: str, **targets) -> list[str]:
    return [f.message for r in audit(only, **targets) for f in r.findings]


# --- data -----------------------------------------------------------------------


def test_licenses_declared(world, tmp_path):
    assert status("data.licenses-declared", data=world["data"]) == PASS
    unlicensed = prepare_data(world["src"], tmp_path / "unlicensed", licence=None)
    found = messages("data.licenses-declared", data=unlicensed)
    assert len(found) == 1 and "/src' has no declared license" in found[0]


def test_reproducible_manifest_reruns_prepare(world, tmp_path):
    assert status("data.reproducible-manifest", data=world["data"]) == PASS
    # the recorded source changes after prepare: a re-run no longer matches
    src = shutil.copytree(world["src"], tmp_path / "src")
    data = prepare_data(src, tmp_path / "data")
    (src / "doc00.txt").write_text("an edited document\n")
    found = messages("data.reproducible-manifest", data=data)
    assert any("sources differs" in m for m in found)
    assert any("outputs_sha256[train_000.bin] differs" in m for m in found)


def test_reproducible_manifest_compares_two_folders(world, tmp_path):
    again = prepare_data(world["src"], tmp_path / "again")
    assert status("data.reproducible-manifest", data=world["data"],
                  compare_data=again) == PASS
    other_seed = prepare_data(world["src"], tmp_path / "seed", seed=7)
    found = messages("data.reproducible-manifest", data=world["data"],
                     compare_data=other_seed)
    assert any("settings differs" in m for m in found)


# --- dataset --------------------------------------------------------------------


def test_shard_integrity_finds_a_flipped_byte(world, tmp_path):
    assert status("dataset.shard-integrity", data=world["data"]) == PASS
    data = copy(world, "data", tmp_path)
    shard = data / "train_001.bin"
    raw = bytearray(shard.read_bytes())
    raw[10] ^= 0x01
    shard.write_bytes(bytes(raw))
    [finding] = [f for r in audit("dataset.shard-integrity", data=data)
                 for f in r.findings]
    assert finding.file == shard and "differs from the manifest" in finding.message


def test_shard_integrity_finds_a_missing_shard(world, tmp_path):
    data = copy(world, "data", tmp_path)
    (data / "train_000.bin").unlink()
    assert "train_000.bin is listed in the manifest but missing" in messages(
        "dataset.shard-integrity", data=data)


def training_text(data: Path, start: int, length: int) -> str:
    tokens = np.fromfile(data / "train_000.bin", dtype="<u2")
    return load_tokenizer(data).decode(tokens[start:start + length].tolist())


def test_decontamination_clean_and_contaminated(world, tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_text(
        json.dumps({"question": "Which planet has the largest moon in the solar "
                    "system, and how large is it?", "answer": "Jupiter"}) + "\n"
        + json.dumps("Tell me about the history of the printing press in Europe.")
        + "\n")
    assert status("dataset.decontamination", data=world["data"], eval=clean) == PASS

    leaked = tmp_path / "leaked.jsonl"
    copied = training_text(world["data"], 200, 40)
    leaked.write_text(clean.read_text() + "\n"  # a blank line is skipped
                      + json.dumps({"text": copied}) + "\n")
    [result] = audit("dataset.decontamination", data=world["data"], eval=leaked)
    assert result.status == FAIL
    [finding] = result.findings
    assert finding.file == leaked and finding.line == 4
    assert finding.message.startswith("eval item 2 shares ")
    assert "first at train_000.bin token" in finding.message
    assert "1 of 3 item(s) contaminated" in result.summary
    # an agreed share of contaminated items passes
    assert status("dataset.decontamination", data=world["data"], eval=leaked,
                  max_contaminated=0.5) == PASS


def test_decontamination_reads_plain_text_and_counts_short_items(world, tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("short\n" + training_text(world["data"], 300, 30) + "\n")
    [result] = audit("dataset.decontamination", data=world["data"], eval=items)
    assert result.status == FAIL and result.findings[0].line == 2
    assert "1 item(s) shorter than 13 tokens unchecked" in result.summary


def test_decontamination_of_only_short_items_passes(world, tmp_path):
    items = tmp_path / "short.txt"
    items.write_text("one\ntwo words\n")
    [result] = audit("dataset.decontamination", data=world["data"], eval=items)
    assert result.status == PASS
    assert "0 of 0 item(s)" in result.summary and "2 item(s) shorter" in result.summary


def brute_force(tokens: list[int], items: list[list[int]], n: int) -> set:
    grams = {tuple(t[i:i + n]): k for k, t in enumerate(items)
             for i in range(len(t) - n + 1)}
    return {(i, grams[tuple(tokens[i:i + n])]) for i in range(len(tokens) - n + 1)
            if tuple(tokens[i:i + n]) in grams}


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_scan_matches_brute_force_across_chunk_boundaries(tmp_path, chunk):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 5, 3000).astype("<u2")  # a tiny alphabet: many hits
    path = tmp_path / "train_000.bin"
    tokens.tofile(path)
    items = [rng.integers(0, 5, 12).tolist() for _ in range(20)]
    items.append(tokens[1000:1010].tolist())  # copied: found at 1000
    index = NgramIndex(items, 4)
    hits = {(pos, int(index.item[entry])) for pos, entry in
            scan_shard(path, np.dtype("<u2"), index, chunk_tokens=chunk)}
    expected = brute_force(tokens.tolist(), items, 4)
    # equal n-grams of several items are reported once, under one of them
    assert {pos for pos, _ in hits} == {pos for pos, _ in expected}
    assert (1000, len(items) - 1) in expected
    assert all(tuple(tokens[p:p + 4]) in {tuple(items[k][i:i + 4])
               for i in range(len(items[k]) - 3)} for p, k in hits)


# --- model ----------------------------------------------------------------------


def test_no_pickle_in_run_and_release(world, tmp_path):
    assert status("model.no-pickle", run=world["run"], release=world["release"]) \
        == PASS
    run = copy(world, "run", tmp_path)
    (run / "checkpoints" / "last.pt").write_bytes(b"\x80\x04N.")
    [finding] = [f for r in audit("model.no-pickle", run=run) for f in r.findings]
    assert finding.file == run / "checkpoints" / "last.pt"


def test_torch_load_calls_are_found_with_ast():
    source = '''import torch
import torch as th
from torch import load as tl
torch.load("a.pt", weights_only=True)
torch.load("b.pt")
th.load(
    "c.pt",
    map_location="cpu",
)
tl("d.pt", weights_only=False)
x = "torch.load('e.pt')"  # a string, not a call
torch.load("f.pt", **options)
'''
    assert unsafe_torch_loads(source) == [5, 6, 10, 12]


def test_no_pickle_in_code(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "ok.py").write_text("import torch\ntorch.load('x', weights_only=True)\n")
    (code / "template.py").write_text("{{ cookiecutter.name }} = 1\n")
    assert status("model.no-pickle", code=code) == PASS
    (code / "bad.py").write_text("import torch\n\nstate = torch.load('x.pt')\n")
    [result] = audit("model.no-pickle", code=code)
    assert [(f.file.name, f.line) for f in result.findings] == [("bad.py", 3)]
    assert "1 not parseable (skipped)" in result.summary


def test_this_repository_passes_its_own_code_checks():
    results = run_audit(Targets(code=REPO), ["model.no-pickle",
                                             "serving.bind-and-auth",
                                             "distributed.rendezvous-private"])
    assert [r.status for r in results] == [PASS] * 3, results


# --- tokenizer ------------------------------------------------------------------


def test_vocab_pii(world, tmp_path):
    assert status("tokenizer.vocab-pii", data=world["data"], run=world["run"],
                  release=world["release"]) == PASS
    # a tokenizer whose vocabulary holds an e-mail address (pre-tokenization keeps
    # our own BPE from merging one; an imported tokenizer.json may have them)
    base = Tokenizer.load(world["data"] / "tokenizer.json")
    vocab, merges, left = dict(base.vocab), dict(base.merges), b"x"
    inverse = {v: k for k, v in vocab.items()}
    for byte in b"q.doe@mail.com":  # merges that build "xq.doe@mail.com"
        right, new_id = bytes([byte]), len(vocab)
        merges[inverse[left], inverse[right]] = new_id
        left += right
        vocab[new_id], inverse[left] = left, new_id
    leaky = Tokenizer(vocab, merges, {"<|endoftext|>": len(vocab)}, base.pattern)
    run = tmp_path / "run"
    run.mkdir()
    leaky.save(run / "tokenizer.json")
    findings = [f for r in audit("tokenizer.vocab-pii", run=run) for f in r.findings]
    # "xq.doe@mail.co" and "xq.doe@mail.com" are both addresses
    assert [f.message.split()[1] for f in findings] == [str(len(vocab) - 2),
                                                       str(len(vocab) - 1)]
    for finding in findings:
        assert "holds email xq********" in finding.message
        assert finding.file == run / "tokenizer.json" and finding.line


# --- release --------------------------------------------------------------------


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_card_complete(world, tmp_path):
    assert status("release.card-complete", release=world["release"]) == PASS
    rel = copy(world, "release", tmp_path)
    edit(rel / "README.md", "license: mit\n", "")
    edit(rel / "README.md", "## Intended use and limitations", "## Notes")
    found = messages("release.card-complete", release=rel)
    assert found == ["no `license:` line in the front matter",
                     "no '## Intended use and limitations' section"]


def test_card_without_chosen_licence(world, tmp_path):
    rel = release(world["run"], tmp_path / "unlicensed", device="cpu")
    assert messages("release.card-complete", release=rel) == [
        "no `license:` line in the front matter", "the card says **not chosen**"]


def test_hashes_match(world, tmp_path):
    assert status("release.hashes-match", release=world["release"]) == PASS
    rel = copy(world, "release", tmp_path)
    (rel / "config.json").write_text((rel / "config.json").read_text() + " ")
    (rel / "extra.pkl").write_bytes(b"\x80\x04N.")
    (rel / "eval.json").unlink()
    assert sorted(messages("release.hashes-match", release=rel)) == [
        "config.json differs from its sha256 in the manifest",
        "eval.json is listed but missing", "extra.pkl is not in the manifest"]


def test_provenance(world, tmp_path):
    assert status("release.provenance", release=world["release"]) == PASS
    rel = copy(world, "release", tmp_path)
    manifest = json.loads((rel / "manifest.json").read_text())
    manifest["git"]["dirty"] = True
    manifest["data"]["shards_match_data_manifest"] = False
    (rel / "manifest.json").write_text(json.dumps(manifest, indent=2))
    found = messages("release.provenance", release=rel)
    assert found == ["the shards differ from the data manifest's hashes",
                     "built from uncommitted changes to 000000000000"]


def test_pii_scan(world, tmp_path):
    assert status("release.pii-scan", release=world["release"]) == PASS
    rel = copy(world, "release", tmp_path)
    edit(rel / "training_config.toml", "[train]\n",
         '[train]\ncontact = "jane.doe@gmail.com"\n')
    [finding] = [f for r in audit("release.pii-scan", release=rel)
                 for f in r.findings]
    assert finding.file == rel / "training_config.toml" and finding.line
    assert finding.message == "email ja********"


# --- serving and distributed ----------------------------------------------------


def test_serving_bind_and_auth(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "serve.sh").write_text(
        "python -m llm_reference serve --run runs/tiny\n"
        "python -m llm_reference serve --run runs/tiny --host 127.0.0.1\n"
        "python -m llm_reference serve --run runs/tiny --host 0.0.0.0 \\\n"
        "    --api-key \"$KEY\"\n")
    (code / "compose.yml").write_text(
        "services:\n  llm:\n    command: python -m llm_reference serve --host 0.0.0.0"
        "\n    environment:\n      LLM_API_KEY: ${LLM_API_KEY}\n")
    (code / "README.md").write_text("never run `llm_reference serve --host 0.0.0.0`\n")
    assert status("serving.bind-and-auth", code=code) == PASS
    (code / "public.sh").write_text(
        "set -e\npython -m llm_reference serve \\\n  --run runs/tiny --host=0.0.0.0\n")
    (code / "server.toml").write_text('[serve]\nhost = "0.0.0.0"\nport = 8000\n')
    found = [(f.file.name, f.line, f.message)
             for r in audit("serving.bind-and-auth", code=code) for f in r.findings]
    assert found == [
        ("public.sh", 2, "`serve --host 0.0.0.0` without an API key"),
        ("server.toml", None, "server config host '0.0.0.0' without api_key")]


def test_distributed_rendezvous_private(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "launch.sh").write_text(
        "torchrun --nnodes 2 --rdzv-endpoint 10.0.0.5:29500 -m llm_reference train\n"
        "export MASTER_ADDR=head-node\n")
    assert status("distributed.rendezvous-private", code=code) == PASS
    (code / "job.sbatch").write_text(
        "#!/bin/bash\nexport MASTER_ADDR=0.0.0.0\n"
        "torchrun --rdzv_endpoint=8.8.8.8:29500 train.py\n")
    found = [(f.line, f.message) for r in
             audit("distributed.rendezvous-private", code=code) for f in r.findings]
    assert found == [(2, "rendezvous on 0.0.0.0"), (3, "rendezvous on 8.8.8.8")]


# --- stability ------------------------------------------------------------------


def test_anomaly_events(world, tmp_path):
    assert status("stability.anomaly-events", run=world["run"]) == PASS
    run = copy(world, "run", tmp_path)
    metrics = run / "metrics.jsonl"
    clean_lines = len(metrics.read_text().splitlines())
    events = [{"step": s, "event": e, "reason": "loss spike"} for s, e in
              [(100, "skip"), (1500, "skip"), (1600, "rollback"), (1700, "skip"),
               (2400, "skip")]]
    metrics.write_text(metrics.read_text()
                       + "".join(json.dumps(e) + "\n" for e in events[:4]))
    assert status("stability.anomaly-events", run=run) == PASS  # 3 within 1,000
    with metrics.open("a") as f:
        f.write(json.dumps(events[4]) + "\n")
    [finding] = [f for r in audit("stability.anomaly-events", run=run)
                 for f in r.findings]
    assert finding.message == "4 skip/rollback events in steps 1500-2400"
    assert finding.line == clean_lines + 2


# --- the command ----------------------------------------------------------------


def test_every_check_has_a_stable_id_and_explanation():
    assert {"data.licenses-declared", "data.reproducible-manifest",
            "dataset.shard-integrity", "dataset.decontamination", "model.no-pickle",
            "tokenizer.vocab-pii", "release.card-complete", "release.hashes-match",
            "serving.bind-and-auth"} <= set(CHECKS)
    for check in CHECKS.values():
        assert check.verifies and check.why and check.fix
        assert all(t in TARGETS for combo in check.targets for t in combo)


def test_list_explains_each_check(capsys):
    assert main(["audit", "--list"]) == 0
    out = capsys.readouterr().out
    for id in CHECKS:
        assert f"\n{id}\n" in f"\n{out}"
    assert "run:      python -m llm_reference audit --data data/stdlib --eval " \
           "eval.jsonl --only dataset.decontamination" in out


def test_table_exit_codes_and_skipped(world, tmp_path, capsys):
    assert main(["audit", "--release", str(world["release"]), "--only",
                 "release.hashes-match", "dataset.shard-integrity"]) == 0
    out = capsys.readouterr().out
    assert "release.hashes-match" in out and "pass" in out
    assert "needs --data DIR" in out and "skipped" in out
    assert "1 passed, 0 failed, 1 skipped" in out

    rel = copy(world, "release", tmp_path)
    (rel / "weights.pt").write_bytes(b"\x80\x04N.")
    assert main(["audit", "--release", str(rel), "--only", "model.no-pickle"]) == 1
    out = capsys.readouterr().out
    assert "fail" in out and "safetensors" in out  # the finding and what to do


@pytest.mark.parametrize("argv, says", [
    (["--data", "no/such/folder"], "--data no/such/folder: no such folder"),
    (["--eval", "missing.jsonl"], "--eval missing.jsonl: no such file"),
    (["--only", "data.nope"], "--only data.nope: no such check"),
])
def test_bad_input_exits_2_with_one_line(argv, says, capsys):
    assert main(["audit", *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {says}" + err.split(says, 1)[1]
    assert err.count("\n") == 1


def test_json_report(world, tmp_path):
    out = tmp_path / "audit.json"
    assert main(["audit", "--data", str(world["data"]), "--format", "json", "--out",
                 str(out), "--only", "dataset.shard-integrity",
                 "data.licenses-declared"]) == 0
    report = json.loads(out.read_text())
    assert report["summary"] == {"pass": 2, "fail": 0, "skipped": 0}
    assert [r["check"] for r in report["results"]] == [
        "dataset.shard-integrity", "data.licenses-declared"]


def test_sarif_report_structure(world, tmp_path, capsys):
    data = copy(world, "data", tmp_path)
    shard = data / "train_000.bin"
    shard.write_bytes(b"\x00\x00" + shard.read_bytes()[2:] + b"")
    (data / "manifest.json").write_text(
        (data / "manifest.json").read_text().replace('"CC0-1.0"', '"unknown"', 1))
    assert main(["audit", "--data", str(data), "--format", "sarif", "--only",
                 "dataset.shard-integrity", "data.licenses-declared"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    [run] = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "llm-reference-audit"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert rule_ids == list(CHECKS)
    assert all(r["shortDescription"]["text"] and r["help"]["text"]
               for r in driver["rules"])
    by_rule = {r["ruleId"]: r for r in run["results"]}
    assert set(by_rule) == {"dataset.shard-integrity", "data.licenses-declared"}
    for result in run["results"]:
        assert result["level"] == "error" and result["message"]["text"]
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        [location] = result["locations"]
        assert location["physicalLocation"]["artifactLocation"]["uri"]
    shard_uri = by_rule["dataset.shard-integrity"]["locations"][0][
        "physicalLocation"]["artifactLocation"]["uri"]
    assert shard_uri.endswith("/data/train_000.bin")
    licence = by_rule["data.licenses-declared"]["locations"][0]["physicalLocation"]
    assert licence["artifactLocation"]["uri"].endswith("/data/manifest.json")
    assert licence["region"]["startLine"] >= 1
