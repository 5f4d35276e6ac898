"""The data pipeline: cleaning, dedup, split, shards, meta, Batches and the CLI."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from llm_reference import data
from llm_reference.__main__ import main
from llm_reference.cleaning import NearDuplicates, clean, normalize, word_shingles
from llm_reference.compliance import SourceRecord
from llm_reference.data import Batches, load_meta, load_tokenizer, split_documents
from llm_reference.errors import UserError
from llm_reference.shards import Position, ShardWriter, token_dtype
from llm_reference.sources import Document

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
         "omicron pi rho sigma tau upsilon phi chi psi omega").split()


def make_text(seed: int, words: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "\n"


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A folder of 40 distinct documents, plus an exact duplicate, a near duplicate,
    an empty file and one with an email address."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(40):
        (folder / f"doc{i:02d}.txt").write_text(make_text(i))
    (folder / "dup.txt").write_text(make_text(3))
    (folder / "near.txt").write_text(make_text(5).replace("alpha", "ALPHA", 1))
    (folder / "empty.txt").write_text("  \n")
    (folder / "mail.txt").write_text("write to someone@python.org\n" + make_text(99))
    return folder


def prepare_cli(*args: str) -> int:
    return main(["prepare", "--workers", "1", *args])


# --- cleaning ---------------------------------------------------------------------


def test_normalize_is_nfc_with_unix_newlines():
    assert normalize("cafe\u0301\r\nline\rend") == "caf\u00e9\nline\nend"


def test_word_shingles():
    assert word_shingles("a b c d e f", n=5) == {b"a b c d e", b"b c d e f"}
    assert word_shingles("just two", n=5) == {b"just two"}
    assert word_shingles("  ...  ") == set()


def test_near_duplicates_catch_small_edits_only():
    near = NearDuplicates(threshold=0.85)
    original = make_text(1, words=400)
    words = original.split()
    words[200] = "CHANGED"
    assert not near.is_duplicate(original)
    assert near.is_duplicate(" ".join(words))
    assert not near.is_duplicate(make_text(2, words=400))
    assert not near.is_duplicate("")  # no words: nothing to compare


@pytest.mark.parametrize("size", [1, 7, 300, 9000])
def test_signature_is_datasketchs_minhash(size):
    from datasketch import MinHash

    from llm_reference.cleaning import MINHASH_SEED, NUM_PERM, signature

    rng = random.Random(size)
    shingles = {rng.randbytes(rng.randint(1, 40)) for _ in range(size)}
    peer = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, scheme="affine32")
    peer.update_batch(list(shingles))
    ours = signature(shingles)
    assert ours.dtype == peer.hashvalues.dtype
    assert np.array_equal(ours, peer.hashvalues)
    assert signature(set()) is None


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.85, 0.95])
def test_lsh_bands_are_datasketchs(threshold):
    from datasketch import MinHashLSH

    from llm_reference.cleaning import lsh_bands

    peer = MinHashLSH(threshold=threshold, num_perm=256, weights=(0.2, 0.8))
    assert lsh_bands(threshold, 256) == (peer.b, peer.r)


def test_near_duplicates_decide_as_datasketchs_lsh():
    """The same documents flagged, in order, as datasketch's MinHashLSH (the peer)
    flags with the same signatures and the same MinHash confirmation."""
    from datasketch import LeanMinHash, MinHashLSH

    from llm_reference.cleaning import signature

    rng = random.Random(0)
    texts = []
    for i in range(300):
        if texts and rng.random() < 0.4:  # an edited copy of an earlier text
            words = rng.choice(texts).split()
            for _ in range(rng.randint(1, 4)):
                words[rng.randrange(len(words))] = rng.choice(WORDS).upper()
            texts.append(" ".join(words))
        else:
            texts.append(make_text(1000 + i, words=rng.randint(50, 400)))
    ours = NearDuplicates(threshold=0.85)
    lsh = MinHashLSH(threshold=0.85, num_perm=256, weights=(0.2, 0.8))
    kept: list[LeanMinHash] = []
    flags = {"ours": [], "peer": []}
    for text in texts:
        flags["ours"].append(ours.is_duplicate(text))
        peer = LeanMinHash(seed=1, hashvalues=signature(word_shingles(text)),
                           scheme="affine32")
        duplicate = any(kept[k].jaccard(peer) >= 0.85 for k in lsh.query(peer))
        if not duplicate:
            lsh.insert(len(kept), peer)
            kept.append(peer)
        flags["peer"].append(duplicate)
    assert flags["ours"] == flags["peer"]
    copies = sum(text.lower() != text for text in texts)
    assert 20 < sum(flags["ours"]) < copies  # some copies are near, some not


def test_deduplicating_does_not_import_datasketch():
    """Signatures and LSH are ours: datasketch's import (scipy) would cost each
    process of `prepare` ~0.4 s of CPU, a worker's most of all."""
    code = ("import sys; from llm_reference.cleaning import NearDuplicates, inspect; "
            "seen = inspect('one two three four five six seven'); "
            "assert NearDuplicates().is_new(seen.signature); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('datasketch', 'scipy')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_clean_counts_what_it_removes_and_redacts():
    docs = [Document(t, "s", f"p{i}") for i, t in enumerate([
        make_text(1), "   ", make_text(1), make_text(2),
        make_text(2).replace("beta", "BETA", 1),
        "mail me: ann@python.org " + make_text(3),
    ])]
    records = {"s": SourceRecord("s", "local", "MIT")}
    kept = list(clean(docs, records))
    assert [d.path for d in kept] == ["p0", "p3", "p5"]  # first copies, in order
    r = records["s"]
    assert (r.empty, r.exact_duplicates, r.near_duplicates) == (1, 1, 1)
    assert r.redacted == {"email": 1} and "[EMAIL]" in kept[2].text
    assert r.kept_documents == 3


def test_clean_can_keep_near_duplicates_and_pii():
    near_copy = make_text(2).replace("beta", "BETA", 1) + "x@python.org"
    docs = [Document(make_text(2), "s", "a"), Document(near_copy, "s", "b")]
    records = {"s": SourceRecord("s", "local", "MIT")}
    kept = list(clean(docs, records, near_dup_threshold=None, redact=False))
    assert len(kept) == 2 and "x@python.org" in kept[1].text


# --- split ------------------------------------------------------------------------


def test_split_is_deterministic_and_stable_when_documents_are_added():
    docs = [Document(make_text(i, 20), "s", str(i)) for i in range(200)]
    train, val = split_documents(docs, 0.1, seed=7)
    assert 5 <= len(val) <= 40 and len(train) + len(val) == 200
    assert split_documents(docs, 0.1, seed=7) == (train, val)
    more = docs + [Document(make_text(i, 20), "s", str(i)) for i in range(200, 300)]
    _, val_more = split_documents(more, 0.1, seed=7)
    assert set(d.path for d in val) <= set(d.path for d in val_more)
    _, val_other_seed = split_documents(docs, 0.1, seed=8)
    assert val_other_seed != val


def test_split_puts_at_least_one_document_in_val():
    docs = [Document(make_text(i, 20), "s", str(i)) for i in range(3)]
    train, val = split_documents(docs, 0.001, seed=0)
    assert len(val) == 1 and len(train) == 2
    assert split_documents(docs, 0.0, seed=0) == (docs, [])
    with pytest.raises(UserError, match="too few"):
        split_documents(docs[:1], 0.1, seed=0)


# --- shards -----------------------------------------------------------------------


def test_token_dtype():
    assert token_dtype(65536) == np.dtype("<u2")
    assert token_dtype(65537) == np.dtype("<u4")


def write_all(out, split, chunks, shard_tokens, start=None, limit=None):
    writer = ShardWriter(out, split, np.dtype("<u2"), shard_tokens, start, limit)
    positions = [vars(writer.position).copy() for n, ids in enumerate(chunks)
                 if writer.add(n, ids)]
    return writer.finish(), positions


def test_shard_writer_cuts_a_stream_into_fixed_size_files(tmp_path):
    chunks = [np.arange(i * 7, i * 7 + 7, dtype=np.uint32) for i in range(5)]  # 35
    shards, positions = write_all(tmp_path, "train",
                                  chunks + [np.array([], np.uint32)], 10)
    assert shards == [{"file": f"train_{i:03d}.bin", "tokens": n}
                      for i, n in enumerate([10, 10, 10, 5])]
    tokens = np.concatenate([np.fromfile(tmp_path / s["file"], dtype="<u2")
                             for s in shards])
    assert tokens.tolist() == list(range(35))
    assert sorted(p.name for p in tmp_path.iterdir()) == [s["file"] for s in shards]
    # shard 1 ends after 3 ids of chunk 1, shard 2 after 6 of chunk 2, shard 3 after
    # 2 of chunk 4
    assert [(p["chunk"], p["offset"]) for p in positions] == [(1, 3), (2, 6), (4, 2)]
    assert write_all(tmp_path, "val", [], 10)[0] == []


def test_shard_writer_resumes_from_a_position_with_the_same_bytes(tmp_path):
    chunks = [np.arange(i * 7, i * 7 + 7, dtype=np.uint32) for i in range(5)]
    whole, positions = write_all(tmp_path / "a", "train", chunks, 10)
    expected = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    second = Position(**positions[0])  # stopped after one shard
    (tmp_path / "b").mkdir()
    for shard in second.shards:
        (tmp_path / "b" / shard["file"]).write_bytes(expected[shard["file"]])
    resumed, _ = write_all(tmp_path / "b", "train", chunks, 10, start=second)
    assert resumed == whole
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()} == expected


