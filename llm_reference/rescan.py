"""What a release says about personal data: what `prepare` redacted, and what a
re-scan of the training shards still finds.

Redaction at `prepare` time is recorded in the data folder's manifest. The re-scan
decodes the first `SCAN_TOKENS` tokens of the shards back into documents and runs
`compliance.scan` on them: the same detectors, on what the model actually saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import compliance

SCAN_TOKENS = 1_000_000  # tokens of the shards that the PII re-scan reads (default)


def data_shards(data_dir: Path) -> list[str]:
    meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
    return [s["file"] for split in ("train", "val") for s in meta["shards"][split]]


def read_documents(data_dir: Path, tokenizer: Any, max_tokens: int
                   ) -> Iterator[tuple[str, str]]:
    """(location, text) of the documents in the first `max_tokens` tokens of the
    shards, split at <|endoftext|>: what the PII re-scan reads."""
    meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    left = max_tokens
    for name in data_shards(data_dir):
        if left <= 0:
            return
        tokens = np.memmap(data_dir / name, dtype=dtype, mode="r")[:left]
        left -= len(tokens)
        # documents lie between <|endoftext|> tokens
        eots = np.flatnonzero(tokens == meta["eot_id"]).tolist()
        bounds = [-1, *eots, len(tokens)]
        for n, (before, end) in enumerate(zip(bounds, bounds[1:])):
            if end > before + 1:
                text = tokenizer.decode(tokens[before + 1:end].tolist())
                yield f"{name}#doc{n}", text


def pii_summary(data_manifest: dict | None, data_dir: Path | None, tokenizer: Any,
                scan_tokens: int) -> dict[str, Any]:
    """What `prepare` redacted (from its manifest) and what a re-scan still finds."""
    summary: dict[str, Any] = {"redaction": None, "redacted": None, "rescan": None}
    if data_manifest is not None:
        summary["redaction"] = data_manifest["settings"].get("redact")
        summary["redacted"] = data_manifest["totals"]["redacted"]
    if data_dir is not None and scan_tokens > 0:
        report = compliance.scan(read_documents(data_dir, tokenizer, scan_tokens))
        summary["rescan"] = {"tokens": scan_tokens, **report.to_dict()}
    return summary
