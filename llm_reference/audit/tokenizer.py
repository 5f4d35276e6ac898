"""Scan every vocabulary entry of a tokenizer for personal data and secrets.

BPE merges whatever is frequent: an e-mail address or key repeated in the training
text can become a single token, and then it ships in `tokenizer.json` to everyone who
downloads the model, even if the weights never emit it.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import compliance
from ..tokenizer import Tokenizer, bytes_to_unicode
from .files import line_of
from .registry import Finding, Outcome, Targets, check


def vocabulary_findings(path: Path) -> tuple[int, list[Finding]]:
    """(entries scanned, a finding per entry that holds PII) for a tokenizer.json."""
    tokenizer = Tokenizer.load(path)
    table = bytes_to_unicode()  # how tokenizer.json spells each token's bytes
    entries = [(i, tokenizer.decode_bytes([i])) for i in range(tokenizer.vocab_size)]
    report = compliance.scan(((str(i), b.decode("utf-8", errors="replace"))
                              for i, b in entries), samples_per_type=1_000_000)
    findings = []
    for f in report.samples:
        token = entries[int(f.location)][1]
        spelled = json.dumps("".join(table[b] for b in token))
        findings.append(Finding(f"token {f.location} holds {f.type} {f.masked}", path,
                                line_of(path, spelled)))
    return len(entries), findings


@check("tokenizer.vocab-pii",
       verifies="no vocabulary entry of tokenizer.json holds an e-mail address, public "
                "IP, phone number or secret (llm_reference.compliance's detectors)",
       why="a token ships with the model to everyone: PII merged into the vocabulary "
           "is published even if the weights never emit it",
       fix="prepare again with redaction on (the default) so the PII never reaches "
           "tokenizer training, or drop the source that holds it",
       targets=(("data",), ("run",), ("release",)))
def vocab_pii(targets: Targets, on: str) -> Outcome:
    path = getattr(targets, on) / "tokenizer.json"
    if not path.is_file():
        return Outcome(f"{path.name} missing", [Finding("no tokenizer.json", path)])
    scanned, findings = vocabulary_findings(path)
    return Outcome(f"{scanned:,} vocabulary entries scanned", findings)