def test_shard_writer_stops_at_its_limit(tmp_path):
    chunks = [np.arange(7, dtype=np.uint32)] * 5
    shards, _ = write_all(tmp_path, "train", chunks, 10, limit=23)
    assert [s["tokens"] for s in shards] == [10, 10, 3]


def test_an_interrupted_shard_never_appears_under_its_name(tmp_path):
    writer = ShardWriter(tmp_path, "train", np.dtype("<u2"), 10)
    writer.add(0, np.arange(15, dtype=np.uint32))
    writer.abort()
    assert [p.name for p in tmp_path.iterdir()] == ["train_000.bin"]  # full one only


# --- prepare, end to end ----------------------------------------------------------


@pytest.fixture(scope="module")
def stdlib_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stdlib") / "data"
    assert prepare_cli("--max-bytes", "200k", "--vocab-size", "512", "--val-fraction",
                       "0.2", "--shard-tokens", "30000", "--out", str(out)) == 0
    return out


def test_prepare_writes_meta_shards_tokenizer_and_manifest(stdlib_data):
    meta = load_meta(stdlib_data)
    assert meta["vocab_size"] == 512 and meta["dtype"] == "uint16"
    tokenizer = load_tokenizer(stdlib_data)
    assert meta["eot_id"] == tokenizer.special_tokens["<|endoftext|>"]
    for split in ("train", "val"):
        shards = meta["shards"][split]
        assert shards and sum(s["tokens"] for s in shards) == meta[f"{split}_tokens"]
    assert len(meta["shards"]["train"]) > 1  # --shard-tokens 30000
    first = np.fromfile(stdlib_data / "train_000.bin", dtype="<u2")
    assert first[0] == meta["eot_id"]  # every document starts after <|endoftext|>
    manifest = json.loads((stdlib_data / "manifest.json").read_text())
    (source,) = manifest["sources"]
    assert source["license"] == "PSF-2.0" and 0 < source["bytes"] <= 200_000
    assert manifest["settings"]["max_bytes"] == 200_000
    assert set(manifest["outputs_sha256"]) == {"tokenizer.json"} | {
        s["file"] for split in ("train", "val") for s in meta["shards"][split]}
    assert not list(stdlib_data.glob(".*"))  # no temporary files left


