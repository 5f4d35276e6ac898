"""One corpus, N jobs: prepare disjoint slices in parallel, then merge their folders.

`prepare --slice I/N` keeps the documents whose hash falls in slice I of N. The hash
is of the normalized text, so exact copies of a document land in the same slice and
exact deduplication stays global; near duplicates are only found within a slice.
Every slice must encode with the same tokenizer (`--tokenizer FILE`, trained once
beforehand), or their ids would mean different things.

`merge` checks the folders (each complete, one tokenizer, slices 0..N-1 of the same
N, none twice) and joins them: shards are hard-linked (copied across filesystems)
under new numbers, meta.json adds up, manifest.json lists every slice's sources.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .atomic import write_json
from .errors import UserError
from .sources import file_sha256


def parse_slice(value: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): slice 2 of 8, numbered from 0."""
    index, _, count = value.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise UserError(f"--slice {value!r} must be I/N with 0 <= I < N, e.g. 0/8 "
                        "(Slurm: --slice $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
    return int(index), int(count)


def in_slice(normalized_text: str, part: tuple[int, int]) -> bool:
    """Whether a document belongs to slice `part` = (I, N): its hash mod N is I."""
    digest = hashlib.sha256(normalized_text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % part[1] == part[0]


def merge(folders: list[Path], out: Path) -> dict:
    """Join the prepared slice folders into `out`; return the new meta.json."""
    from .data import load_meta  # data imports this module

    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty; choose a new folder")
    metas = [load_meta(folder) for folder in folders]
    manifests = [json.loads((f / m["manifest"]).read_text(encoding="utf-8"))
                 for f, m in zip(folders, metas)]
    tokenizers = {file_sha256(f / m["tokenizer"]) for f, m in zip(folders, metas)}
    if len(tokenizers) > 1:
        raise UserError("the folders were encoded with different tokenizers; prepare "
                        "every slice with the same --tokenizer FILE")
    parts = [tuple(m["settings"].get("slice") or (0, 1)) for m in manifests]
    counts = {n for _, n in parts}
    indexes = sorted(i for i, _ in parts)
    if len(counts) > 1 or indexes != list(range(len(folders))) or \
            counts != {len(folders)}:
        raise UserError(f"the folders hold slices {sorted(parts)}; merge needs each "
                        f"slice I/N of one N exactly once (0/N … N-1/N)")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folders[0] / metas[0]["tokenizer"], out / "tokenizer.json")
    shards: dict[str, list[dict]] = {"train": [], "val": []}
    for folder, meta in zip(folders, metas):
        for split in ("train", "val"):
            for shard in meta["shards"][split]:
                name = f"{split}_{len(shards[split]):03d}.bin"
                _link(folder / shard["file"], out / name)
                shards[split].append({"file": name, "tokens": shard["tokens"]})
    outputs = {s["file"]: file_sha256(out / s["file"]) for v in shards.values()
               for s in v}
    write_json(out / "manifest.json", {
        "merged_from": [{"folder": str(f), "slice": list(p), "manifest": m}
                        for f, p, m in zip(folders, parts, manifests)],
        "outputs_sha256": {"tokenizer.json": file_sha256(out / "tokenizer.json"),
                           **outputs}})
    meta = {**metas[0], "manifest": "manifest.json", "shards": shards,
            "documents": {split: sum(m["documents"][split] for m in metas)
                          for split in ("train", "val")},
            "train_tokens": sum(m["train_tokens"] for m in metas),
            "val_tokens": sum(m["val_tokens"] for m in metas)}
    write_json(out / "meta.json", meta)  # last: its presence means "complete"
    return meta


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed
        shutil.copyfile(source, target)
