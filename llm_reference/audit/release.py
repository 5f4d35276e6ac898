"""Checks of a release folder: its model card, its hashes, its provenance, its text.

`release` writes weights, config, tokenizer, a model card (README.md) and
`manifest.json` with the sha256 of every file and of the training shards. A release
is copied, mirrored and edited by hand afterwards; these checks hold the copy to what
the manifest promises.
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import compliance
from ..sources import file_sha256
from .files import line_of, read_json
from .registry import Finding, Outcome, Targets, check

CARD_SECTIONS = ("Training data", "Training", "Evaluation",
                 "Intended use and limitations", "Compliance")
UNDOCUMENTED = ("**not chosen**", "**not documented**")  # what `release` writes


def manifest_of(release: Path) -> tuple[Path, dict]:
    path = release / "manifest.json"
    return path, read_json(path, "a folder written by `release`")


@check("release.card-complete",
       verifies="README.md (the model card) declares a licence in its front matter and "
                "has the sections " + ", ".join(CARD_SECTIONS) + ", with the weights' "
                "licence chosen and the training data documented",
       why="users decide from the card whether they may and should use the model: "
           "licence, data, evaluation, intended use and limits",
       fix="release again with --license NAME and --data DIR (the data folder the run "
           "trained on), or complete the card by hand",
       targets=(("release",),))
def card_complete(targets: Targets, on: str) -> Outcome:
    path = targets.release / "README.md"
    if not path.is_file():
        return Outcome("no model card", [Finding("README.md is missing", path)])
    text = path.read_text(encoding="utf-8")
    findings = []
    front = re.match(r"---\n(.*?)\n---", text, re.S)
    if not (front and re.search(r"^license:\s*\S", front.group(1), re.M)):
        findings.append(Finding("no `license:` line in the front matter", path, 1))
    headings = re.findall(r"^##\s+(.+?)\s*$", text, re.M)
    findings += [Finding(f"no '## {s}' section", path) for s in CARD_SECTIONS
                 if not any(h.lower().startswith(s.lower()) for h in headings)]
    findings += [Finding(f"the card says {marker}", path, line_of(path, marker))
                 for marker in UNDOCUMENTED if marker in text]
    return Outcome(f"{len(headings)} section(s)", findings)


@check("release.hashes-match",
       verifies="every file of the release has the sha256 that manifest.json's "
                "`files_sha256` records, and no file is missing or unlisted",
       why="the manifest is what a downloader can verify; a file changed or added "
           "after release (weights swapped, a pickle dropped in) is not what was "
           "evaluated and signed off",
       fix="release again from the run rather than editing a release in place",
       targets=(("release",),))
def hashes_match(targets: Targets, on: str) -> Outcome:
    path, manifest = manifest_of(targets.release)
    recorded = manifest.get("files_sha256", {})
    findings = []
    for name, expected in recorded.items():
        file = targets.release / name
        if not file.is_file():
            findings.append(Finding(f"{name} is listed but missing", path,
                                    line_of(path, f'"{name}"')))
        elif file_sha256(file) != expected:
            findings.append(Finding(f"{name} differs from its sha256 in the manifest",
                                    file))
    present = {p.relative_to(targets.release).as_posix()
               for p in targets.release.rglob("*") if p.is_file()}
    findings += [Finding(f"{name} is not in the manifest", targets.release / name)
                 for name in sorted(present - set(recorded) - {"manifest.json"})]
    return Outcome(f"{len(recorded)} file(s) checked", findings)


@check("release.provenance",
       verifies="manifest.json records the training data (shards matching the data "
                "manifest) and a git commit of clean code",
       why="a release must be rebuildable: from uncommitted code or unrecorded data "
           "nobody can reproduce or audit it",
       fix="commit the code, then release again with --data DIR pointing at the "
           "unchanged data folder",
       targets=(("release",),))
def provenance(targets: Targets, on: str) -> Outcome:
    path, manifest = manifest_of(targets.release)
    data, git = manifest.get("data"), manifest.get("git")
    findings = []
    if not data:
        findings.append(Finding("no training data recorded", path,
                                line_of(path, '"data"')))
    elif not data.get("shards_match_data_manifest"):
        findings.append(Finding("the shards differ from the data manifest's hashes",
                                path, line_of(path, "shards_match_data_manifest")))
    if not git:
        findings.append(Finding("no git commit recorded", path))
    elif git.get("dirty"):
        commit = git["commit"][:12]
        findings.append(Finding(f"built from uncommitted changes to {commit}", path,
                                line_of(path, '"dirty"')))
    commit = (git or {}).get("commit", "none")[:12]
    return Outcome(f"commit {commit}, data {'recorded' if data else 'missing'}",
                   findings)


@check("release.pii-scan",
       verifies="no .md, .json or .toml file of the release holds an e-mail address, "
                "public IP, phone number or secret",
       why="everything in a release is published: a key in a config or an address in "
           "the card leaks to every downloader",
       fix="remove the value (rotate a leaked key) and release again",
       targets=(("release",),))
def pii_scan(targets: Targets, on: str) -> Outcome:
    files = sorted(p for p in targets.release.rglob("*")
                   if p.suffix in (".md", ".json", ".toml") and p.is_file())
    report = compliance.scan(((str(p), p.read_text(encoding="utf-8", errors="replace"))
                              for p in files), samples_per_type=1_000_000)
    return Outcome(f"{len(files)} file(s) scanned", [
        Finding(f"{f.type} {f.masked}", Path(f.location), f.line)
        for f in report.samples])