def test_prepare_keeps_each_document_whole_in_one_split(corpus, tmp_path):
    out = tmp_path / "out"
    assert prepare_cli("--source", str(corpus), "--license", "CC0-1.0",
                       "--vocab-size", "300", "--val-fraction", "0.25",
                       "--out", str(out)) == 0
    meta, tokenizer = load_meta(out), load_tokenizer(out)
    decoded = {}
    for split in ("train", "val"):
        ids = np.concatenate([np.fromfile(out / s["file"], dtype="<u2")
                              for s in meta["shards"][split]])
        text = tokenizer.decode(ids.tolist())
        decoded[split] = text.split("<|endoftext|>")[1:]
        assert len(decoded[split]) == meta["documents"][split]
    expected = {make_text(i) for i in range(40)} | {  # first copies kept
        "write to [EMAIL]\n" + make_text(99)}
    assert set(decoded["train"]) | set(decoded["val"]) == expected
    assert not set(decoded["train"]) & set(decoded["val"])
    manifest = json.loads((out / "manifest.json").read_text())
    removed = manifest["totals"]["removed"]
    assert removed == {"empty": 1, "exact_duplicates": 1, "near_duplicates": 1}
    assert manifest["totals"]["redacted"] == {"email": 1}
    assert manifest["sources"][0]["license"] == "CC0-1.0"
    assert manifest["warnings"] == []


