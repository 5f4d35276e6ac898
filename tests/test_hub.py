"""Hub datasets (hf:ORG/NAME[:GLOB] at --revision), read through huggingface_hub
in offline mode from a cache folder that the test writes: the real code path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llm_reference.__main__ import main

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(tmp_path: Path) -> Path:
    """A huggingface_hub cache holding dataset org/tiny at COMMIT: two parquet
    shards under sample/ and a README that is not data."""
    cache = tmp_path / "hub"
    repo = cache / "datasets--org--tiny"
    snapshot = repo / "snapshots" / COMMIT
    (snapshot / "sample").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (snapshot / "README.md").write_text("# tiny\n")
    for part in range(2):
        texts = [f"story {part}-{i}: " + "the cat sat on the mat and looked " * (3 + i)
                 for i in range(30)]
        pq.write_table(pa.table({"text": texts}), snapshot / "sample" /
                       f"{part:03d}.parquet")
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
