"""Hub datasets (hf:ORG/NAME[:GLOB] at --revision), read through huggingface_hub
in offline mode from a cache folder that the test writes: the real code path."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llm_reference.__main__ import main

COMMIT = "0123456789abcdef0123456789abcdef01234567"
WORDS = ("the of and to with that have be cat dog bird river town mill boat grain "
         "salt cloth news winter water children shore museum valley people worked "
         "walked looked found made long old new small green quiet early late slowly "
         "across under over near far").split()


def hub_cache(tmp_path: Path, repo_id: str = "org/tiny", folder: str = "sample",
              files: int = 2, docs: int = 30) -> Path:
    """A huggingface_hub cache holding dataset `repo_id` at COMMIT: parquet files
    of `docs` documents each under `folder`, and a README that is not data."""
    cache = tmp_path / "hub"
    repo = cache / f"datasets--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    (snapshot / folder).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (snapshot / "README.md").write_text("# tiny\n")
    rng = random.Random(0)
    for part in range(files):
        texts = [" ".join(" ".join(rng.choices(WORDS, k=12)).capitalize() + "."
                          for _ in range(8)) for _ in range(docs)]
        pq.write_table(pa.table({"text": texts}), snapshot / folder /
                       f"{part:03d}_00000.parquet")
    return cache


def prepare_offline(cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
           "HF_HOME": str(cache.parent / "hf_home")}
    return subprocess.run([sys.executable, "-m", "llm_reference", "prepare",
                           "--workers", "1", "--vocab-size", "300", *args],
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_hub_dataset_is_read_at_its_pinned_revision(tmp_path):
    cache, out = hub_cache(tmp_path), tmp_path / "out"
    done = prepare_offline(cache, "--source", "hf:org/tiny:sample/*.parquet",
                           "--revision", COMMIT, "--license", "CC-BY-4.0",
                           "--out", str(out))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    (source,) = manifest["sources"]
    assert source["id"] == f"hf:org/tiny:sample/*.parquet@{COMMIT}"
    assert source["documents"] == 60 and source["kind"] == "hub"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["documents"]["train"] + meta["documents"]["val"] == 60


def test_an_unknown_revision_is_one_line_and_exit_2(tmp_path):
    done = prepare_offline(hub_cache(tmp_path), "--source", "hf:org/tiny",
                           "--revision", "f" * 40, "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "hf:org/tiny" in done.stderr


def test_a_hub_source_without_revision_is_refused(tmp_path, capsys):
    assert main(["prepare", "--source", "hf:org/tiny", "--out",
                 str(tmp_path / "out")]) == 2
    assert "--revision" in capsys.readouterr().err


def test_the_fineweb_edu_recipe_reads_only_what_tokens_needs(tmp_path):
    cache = hub_cache(tmp_path, "HuggingFaceFW/fineweb-edu", "sample/10BT", files=3,
                      docs=300)  # 180 kB each: the third is never needed
    out = tmp_path / "out"
    done = prepare_offline(cache, "--source", "fineweb-edu", "--revision", COMMIT,
                           "--tokens", "3000", "--shard-tokens", "1000",
                           "--tokenizer-sample", "10k", "--out", str(out))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    (source,) = manifest["sources"]
    assert source["license"] == "ODC-By-1.0" and source["documents"] < 600
    assert manifest["settings"]["quality_filters"] is True  # a prose recipe
    assert json.loads((out / "meta.json").read_text())["train_tokens"] == 3000


def test_unknown_recipes_are_one_line_errors(tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    assert main(["prepare", "--source", "finewebedu", *out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tinystories" in err


def test_recipes_expand_to_pinned_sources():
    from llm_reference.data import PrepareSettings
    from llm_reference.recipes import RECIPES, expand
    from llm_reference.sources import RECIPE_NAMES

    assert tuple(RECIPES) == RECIPE_NAMES  # sources.py lists them in its errors
    shakespeare = expand(PrepareSettings(sources=("tinyshakespeare",)))
    assert shakespeare.sha256s == (RECIPES["tinyshakespeare"].sha256,)
    assert shakespeare.separator == "\n\n" and shakespeare.quality_filters is False
    assert "6f9487a6" in shakespeare.sources[0]  # the URL names a commit
    stories = expand(PrepareSettings(sources=("tinystories",), revision="abc",
                                     quality_filters=False))
    assert stories.quality_filters is False and stories.licenses == (
        "CDLA-Sharing-1.0",)
    assert all(r.license and r.citation and r.size for r in RECIPES.values())
    hub_recipes = [r for r in RECIPES.values() if r.source.startswith("hf:")]
    assert hub_recipes and all(len(r.revision) == 40 for r in hub_recipes)
    assert expand(PrepareSettings(sources=("fineweb-edu",))).revision == \
        RECIPES["fineweb-edu"].revision