@pytest.mark.slow
def test_prepare_is_reproducible_for_any_number_of_workers(tmp_path):
    args = ["--max-bytes", "120k", "--vocab-size", "400"]
    assert main(["prepare", *args, "--workers", "1", "--out", str(tmp_path / "a")]) == 0
    assert main(["prepare", *args, "--workers", "2", "--out", str(tmp_path / "b")]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        a, b = tmp_path / "a" / name, tmp_path / "b" / name
        assert a.read_bytes() == b.read_bytes(), name


def test_unknown_license_is_warned_about(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare_cli("--source", str(corpus), "--vocab-size", "300",
                       "--out", str(out)) == 0
    assert "no declared license" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sources"][0]["license"] == "unknown"
    assert len(manifest["warnings"]) == 1


def test_summary_table_is_printed(corpus, tmp_path, capsys):
    assert prepare_cli("--source", str(corpus), "--license", "MIT", "--vocab-size",
                       "300", "--out", str(tmp_path / "out")) == 0
    out = capsys.readouterr().out
    for word in ("source", "docs", "empty", "exact", "near", "redacted", "tokens",
                 "shard", "time"):
        assert word in out


def test_reprepare_removes_stale_shards(corpus, tmp_path):
    out = tmp_path / "out"
    common = ["--source", str(corpus), "--license", "MIT", "--vocab-size", "300"]
    assert prepare_cli(*common, "--shard-tokens", "2000", "--out", str(out)) == 0
    many = len(list(out.glob("train_*.bin")))
    assert prepare_cli(*common, "--out", str(out)) == 0
    assert many > 1 and [p.name for p in out.glob("train_*.bin")] == ["train_000.bin"]
    load_meta(out)


def test_interrupted_prepare_leaves_a_folder_marked_incomplete(corpus, tmp_path,
                                                               monkeypatch):
    out = tmp_path / "out"
    common = ["--source", str(corpus), "--license", "MIT", "--vocab-size", "300",
              "--out", str(out)]
    assert prepare_cli(*common) == 0

    work = data.encoding.work

    def broken(texts, job):  # Ctrl-C while encoding
        if job.tokenizer is not None:
            raise KeyboardInterrupt
        return work(texts, job)

    monkeypatch.setattr(data.encoding, "work", broken)
    assert prepare_cli(*common, "--workers", "1") == 130  # the answer to Ctrl-C
    assert not (out / "meta.json").exists()
    assert not list(out.glob(".*"))  # no temporary shard left behind
    with pytest.raises(UserError, match="not a prepared data folder"):
        load_meta(out)


# --- loading and batches ----------------------------------------------------------


def test_batches_are_shifted_windows_from_the_data(stdlib_data):
    meta = load_meta(stdlib_data)
    batches = Batches(stdlib_data, "train", batch_size=4, context_length=32, seed=1)
    x, y = batches.get(0)
    assert x.shape == y.shape == (4, 32)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    tokens = np.concatenate([np.fromfile(stdlib_data / s["file"], dtype="<u2")
                             for s in meta["shards"]["train"]])
    haystack = tokens.tobytes()
    for row in torch.cat([x, y[:, -1:]], dim=1):  # each window is real, contiguous
        assert row.numpy().astype("<u2").tobytes() in haystack


def test_batches_depend_only_on_seed_rank_and_index(stdlib_data):
    def batch(seed=1, rank=0, index=0):
        b = Batches(stdlib_data, "train", 8, 16, seed=seed, rank=rank, world_size=2)
        return b.get(index)[0]

    a = Batches(stdlib_data, "train", 8, 16, seed=1, world_size=2)
    for i in (5, 0, 3):  # any order: no hidden state
        a.get(i)
    assert torch.equal(a.get(3)[0], batch(index=3))
    assert not torch.equal(batch(index=0), batch(index=1))
    assert not torch.equal(batch(rank=0), batch(rank=1))
    assert not torch.equal(batch(seed=1), batch(seed=2))


def test_batches_cover_windows_across_shards(stdlib_data):
    batches = Batches(stdlib_data, "train", batch_size=64, context_length=8, seed=0)
    assert len(batches.shards) > 1
    seen = set()
    for i in range(20):
        x, _ = batches.get(i)
        seen.update(map(tuple, x.tolist()))
    owner = [{tuple(s[i:i + 8].tolist()) for i in range(len(s) - 8)}
             for s in batches.shards]
    assert all(any(w in windows for w in seen) for windows in owner)


def test_split_shorter_than_a_window_is_a_user_error(stdlib_data):
    val_tokens = load_meta(stdlib_data)["val_tokens"]
    with pytest.raises(UserError, match="context_length"):
        Batches(stdlib_data, "val", 1, context_length=val_tokens, seed=0)
    Batches(stdlib_data, "val", 1, context_length=val_tokens - 1, seed=0)
    with pytest.raises(UserError, match="rank"):
        Batches(stdlib_data, "train", 1, 8, seed=0, rank=2, world_size=2)


def test_uint32_shards_load_for_large_vocabularies(tmp_path):
    tokens = np.arange(100_000, 100_100, dtype="<u4")
    tokens.tofile(tmp_path / "train_000.bin")
    meta = {"vocab_size": 100_200, "dtype": "uint32", "train_tokens": 100,
            "val_tokens": 0, "tokenizer": "tokenizer.json",
            "shards": {"train": [{"file": "train_000.bin", "tokens": 100}], "val": []}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    x, y = Batches(tmp_path, "train", 2, 10, seed=0).get(0)
    assert x.min() >= 100_000 and torch.equal(x[:, 1:], y[:, :-1])


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:-1]), "truncated or corrupt"),
    (lambda p: p.write_bytes(p.read_bytes()[:-2]), "truncated or corrupt"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\0\0"), "truncated or corrupt"),
    (lambda p: p.unlink(), "missing"),
])
def test_damaged_shards_are_user_errors(stdlib_data, tmp_path, damage, message):
    copy = shutil.copytree(stdlib_data, tmp_path / "copy")
    damage(copy / "val_000.bin")
    with pytest.raises(UserError, match=message):
        Batches(copy, "train", 1, 8, seed=0)


def test_corrupt_meta_is_a_user_error(tmp_path):
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        load_meta(tmp_path)
    (tmp_path / "meta.json").write_text('{"dtype": "uint16"}')
    with pytest.raises(UserError, match="lacks shards, tokenizer, vocab_size"):
        load_meta(tmp_path)


def test_truncated_shard_through_the_cli(stdlib_data, tmp_path, capsys):
    """`train` loads the shards first: a damaged one is a one-line error, exit 2."""
    copy = shutil.copytree(stdlib_data, tmp_path / "copy")
    shard = copy / "train_000.bin"
    shard.write_bytes(shard.read_bytes()[:-3])
    assert main(["train", "--data", str(copy), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "train_000.bin is truncated or corrupt" in err and err.count("\n") == 1


# --- the command line -------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llm_reference", "prepare", *args],
                          capture_output=True, text=True)


def test_help_explains_every_option():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--source", "--sha256", "--license", "--vocab-size", "--pattern",
                   "--val-fraction", "--max-bytes", "--near-dup-threshold",
                   "--no-near-dup", "--no-redact", "--workers", "--seed", "--out",
                   "--stdlib-tests", "--shard-tokens", "--cache-dir"):
        assert option in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--vocab-size", "100"], "--vocab-size 100 is too small"),
    (["--source", "/no/such/folder"], "does not exist"),
    (["--source", "https://example.com/x.txt"], "--sha256"),
    (["--val-fraction", "1.5"], "--val-fraction"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args,
                                                         message):
    out = tmp_path / "out"
    assert prepare_cli(*args, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_empty_input_is_a_user_error(tmp_path, capsys):
    (tmp_path / "blank.txt").write_text("\n\n   \n")
    out = tmp_path / "out"
    assert prepare_cli("--source", str(tmp_path / "blank.txt"), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "no text left" in err and err.count("\n") == 1
    assert not (out / "meta.json").exists()


def test_unwritable_output_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should go")
    result = run_cli("--max-bytes", "10k", "--out", str(blocker / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot write to output folder")
    assert result.stderr.count("\n") == 1


def test_checksum_mismatch_through_the_cli(tmp_path):
    body = b"some text\n" * 100

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/t.txt"
        wrong = "ab" * 32
        result = run_cli("--source", url, "--sha256", wrong, "--cache-dir",
                         str(tmp_path / "cache"), "--out", str(tmp_path / "out"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert url in result.stderr and wrong in result.stderr
    assert hashlib.sha256(body).hexdigest() in result.stderr
    assert not (tmp_path / "out").exists()


# --- streaming, resuming, encoders ------------------------------------------------


@pytest.fixture
def big_corpus(tmp_path) -> Path:
    """About 600 kB of distinct documents in one .jsonl.gz file."""
    import gzip

    path = tmp_path / "big.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i in range(200):
            f.write(json.dumps({"text": make_text(1000 + i, words=500)}) + "\n")
    return path


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.suffix == ".bin" or p.name == "tokenizer.json"}


def test_a_killed_prepare_resumes_to_the_same_bytes(big_corpus, tmp_path):
    args = ["prepare", "--source", str(big_corpus), "--license", "MIT",
            "--vocab-size", "300", "--shard-tokens", "20000", "--no-near-dup",
            "--workers", "1"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-m", "llm_reference", *args,
                              "--out", str(out)], stderr=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL)
    while not (out / "progress.json").exists() and child.poll() is None:
        time.sleep(0.005)
    child.kill()
    child.wait()
    assert not (out / "meta.json").exists(), "finished before it could be killed"
    first = (out / "train_000.bin").stat().st_mtime_ns
    assert main([*args, "--out", str(out)]) == 0
    assert (out / "train_000.bin").stat().st_mtime_ns == first  # kept, not redone
    assert shard_bytes(out) == shard_bytes(tmp_path / "whole")
    assert not list(out.glob(".*")) and not (out / "progress.json").exists()


@pytest.mark.slow
def test_a_streamed_corpus_gives_the_same_bytes_for_any_number_of_workers(tmp_path):
    """Larger than the tokenizer sample: cleaned and encoded in the workers as it
    streams, duplicates decided in order in the main process."""
    import gzip

    texts = [make_text(2000 + i, words=400) for i in range(120)]
    texts[50] = texts[10]  # an exact duplicate
    texts[60] = texts[20].replace("beta", "BETA", 1)  # a near duplicate
    texts[70] = "write to ann@python.org " + texts[70]  # PII
    corpus = tmp_path / "c.jsonl.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"text": text}) + "\n")
    args = ["prepare", "--source", str(corpus), "--license", "MIT", "--vocab-size",
            "300", "--tokenizer-sample", "60k", "--shard-tokens", "30000"]
    for workers in ("1", "2"):
        assert main([*args, "--workers", workers, "--out",
                     str(tmp_path / workers)]) == 0
    one, two = tmp_path / "1", tmp_path / "2"
    assert shard_bytes(one) == shard_bytes(two) and len(shard_bytes(one)) > 3
    # a given tokenizer: one pass (read, clean, encode), the same shards
    assert main([*args, "--workers", "2", "--tokenizer", str(one / "tokenizer.json"),
                 "--out", str(tmp_path / "given")]) == 0
    assert shard_bytes(tmp_path / "given") == shard_bytes(one)
    for name in ("meta.json", "manifest.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    removed = json.loads((one / "manifest.json").read_text())["sources"][0]["removed"]
    assert removed["exact_duplicates"] == 1 and removed["near_duplicates"] == 1


@pytest.mark.parametrize("val_fraction", ["0.2", "0.001"])
def test_a_given_tokenizer_splits_a_small_corpus_as_a_trained_one(corpus, tmp_path,
                                                                  val_fraction):
    """With --tokenizer, prepare makes one pass and splits as the batches stream
    past; the corpus fits in memory, so val must come out as in the two-pass run,
    even when no document hashes to val (0.001: the smallest key goes)."""
    common = ["--source", str(corpus), "--license", "MIT", "--val-fraction",
              val_fraction]
    assert prepare_cli(*common, "--vocab-size", "300", "--out",
                       str(tmp_path / "trained")) == 0
    assert prepare_cli(*common, "--tokenizer", str(tmp_path / "trained" /
                                                    "tokenizer.json"),
                       "--out", str(tmp_path / "given")) == 0
    trained, given = load_meta(tmp_path / "trained"), load_meta(tmp_path / "given")
    assert given["documents"] == trained["documents"]
    assert trained["documents"]["val"] >= 1
    assert shard_bytes(tmp_path / "given") == shard_bytes(tmp_path / "trained")


def test_a_given_tokenizer_on_blank_input_is_a_user_error(corpus, tmp_path, capsys):
    assert prepare_cli("--source", str(corpus), "--vocab-size", "300", "--out",
                       str(tmp_path / "trained")) == 0
    (tmp_path / "blank.txt").write_text("\n\n   \n")
    out = tmp_path / "out"
    capsys.readouterr()
    assert prepare_cli("--source", str(tmp_path / "blank.txt"), "--tokenizer",
                       str(tmp_path / "trained" / "tokenizer.json"),
                       "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "no text left" in err and err.count("\n") == 1
    assert not (out / "meta.json").exists()


def test_the_main_process_shares_the_work_and_keeps_the_order():
    from llm_reference import encoding

    workers = encoding.Workers(2)  # this process and one in the pool
    try:
        results = list(workers.map(os.getpid, ((i, ()) for i in range(50))))
    finally:
        workers.close()
    assert [key for key, _ in results] == list(range(50))
    pids = {pid for _, pid in results}
    assert os.getpid() in pids and len(pids) == 2


@pytest.mark.parametrize("count", [1, 2])
def test_an_error_in_a_batch_comes_back_in_its_place(count):
    from llm_reference import encoding

    workers = encoding.Workers(count)
    try:
        results = workers.map(int, ((i, (text,)) for i, text in
                                    enumerate(["1", "2", "x", "4"] + ["5"] * 20)))
        assert [next(results), next(results)] == [(0, 1), (1, 2)]
        with pytest.raises(ValueError, match="'x'"):
            next(results)
    finally:
        workers.close()


def test_hf_encoder_writes_the_same_shards(big_corpus, tmp_path):
    common = ["--source", str(big_corpus), "--license", "MIT", "--vocab-size", "400",
              "--no-near-dup", "--shard-tokens", "50000"]
    assert prepare_cli(*common, "--out", str(tmp_path / "py")) == 0
    assert prepare_cli(*common, "--encoder", "hf", "--out", str(tmp_path / "hf")) == 0
    assert shard_bytes(tmp_path / "py") == shard_bytes(tmp_path / "hf")


def test_a_corpus_larger_than_the_sample_streams_and_stops_at_tokens(big_corpus,
                                                                     tmp_path):
    out = tmp_path / "out"
    assert prepare_cli("--source", str(big_corpus), "--license", "MIT",
                       "--vocab-size", "300", "--tokenizer-sample", "50k",
                       "--tokens", "30k", "--shard-tokens", "20000", "--out",
                       str(out)) == 0
    meta = load_meta(out)
    assert meta["train_tokens"] == 30_000
    assert [s["tokens"] for s in meta["shards"]["train"]] == [20_000, 10_000]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sources"][0]["documents"] < 200  # stopped reading early


# --- slices and merge -------------------------------------------------------------


def test_slices_merge_into_the_whole_corpus(corpus, tmp_path, capsys):
    common = ["--source", str(corpus), "--license", "MIT", "--no-near-dup",
              "--val-fraction", "0.25"]
    assert prepare_cli(*common, "--vocab-size", "300", "--out",
                       str(tmp_path / "whole")) == 0
    tokenizer = str(tmp_path / "whole" / "tokenizer.json")
    for i in range(3):
        assert prepare_cli(*common, "--slice", f"{i}/3", "--tokenizer", tokenizer,
                           "--out", str(tmp_path / f"s{i}")) == 0
    slices = [str(tmp_path / f"s{i}") for i in range(3)]
    assert main(["merge", *slices, "--out", str(tmp_path / "merged")]) == 0
    whole, merged = load_meta(tmp_path / "whole"), load_meta(tmp_path / "merged")
    assert merged["train_tokens"] + merged["val_tokens"] == (
        whole["train_tokens"] + whole["val_tokens"])
    assert sum(merged["documents"].values()) == sum(whole["documents"].values())
    Batches(tmp_path / "merged", "train", 2, 8, seed=0).get(0)

    capsys.readouterr()
    assert main(["merge", slices[0], slices[0], slices[2], "--out",
                 str(tmp_path / "bad")]) == 2
    assert "exactly once" in capsys.readouterr().err
    assert prepare_cli(*common, "--vocab-size", "280", "--slice", "1/3",
                       "--out", str(tmp_path / "other")) == 0
    assert main(["merge", slices[0], str(tmp_path / "other"), slices[2], "--out",
                 str(tmp_path / "bad")]) == 2
    assert "different tokenizers" in capsys.readouterr().err
    assert prepare_cli(*common, "--slice", "3/3", "--out", str(tmp_path / "x")) == 2
